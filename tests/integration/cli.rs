//! The real `tessera` binary, as an operator drives it: migrations, the first
//! platform owner, tenant administration, help, and `serve` (configuration
//! errors, JSON logs, graceful stop on SIGTERM).

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_server::provisioning::migrate::latest_tenant_version;
use tessera_tests::{connect, eventually, fault, fresh_database, migration_history};
use tokio::process::Command;

pub(crate) use tessera_tests::tessera_bin;

/// A unique scratch directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tessera-cli-{label}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `tessera` with a clean environment: none of the caller's TESSERA_*
/// variables, only the ones given.
pub(crate) fn tessera(env: &[(&str, String)]) -> Command {
    let mut command = Command::new(tessera_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TESSERA_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str()))).stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// One finished run of the binary.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Run `tessera args` with only the environment `env`, within a minute.
pub(crate) async fn run(env: &[(&str, String)], args: &[&str]) -> Run {
    let output: Output = tokio::time::timeout(Duration::from_secs(60), tessera(env).args(args).output())
        .await
        .unwrap_or_else(|_| panic!("tessera {args:?} did not finish"))
        .unwrap_or_else(|e| panic!("run tessera {args:?}: {e}"));
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn tenants_json(env: &[(&str, String)]) -> Vec<Value> {
    let listed = run(env, &["tenant", "list", "--json"]).await;
    assert!(listed.ok(), "tenant list --json: {listed:?}");
    serde_json::from_str::<Value>(&listed.stdout).expect("tenant list --json prints JSON").as_array().expect("a JSON array").clone()
}

#[tokio::test]
async fn an_operator_sets_up_the_platform_and_administers_a_tenant_from_the_command_line() {
    let (_, url) = fresh_database().await;
    let exports = TempDir::new("exports");
    let env = [("TESSERA_DATABASE_URL", url.clone()), ("TESSERA_PROVISIONING__EXPORT_DIR", exports.0.display().to_string())];

    let migrated = run(&env, &["migrate"]).await;
    assert!(migrated.ok(), "{migrated:?}");
    // Every platform migration there is, each recorded once.
    let db = connect(&url).await;
    let recorded: i64 = db.query_one("SELECT count(*) FROM platform.refinery_schema_history", &[]).await.unwrap().get(0);
    assert!(recorded >= 2 && migrated.stdout.contains(&format!("platform schema: {recorded} migration(s) applied")), "{migrated:?}");
    assert!(migrated.stdout.contains("0 migrated, 0 failed"), "{migrated:?}");

    let init = run(&env, &["platform", "init", "--email", "admin@example.test", "--password", "a-strong-password"]).await;
    assert!(init.ok(), "{init:?}");
    assert!(init.stdout.contains("platform owner admin@example.test created"), "{init:?}");
    assert!(!init.stdout.contains("a-strong-password"), "a chosen password is not printed");
    let again = run(&env, &["platform", "init", "--email", "second@example.test", "--password", "another-password"]).await;
    assert!(!again.ok(), "a second platform init is refused: {again:?}");
    assert!(again.stderr.contains("owner"), "the refusal says why: {again:?}");
    let owners: Vec<String> =
        db.query("SELECT email FROM platform.owners", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(owners, ["admin@example.test"]);

    let created =
        run(&env, &["tenant", "create", "acme", "--owner-email", "owner@acme.test", "--owner-password", "acme-owner-password"]).await;
    assert!(created.ok(), "{created:?}");
    let expected = format!("tenant acme created on cluster local (schema t_acme, version {})", latest_tenant_version());
    assert!(created.stdout.contains(&expected), "{created:?}");
    assert!(created.stdout.contains("owner: owner@acme.test"), "{created:?}");
    let taken = run(&env, &["tenant", "create", "acme", "--owner-email", "x@acme.test", "--owner-password", "acme-owner-password"]).await;
    assert!(!taken.ok() && taken.stderr.contains("already exists"), "{taken:?}");

    let tenants = tenants_json(&env).await;
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0]["slug"], "acme");
    assert_eq!(tenants[0]["status"], "active");
    assert_eq!(tenants[0]["schema_version"], latest_tenant_version());
    let table = run(&env, &["tenant", "list"]).await;
    assert!(table.ok() && table.stdout.contains("SLUG") && table.stdout.contains("acme"), "{table:?}");

    // Moved to a cluster with a database of its own, and given a domain.
    let (_, b_url) = fresh_database().await;
    let cluster = run(&env, &["cluster", "create", "b", "--database-url", &b_url]).await;
    assert!(cluster.ok(), "{cluster:?}");
    let moved = run(&env, &["tenant", "move", "acme", "--to", "b"]).await;
    assert!(moved.ok(), "{moved:?}");
    assert!(moved.stdout.contains("writes paused") && moved.stdout.contains("tenant acme moved from local to b"), "{moved:?}");
    assert_eq!(tenants_json(&env).await[0]["cluster"], "b");
    let nowhere = run(&env, &["tenant", "move", "acme", "--to", "nowhere"]).await;
    assert!(!nowhere.ok() && nowhere.stderr.contains("nowhere"), "{nowhere:?}");
    let settled = run(&env, &["tenant", "move", "acme", "--abort"]).await;
    assert!(settled.ok() && settled.stdout.contains("no unfinished move"), "{settled:?}");
    let domain = run(&env, &["tenant", "domain", "add", "acme", "Integrations.Acme.test"]).await;
    assert!(domain.ok() && domain.stdout.contains("_tessera-challenge.integrations.acme.test TXT"), "{domain:?}");
    let bad = run(&env, &["tenant", "domain", "add", "acme", "acme.localhost"]).await;
    assert!(!bad.ok() && bad.stderr.contains("platform's own domain"), "{bad:?}");
    let removed = run(&env, &["tenant", "domain", "remove", "acme", "integrations.acme.test"]).await;
    assert!(removed.ok(), "{removed:?}");

    let suspended = run(&env, &["tenant", "suspend", "acme"]).await;
    assert!(suspended.ok() && suspended.stdout.contains("tenant acme suspended"), "{suspended:?}");
    assert_eq!(tenants_json(&env).await[0]["status"], "suspended");
    let resumed = run(&env, &["tenant", "resume", "acme"]).await;
    assert!(resumed.ok() && resumed.stdout.contains("tenant acme resumed"), "{resumed:?}");
    assert_eq!(tenants_json(&env).await[0]["status"], "active");
    let unknown = run(&env, &["tenant", "suspend", "nobody"]).await;
    assert!(!unknown.ok() && unknown.stderr.contains("nobody"), "{unknown:?}");

    let wrong = run(&env, &["tenant", "delete", "acme", "--confirm", "wrong"]).await;
    assert!(!wrong.ok(), "{wrong:?}");
    assert!(wrong.stderr.contains("confirm"), "{wrong:?}");
    assert_eq!(tenants_json(&env).await.len(), 1, "nothing was deleted");
    let missing = run(&env, &["tenant", "delete", "acme"]).await;
    assert!(!missing.ok() && missing.stderr.contains("--confirm"), "the confirmation is mandatory: {missing:?}");

    let deleted = run(&env, &["tenant", "delete", "acme", "--confirm", "acme"]).await;
    assert!(deleted.ok(), "{deleted:?}");
    let export = deleted.stdout.trim().rsplit("export: ").next().expect("the export path is printed").trim().to_string();
    assert!(Path::new(&export).starts_with(&exports.0), "{export}");
    let dump = std::fs::read_to_string(&export).expect("the export file exists");
    assert!(dump.contains("CREATE TABLE") && dump.contains("owner@acme.test"), "the export holds acme's schema and data");
    assert!(tenants_json(&env).await.is_empty());
    let schema_left: bool =
        db.query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 't_acme')", &[]).await.unwrap().get(0);
    assert!(!schema_left);
    let deleted_by: String =
        db.query_one("SELECT deleted_by FROM platform.tenant_deletions WHERE slug = 'acme'", &[]).await.unwrap().get(0);
    assert_eq!(deleted_by, "cli");
}

/// The CLI writes to the database; a running node applies the change at
/// once (the change notification), long before its cache would expire.
#[tokio::test]
async fn tenant_limits_set_from_the_command_line_reach_a_running_node_at_once() {
    let app = tessera_tests::spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let echo = "apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: echo\nspec:\n  steps:\n    - name: e\n      transform:\n        expression: .trigger.body\n";
    app.apply_yaml("acme", &owner, echo).await;
    let body = json!({"pad": "x".repeat(300)});
    let status = || async {
        let request = app.tenant_request(reqwest::Method::POST, "acme", "/api/integrations/echo/run").bearer_auth(&owner).json(&body);
        request.send().await.unwrap().status()
    };
    assert_eq!(status().await, reqwest::StatusCode::ACCEPTED, "read once, so the node caches acme's limits");
    let env = [("TESSERA_DATABASE_URL", app.database_url.clone())];

    let set = run(&env, &["tenant", "limits", "set", "acme", "request_body_bytes=100", "foreach_items=5"]).await;
    assert!(set.ok(), "{set:?}");
    let refused = eventually(Duration::from_secs(2), || async { status().await == reqwest::StatusCode::PAYLOAD_TOO_LARGE }).await;
    assert!(refused, "the running node applies the new limit within a round trip");

    let shown = run(&env, &["tenant", "limits", "show", "acme"]).await;
    assert!(shown.ok(), "{shown:?}");
    let line = |name: &str| shown.stdout.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
    assert!(line("request_body_bytes").contains("100*") && line("foreach_items").contains("5*"), "{shown:?}");
    assert!(!line("running_executions").contains('*'), "defaults are not marked: {shown:?}");
    let json = run(&env, &["tenant", "limits", "show", "acme", "--json"]).await;
    let json: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(json["overridden"], json!(["foreach_items", "request_body_bytes"]));

    for bad in [&["tenant", "limits", "set", "acme", "running_executions=0"][..], &["tenant", "limits", "set", "acme", "cups=3"], &["tenant", "limits", "set", "acme", "foreach_items"]] {
        let refused = run(&env, bad).await;
        assert!(!refused.ok() && !refused.stderr.is_empty(), "{bad:?}: {refused:?}");
    }
    let unset = run(&env, &["tenant", "limits", "unset", "acme", "request_body_bytes"]).await;
    assert!(unset.ok(), "{unset:?}");
    let accepted = eventually(Duration::from_secs(2), || async { status().await == reqwest::StatusCode::ACCEPTED }).await;
    assert!(accepted, "back to the default");
    assert_eq!(run(&env, &["tenant", "limits", "show", "nobody"]).await.code, Some(1));
}

#[tokio::test]
async fn every_subcommand_explains_itself_with_help() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--help"], &["serve", "dev", "migrate", "platform", "tenant"]),
        (&["serve", "--help"], &["TESSERA_DATABASE_URL", "TESSERA_JWT_SECRET"]),
        (&["dev", "--help"], &["locally", "PostgreSQL"]),
        (&["migrate", "--help"], &["latest version", "--parallelism"]),
        (&["platform", "--help"], &["init"]),
        (&["platform", "init", "--help"], &["first platform owner", "--email", "--password"]),
        (&["tenant", "--help"], &["create", "list", "suspend", "resume", "delete"]),
        (&["tenant", "create", "--help"], &["<SLUG>", "--owner-email", "--owner-password", "--name"]),
        (&["tenant", "list", "--help"], &["--json"]),
        (&["tenant", "suspend", "--help"], &["<SLUG>", "403"]),
        (&["tenant", "resume", "--help"], &["<SLUG>", "Resume"]),
        (&["tenant", "delete", "--help"], &["<SLUG>", "--confirm", "pg_dump"]),
        (&["tenant", "limits", "--help"], &["show", "set", "unset"]),
        (&["tenant", "move", "--help"], &["<SLUG>", "--to", "--abort"]),
        (&["tenant", "domain", "--help"], &["add", "verify", "list", "remove"]),
        (&["tenant", "limits", "set", "--help"], &["<SLUG>", "running_executions=4"]),
    ];
    for (args, expected) in cases {
        let help = run(&[], args).await;
        assert!(help.ok(), "tessera {args:?}: {help:?}");
        assert!(help.stdout.contains("Usage:"), "tessera {args:?}: {help:?}");
        for word in *expected {
            assert!(help.stdout.contains(word), "tessera {args:?} mentions {word:?}: {help:?}");
        }
    }
    let version = run(&[], &["--version"]).await;
    assert!(version.ok() && version.stdout.starts_with("tessera "), "{version:?}");
    let unknown = run(&[], &["frobnicate"]).await;
    assert_eq!(unknown.code, Some(2), "a usage error: {unknown:?}");
}

#[tokio::test]
async fn migrate_brings_a_tenant_on_an_old_schema_up_to_date_and_reports_progress() {
    let (_, url) = fresh_database().await;
    let env = [("TESSERA_DATABASE_URL", url.clone())];

    let created = run(&env, &["tenant", "create", "acme", "--owner-email", "x@y.z", "--schema-version", "1"]).await;
    assert!(created.ok(), "{created:?}");
    assert!(created.stdout.contains("version 1"), "{created:?}");
    assert!(created.stdout.contains("password: "), "a generated password is printed once: {created:?}");
    assert_eq!(tenants_json(&env).await[0]["schema_version"], 1);

    let migrated = run(&env, &["migrate", "--parallelism", "2"]).await;
    assert!(migrated.ok(), "{migrated:?}");
    assert!(migrated.stderr.contains("tenant schemas: 1/1 migrated, 0 failed"), "progress is shown: {migrated:?}");
    assert!(migrated.stdout.contains("tenant schemas: 1 migrated, 0 failed, 1 behind before the run"), "{migrated:?}");
    assert_eq!(tenants_json(&env).await[0]["schema_version"], latest_tenant_version());
    assert_eq!(migration_history(&connect(&url).await, "t_acme").await, tessera_server::provisioning::migrate::tenant_versions());

    let again = run(&env, &["migrate"]).await;
    assert!(again.ok() && again.stdout.contains("tenant schemas: 0 migrated, 0 failed, 0 behind"), "{again:?}");
}

#[tokio::test]
async fn a_tenant_that_fails_to_migrate_is_reported_with_its_reason_and_the_rerun_finishes_it() {
    let (_, url) = fresh_database().await;
    let env = [("TESSERA_DATABASE_URL", url.clone())];
    for slug in ["acme", "globex"] {
        let created = run(&env, &["tenant", "create", slug, "--owner-email", "x@y.z", "--schema-version", "1"]).await;
        assert!(created.ok(), "{created:?}");
    }
    let db = connect(&url).await;
    db.batch_execute("CREATE TABLE t_globex.variables (legacy int)").await.unwrap();

    let failed = run(&env, &["migrate"]).await;
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(failed.stdout.contains("tenant schemas: 1 migrated, 1 failed, 2 behind before the run"), "{failed:?}");
    let reason = failed.stderr.lines().find(|l| l.starts_with("failed: t_globex")).unwrap_or_else(|| panic!("{failed:?}"));
    assert!(reason.contains(r#"relation "variables" already exists"#), "the reason is shown: {reason}");
    assert!(failed.stderr.contains("run again"), "and what to do: {failed:?}");
    let versions: Vec<(String, i64)> = tenants_json(&env)
        .await
        .iter()
        .map(|t| (t["slug"].as_str().unwrap().to_string(), t["schema_version"].as_i64().unwrap()))
        .collect();
    assert_eq!(versions, [("acme".to_string(), latest_tenant_version().into()), ("globex".to_string(), 1)]);

    db.batch_execute("DROP TABLE t_globex.variables").await.unwrap();
    let rerun = run(&env, &["migrate"]).await;
    assert!(rerun.ok(), "{rerun:?}");
    assert!(rerun.stdout.contains("tenant schemas: 1 migrated, 0 failed, 1 behind before the run"), "only globex is left: {rerun:?}");
    assert!(tenants_json(&env).await.iter().all(|t| t["schema_version"] == latest_tenant_version()));
}

#[tokio::test]
async fn serve_without_a_database_refuses_to_start_and_says_what_to_set() {
    let started = run(&[("TESSERA_JWT_SECRET", "x".repeat(40))], &["serve"]).await;
    assert_eq!(started.code, Some(1), "{started:?}");
    assert!(started.stderr.contains("TESSERA_DATABASE_URL"), "the message names the setting: {started:?}");
    assert!(started.stderr.contains("tessera dev"), "and the alternative: {started:?}");
}

#[tokio::test]
async fn serve_without_a_secrets_key_refuses_to_start_and_says_what_to_set() {
    let (_, url) = fresh_database().await;
    let started = run(&[("TESSERA_DATABASE_URL", url), ("TESSERA_JWT_SECRET", "x".repeat(40))], &["serve"]).await;
    assert_eq!(started.code, Some(1), "{started:?}");
    assert!(started.stderr.contains("TESSERA_SECRETS__KEY"), "the message names the setting: {started:?}");
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers().get("x-request-id").expect("X-Request-Id").to_str().unwrap().to_string()
}

#[tokio::test]
async fn serve_writes_json_logs_per_request_and_stops_cleanly_on_sigterm() {
    let (_, url) = fresh_database().await;
    let scratch = TempDir::new("serve");
    let port = fault::free_port().expect("a free port");
    let shutdown_timeout = Duration::from_secs(5);
    let env = [
        ("TESSERA_DATABASE_URL", url.clone()),
        ("TESSERA_LISTEN", format!("127.0.0.1:{port}")),
        ("TESSERA_JWT_SECRET", format!("serve-test-secret-{}", uuid::Uuid::new_v4().simple())),
        ("TESSERA_SECRETS__KEY", tessera_server::sealing::generate_key()),
        ("TESSERA_LOG__FORMAT", "json".into()),
        ("TESSERA_LOG__LEVEL", "info".into()),
        ("TESSERA_HTTP__SHUTDOWN_TIMEOUT_SECS", shutdown_timeout.as_secs().to_string()),
    ];
    let created =
        run(&env, &["tenant", "create", "acme", "--owner-email", "owner@acme.test", "--owner-password", "acme-owner-password"]).await;
    assert!(created.ok(), "{created:?}");

    let log_path = scratch.0.join("serve.log");
    let mut child = tessera(&env)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start tessera serve");
    let pid = child.id().expect("a running child").to_string();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    let up = eventually(Duration::from_secs(30), || async {
        http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    assert!(up, "serve answers /healthz; log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default());
    assert!(child.try_wait().unwrap().is_none(), "serve is still running");

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let login = http
        .post(format!("{base}/api/auth/login"))
        .header("host", format!("acme.localhost:{port}"))
        .json(&json!({"email": "owner@acme.test", "password": "acme-owner-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let login_id = request_id(&login);
    let token = login.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let me = http.get(format!("{base}/api/me")).header("host", format!("acme.localhost:{port}")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let foreign = http.get(format!("{base}/api/me")).header("host", "evil.example.com").send().await.unwrap();
    assert_eq!(foreign.status(), StatusCode::BAD_REQUEST);
    let me_id = request_id(&me);
    let tenant_requests = [login_id, me_id.clone()];
    let other_requests = [request_id(&health), request_id(&foreign)];

    // SIGTERM with a keep-alive connection still open, as a load balancer
    // would hold one: the node still stops, cleanly, within the timeout.
    let signalled = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
    assert!(signalled.success());
    let sent = Instant::now();
    let status = tokio::time::timeout(shutdown_timeout + Duration::from_secs(2), child.wait())
        .await
        .unwrap_or_else(|_| panic!("serve did not stop within {shutdown_timeout:?} of SIGTERM"))
        .unwrap();
    assert!(status.success(), "serve exits 0 after SIGTERM: {status:?}");
    assert!(sent.elapsed() <= shutdown_timeout + Duration::from_secs(1), "stopped after {:?}", sent.elapsed());
    drop(http);

    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    // One line per request when its span closes, carrying its request_id.
    let request_lines = |id: &str| {
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == "close" && l["span"]["request_id"] == id)
            .cloned()
            .collect::<Vec<_>>()
    };
    for id in &tenant_requests {
        let found = request_lines(id);
        assert_eq!(found.len(), 1, "one log line for request {id}:\n{log}");
        assert_eq!(found[0]["span"]["tenant"], "acme", "a tenant request names its tenant: {}", found[0]);
    }
    assert!(request_lines(&me_id)[0]["span"]["user"].is_string(), "an authenticated request names its caller");
    for id in &other_requests {
        let found = request_lines(id);
        assert_eq!(found.len(), 1, "one log line for request {id}:\n{log}");
        assert!(found[0]["span"].get("tenant").is_none(), "not a tenant request: {}", found[0]);
    }
    assert!(log.contains("node stopped"), "the shutdown is logged");
}

#[tokio::test]
async fn an_operator_allows_and_denies_a_tenants_egress_from_the_command_line() {
    let (_, url) = fresh_database().await;
    let env = [("TESSERA_DATABASE_URL", url.clone()), ("TESSERA_EGRESS__ALLOW_PRIVATE", "true".to_string())];
    let created = run(&env, &["tenant", "create", "acme", "--owner-email", "owner@acme.test", "--owner-password", "acme-owner-password"]).await;
    assert!(created.ok(), "{created:?}");

    let allowed = run(&env, &["tenant", "egress", "allow", "acme", "10.0.0.0/8", "*.acme.internal:443"]).await;
    assert!(allowed.ok() && allowed.stdout.contains("2 allow rule(s) added to tenant acme"), "{allowed:?}");
    let denied = run(&env, &["tenant", "egress", "deny", "acme", "10.0.0.5"]).await;
    assert!(denied.ok(), "{denied:?}");
    let shown = run(&env, &["tenant", "egress", "show", "acme", "--json"]).await;
    assert!(shown.ok(), "{shown:?}");
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["allow"], json!(["*.acme.internal:443", "10.0.0.0/8"]), "in the order they were added, then by text");
    assert_eq!(shown["deny"], json!(["10.0.0.5"]));
    assert_eq!(shown["platform"]["allow_private"], true, "the configuration's policy is shown beside the tenant's rules");
    let lines = run(&env, &["tenant", "egress", "show", "acme"]).await;
    assert!(lines.stdout.contains("allow 10.0.0.0/8") && lines.stdout.contains("deny  10.0.0.5"), "{lines:?}");

    let removed = run(&env, &["tenant", "egress", "allow", "acme", "10.0.0.0/8", "--remove"]).await;
    assert!(removed.ok(), "{removed:?}");
    let stored: Vec<String> = connect(&url).await.query("SELECT rule FROM platform.tenant_egress_rules ORDER BY rule", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, ["*.acme.internal:443", "10.0.0.5"]);

    let bad = run(&env, &["tenant", "egress", "allow", "acme", "10.0.0.0/33"]).await;
    assert!(!bad.ok() && bad.stderr.contains("not an egress rule"), "{bad:?}");
    let unknown = run(&env, &["tenant", "egress", "show", "nobody"]).await;
    assert!(!unknown.ok() && unknown.stderr.contains("nobody"), "{unknown:?}");
}
