//! `.step` and idempotency keys against the in-memory store: one key per
//! step run, the same on every attempt and after a resume, another for
//! every other step, `foreach` item, `parallel` branch and handler.

use std::{collections::HashSet, sync::Arc};

use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    tests::{claimed, engine, tenant, MemoryStore},
    *,
};

/// Run the claimed execution `id` to its end, as a worker does.
async fn run(store: &Arc<MemoryStore>, id: Uuid, claim: Claimed) -> Outcome {
    store.claims.lock().unwrap().insert(id, claim);
    run_guarded(&tenant(), &engine(store.clone()), id).await;
    store.outcomes.lock().unwrap().remove(&id).expect("the execution finished")
}

fn output_of(store: &MemoryStore, path: &str) -> Value {
    let checkpoints = store.checkpoints.lock().unwrap();
    let record = checkpoints.iter().rev().find(|c| c.path == path).unwrap_or_else(|| panic!("no checkpoint of {path}"));
    record.output.clone().unwrap_or_else(|| panic!("{path} has no output: {record:?}"))
}

#[test]
fn a_key_is_a_uuid_derived_from_the_execution_and_the_path_only() {
    let id = Uuid::parse_str("0193c1f0-0000-7000-8000-000000000001").unwrap();
    // Computed independently: SHA-256 over the id's 16 bytes then the path,
    // the first 16 bytes as a version 8 UUID. A change here changes every
    // key a resumed execution sends.
    assert_eq!(idempotency_key(id, "charge"), "f1131ef6-ca10-8d54-b8d3-9969229b2934");
    assert_eq!(idempotency_key(Uuid::nil(), "each/items[1]/charge"), "519865b8-b5b6-87bc-a92a-9ce584700253");
    assert_eq!(idempotency_key(id, "charge"), idempotency_key(id, "charge"));
    assert_ne!(idempotency_key(id, "charge"), idempotency_key(Uuid::nil(), "charge"));
    let deep = vec!["a".repeat(63); 128].join("/");
    let key = idempotency_key(id, &deep);
    assert_eq!(key.len(), 36, "bounded whatever the path");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "{key}");
    assert_eq!(Uuid::parse_str(&key).unwrap().get_version_num(), 8);
}

#[tokio::test]
async fn a_steps_key_stays_the_same_across_its_retries_while_its_attempt_counts() {
    let flaky = r#"if .step.attempt < 3 then error("attempt \(.step.attempt) key \(.step.idempotency_key)") else .step end"#;
    let steps = json!([{"name": "charge", "transform": {"expression": flaky},
        "retry": {"attempts": 3, "on": ["any"], "backoff": {"initial": "1ms", "jitter": false}}}]);
    let (store, id) = (Arc::new(MemoryStore::default()), Uuid::new_v4());
    let outcome = run(&store, id, claimed(steps, vec![])).await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    let key = idempotency_key(id, "charge");
    assert_eq!(output_of(&store, "charge"), json!({"name": "charge", "path": "charge", "idempotency_key": key, "attempt": 3}));
    let records = store.checkpoints.lock().unwrap().clone();
    let failures: Vec<String> = records.iter().filter_map(|r| r.error.as_ref().map(|e| e.message.clone())).collect();
    assert_eq!(failures.len(), 2, "{records:?}");
    for (attempt, message) in [1, 2].iter().zip(&failures) {
        assert!(message.contains(&format!("attempt {attempt} key {key}")), "{message}");
    }
    for record in &records {
        assert!(record.input.get("step").is_none(), "`.step` is not recorded as input: {}", record.input);
    }
}

#[tokio::test]
async fn keys_differ_between_steps_items_branches_and_handlers() {
    let show = |name: &str| json!({"name": name, "transform": {"expression": "{step: .step, of: .item.of}"}});
    let steps = json!([
        show("first"),
        show("second"),
        {"name": "each", "foreach": {
            // The foreach's own expression reads its own step.
            "items": ".step.path as $p | .trigger.body.items | map(. + {of: $p})",
            "steps": [show("charge")]}},
        {"name": "both", "parallel": {"branches": [
            {"name": "left", "steps": [show("l")]},
            {"name": "right", "steps": [show("r")]}]}},
        {"name": "route", "choice": {"branches": [{"when": ".step.name == \"route\"", "steps": [show("chosen")]}]}},
        {"name": "bad", "fail": {"message": "no"}, "on_error": [show("handler")]},
    ]);
    let (store, id) = (Arc::new(MemoryStore::default()), Uuid::new_v4());
    let outcome = run(&store, id, claimed(steps, vec![])).await;
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");

    let paths = [
        "first",
        "second",
        "each/items[0]/charge",
        "each/items[1]/charge",
        "both/left/l",
        "both/right/r",
        "route/branches[0]/chosen",
        "bad/on_error/handler",
    ];
    let mut keys = HashSet::new();
    for path in paths {
        let seen = output_of(&store, path);
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(seen["step"]["name"], name, "{seen}");
        assert_eq!(seen["step"]["path"], path, "{seen}");
        assert_eq!(seen["step"]["attempt"], 1, "{seen}");
        assert_eq!(seen["step"]["idempotency_key"], idempotency_key(id, path), "{seen}");
        keys.insert(seen["step"]["idempotency_key"].as_str().unwrap().to_string());
    }
    assert_eq!(keys.len(), paths.len(), "one key per step run");
    assert_eq!(output_of(&store, "each/items[1]/charge")["of"], "each", "items were made with the foreach's own `.step`");
    assert_eq!(output_of(&store, "first")["of"], Value::Null);
}

#[tokio::test]
async fn the_integration_on_error_steps_have_keys_of_their_own() {
    let mut claim = claimed(json!([{"name": "bad", "fail": {"message": "no"}}]), vec![]);
    claim.definition["spec"]["on_error"] = json!([{"name": "alert", "transform": {"expression": ".step"}}]);
    let (store, id) = (Arc::new(MemoryStore::default()), Uuid::new_v4());
    let outcome = run(&store, id, claim).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    let alert = output_of(&store, "on_error/alert");
    assert_eq!(alert["path"], "on_error/alert");
    assert_eq!(alert["idempotency_key"], idempotency_key(id, "on_error/alert"));
}

#[tokio::test]
async fn a_step_run_again_after_a_resume_has_the_same_key() {
    let steps = json!([
        {"name": "first", "transform": {"expression": "1"}},
        {"name": "each", "foreach": {"items": ".trigger.body.items", "steps": [
            {"name": "charge", "transform": {"expression": ".step"}},
        ]}},
        {"name": "stop", "fail": {"message": "interrupted here"}},
    ]);
    let (store, id) = (Arc::new(MemoryStore::default()), Uuid::new_v4());
    let outcome = run(&store, id, claimed(steps.clone(), vec![])).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    let before = [output_of(&store, "each/items[0]/charge"), output_of(&store, "each/items[1]/charge")];

    // The same execution claimed again (on another node, after a crash)
    // where only `first` had been checkpointed: the items run again.
    let again = Arc::new(MemoryStore::default());
    let outcome = run(&again, id, claimed(steps.clone(), vec![("first".into(), json!(1))])).await;
    assert!(matches!(outcome, Outcome::Failed(_)), "{outcome:?}");
    let after = [output_of(&again, "each/items[0]/charge"), output_of(&again, "each/items[1]/charge")];
    assert_eq!(before, after, "same key, path and attempt after the resume");
    assert_ne!(before[0]["idempotency_key"], before[1]["idempotency_key"]);

    // Another execution of the same integration has other keys.
    let other = Arc::new(MemoryStore::default());
    run(&other, Uuid::new_v4(), claimed(steps, vec![])).await;
    assert_ne!(output_of(&other, "each/items[0]/charge")["idempotency_key"], before[0]["idempotency_key"]);
}

#[tokio::test]
async fn a_called_integration_does_not_get_the_callers_step() {
    let store = MemoryStore::default();
    let child = super::tests::definition("child", json!([{"name": "echo", "transform": {"expression": ".trigger.body"}}]));
    store.integrations.lock().unwrap().insert("child".into(), (true, child));
    let steps = json!([{"name": "delegate", "call": {"integration": "child"}}]);
    let (store, id) = (Arc::new(store), Uuid::new_v4());
    let outcome = run(&store, id, claimed(steps, vec![])).await;
    let Outcome::Succeeded(output) = outcome else { panic!("{outcome:?}") };
    assert!(output.get("step").is_none() && output.get("vars").is_none(), "{output}");
    assert!(output.get("trigger").is_some(), "{output}");
}
