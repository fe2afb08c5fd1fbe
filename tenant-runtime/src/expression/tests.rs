use serde_json::{Value, json};

use super::*;

fn eval(expression: &str, input: Value) -> Result<Value, ExpressionError> {
    Expression::compile(expression).unwrap().evaluate(&input)
}

fn render(template: &str, data: Value) -> Value {
    Template::compile(template).unwrap().render(&data).unwrap()
}

fn order() -> Value {
    json!({
        "trigger": { "body": { "id": 42, "items": [
            { "sku": "A-1", "qty": 2 }, { "sku": "B-2", "qty": 0 }, { "sku": "C-3", "qty": 5 }
        ] } },
        "steps": { "fetch": { "status": 200, "body": [1, 2, 3] } },
        "vars": { "region": "eu" },
        "execution": { "id": "x", "integration": "orders-sync", "version": 3 }
    })
}

#[test]
fn evaluates_the_documented_examples() {
    let positive = eval(".trigger.body.items | map(select(.qty > 0)) | map(.sku)", order()).unwrap();
    assert_eq!(positive, json!(["A-1", "C-3"]));
    assert_eq!(eval(".steps.fetch.status == 200", order()).unwrap(), json!(true));
    assert_eq!(eval("[.trigger.body.items[].sku] | unique | length", order()).unwrap(), json!(3));
    assert_eq!(eval(".vars.region | ascii_upcase", order()).unwrap(), json!("EU"));
}

#[test]
fn outputs_fold_into_one_value() {
    assert_eq!(eval("empty", json!(1)).unwrap(), Value::Null);
    assert_eq!(eval(".[]", json!([])).unwrap(), Value::Null);
    assert_eq!(eval(".a", json!({"a": {"b": 1}})).unwrap(), json!({"b": 1}));
    assert_eq!(eval(".[] | . * 2", json!([1, 2, 3])).unwrap(), json!([2, 4, 6]));
    let all = Expression::compile("1, 2").unwrap().evaluate_all(&Value::Null).unwrap();
    assert_eq!(all, vec![json!(1), json!(2)]);
}

#[test]
fn numbers_and_strings_survive_the_round_trip() {
    let input = json!({"i": -7, "u": 18446744073709551615u64, "f": 1.5, "s": "é€"});
    assert_eq!(eval(".", input.clone()).unwrap(), input);
    assert_eq!(eval("1 / 3 * 3", Value::Null).unwrap(), json!(1.0));
    assert_eq!(eval("nan", Value::Null).unwrap(), Value::Null);
    assert_eq!(eval("{(1 | tostring): 2}", Value::Null).unwrap(), json!({"1": 2}));
}

#[test]
fn syntax_errors_carry_the_text_and_position() {
    let error = Expression::compile(".a | map(").unwrap_err();
    let ExpressionError::Syntax { kind, text, line, column, .. } = &error else { panic!("{error:?}") };
    assert_eq!((*kind, text.as_str()), (SourceKind::Expression, ".a | map("));
    assert_eq!((*line, *column), (1, 10), "{error}");
    assert!(error.to_string().contains("`.a | map(`"), "{error}");

    let error = Expression::compile(".a |\n  nosuchfilter(1)").unwrap_err();
    assert_eq!(error.position(), Some((2, 3)), "{error}");
    assert!(error.message().contains("nosuchfilter/1"), "{error}");

    let error = Expression::compile(".a | ]").unwrap_err();
    assert_eq!(error.position(), Some((1, 6)), "{error}");
    assert!(error.message().contains("`]`"), "{error}");
    assert!(Expression::compile("\"unterminated").is_err());
    assert!(Expression::compile("$undefined").is_err());
}

#[test]
fn runtime_errors_carry_the_expression_and_jq_message() {
    let error = eval(".a.b", json!({"a": 1})).unwrap_err();
    let ExpressionError::Runtime { expression, message } = &error else { panic!("{error:?}") };
    assert_eq!(expression, ".a.b");
    assert!(message.contains("cannot index"), "{message}");
    let error = eval("error(\"no lines\")", Value::Null).unwrap_err();
    assert!(error.to_string().contains("no lines"), "{error}");
    // `try` still recovers, as in jq.
    assert_eq!(eval("try error(\"x\") catch .", Value::Null).unwrap(), json!("x"));
}

#[test]
fn runaway_generators_stop_at_the_output_limit() {
    for runaway in ["repeat(1)", "range(1e12)", "range(infinite)"] {
        let error = eval(runaway, Value::Null).unwrap_err();
        assert_eq!(error, ExpressionError::TooManyOutputs { expression: runaway.into(), limit: MAX_OUTPUTS });
    }
    assert_eq!(eval("[limit(3; repeat(1))]", Value::Null).unwrap(), json!([1, 1, 1]));
    let error = eval("reduce range(1000) as $i (0; [.])", Value::Null).unwrap_err();
    assert!(matches!(error, ExpressionError::TooDeep { .. }), "{error:?}");
}

#[test]
fn nothing_reaches_outside_the_evaluation() {
    assert_eq!(eval("env", Value::Null).unwrap(), json!({}));
    assert!(Expression::compile("$ENV").is_err());
    assert!(Expression::compile("import \"x\" as x; .").is_err());
    assert!(eval("halt", Value::Null).is_err());
    assert!(eval("halt_error", json!("bye")).is_err());
    assert_eq!(eval("debug | stderr | . + 1", json!(1)).unwrap(), json!(2));
}

#[test]
fn expressions_are_shared_between_threads() {
    let expression = Expression::compile(".n * 2").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let expression = expression.clone();
            std::thread::spawn(move || expression.evaluate(&json!({"n": n})).unwrap())
        })
        .collect();
    let results: Vec<Value> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results, vec![json!(0), json!(2), json!(4), json!(6)]);
}

#[test]
fn truthiness_is_jq_truthiness() {
    assert!(!is_truthy(&Value::Null));
    assert!(!is_truthy(&json!(false)));
    for truthy in [json!(0), json!(""), json!([]), json!({}), json!(true)] {
        assert!(is_truthy(&truthy), "{truthy}");
    }
}

#[test]
fn a_lone_placeholder_keeps_its_json_type() {
    assert_eq!(render("${{ .trigger.body.id }}", order()), json!(42));
    assert_eq!(render("${{.steps.fetch.body}}", order()), json!([1, 2, 3]));
    assert_eq!(render("${{ .missing }}", order()), Value::Null);
}

#[test]
fn mixed_templates_render_text() {
    let text = render("order ${{ .trigger.body.id }} has ${{ .steps.fetch.body | length }} lines", order());
    assert_eq!(text, json!("order 42 has 3 lines"));
    assert_eq!(render("${{ .vars.region }}-${{ .vars }}", order()), json!(r#"eu-{"region":"eu"}"#));
    assert_eq!(render("x=${{ .nothing }}", order()), json!("x=null"));
    assert_eq!(render(" ${{ 1 }}", order()), json!(" 1"));
    assert_eq!(render("plain text", order()), json!("plain text"));
    assert_eq!(render("", order()), json!(""));
    assert_eq!(render("${{ 1 }}${{ 2 }}", Value::Null), json!("12"));
    let url = Template::compile("https://api.example.com/orders/${{ .id }}").unwrap();
    assert_eq!(url.render_text(&json!({"id": 7})).unwrap(), "https://api.example.com/orders/7");
}

#[test]
fn closing_braces_inside_jq_do_not_end_a_placeholder() {
    assert_eq!(render(r#"${{ "}}" }}"#, Value::Null), json!("}}"));
    assert_eq!(render("${{ {a: {b: .x}} }}", json!({"x": 1})), json!({"a": {"b": 1}}));
    assert_eq!(render(r#"<${{ "a\("}}" + .x)b" }}>"#, json!({"x": "!"})), json!("<a}}!b>"));
    assert_eq!(render(r#"${{ "\"}}" }}"#, Value::Null), json!("\"}}"));
    assert_eq!(render("${{ .x # note }}\n}}", json!({"x": 5})), json!(5));
}

#[test]
fn doubled_dollar_escapes_a_placeholder() {
    assert_eq!(render("use $${{ .x }} for data", json!({"x": 1})), json!("use ${{ .x }} for data"));
    assert_eq!(render("$${{ .x }} is ${{ .x }}", json!({"x": 1})), json!("${{ .x }} is 1"));
    assert_eq!(render("cost: $5, ${{ .x }}", json!({"x": 1})), json!("cost: $5, 1"));
}

#[test]
fn template_errors_point_into_the_template() {
    let error = Template::compile("a ${{ .x ").unwrap_err();
    assert_eq!(error.position(), Some((1, 3)), "{error}");
    assert!(error.message().contains("not closed"), "{error}");
    let error = Template::compile("a ${{  }} b").unwrap_err();
    assert!(error.message().contains("empty"), "{error}");
    let error = Template::compile("line one\nid: ${{ .a | ] }}").unwrap_err();
    let ExpressionError::Syntax { kind, line, column, .. } = &error else { panic!("{error:?}") };
    assert_eq!((*kind, *line, *column), (SourceKind::Template, 2, 14), "{error}");
    let error = Template::compile("${{ .a }} ${{ nope }}").unwrap_err();
    assert_eq!(error.position(), Some((1, 15)), "{error}");
}

#[test]
fn template_runtime_errors_name_the_expression() {
    let template = Template::compile("id ${{ .a.b }}").unwrap();
    let error = template.render(&json!({"a": "text"})).unwrap_err();
    assert!(matches!(&error, ExpressionError::Runtime { expression, .. } if expression == " .a.b "), "{error:?}");
}

#[test]
fn value_templates_render_each_string() {
    let body = json!({
        "order": "${{ .trigger.body.id }}",
        "note": "for ${{ .vars.region }}",
        "lines": ["${{ .trigger.body.items | length }}", 7, null, "$${{ kept }}"],
        "fixed": { "a": true }
    });
    let rendered = ValueTemplate::compile(&body).unwrap().render(&order()).unwrap();
    assert_eq!(
        rendered,
        json!({ "order": 42, "note": "for eu", "lines": [3, 7, null, "${{ kept }}"], "fixed": { "a": true } })
    );
}

#[test]
fn value_template_errors_carry_the_path_in_the_value() {
    let error = ValueTemplate::compile(&json!({"items": [{"sku": "${{ .a | }}"}]})).unwrap_err();
    assert!(matches!(&error, ExpressionError::InValue { path, .. } if path == "items[0].sku"), "{error:?}");
    let template = ValueTemplate::compile(&json!({"x-id": ["${{ .a.b }}"]})).unwrap();
    let error = template.render(&json!({"a": 1})).unwrap_err();
    assert!(error.to_string().starts_with(r#"at `["x-id"][0]` of the body"#), "{error}");
    let value = json!({"a": ["x", 1, {"b": "y"}]});
    let strings = strings_in(&value);
    assert_eq!(
        strings,
        vec![
            (vec![PathSegment::Key("a"), PathSegment::Index(0)], "x"),
            (vec![PathSegment::Key("a"), PathSegment::Index(2), PathSegment::Key("b")], "y"),
        ]
    );
}

#[test]
fn the_context_serialises_to_the_documented_shape() {
    let execution = ExecutionInfo {
        id: uuid::Uuid::nil(),
        integration: crate::definition::Name::try_from("orders-sync".to_owned()).unwrap(),
        version: 3,
    };
    let mut context = Context::new(json!({"body": {"id": 1}}), serde_json::Map::new(), execution);
    context.steps.insert("fetch".into(), json!({"status": 200}));
    let value = context.to_value();
    assert_eq!(value["execution"], json!({"id": uuid::Uuid::nil(), "integration": "orders-sync", "version": 3}));
    assert!(value.get("item").is_none());
    let summary =
        Template::compile("${{ .execution.integration }} v${{ .execution.version }}: ${{ .steps.fetch.status }}")
            .unwrap();
    assert_eq!(summary.render(&value).unwrap(), json!("orders-sync v3: 200"));
}

/// The worked examples of docs/expressions.md, against its example context.
#[test]
fn the_user_documentation_examples_hold() {
    let data = json!({
        "trigger": { "body": { "id": 42, "items": [ { "sku": "A-1", "qty": 2 }, { "sku": "B-2", "qty": 0 } ] } },
        "steps": { "fetch": { "status": 200, "body": [] } },
        "vars": { "region": "eu" }
    });
    let expressions = [
        (".trigger.body.items | map(select(.qty > 0))", json!([{"sku": "A-1", "qty": 2}])),
        ("[.trigger.body.items[].sku]", json!(["A-1", "B-2"])),
        (".trigger.body.items[].sku", json!(["A-1", "B-2"])),
        (".trigger.body.items | map(.qty) | add", json!(2)),
        (".steps.fetch.status == 200", json!(true)),
        ("{id: .trigger.body.id, region: .vars.region}", json!({"id": 42, "region": "eu"})),
    ];
    for (expression, expected) in expressions {
        assert_eq!(eval(expression, data.clone()).unwrap(), expected, "{expression}");
    }
    let templates = [
        ("order ${{ .trigger.body.id }} has ${{ .trigger.body.items | length }} lines", json!("order 42 has 2 lines")),
        ("https://api.example.com/orders/${{ .trigger.body.id }}", json!("https://api.example.com/orders/42")),
        ("${{ .trigger.body.items[0] }}", json!({"sku": "A-1", "qty": 2})),
    ];
    for (template, expected) in templates {
        assert_eq!(render(template, data.clone()), expected, "{template}");
    }
}
