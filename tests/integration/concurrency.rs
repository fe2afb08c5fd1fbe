//! No tenant ever sees another tenant's rows, even when a small pool hands the
//! same PostgreSQL sessions to every tenant in turn under heavy concurrency;
//! and the tenant scope lives in each statement, never on a session.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use futures::{future::join_all, stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_server::tenancy::SchemaName;
use tessera_tests::{spawn_app_with, TestApp, TestTenant, BASE_DOMAIN};

const TENANTS: usize = 20;
const REQUESTS: usize = 1200;

struct Seeded {
    tenant: TestTenant,
    token: String,
    /// How many variables this tenant holds (`owner` plus its extras).
    variables: usize,
}

/// Tenant `i` holds `owner` = its slug and `i` extra variables whose values
/// also name it, so any foreign row in an answer is recognisable.
async fn seed(app: &TestApp) -> Vec<Seeded> {
    let platform = app.platform_token().await;
    let slugs: Vec<String> = (0..TENANTS).map(|i| format!("tenant-{i:02}")).collect();
    let tenants: Vec<TestTenant> = stream::iter(&slugs)
        .map(|slug| app.create_tenant_with_token(&platform, slug))
        .buffered(4)
        .collect()
        .await;
    let tokens: Vec<String> = stream::iter(&tenants).map(|t| app.owner_token(t)).buffered(4).collect().await;
    let mut writes = Vec::new();
    for (i, (tenant, token)) in tenants.iter().zip(&tokens).enumerate() {
        writes.push(put_variable(app, &tenant.slug, token, "owner".into(), json!(tenant.slug)));
        for j in 0..i {
            writes.push(put_variable(app, &tenant.slug, token, format!("extra_{j}"), json!(format!("{}:{j}", tenant.slug))));
        }
    }
    for (status, body) in join_all(writes).await {
        assert_eq!(status, StatusCode::OK, "seeding: {body}");
    }
    tenants
        .into_iter()
        .zip(tokens)
        .enumerate()
        .map(|(i, (tenant, token))| Seeded { tenant, token, variables: i + 1 })
        .collect()
}

async fn put_variable(app: &TestApp, slug: &str, token: &str, name: String, value: Value) -> (StatusCode, Value) {
    let response = app
        .tenant_request(Method::PUT, slug, &format!("/api/variables/{name}"))
        .bearer_auth(token)
        .json(&json!({"value": value}))
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[derive(Debug, Clone, Copy)]
enum Call {
    List,
    GetOwner,
    Me,
    PutOwner,
}

/// One request for `seeded`; returns a description of what was wrong with
/// the answer, if anything.
async fn call_and_check(app: &TestApp, http: &reqwest::Client, seeded: &Seeded, call: Call, n: usize) -> Result<(), String> {
    let slug = seeded.tenant.slug.as_str();
    let request = |method: Method, path: &str| {
        http.request(method, format!("{}{path}", app.base_url())).header("host", format!("{slug}.{BASE_DOMAIN}:{}", app.port))
    };
    let request = match call {
        Call::List => request(Method::GET, "/api/variables"),
        Call::GetOwner => request(Method::GET, "/api/variables/owner"),
        Call::Me => request(Method::GET, "/api/me"),
        Call::PutOwner => request(Method::PUT, "/api/variables/owner")
            .json(&json!({"value": slug, "description": format!("write {n} by {slug}")})),
    };
    let response = request.bearer_auth(&seeded.token).send().await.map_err(|e| format!("transport error: {call:?} #{n}: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| format!("unreadable body: {call:?} #{n}: {e}"))?;
    if status != StatusCode::OK {
        return Err(format!("status {status}: {call:?} #{n} on {slug}: {body}"));
    }
    let ok = match call {
        Call::List => {
            let items = body["items"].as_array().cloned().unwrap_or_default();
            items.len() == seeded.variables
                && items.iter().all(|v| match v["name"].as_str() {
                    Some("owner") => v["value"] == slug,
                    Some(_) => v["value"].as_str().is_some_and(|s| s.starts_with(&format!("{slug}:"))),
                    None => false,
                })
        }
        Call::GetOwner => body["name"] == "owner" && body["value"] == slug,
        Call::Me => body["tenant"]["slug"] == slug && body["principal"]["email"] == seeded.tenant.owner_email.as_str(),
        Call::PutOwner => {
            body["value"] == slug && body["description"].as_str().is_some_and(|d| d.ends_with(&format!("by {slug}")))
        }
    };
    if ok { Ok(()) } else { Err(format!("LEAK: {call:?} #{n} on {slug} answered another tenant's data: {body}")) }
}

#[tokio::test]
async fn a_thousand_concurrent_requests_over_twenty_tenants_on_four_connections_never_mix_tenants() {
    // Four connections for everything: each is handed from tenant to tenant
    // constantly. The test is about isolation, not latency, so requests may
    // queue for a connection (and for the CPU on a busy machine) for long.
    let app = spawn_app_with(|c| {
        c.database.pool_size = 4;
        c.database.acquire_timeout_secs = 60;
    })
    .await;
    let tenants = seed(&app).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(90)).build().unwrap();

    let calls = [Call::List, Call::GetOwner, Call::Me, Call::PutOwner];
    let requests = (0..REQUESTS).map(|n| {
        let seeded = &tenants[n % TENANTS];
        let call = calls[(n / TENANTS + n) % calls.len()];
        call_and_check(&app, &http, seeded, call, n)
    });
    let outcomes = join_all(requests).await;
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for failure in &failures {
        *kinds.entry(failure.split(':').next().unwrap_or_default()).or_default() += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} answers were wrong ({kinds:?}), e.g. {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    // Every write landed in its own tenant's schema and nowhere else.
    let db = app.db().await;
    for seeded in &tenants {
        let schema = format!("t_{}", seeded.tenant.slug.replace('-', "_"));
        let rows = db.query(&format!("SELECT name, value, description FROM {schema}.variables"), &[]).await.unwrap();
        assert_eq!(rows.len(), seeded.variables, "{schema}");
        for row in rows {
            let (name, value, description): (String, Value, String) = (row.get(0), row.get(1), row.get(2));
            let value = value.as_str().unwrap().to_string();
            if name == "owner" {
                assert_eq!(value, seeded.tenant.slug, "{schema}");
                assert!(description.is_empty() || description.ends_with(&format!("by {}", seeded.tenant.slug)), "{schema}: {description}");
            } else {
                assert!(value.starts_with(&format!("{}:", seeded.tenant.slug)), "{schema}: {value}");
            }
        }
    }
}

/// The backend a transaction runs on, and the session's search_path there.
async fn session_of(tx: &mut tessera_server::tenancy::TenantTx) -> (String, i32) {
    let row = tx.query_one("SELECT current_setting('search_path'), pg_backend_pid()", &[]).await.unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn tenant_scope_is_in_each_statement_and_never_on_the_session() {
    let app = spawn_app_with(|c| c.database.pool_size = 2).await;
    let platform = app.platform_token().await;
    for slug in ["acme", "globex", "initech"] {
        app.create_tenant_with_token(&platform, slug).await;
    }
    let provisioner = &app.state.provisioner;
    let (acme, globex, initech) =
        (provisioner.get("acme").await.unwrap(), provisioner.get("globex").await.unwrap(), provisioner.get("initech").await.unwrap());
    let db = &app.state.tenant_db;

    // Two transactions for different tenants open at once, statements
    // interleaved: each reads only its own tenant's tables.
    let mut a = db.begin(&acme).await.unwrap();
    let mut g = db.begin(&globex).await.unwrap();
    let owner_a: String = a.query_one("SELECT email FROM @tenant.users", &[]).await.unwrap().get(0);
    let owner_g: String = g.query_one("SELECT email FROM @tenant.users", &[]).await.unwrap().get(0);
    assert_eq!((owner_a.as_str(), owner_g.as_str()), ("owner@acme.test", "owner@globex.test"));
    a.commit().await.unwrap();
    g.commit().await.unwrap();

    // With two connections, six transactions over three tenants put
    // different tenants on the same backend; each reads its own rows and no
    // session ever holds a tenant's search_path.
    let mut tenants_per_backend: HashMap<i32, Vec<String>> = HashMap::new();
    for round in 0..2 {
        for tenant in [&initech, &acme, &globex] {
            let mut tx = db.begin(tenant).await.unwrap();
            let (path, pid) = session_of(&mut tx).await;
            assert_eq!(path, "pg_catalog", "round {round}");
            let email: String = tx.query_one("SELECT email FROM @tenant.users", &[]).await.unwrap().get(0);
            assert_eq!(email, format!("owner@{}.test", tenant.slug), "round {round}");
            tenants_per_backend.entry(pid).or_default().push(tenant.slug.to_string());
            tx.commit().await.unwrap();
        }
    }
    assert!(
        tenants_per_backend.values().any(|slugs| slugs.iter().any(|s| s != &slugs[0])),
        "some backend served several tenants: {tenants_per_backend:?}"
    );

    // A statement that forgot the tenant marker finds no tenant table: it
    // fails instead of reading some tenant's rows, in a transaction or not.
    let mut forgetful = db.begin(&acme).await.unwrap();
    let unscoped = forgetful.query("SELECT email FROM users", &[]).await.expect_err("unqualified tenant table is invisible");
    assert_eq!(unscoped.code(), Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE), "{unscoped:?}");
    drop(forgetful);
    let unscoped = db.statement(&acme, "SELECT email FROM users", &[]).await.expect_err("unqualified tenant table is invisible");
    assert_eq!(unscoped.code(), Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE), "{unscoped:?}");
    let plain: Vec<_> = join_all([app.state.pool.get(), app.state.pool.get()]).await.into_iter().map(Result::unwrap).collect();
    for client in &plain {
        let path: String = client.query_one("SHOW search_path", &[]).await.unwrap().get(0);
        assert_eq!(path, "pg_catalog");
        let unscoped = client.query("SELECT email FROM users", &[]).await.expect_err("unqualified tenant table is invisible");
        assert_eq!(unscoped.code(), Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE), "{unscoped:?}");
    }
    drop(plain);

    // A transaction dropped after a write, without commit, is rolled back
    // and its session goes back to the pool clean.
    let mut dropped = db.begin(&acme).await.unwrap();
    let inserted = dropped
        .execute("INSERT INTO @tenant.variables (name, value) VALUES ('uncommitted', '\"never\"')", &[])
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    let (_, dropped_pid) = session_of(&mut dropped).await;
    drop(dropped);

    let mut check = db.begin_in_schema(&SchemaName::from_stored("t_acme".into()).unwrap()).await.unwrap();
    let found = check.query_opt("SELECT 1 FROM @tenant.variables WHERE name = 'uncommitted'", &[]).await.unwrap();
    assert!(found.is_none(), "the dropped transaction's write was rolled back");
    check.commit().await.unwrap();
    let direct: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM t_acme.variables WHERE name = 'uncommitted'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(direct, 0);

    // Two at once for one tenant: both lanes of the pool.
    let lanes = app.state.tenant_db.lanes();
    let acme_schema = SchemaName::from_stored("t_acme".into()).unwrap();
    let sessions: Vec<_> = join_all([lanes.get(&acme_schema), lanes.get(&acme_schema)]).await.into_iter().map(Result::unwrap).collect();
    let mut saw_dropped_backend = false;
    for client in &sessions {
        // In an open transaction now() would be its start, not this
        // statement's (a simple query: one message, one timestamp); and the
        // dropped write's transaction id would still be assigned.
        let probe = client
            .simple_query(
                "SELECT pg_backend_pid(), now() = statement_timestamp(), pg_current_xact_id_if_assigned() IS NULL, \
                 current_setting('search_path')",
            )
            .await
            .unwrap();
        let row = probe
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .expect("one row");
        saw_dropped_backend |= row.get(0) == Some(dropped_pid.to_string().as_str());
        assert_eq!(row.get(1), Some("t"), "no transaction left open on a pooled session");
        assert_eq!(row.get(2), Some("t"), "no transaction id held by a pooled session");
        assert_eq!(row.get(3), Some("pg_catalog"));
    }
    assert!(saw_dropped_backend, "the dropped transaction's session was returned to the pool");
    drop(sessions);
    // Only the dropped transaction's backend: the node's own workers and
    // committer may be between two statements of a live transaction.
    let idle_in_tx: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state LIKE 'idle in transaction%'",
            &[&dropped_pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(idle_in_tx, 0);
}

#[tokio::test]
async fn the_same_statement_prepared_for_one_tenant_reads_the_next_tenants_rows() {
    // Statements are cached per connection; one prepared while serving acme
    // is reused for globex on the same session and must read globex's table.
    let app = spawn_app_with(|c| c.database.pool_size = 1).await;
    let platform = app.platform_token().await;
    for slug in ["acme", "globex"] {
        let tenant = app.create_tenant_with_token(&platform, slug).await;
        let token = app.owner_token(&tenant).await;
        let (status, _) = put_variable(&app, slug, &token, "owner".into(), json!(slug)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let acme = app.state.provisioner.get("acme").await.unwrap();
    let globex = app.state.provisioner.get("globex").await.unwrap();
    let mut pids = Vec::new();
    for round in 0..3 {
        for tenant in [&acme, &globex] {
            let mut tx = app.state.tenant_db.begin(tenant).await.unwrap();
            let row = tx.query_one("SELECT value, pg_backend_pid() FROM @tenant.variables WHERE name = 'owner'", &[]).await.unwrap();
            assert_eq!(row.get::<_, Value>(0), json!(tenant.slug.as_str()), "round {round}");
            pids.push(row.get::<_, i32>(1));
            drop(tx); // rolls back before the connection is reused
        }
    }
    pids.dedup();
    assert_eq!(pids.len(), 1, "one session served both tenants throughout");
}

/// Statements are qualified per tenant schema; a connection prepares a
/// tenant's copy only when it comes back, and keeps at most
/// `max_cached_statements` of them instead of every tenant's plans.
#[tokio::test]
async fn per_tenant_statements_are_bounded_on_each_connection() {
    let app = spawn_app_with(|c| {
        c.database.pool_size = 1;
        c.database.max_cached_statements = 4;
    })
    .await;
    let platform = app.platform_token().await;
    let mut tenants = Vec::new();
    for i in 0..8 {
        let slug = format!("tenant-{i}");
        app.create_tenant_with_token(&platform, &slug).await;
        tenants.push(app.state.provisioner.get(&slug).await.unwrap());
    }
    let db = &app.state.tenant_db;
    let first = &tenants[0];
    let prepared = |like: String| async move {
        let sql = "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE $1";
        db.statement(first, sql, &[&like]).await.unwrap()[0].get::<_, i64>(0)
    };
    // Each tenant's statement three times: unnamed, then prepared, then reused.
    for tenant in &tenants {
        for _ in 0..3 {
            let rows = db.statement(tenant, "SELECT count(*) FROM @tenant.users", &[]).await.unwrap();
            assert_eq!(rows[0].get::<_, i64>(0), 1, "{}", tenant.slug.as_str());
        }
    }
    let kept = prepared("%count(*) FROM %.users".into()).await;
    assert!((1..=4).contains(&kept), "the one connection holds {kept} tenant statements");
    // A statement run once is not kept, once the node knows its parameters
    // (the first copy of a statement it ever runs is prepared to learn them).
    let once = "SELECT count(*) AS once FROM @tenant.users";
    for tenant in &tenants[1..3] {
        assert_eq!(db.statement(tenant, once, &[]).await.unwrap()[0].get::<_, i64>("once"), 1);
    }
    assert_eq!(prepared(format!("%AS once FROM {}.users", tenants[1].schema.quoted())).await, 1, "the first copy");
    let unnamed = prepared(format!("%AS once FROM {}.users", tenants[2].schema.quoted())).await;
    assert_eq!(unnamed, 0, "a statement run once stays unnamed");
}

/// A transaction whose first statement is dropped mid-flight (an aborted
/// execution, a client that went away) must not leave its session inside
/// the transaction: BEGIN already went out with that statement, so the
/// drop rolls it back before the connection is used again.
#[tokio::test]
async fn a_transaction_dropped_mid_statement_leaves_its_connection_idle() {
    let app = spawn_app_with(|_| {}).await;
    app.create_tenant("acme").await;
    // A pool of its own with one connection, so the test knows the backend
    // and nothing else of the node borrows it meanwhile.
    let mut settings = app.config.database.clone();
    settings.pool_size = 1;
    let lanes = tessera_server::tenancy::Lanes::build(&settings, &app.database_url).unwrap();
    let acme = SchemaName::from_stored("t_acme".into()).unwrap();
    let pid: i32 = lanes.get(&acme).await.unwrap().query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let db = tessera_server::tenancy::TenantDb::new(lanes.clone());

    let mut tx = db.begin_in_schema(&acme).await.unwrap();
    let cut = tokio::time::timeout(Duration::from_millis(100), tx.query("SELECT pg_sleep(0.5) FROM @tenant.users", &[])).await;
    assert!(cut.is_err(), "the statement was still running when it was dropped");
    drop(tx);

    let admin = app.db().await;
    let state_of_backend = || {
        let admin = &admin;
        async move {
            let row = admin.query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid]).await.unwrap();
            row.get::<_, Option<String>>(0).unwrap_or_default()
        }
    };
    let idle = tessera_tests::eventually(Duration::from_secs(5), || async { state_of_backend().await == "idle" }).await;
    assert!(idle, "the backend is left `{}`", state_of_backend().await);
    let client = lanes.get(&acme).await.unwrap();
    let in_transaction: bool = client.query_one("SELECT txid_current_if_assigned() IS NOT NULL", &[]).await.unwrap().get(0);
    assert!(!in_transaction);
}
