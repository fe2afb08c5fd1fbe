//! End-to-end tests of the format: whole files in, resources or a complete
//! error report out.

use std::{path::PathBuf, time::Duration as StdDuration};

use serde_json::{Value, json};

use super::*;

#[test]
fn the_hosts_of_a_credential_are_patterns_like_egress_rules() {
    let source = "apiVersion: tessera.dev/v1\nkind: Connection\nmetadata: {name: crm}\nspec:\n  bearer:\n    token: t\n    hosts: [api.example.com, 'bad host', '*.example.com:443']\n";
    assert_errors(source, &[(Some(1), "spec.bearer.hosts[1]", 7, 30, "`bad host` is not an egress rule")]);
}

#[test]
fn the_example_connections_file_is_valid() {
    let source = include_str!("../../../examples/connections.example.yaml");
    let resources = parse_documents(source).unwrap_or_else(|e| panic!("{e}"));
    let bound = resources.iter().find_map(|r| match r {
        Resource::Connection(c) if !c.spec.credential_hosts().is_empty() => Some(c.spec.credential_hosts().to_vec()),
        _ => None,
    });
    assert_eq!(bound.unwrap(), ["api.carrier.example", "*.carrier.example:443"]);
}

const ORDERS: &str = include_str!("testdata/orders.yaml");
const INVENTORY_JSON: &str = include_str!("testdata/inventory-poll.json");
const INVALID: &str = include_str!("testdata/invalid.yaml");

/// One expected error: document, path, line, column and a fragment of the
/// message.
type Expected<'a> = (Option<usize>, &'a str, usize, usize, &'a str);

#[track_caller]
fn assert_errors(source: &str, expected: &[Expected<'_>]) {
    let errors = parse_documents(source).expect_err("the source should be rejected");
    let report = errors.to_string();
    let actual: Vec<_> = errors.errors().iter().map(|e| (e.document, e.path.as_str(), e.line, e.column)).collect();
    let wanted: Vec<_> =
        expected.iter().map(|&(document, path, line, column, _)| (document, path, line, column)).collect();
    assert_eq!(actual, wanted, "\n{report}");
    for (error, (.., fragment)) in errors.errors().iter().zip(expected) {
        assert!(error.message.contains(fragment), "`{}` should contain `{fragment}`\n{report}", error.message);
    }
}

/// A minimal valid integration whose spec is `spec` (indented by two).
fn integration(spec: &str) -> String {
    format!("apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: demo\nspec:\n{spec}")
}

fn integration_spec(resource: &Resource) -> &IntegrationSpec {
    match resource {
        Resource::Integration(integration) => &integration.spec,
        other => panic!("{} is a {}", resource.name(), other.kind()),
    }
}

// ---------------------------------------------------------------------------
// Valid files

#[test]
fn a_realistic_file_reads_into_typed_resources() {
    let resources = parse_documents(ORDERS).unwrap();
    let summary: Vec<_> = resources.iter().map(|r| (r.kind(), r.name().as_str())).collect();
    assert_eq!(
        summary,
        [
            (ResourceKind::Connection, "orders-db"),
            (ResourceKind::Connection, "rabbit"),
            (ResourceKind::Connection, "shop-webhook-secret"),
            (ResourceKind::Connection, "warehouse-api"),
            (ResourceKind::Integration, "order-intake"),
            (ResourceKind::Integration, "inventory-poll"),
            (ResourceKind::Integration, "order-events"),
        ]
    );

    let Resource::Connection(warehouse) = &resources[3] else { panic!("a connection") };
    let ConnectionSpec::OAuth2ClientCredentials(oauth) = &warehouse.spec else { panic!("oauth2") };
    assert_eq!(
        (oauth.client_secret.expose(), oauth.scopes.as_slice()),
        ("cs_0123456789", &["inventory.read".to_owned()][..])
    );
    assert_eq!(warehouse.metadata.labels.get("team").map(String::as_str), Some("logistics"));

    let intake = integration_spec(&resources[4]);
    assert!(intake.enabled, "enabled by default");
    assert_eq!(intake.timeout.map(Duration::get), Some(StdDuration::from_secs(30)));
    let Trigger::Webhook(webhook) = &intake.triggers[0] else { panic!("a webhook") };
    let WebhookAuth::Hmac(hmac) = &webhook.auth else { panic!("hmac auth") };
    assert_eq!(
        (hmac.secret_from_connection.as_str(), hmac.algorithm, hmac.encoding),
        ("shop-webhook-secret", HmacAlgorithm::Sha256, SignatureEncoding::Hex)
    );
    assert!(webhook.synchronous);
    let store = &intake.steps[1];
    let Action::Sql(sql) = &store.action else { panic!("an sql step") };
    assert_eq!((sql.connection.as_str(), sql.params.len()), ("orders-db", 3));
    let retry = store.retry.as_ref().unwrap();
    assert_eq!(
        (retry.attempts.get(), retry.backoff.initial.get(), retry.backoff.multiplier),
        (5, StdDuration::from_millis(500), 3.0)
    );
    assert_eq!(retry.on, [RetryOn::Connection, RetryOn::Timeout]);
    assert_eq!(store.on_error[0].name.as_str(), "report_store_failure");

    let poll = integration_spec(&resources[5]);
    let Trigger::Schedule(schedule) = &poll.triggers[0] else { panic!("a schedule") };
    let Schedule::Cron { expression, timezone } = &schedule.schedule else { panic!("a cron schedule") };
    assert_eq!((expression.as_str(), timezone.tz()), ("0 */5 * * * *", chrono_tz::Europe::Paris));
    assert_eq!(schedule.missed, MissedTicks::RunOnce);
    let Action::Http(fetch) = &poll.steps[0].action else { panic!("an http step") };
    assert_eq!((fetch.method, fetch.response), (HttpMethod::Get, ResponseFormat::Json));
    let retry = poll.steps[0].retry.as_ref().unwrap();
    assert_eq!(retry.backoff, Backoff::default(), "back-off defaults apply");
    assert_eq!(poll.concurrency.map(|c| c.get()), Some(1));

    let events = integration_spec(&resources[6]);
    let Trigger::Queue(queue) = &events.triggers[0] else { panic!("a queue trigger") };
    assert_eq!(
        (queue.connection.as_str(), queue.queue.as_str(), queue.prefetch.get()),
        ("rabbit", "orders.created", 20)
    );
    assert_eq!(events.triggers[1], Trigger::Manual(ManualTrigger {}));
    let Action::Parallel(fan_out) = &events.steps[0].action else { panic!("a parallel step") };
    let branches: Vec<_> = fan_out.branches.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(branches, ["billing", "crm"]);
    let Action::Call(call) = &fan_out.branches[1].steps[0].action else { panic!("a call step") };
    assert_eq!(call.integration.as_str(), "crm-sync");
    let Action::Http(alert) = &events.on_error[0].action else { panic!("an http step") };
    assert_eq!(alert.body, Some(json!({"text": "order-events failed: ${{ .error.message }}"})));
}

#[test]
fn the_json_form_reads_the_same_as_the_yaml_form() {
    let from_json = parse_documents(INVENTORY_JSON).unwrap();
    let from_yaml = parse_documents(ORDERS).unwrap();
    assert_eq!(from_json, [from_yaml[5].clone()]);
}

#[test]
fn resources_round_trip_through_stored_json() {
    let resources = parse_documents(ORDERS).unwrap();
    let stored = serde_json::to_string(&resources).unwrap();
    assert_eq!(parse_documents(&stored).unwrap(), resources);
    for resource in &resources {
        let one = serde_json::to_string(resource).unwrap();
        assert_eq!(parse_documents(&one).unwrap(), std::slice::from_ref(resource));
    }
}

#[test]
fn stored_json_spells_out_the_defaults() {
    let resources = parse_documents(ORDERS).unwrap();
    let stored = serde_json::to_value(&resources[5]).unwrap();
    assert_eq!(stored["apiVersion"], "tessera.dev/v1");
    assert_eq!(stored["kind"], "Integration");
    assert_eq!(stored["spec"]["enabled"], true);
    assert_eq!(
        stored["spec"]["steps"][0]["retry"]["backoff"],
        json!({"initial": "1s", "max": "1m", "multiplier": 2.0, "jitter": true})
    );
    let absent = &stored["spec"]["steps"][0]["http"];
    assert!(absent.get("body").is_none(), "absent options are omitted, never null: {absent}");
}

#[test]
fn debug_output_never_shows_a_secret() {
    let debug = format!("{:?}", parse_documents(ORDERS).unwrap());
    for secret in ["s3cr3t", "whsec_0123456789", "cs_0123456789"] {
        assert!(!debug.contains(secret), "{secret} leaked");
    }
}

// ---------------------------------------------------------------------------
// Invalid files: everything at once, each at its place

#[test]
fn every_problem_in_a_file_is_reported_at_once_with_its_path_and_position() {
    assert_errors(
        INVALID,
        &[
            (Some(1), "metadata.name", 4, 9, r#""Order_Intake" is invalid: a name starts with a lowercase letter"#),
            (Some(1), "spec.triggers[0].webhook.synchronous", 8, 22, r#"expected true or false, found the text "yes""#),
            (Some(1), "spec.triggers[1].schedule.cron", 10, 15, "invalid cron expression `61 * * * *`"),
            (Some(1), "spec.triggers[1].schedule.timezone", 11, 19, "unknown time zone `Europe/Pariss`"),
            (Some(1), "spec.steps[0].http.url", 15, 9, "missing required field `url`"),
            (Some(1), "spec.steps[0].timout", 16, 7, "unknown field `timout`; did you mean `timeout`?"),
            (
                Some(1),
                "spec.steps[1].sql",
                20,
                7,
                "`http` and `sql` cannot be given together: use exactly one of `http`, `transform`",
            ),
            (
                Some(1),
                "spec.steps[2].delay.duration",
                25,
                19,
                "invalid duration `5 minutez`: unknown time unit \"minutez\"",
            ),
            (
                Some(2),
                "spec.steps[1].choice.branches[0].steps[0].name",
                40,
                23,
                "step name `notify` is already used at spec.steps[0].name",
            ),
            (
                Some(3),
                "metadata.owner",
                47,
                3,
                "unknown field `owner`; expected one of `description`, `labels`, `name`",
            ),
            (Some(3), "spec.bearer.token", 49, 11, "missing required field `token`"),
        ],
    );
}

#[test]
fn the_report_prints_one_line_per_error() {
    let report = parse_documents(INVALID).unwrap_err().to_string();
    assert_eq!(report.lines().count(), 11);
    assert!(
        report
            .lines()
            .any(|line| line == "document 1, spec.steps[0].http.url (line 15, column 9): missing required field `url`"),
        "{report}"
    );
}

#[test]
fn json_errors_have_exact_positions_too() {
    let source = r#"[
  {
    "apiVersion": "tessera.dev/v1",
    "kind": "Integration",
    "metadata": {"name": "demo"},
    "spec": {"steps": [{"name": "wait", "delay": {"duration": 30}}]}
  }
]"#;
    assert_errors(source, &[(Some(1), "spec.steps[0].delay.duration", 6, 63, "expected text, found the number 30")]);
}

#[test]
fn the_envelope_is_checked() {
    let source = "apiVersion: v1\nkind: Integratoin\nmetadata: {name: a}\nspec: {}\n---\nkind: Connection\nmetadata: {name: b}\n";
    assert_errors(
        source,
        &[
            (Some(1), "apiVersion", 1, 13, "expected `tessera.dev/v1`, found the text \"v1\""),
            (Some(1), "kind", 2, 7, "expected one of `Integration`, `Connection`, `Api`, found the text \"Integratoin\""),
            (Some(2), "apiVersion", 6, 1, "missing required field `apiVersion`"),
            (Some(2), "spec", 6, 1, "missing required field `spec`"),
        ],
    );
}

#[test]
fn a_step_needs_exactly_one_action() {
    let source = integration("  steps:\n    - name: idle\n      timeout: 5s\n");
    assert_errors(&source, &[(Some(1), "spec.steps[0]", 7, 7, "needs exactly one of `http`, `transform`, `choice`")]);
}

#[test]
fn schedules_need_exactly_one_of_cron_and_every() {
    let spec = "  triggers:
    - schedule: {missed: skip}
    - schedule: {cron: '* * * * *', every: 1m}
    - schedule: {every: 1m, timezone: UTC}
    - schedule: {every: 0s}
  steps:
    - {name: hello, log: {message: hi}}
";
    assert_errors(
        &integration(spec),
        &[
            (Some(1), "spec.triggers[0].schedule", 7, 17, "needs exactly one of `cron`, `every`"),
            (Some(1), "spec.triggers[1].schedule.every", 8, 37, "`cron` and `every` cannot be given together"),
            (Some(1), "spec.triggers[2].schedule.cron", 9, 17, "`cron` is required when `timezone` is given"),
            (Some(1), "spec.triggers[3].schedule.every", 10, 25, "it must be greater than zero"),
        ],
    );
}

#[test]
fn values_of_the_wrong_kind_are_named_plainly() {
    let spec = "  triggers:
    - webhook: {auth: basic, timeout:}
  steps:
    - name: fetch
      http: {method: get, url: https://example.com}
    - name: each
      foreach: {items: .list, concurrency: 0, steps: []}
";
    assert_errors(
        &integration(spec),
        &[
            (
                Some(1),
                "spec.triggers[0].webhook.auth",
                7,
                23,
                "expected one of `none`, `api_key`, found the text \"basic\"",
            ),
            (Some(1), "spec.triggers[0].webhook.timeout", 7, 37, "expected text, found an empty value"),
            (Some(1), "spec.steps[0].http.method", 10, 22, "expected one of `GET`, `POST`"),
            (Some(1), "spec.steps[1].foreach.concurrency", 12, 44, "must be at least 1, found 0"),
            (Some(1), "spec.steps[1].foreach.steps", 12, 54, "needs at least 1 item"),
        ],
    );
}

#[test]
fn what_the_schema_lets_through_but_the_types_refuse_is_still_placed() {
    // Every number of the format now has a schema maximum, so no file gets
    // this far; the typed stage must still keep the path of such a failure.
    let value = json!({"apiVersion": "tessera.dev/v1", "kind": "Integration", "metadata": {"name": "demo"},
        "spec": {"steps": [{"name": "hello", "log": {"message": "hi"}}], "concurrency": 99_999_999_999_u64}});
    let error = deserialize(&value).unwrap_err();
    let path: Vec<_> = error.path().iter().filter_map(serde_segment).collect();
    assert_eq!(path, [error::Segment::Key("spec".into()), error::Segment::Key("concurrency".into())]);
    assert!(error.into_inner().to_string().contains("expected a nonzero u32"));
    let source = integration("  steps:\n    - {name: hello, log: {message: hi}}\n  concurrency: 99999999999\n");
    assert_errors(&source, &[(Some(1), "spec.concurrency", 8, 16, "must be at most 1000")]);
}

#[test]
fn step_names_are_unique_across_every_nesting() {
    let spec = "  steps:
    - name: first
      parallel:
        branches:
          - name: left
            steps:
              - {name: work, log: {message: l}}
          - name: left
            steps:
              - {name: work, log: {message: r}}
      on_error:
        - {name: first, log: {message: e}}
  on_error:
    - {name: work, log: {message: e}}
";
    assert_errors(
        &integration(spec),
        &[
            (
                Some(1),
                "spec.steps[0].parallel.branches[1].name",
                13,
                19,
                "branch name `left` is already used by branch 0",
            ),
            (
                Some(1),
                "spec.steps[0].parallel.branches[1].steps[0].name",
                15,
                24,
                "step name `work` is already used at spec.steps[0].parallel.branches[0].steps[0].name",
            ),
            (
                Some(1),
                "spec.steps[0].on_error[0].name",
                17,
                18,
                "step name `first` is already used at spec.steps[0].name",
            ),
            (Some(1), "spec.on_error[0].name", 19, 14, "step name `work` is already used"),
        ],
    );
}

#[test]
fn connections_in_the_same_file_must_be_of_the_right_kind() {
    let source = format!(
        "{}---\n{}",
        "apiVersion: tessera.dev/v1\nkind: Connection\nmetadata: {name: rabbit}\nspec: {amqp: {url: 'amqp://h'}}\n",
        integration(
            "  triggers:
    - queue: {connection: rabbit, queue: q}
    - webhook: {auth: {hmac: {secret_from_connection: rabbit, header: X-Sig}}}
  steps:
    - name: save
      sql: {connection: rabbit, statement: SELECT 1}
    - name: tell
      publish: {connection: rabbit, routing_key: k, body: {}}
    - name: fetch
      http: {url: https://example.com, connection: rabbit}
    - name: elsewhere
      sql: {connection: defined-on-the-server, statement: SELECT 1}
"
        )
    );
    assert_errors(
        &source,
        &[
            (
                Some(2),
                "spec.triggers[1].webhook.auth.hmac.secret_from_connection",
                13,
                55,
                "an hmac secret needs api_key or bearer",
            ),
            (
                Some(2),
                "spec.steps[0].sql.connection",
                16,
                25,
                "connection `rabbit` is of kind amqp, but an sql step needs postgres",
            ),
            (
                Some(2),
                "spec.steps[2].http.connection",
                20,
                52,
                "an http step needs api_key or basic or bearer or oauth2_client_credentials",
            ),
        ],
    );
}

#[test]
fn names_are_unique_per_kind_within_a_file() {
    let connection =
        "apiVersion: tessera.dev/v1\nkind: Connection\nmetadata: {name: demo}\nspec: {bearer: {token: t}}\n";
    let source =
        format!("{connection}---\n{}---\n{connection}", integration("  steps:\n    - {name: a, log: {message: hi}}\n"));
    assert_errors(&source, &[(Some(3), "metadata.name", 16, 18, "Connection `demo` is already defined in document 1")]);
}

#[test]
fn every_bad_expression_and_template_is_reported_with_its_position() {
    let spec = "  steps:
    - name: shape
      transform:
        expression: .items | map(
    - name: notify
      log:
        message: \"order ${{ .id | }} done\"
    - name: send
      http:
        url: https://x.example/${{ .id }}
        headers: {X-Id: \"${{ .id }}\"}
        body:
          lines: [1, {sku: \"${{ nosuch(1) }}\"}]
    - name: route
      choice:
        branches:
          - when: .a ==
            steps:
              - name: stop
                fail: {message: \"bad ${{ .x \"}
";
    assert_errors(
        &integration(spec),
        &[
            (Some(1), "spec.steps[0].transform.expression", 9, 21, "expected a closing parenthesis"),
            (Some(1), "spec.steps[1].log.message", 12, 18, "found the end of the expression (line 1, column 17"),
            (Some(1), "spec.steps[2].http.body.lines[1].sku", 18, 28, "undefined filter `nosuch/1`"),
            (Some(1), "spec.steps[3].choice.branches[0].when", 22, 19, "invalid jq expression"),
            (Some(1), "spec.steps[3].choice.branches[0].steps[0].fail.message", 25, 33, "is not closed"),
        ],
    );
}

#[test]
fn valid_expressions_and_templates_pass() {
    let spec = "  steps:
    - name: shape
      transform: {expression: '.trigger.body.items | map(select(.qty > 0))'}
    - name: each
      foreach:
        items: .steps.shape[]
        steps:
          - name: save
            sql: {connection: db, statement: 'SELECT $1', params: [.item.sku]}
    - name: tell
      log: {message: 'order ${{ .trigger.body.id }} has ${{ .steps.shape | length }} lines, not $${{ this }}'}
";
    parse_documents(&integration(spec)).unwrap();
}

#[test]
fn a_back_off_cannot_start_above_its_maximum() {
    let spec = "  steps:
    - name: fetch
      http: {url: https://example.com}
      retry: {attempts: 3, backoff: {initial: 2m}}
";
    assert_errors(
        &integration(spec),
        &[(Some(1), "spec.steps[0].retry.backoff.initial", 9, 47, "`initial` (2m) is longer than `max` (1m)")],
    );
}

#[test]
fn every_duration_and_count_has_a_maximum_reported_at_its_path() {
    let spec = "  timeout: 300000000000y
  concurrency: 1001
  retention: {days: 36501, executions: 100000001}
  triggers:
    - webhook: {auth: none, synchronous: true, timeout: 6m}
    - webhook: {auth: {hmac: {secret_from_connection: s, header: X-Sig, tolerance: 2days}}}
    - schedule: {every: 400days}
  steps:
    - name: wait
      delay: {duration: 366days}
      timeout: 1000y
      retry: {attempts: 101, backoff: {initial: 1s, max: 500days, multiplier: 11}}
    - name: each
      foreach:
        items: .body
        concurrency: 5000
        steps: [{name: fetch, http: {url: https://example.com, timeout: 9999days}}]
";
    let errors = parse_documents(&integration(spec)).expect_err("over every maximum");
    let mut found: Vec<(&str, &str)> = errors.errors().iter().map(|e| (e.path.as_str(), e.message.as_str())).collect();
    found.sort();
    let paths: Vec<&str> = found.iter().map(|(path, _)| *path).collect();
    assert_eq!(
        paths,
        [
            "spec.concurrency",
            "spec.retention.days",
            "spec.retention.executions",
            "spec.steps[0].delay.duration",
            "spec.steps[0].retry.attempts",
            "spec.steps[0].retry.backoff.max",
            "spec.steps[0].retry.backoff.multiplier",
            "spec.steps[0].timeout",
            "spec.steps[1].foreach.concurrency",
            "spec.steps[1].foreach.steps[0].http.timeout",
            "spec.timeout",
            "spec.triggers[2].schedule.every",
        ],
        "{errors}"
    );
    assert!(found.iter().any(|(_, m)| m.contains("longer than the maximum of 365days")), "{errors}");
    assert!(found.iter().any(|(_, m)| m.contains("must be at most 1000")), "{errors}");
}

#[test]
fn amqp_names_fit_in_255_bytes() {
    let long = "é".repeat(200);
    let spec = format!(
        "  triggers: [{{queue: {{connection: q, queue: '{long}'}}}}]
  steps: [{{name: send, publish: {{connection: q, exchange: '{long}', routing_key: k, body: {{}}}}}}]
"
    );
    assert_errors(
        &integration(&spec),
        &[
            (Some(1), "spec.triggers[0].queue.queue", 6, 45, "is 400 bytes long; AMQP names take at most 255"),
            (Some(1), "spec.steps[0].publish.exchange", 7, 59, "is 400 bytes long"),
        ],
    );
}

#[test]
fn webhook_waits_and_signature_tolerances_have_lower_maxima() {
    let spec = "  triggers:
    - webhook: {auth: none, synchronous: true, timeout: 300000000000y}
  steps: [{name: noop, log: {message: hi}}]
";
    let message = "`300000000000years` is longer than the maximum of 365days";
    assert_errors(&integration(spec), &[(Some(1), "spec.triggers[0].webhook.timeout", 7, 57, message)]);
    let spec = "  triggers:
    - webhook: {auth: none, synchronous: true, timeout: 6m}
    - webhook: {auth: {hmac: {secret_from_connection: s, header: X-Sig, tolerance: 2days}}}
    - webhook: {auth: none, synchronous: true, timeout: 5m}
  steps: [{name: noop, log: {message: hi}}]
";
    assert_errors(
        &integration(spec),
        &[
            (Some(1), "spec.triggers[0].webhook.timeout", 7, 57, "`6m` is longer than the maximum of 5m"),
            (Some(1), "spec.triggers[1].webhook.auth.hmac.tolerance", 8, 84, "`2days` is longer than the maximum of 1day"),
        ],
    );
}

#[test]
fn unreadable_files_are_reported_without_a_document() {
    assert_errors("apiVersion: tessera.dev/v1\nkind: [Integration\n", &[(None, "", 3, 1, "invalid YAML")]);
    assert_errors("# nothing here\n", &[(None, "", 1, 1, "no resource found")]);
}

// ---------------------------------------------------------------------------
// The published schema

#[test]
fn the_published_schema_is_up_to_date() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/schema/tessera-v1.schema.json");
    let generated = json_schema();
    if std::env::var_os("TESSERA_UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, serde_json::to_string_pretty(&generated).unwrap() + "\n").unwrap();
        return;
    }
    // Compared as JSON values, not text, so that key order (which
    // serde_json's `preserve_order` feature changes) does not matter.
    let committed = std::fs::read_to_string(&file).ok().and_then(|text| serde_json::from_str::<Value>(&text).ok());
    assert!(
        committed.as_ref() == Some(&generated),
        "docs/schema/tessera-v1.schema.json is missing or differs from the schema generated from the Rust types; \
         regenerate it with `TESSERA_UPDATE_SCHEMA=1 cargo test -p tessera-runtime the_published_schema_is_up_to_date` \
         and commit the result"
    );
}

#[test]
fn the_schema_compiles_and_accepts_stored_resources_one_by_one_or_as_a_list() {
    let schema = json_schema();
    let single = validate::compile(&schema).expect("the single-resource schema compiles");
    // The published root, as an editor would use it (formats not enforced).
    let root = jsonschema::draft202012::new(&schema).expect("the published schema compiles");
    let stored = serde_json::to_value(parse_documents(ORDERS).unwrap()).unwrap();
    assert!(root.is_valid(&stored));
    for resource in stored.as_array().unwrap() {
        assert!(single.is_valid(resource) && root.is_valid(resource), "{resource}");
    }
    assert!(!root.is_valid(&json!([{"kind": "Integration"}])));
}

// ---------------------------------------------------------------------------
// Against a tenant's stored connections

/// An integration whose one step reads `connection` with SQL.
fn sql_integration(connection: &str) -> String {
    integration(&format!(
        "  steps:\n    - name: read\n      sql:\n        connection: {connection}\n        statement: SELECT 1\n"
    ))
}

fn stored(pairs: &[(&str, ConnectionKind)]) -> StoredConnections {
    pairs.iter().map(|(name, kind)| (Name::try_from(name.to_string()).unwrap(), *kind)).collect()
}

#[test]
fn against_stored_connections_an_unknown_reference_is_an_error_at_its_position() {
    let errors = parse_documents_against(&sql_integration("missing-db"), &stored(&[])).unwrap_err();
    let found: Vec<_> = errors.errors().iter().map(|e| (e.path.as_str(), e.line, e.column)).collect();
    assert_eq!(found, [("spec.steps[0].sql.connection", 9, 21)], "{errors}");
    assert!(errors.errors()[0].message.contains("does not exist"), "{errors}");
    // Without a tenant to look in, the same file is fine.
    assert!(parse_documents(&sql_integration("missing-db")).is_ok());
}

#[test]
fn against_stored_connections_known_ones_resolve_and_their_kind_is_checked() {
    let source = sql_integration("orders-db");
    assert!(parse_documents_against(&source, &stored(&[("orders-db", ConnectionKind::Postgres)])).is_ok());
    let wrong = parse_documents_against(&source, &stored(&[("orders-db", ConnectionKind::Amqp)])).unwrap_err();
    assert!(wrong.errors()[0].message.contains("is of kind amqp"), "{wrong}");
    // The file's own connections count too (all of orders.yaml's are in it).
    let self_contained = parse_documents_against(ORDERS, &stored(&[]));
    assert!(self_contained.is_ok(), "{:?}", self_contained.err().map(|e| e.to_string()));
}

#[test]
fn connection_kinds_read_back_from_their_text() {
    for kind in [ConnectionKind::ApiKey, ConnectionKind::OAuth2ClientCredentials, ConnectionKind::Amqp] {
        assert_eq!(kind.as_str().parse::<ConnectionKind>(), Ok(kind));
    }
    assert!("ftp".parse::<ConnectionKind>().is_err());
}

#[test]
fn an_http_step_says_whether_it_sends_its_idempotency_key() {
    let spec = "  steps:
    - name: poll
      http: {url: https://example.com, idempotency_key: true}
    - name: post
      http: {method: POST, url: https://example.com}
";
    let resources = parse_documents(&integration(spec)).expect("valid");
    let keys: Vec<_> = integration_spec(&resources[0])
        .steps
        .iter()
        .map(|step| match &step.action {
            Action::Http(http) => http.idempotency_key,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(keys, [Some(true), None]);
    let spec = "  steps:
    - name: poll
      http: {url: https://example.com, idempotency_key: yes please}
";
    assert_errors(&integration(spec), &[(Some(1), "spec.steps[0].http.idempotency_key", 8, 57, "expected true or false")]);
}
