//! The `tessera` binary as an API client, the way a user drives it from a
//! terminal or CI: login into a profile file, apply definition files, get,
//! rollback, delete; and the credential rules: the profile file is private,
//! a refused sign-in stores nothing, a bad credential says to log in again,
//! and no token or key is ever printed.

use std::{path::PathBuf, process::Stdio, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tessera_tests::{spawn_app, TestApp, TestTenant};
use tokio::{io::AsyncWriteExt, process::Command};

use crate::cli::{tessera_bin, Run, TempDir};

const ORDERS: &str = include_str!("../../tenant-runtime/src/definition/testdata/orders.yaml");

/// An error at a known place: the second step (lines 11-12) is of no known kind.
const BROKEN: &str = "\
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: broken
spec:
  triggers:
    - manual: {}
  steps:
    - name: first
      log: {message: hi}
    - name: second
      no_such_step: {}
";

impl Run {
    fn shows(&self, secret: &str) -> bool {
        self.stdout.contains(secret) || self.stderr.contains(secret)
    }
}

/// One user at a terminal: a tenant on a spawned app, a private profile
/// file, and every run's output kept to check that no secret leaked.
struct Terminal {
    server: String,
    profiles: PathBuf,
    _dir: TempDir,
    runs: Vec<Run>,
}

impl Terminal {
    fn new(app: &TestApp, tenant: &TestTenant) -> Self {
        let dir = TempDir::new("client");
        // A directory that does not exist yet: login creates it.
        let profiles = dir.0.join("config").join("profiles.toml");
        Self { server: format!("http://{}.localhost:{}", tenant.slug, app.port), profiles, _dir: dir, runs: Vec::new() }
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self._dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    async fn run(&mut self, args: &[&str]) -> &Run {
        self.run_with(&[], args, None).await
    }

    /// `tessera ARGS` with a clean TESSERA_* environment (only the profile
    /// file and `env`), and `stdin` piped in when given.
    async fn run_with(&mut self, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> &Run {
        let mut command = Command::new(tessera_bin());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TESSERA_") {
                command.env_remove(key);
            }
        }
        command
            .env("TESSERA_PROFILE_FILE", &self.profiles)
            .envs(env.iter().copied())
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start tessera");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("tessera {args:?} did not finish"))
            .unwrap();
        self.runs.push(Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
        self.runs.last().unwrap()
    }

    fn profile_text(&self) -> String {
        std::fs::read_to_string(&self.profiles).unwrap_or_default()
    }

    /// The secret stored in the profile file (token or API key) of `profile`.
    fn stored_secret(&self, profile: &str) -> String {
        let text = self.profile_text();
        let section = text.split(&format!("[profiles.{profile}]")).nth(1).expect("profile section");
        let line = section.lines().find(|l| l.starts_with("token = ") || l.starts_with("api_key = ")).expect("a credential");
        line.split('"').nth(1).expect("a quoted secret").to_string()
    }

    fn assert_never_printed(&self, secret: &str) {
        assert!(secret.len() > 8, "a real secret");
        for run in &self.runs {
            assert!(!run.shows(secret), "a secret was printed: {run:?}");
        }
    }
}

async fn create_api_key(app: &TestApp, tenant: &TestTenant, role: &str) -> String {
    let owner = app.owner_token(tenant).await;
    let response = app
        .tenant_request(Method::POST, &tenant.slug, "/api/api-keys")
        .bearer_auth(owner)
        .json(&json!({"name": format!("ci-{role}"), "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string()
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("JSON output ({e}): {run:?}"))
}

#[tokio::test]
async fn a_user_manages_integrations_from_a_terminal() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("shop").await;
    let mut term = Terminal::new(&app, &tenant);
    let server = term.server.clone();

    // Login with the password from the environment, as a script would.
    let login = term
        .run_with(&[("TESSERA_PASSWORD", &tenant.owner_password)], &["login", "--server", &server, "--email", &tenant.owner_email], None)
        .await;
    assert!(login.ok(), "{login:?}");
    assert!(login.stdout.contains(&format!("logged in to {server}")), "{login:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&term.profiles).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the profile file is private");
    }
    let token = term.stored_secret("default");

    // Apply a multi-resource file.
    let orders = term.file("orders.yaml", ORDERS);
    let applied = term.run(&["apply", "-f", &orders]).await;
    assert!(applied.ok(), "{applied:?}");
    for line in [
        "connection/orders-db created (version 1)",
        "connection/warehouse-api created (version 1)",
        "integration/order-intake created (version 1)",
        "integration/order-events created (version 1)",
    ] {
        assert!(applied.stdout.lines().any(|l| l == line), "{line}: {applied:?}");
    }
    assert_eq!(applied.stdout.lines().count(), 7, "one line per resource: {applied:?}");

    // Get, as a table and as JSON.
    let table = term.run(&["get", "integrations"]).await;
    assert!(table.ok(), "{table:?}");
    let mut lines = table.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "VERSION", "ENABLED", "UPDATED"], "{table:?}");
    let intake: Vec<&str> = lines.find(|l| l.starts_with("order-intake ")).expect("a row").split_whitespace().collect();
    assert_eq!(&intake[..3], ["order-intake", "1", "true"], "{table:?}");
    let listed = json_of(term.run(&["get", "integrations", "-o", "json"]).await);
    assert_eq!(listed["items"].as_array().unwrap().len(), 3, "{listed}");
    let connections = term.run(&["get", "connections"]).await;
    assert!(connections.ok() && connections.stdout.contains("orders-db"), "{connections:?}");
    assert!(!connections.stdout.contains("s3cr3t"), "connection secrets are never shown");
    let one = json_of(term.run(&["get", "integration", "order-intake", "-o", "json"]).await);
    assert_eq!(one["version"], 1, "{one}");

    // Re-applying the same file changes nothing; a changed one (from stdin) adds a version.
    let again = term.run(&["apply", "-f", &orders]).await;
    assert!(again.ok() && again.stdout.contains("integration/order-intake unchanged (version 1)"), "{again:?}");
    let changed = ORDERS.replace("Store every order the shop sends us.", "Store every order, twice checked.");
    let updated = term.run_with(&[], &["apply", "-f", "-"], Some(&changed)).await;
    assert!(updated.ok() && updated.stdout.contains("integration/order-intake updated (version 2)"), "{updated:?}");
    let versions = term.run(&["get", "integration", "order-intake", "--versions"]).await;
    assert!(versions.ok(), "{versions:?}");
    assert_eq!(versions.stdout.lines().count(), 3, "header and two versions: {versions:?}");

    // An invalid file: every error with file, document, line and column; nothing stored.
    let broken = term.file("broken.yaml", BROKEN);
    let refused = term.run(&["apply", "-f", &broken]).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    let expected = format!("{broken}: document 1, spec.steps[1]");
    assert!(refused.stderr.lines().any(|l| l.starts_with(&expected) && (l.contains("(line 11, column") || l.contains("(line 12, column"))), "{refused:?}");
    let after = json_of(term.run(&["get", "integrations", "-o", "json"]).await);
    assert!(after["items"].as_array().unwrap().iter().all(|i| i["name"] != "broken"), "{after}");

    // Rollback makes version 1's definition current as version 3.
    let rolled = term.run(&["rollback", "order-intake", "--to-version", "1"]).await;
    assert!(rolled.ok() && rolled.stdout.contains("now version 3"), "{rolled:?}");
    let now = json_of(term.run(&["get", "integration", "order-intake", "-o", "json"]).await);
    assert_eq!(now["version"], 3);
    assert_eq!(now["definition"]["metadata"]["description"], "Store every order the shop sends us.", "{now}");

    // Delete, then a 404 for what is gone.
    let deleted = term.run(&["delete", "integration", "order-events"]).await;
    assert!(deleted.ok() && deleted.stdout.contains("integration/order-events deleted"), "{deleted:?}");
    let gone = term.run(&["get", "integration", "order-events"]).await;
    assert!(!gone.ok() && gone.stderr.contains("404"), "{gone:?}");
    let connection = term.run(&["delete", "connection", "rabbit"]).await;
    assert!(connection.ok() && connection.stdout.contains("connection/rabbit deleted"), "{connection:?}");

    // Logout forgets the profile.
    let logout = term.run(&["logout"]).await;
    assert!(logout.ok(), "{logout:?}");
    assert!(!term.profile_text().contains(&token), "the token is gone from the file");
    let signed_out = term.run(&["get", "integrations"]).await;
    assert!(!signed_out.ok() && signed_out.stderr.contains("tessera login"), "{signed_out:?}");

    term.assert_never_printed(&token);
}

#[tokio::test]
async fn credentials_are_checked_stored_privately_and_never_printed() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("ci-shop").await;
    let mut term = Terminal::new(&app, &tenant);
    let server = term.server.clone();

    // A wrong password: refused, and nothing written.
    let wrong = term.run(&["login", "--server", &server, "--email", &tenant.owner_email, "--password", "not-the-password"]).await;
    assert!(!wrong.ok(), "{wrong:?}");
    assert!(wrong.stderr.contains("sign-in refused"), "{wrong:?}");
    assert!(!term.profiles.exists(), "no profile file after a refused sign-in");

    // An API-key profile for CI, next to a password one.
    let key = create_api_key(&app, &tenant, "editor").await;
    let stored = term.run(&["login", "--server", &server, "--api-key", &key, "--profile", "ci"]).await;
    assert!(stored.ok(), "{stored:?}");
    assert_eq!(term.stored_secret("ci"), key);
    let listed = term.run(&["get", "integrations", "--profile", "ci"]).await;
    assert!(listed.ok() && listed.stdout.starts_with("NAME"), "{listed:?}");
    let login = term.run(&["login", "--server", &server, "--email", &tenant.owner_email, "--password", &tenant.owner_password]).await;
    assert!(login.ok(), "{login:?}");
    let token = term.stored_secret("default");
    assert_eq!(term.stored_secret("ci"), key, "profiles are kept side by side");

    // A wrong API key is refused at login.
    let bad_key = term.run(&["login", "--server", &server, "--api-key", "tsk_not_a_real_key", "--profile", "bad"]).await;
    assert!(!bad_key.ok() && bad_key.stderr.contains("401"), "{bad_key:?}");
    assert!(!term.profile_text().contains("[profiles.bad]"), "{}", term.profile_text());

    // CI without a profile: server and key from the environment.
    let orders = term.file("orders.yaml", ORDERS);
    let ci = term.run_with(&[("TESSERA_SERVER", &server), ("TESSERA_TOKEN", &key)], &["apply", "-f", &orders, "--profile", "none"], None).await;
    assert!(ci.ok() && ci.stdout.contains("integration/order-intake created"), "{ci:?}");

    // A stale token: 401, and the advice to log in again.
    let text = term.profile_text().replace(&token, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c3RhbGU");
    std::fs::write(&term.profiles, text).unwrap();
    let stale = term.run(&["get", "integrations"]).await;
    assert!(!stale.ok(), "{stale:?}");
    assert!(stale.stderr.contains("401") && stale.stderr.contains("tessera login"), "{stale:?}");
    assert_eq!(stale.stderr.lines().count(), 1, "one line: {stale:?}");

    // A viewer may read but not apply: 403.
    let viewer = create_api_key(&app, &tenant, "viewer").await;
    let forbidden = term.run(&["apply", "-f", &orders, "--server", &server, "--token", &viewer]).await;
    assert!(!forbidden.ok() && forbidden.stderr.contains("403"), "{forbidden:?}");

    // A server that is not there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = term.run(&["get", "integrations", "--server", &format!("http://127.0.0.1:{port}"), "--token", &key]).await;
    assert!(!down.ok() && down.stderr.contains("cannot reach"), "{down:?}");

    // A --server override never receives the profile's token (only the
    // explicit --token): without one, the other server answers 401.
    let other = app.create_tenant("other-shop").await;
    let elsewhere = format!("http://{}.localhost:{}", other.slug, app.port);
    let not_sent = term.run(&["get", "integrations", "--profile", "ci", "--server", &elsewhere]).await;
    assert!(!not_sent.ok() && not_sent.stderr.contains("401"), "{not_sent:?}");

    term.assert_never_printed(&token);
    term.assert_never_printed(&key);
    term.assert_never_printed(&viewer);
}

/// transform → log over the run's payload, and one that always fails.
const RUNNABLE: &str = r#"apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: order-total
spec:
  triggers:
    - manual: {}
  steps:
    - name: total
      transform:
        expression: '{order: .trigger.body.id, total: (.trigger.body.items | map(.qty * .price) | add)}'
    - name: announce
      log:
        message: 'order ${{ .steps.total.order }} totals ${{ .steps.total.total }}'
---
apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: rejecter
spec:
  triggers:
    - manual: {}
  steps:
    - name: reject
      fail:
        message: 'order ${{ .trigger.body.id }} rejected'
"#;

#[tokio::test]
async fn a_user_runs_integrations_and_reads_their_logs_from_a_terminal() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("runner").await;
    let mut term = Terminal::new(&app, &tenant);
    let server = term.server.clone();
    let login = term.run(&["login", "--server", &server, "--email", &tenant.owner_email, "--password", &tenant.owner_password]).await;
    assert!(login.ok(), "{login:?}");
    let file = term.file("runnable.yaml", RUNNABLE);
    let applied = term.run(&["apply", "-f", &file]).await;
    assert!(applied.ok(), "{applied:?}");

    // run --wait: the id, the final state, and the output as JSON.
    let order = r#"{"id": 7, "items": [{"qty": 2, "price": 5}, {"qty": 1, "price": 3}]}"#;
    let waited = term.run(&["run", "order-total", "--wait", "-d", order]).await;
    assert!(waited.ok(), "{waited:?}");
    let mut lines = waited.stdout.lines();
    let first_id = lines.next().expect("the id").to_string();
    assert!(uuid::Uuid::parse_str(&first_id).is_ok(), "{waited:?}");
    assert_eq!(lines.next(), Some("succeeded"), "{waited:?}");
    let output: Value = serde_json::from_str(&lines.collect::<Vec<_>>().join("\n")).expect("the output as JSON");
    assert_eq!(output, json!("order 7 totals 13"), "the last step's output: {waited:?}");

    // run (no wait) prints only the id; logs --follow shows each step and the end.
    let payload = term.file("order.json", r#"{"id": 8, "items": [{"qty": 3, "price": 2}]}"#);
    let started = term.run(&["run", "order-total", "-f", &payload]).await;
    assert!(started.ok(), "{started:?}");
    let id = started.stdout.trim().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{started:?}");
    let logs = term.run(&["logs", "--follow", &id, "--timeout", "30s"]).await;
    assert!(logs.ok(), "{logs:?}");
    let lines: Vec<&str> = logs.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "two steps and the end: {logs:?}");
    assert!(lines[0].starts_with('[') && lines[0].contains("] total succeeded (") && lines[0].ends_with(r#"{"order":8,"total":6}"#), "{logs:?}");
    assert!(lines[1].contains("] announce succeeded ("), "{logs:?}");
    assert!(lines[2].starts_with(&format!("execution {id} succeeded")), "{logs:?}");
    let newest = term.run(&["logs", "--integration", "order-total"]).await;
    assert!(newest.ok() && newest.stdout.contains(&format!("execution {id} succeeded")), "the newest execution: {newest:?}");

    // A failing integration: run --wait shows the error and exits 1.
    let failed = term.run(&["run", "rejecter", "--wait", "-d", r#"{"id": 9}"#]).await;
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(failed.stdout.lines().nth(1) == Some("failed") && failed.stdout.contains("order 9 rejected"), "{failed:?}");
    assert!(failed.stderr.contains("failed"), "{failed:?}");
    let bad_payload = term.run(&["run", "order-total", "-d", "{not json"]).await;
    assert!(!bad_payload.ok() && bad_payload.stderr.contains("not valid JSON"), "{bad_payload:?}");

    // get executions: a table, filters, and JSON.
    let table = term.run(&["get", "executions"]).await;
    assert!(table.ok(), "{table:?}");
    let mut rows = table.stdout.lines();
    let header: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "INTEGRATION", "VERSION", "STATE", "CREATED", "DURATION"], "{table:?}");
    assert_eq!(rows.count(), 3, "{table:?}");
    let row: Vec<&str> = table.stdout.lines().find(|l| l.starts_with(&first_id)).expect("the first run").split_whitespace().collect();
    assert_eq!(&row[..4], [first_id.as_str(), "order-total", "1", "succeeded"], "{table:?}");
    let failures = json_of(term.run(&["get", "executions", "--state", "failed", "-o", "json"]).await);
    let items = failures["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{failures}");
    assert_eq!(items[0]["integration"], "rejecter");
    let limited = json_of(term.run(&["get", "executions", "--integration", "order-total", "--limit", "1", "-o", "json"]).await);
    assert_eq!(limited["items"].as_array().unwrap().len(), 1, "{limited}");
    assert_eq!(limited["items"][0]["id"], id.as_str(), "newest first: {limited}");
}
