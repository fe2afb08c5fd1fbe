//! Property tests: hostile definition files never panic the parser, and
//! every rejection is a report of errors with a message and a position
//! (the server answers it 400 `invalid_definition`). The case count comes
//! from `PROPTEST_CASES` (default 64: CI stays fast; the long run in bench/
//! sets millions).

use proptest::prelude::*;

use super::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Parse `source`; a rejection must be well-formed.
fn parse_checked(source: &str) -> Result<Vec<Resource>, DefinitionErrors> {
    let parsed = parse_documents(source);
    if let Err(errors) = &parsed {
        assert!(!errors.errors().is_empty(), "a rejection names at least one error");
        for error in errors.errors() {
            assert!(error.line >= 1 && error.column >= 1, "{error:?}");
            assert!(!error.message.is_empty(), "{error:?}");
        }
    }
    parsed
}

/// A valid integration around `spec_lines` (indented by two).
fn integration(spec_lines: &str) -> String {
    format!("apiVersion: tessera.dev/v1\nkind: Integration\nmetadata:\n  name: demo\nspec:\n{spec_lines}")
}

/// Text made of YAML's syntax characters and a few words: the shapes a
/// parser has to get right.
fn yaml_soup() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "[", "]", "{", "}", ":", ": ", ",", "- ", "? ", "&a ", "*a", "!!str ", "!t ", "|", ">", "'", "\"", "#", "\n", "  ",
        "\t", "---\n", "...\n", "apiVersion", "kind", "spec", "steps", "1e400", "-0", ".nan", "~", "null", "\\u0000", "é",
        "%YAML 1.2\n", "<<: *a\n",
    ]);
    prop::collection::vec(pieces, 0..200).prop_map(|pieces| pieces.concat())
}

/// Nesting: flow, block and mixed, shallow to far past the limit.
fn nesting() -> impl Strategy<Value = String> {
    let opener = prop::sample::select(vec!["[", "{a: ", "- ", "a:\n", "[{b: ", "- a:\n"]);
    (opener, 1usize..3_000, any::<bool>()).prop_map(|(opener, depth, indent)| {
        let mut text = String::new();
        for level in 0..depth {
            if indent && opener.ends_with('\n') {
                text.push_str(&" ".repeat(level.min(400)));
            }
            text.push_str(opener);
        }
        text.push('1');
        text
    })
}

/// A duration as someone might write it, sensible or absurd.
fn duration_text() -> impl Strategy<Value = String> {
    let unit = prop::sample::select(vec!["ns", "us", "ms", "s", "m", "h", "d", "days", "w", "M", "y", "years", ""]);
    (any::<u64>(), unit, prop::option::of((any::<u32>(), "[a-z]{0,3}")))
        .prop_map(|(n, unit, more)| match more {
            Some((m, extra)) => format!("{n}{unit} {m}{extra}"),
            None => format!("{n}{unit}"),
        })
}

/// A number where the format expects a count.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:?}")),
        "[0-9]{20,400}",
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just(".inf".to_owned()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hostile_random_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..2_000)) {
        let _ = parse_checked(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn hostile_yaml_syntax_never_panics_the_parser(source in yaml_soup()) {
        let _ = parse_checked(&source);
    }

    #[test]
    fn hostile_nesting_is_refused_past_the_limit_without_overflowing(source in nesting()) {
        let _ = parse_checked(&source);
        let _ = parse_checked(&format!("apiVersion: tessera.dev/v1\nkind: Integration\nmetadata: {{name: x}}\nspec:\n  steps: {source}\n"));
    }

    #[test]
    fn hostile_durations_are_refused_above_their_maximum(
        duration in duration_text(),
        field in 0usize..7,
    ) {
        let spec = match field {
            0 => format!("  timeout: '{duration}'\n  steps: [{{name: a, log: {{message: hi}}}}]\n"),
            1 => format!("  steps: [{{name: a, delay: {{duration: '{duration}'}}}}]\n"),
            2 => format!("  steps: [{{name: a, log: {{message: hi}}, timeout: '{duration}'}}]\n"),
            3 => format!("  triggers: [{{schedule: {{every: '{duration}'}}}}]\n  steps: [{{name: a, log: {{message: hi}}}}]\n"),
            4 => format!("  triggers: [{{webhook: {{synchronous: true, timeout: '{duration}'}}}}]\n  steps: [{{name: a, log: {{message: hi}}}}]\n"),
            5 => format!("  steps: [{{name: a, log: {{message: hi}}, retry: {{attempts: 3, backoff: {{initial: 1ms, max: '{duration}'}}}}}}]\n"),
            _ => format!("  steps: [{{name: a, http: {{url: 'https://example.com', timeout: '{duration}'}}}}]\n"),
        };
        let accepted = parse_checked(&integration(&spec)).is_ok();
        if let Ok(parsed) = Duration::parse(&duration) {
            let limit = if field == 4 { WebhookTrigger::MAX_WAIT } else { Duration::MAX };
            prop_assert!(!accepted || parsed.get() <= limit, "{duration} accepted in field {field}");
        } else {
            prop_assert!(!accepted, "{duration} is no duration");
        }
    }

    #[test]
    fn hostile_numbers_in_counts_never_panic(number in number_text(), field in 0usize..5) {
        let spec = match field {
            0 => format!("  concurrency: {number}\n  steps: [{{name: a, log: {{message: hi}}}}]\n"),
            1 => format!("  retention: {{days: {number}, executions: {number}}}\n  steps: [{{name: a, log: {{message: hi}}}}]\n"),
            2 => format!("  steps: [{{name: a, log: {{message: hi}}, retry: {{attempts: {number}, backoff: {{multiplier: {number}}}}}}}]\n"),
            3 => format!("  steps: [{{name: a, foreach: {{items: .x, concurrency: {number}, steps: [{{name: b, log: {{message: hi}}}}]}}}}]\n"),
            _ => format!("  triggers: [{{queue: {{connection: q, queue: x, prefetch: {number}}}}}]\n  steps: [{{name: a, log: {{message: hi}}}}]\n"),
        };
        let _ = parse_checked(&integration(&spec));
    }

    #[test]
    fn hostile_json_documents_never_panic_the_parser(value in json_value()) {
        let _ = parse_checked(&value.to_string());
        let _ = parse_checked(&serde_json::json!({"apiVersion": "tessera.dev/v1", "kind": "Integration",
            "metadata": {"name": "x"}, "spec": value}).to_string());
    }
}

/// Any JSON value, a few levels deep, with hostile leaves.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
        duration_text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..8)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}
