//! Tenant statements run on lanes (`tenancy::lanes`): a tenant with one
//! statement at a time stays on one backend, a busy one spreads over the
//! pool, and a backend that touched too many schemas is replaced, so no
//! backend keeps the catalogs of thousands of schemas.

use tessera_server::tenancy::{Lanes, SchemaName};
use tessera_tests::spawn_app;

async fn pid(lanes: &Lanes, schema: &SchemaName) -> i32 {
    lanes.get(schema).await.unwrap().query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
}

fn schema(slug: &str) -> SchemaName {
    SchemaName::from_stored(format!("t_{slug}")).unwrap()
}

#[tokio::test]
async fn a_quiet_tenant_stays_on_one_backend_and_a_busy_one_spreads() {
    let app = spawn_app().await;
    let mut settings = app.config.database.clone();
    settings.pool_size = 4;
    let lanes = Lanes::build(&settings, &app.database_url).unwrap();
    let acme = schema("acme");
    let first = pid(&lanes, &acme).await;
    for _ in 0..20 {
        assert_eq!(pid(&lanes, &acme).await, first, "one statement at a time: always the home lane");
    }
    let held = futures::future::join_all((0..4).map(|_| lanes.get(&acme))).await;
    let mut pids = Vec::new();
    for client in &held {
        pids.push(client.as_ref().unwrap().query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get::<_, i32>(0));
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 4, "four at once get four lanes");
}

#[tokio::test]
async fn a_connection_that_touched_too_many_schemas_is_replaced() {
    let app = spawn_app().await;
    let mut settings = app.config.database.clone();
    settings.pool_size = 1;
    settings.max_schemas_per_connection = 2;
    let lanes = Lanes::build(&settings, &app.database_url).unwrap();
    let first = pid(&lanes, &schema("one")).await;
    assert_eq!(pid(&lanes, &schema("two")).await, first);
    assert_eq!(pid(&lanes, &schema("one")).await, first, "a schema seen before counts once");
    assert_eq!(pid(&lanes, &schema("three")).await, first, "the third schema is served");
    let next = pid(&lanes, &schema("one")).await;
    assert_ne!(next, first, "past its most, the connection was replaced");
    assert_eq!(pid(&lanes, &schema("two")).await, next, "and the new one starts counting afresh");
}

const HOOKED: &str = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: orders\nspec:\n  triggers:\n    - webhook:\n        auth: none\n  steps:\n    - name: total\n      transform:\n        expression: '{total: .trigger.body.cents}'\n";

/// Many tenants' new executions commit together, one transaction per lane
/// (the rows of several tenants share a transaction id), each in its own
/// schema; one tenant whose insert fails fails alone.
#[tokio::test]
async fn several_tenants_commit_in_one_lane_transaction_and_a_failing_one_fails_alone() {
    use reqwest::{Method, StatusCode};
    let app = tessera_tests::spawn_app_with(|c| {
        c.database.pool_size = 1;
        c.runtime.intake_per_second = 0;
    })
    .await;
    let slugs = ["t-one", "t-two", "t-three", "t-four", "broken"];
    for slug in slugs {
        let tenant = app.create_tenant(slug).await;
        let owner = app.owner_token(&tenant).await;
        app.apply_yaml(slug, &owner, HOOKED).await;
    }
    let db = app.db().await;
    db.batch_execute(
        "CREATE FUNCTION t_broken.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON t_broken.executions FOR EACH ROW EXECUTE FUNCTION t_broken.refuse()",
    )
    .await
    .unwrap();

    let sends = (0..100).map(|i| {
        let slug = slugs[i % slugs.len()];
        let request = app.tenant_request(Method::POST, slug, "/hooks/orders").json(&serde_json::json!({"cents": i}));
        async move { (slug, request.send().await.unwrap().status()) }
    });
    let answers = futures::future::join_all(sends).await;
    for (slug, status) in &answers {
        let expected = if *slug == "broken" { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::ACCEPTED };
        assert_eq!(*status, expected, "{slug}");
    }
    let mut shared = std::collections::HashMap::<String, std::collections::HashSet<&str>>::new();
    for slug in &slugs[..4] {
        let schema = format!("t_{}", slug.replace('-', "_"));
        let rows = db.query(&format!("SELECT xmin::text, trigger -> 'body' ->> 'cents' FROM {schema}.executions"), &[]).await.unwrap();
        assert_eq!(rows.len(), 20, "{slug}: every accepted webhook is stored in its own tenant");
        for row in rows {
            let cents: i64 = row.get::<_, String>(1).parse().unwrap();
            assert_eq!(slugs[cents as usize % slugs.len()], *slug, "a row of another tenant in {schema}");
            shared.entry(row.get(0)).or_default().insert(slug);
        }
    }
    assert!(shared.values().any(|tenants| tenants.len() > 1), "some transaction held several tenants' executions: {shared:?}");
    let broken: i64 = db.query_one("SELECT count(*) FROM t_broken.executions", &[]).await.unwrap().get(0);
    assert_eq!(broken, 0);
}
