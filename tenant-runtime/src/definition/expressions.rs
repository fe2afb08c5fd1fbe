//! Every jq expression and template of an action compiles: a syntax error
//! is reported at the value's path when the file is read, not when an
//! execution first reaches the step.

use serde_json::Value;

use super::{
    Action, Expression, Template,
    error::{Issue, Path},
};
use crate::expression::{self, ExpressionError, PathSegment};

/// The issues of the expressions and templates written in `action`, at
/// `path` (the action's own path, as in `spec.steps[2].http`).
pub(crate) fn check(action: &Action, path: &Path) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut expression = |value: &Expression, at: Path| issues.extend(compile_expression(value, at));
    match action {
        Action::Transform(transform) => expression(&transform.expression, path.key("expression")),
        Action::Choice(choice) => {
            for (i, branch) in choice.branches.iter().enumerate() {
                expression(&branch.when, path.key("branches").index(i).key("when"));
            }
        }
        Action::Foreach(foreach) => expression(&foreach.items, path.key("items")),
        Action::Sql(sql) => {
            for (i, param) in sql.params.iter().enumerate() {
                expression(param, path.key("params").index(i));
            }
        }
        Action::Call(call) => {
            if let Some(input) = &call.input {
                expression(input, path.key("input"));
            }
        }
        Action::Http(http) => {
            issues.extend(compile_template(&http.url, path.key("url")));
            for (field, map) in [("headers", &http.headers), ("query", &http.query)] {
                for (name, template) in map {
                    issues.extend(compile_template(template, path.key(field).key(name.as_str())));
                }
            }
            if let Some(body) = &http.body {
                issues.extend(compile_body(body, &path.key("body")));
            }
        }
        Action::Publish(publish) => {
            issues.extend(compile_template(&publish.routing_key, path.key("routing_key")));
            issues.extend(compile_body(&publish.body, &path.key("body")));
        }
        Action::Log(log) => issues.extend(compile_template(&log.message, path.key("message"))),
        Action::Fail(fail) => issues.extend(compile_template(&fail.message, path.key("message"))),
        Action::Parallel(_) | Action::Delay(_) => {}
    }
    issues
}

/// The jq of an API route: its request and response transforms.
pub(crate) fn check_route(route: &super::ApiRoute, path: &Path) -> Vec<Issue> {
    let transforms = [("request", &route.request), ("response", &route.response)];
    transforms.into_iter().filter_map(|(field, value)| compile_expression(value.as_ref()?, path.key(field))).collect()
}

fn compile_expression(value: &Expression, path: Path) -> Option<Issue> {
    let error = expression::Expression::compile(value.as_str()).err()?;
    Some(Issue::at(path, describe(&error, "jq expression")))
}

fn compile_template(value: &Template, path: Path) -> Option<Issue> {
    let error = expression::Template::compile(value.as_str()).err()?;
    Some(Issue::at(path, describe(&error, "template")))
}

/// Each string of a body is a template; each bad one is its own issue.
fn compile_body(body: &Value, path: &Path) -> Vec<Issue> {
    let strings = expression::strings_in(body);
    let bad = strings.into_iter().filter_map(|(segments, text)| {
        let error = expression::Template::compile(text).err()?;
        let at = segments.iter().fold(path.clone(), |at, segment| match segment {
            PathSegment::Key(key) => at.key(*key),
            PathSegment::Index(i) => at.index(*i),
        });
        Some(Issue::at(at, describe(&error, "template")))
    });
    bad.collect()
}

/// The definition error places the value itself in the file; the message
/// adds where in the value's text the problem is, which matters for long
/// or multi-line expressions.
fn describe(error: &ExpressionError, what: &str) -> String {
    match error.position() {
        Some((line, column)) => {
            format!("invalid {what}: {} (line {line}, column {column} of the {what})", error.message())
        }
        None => format!("invalid {what}: {error}"),
    }
}
