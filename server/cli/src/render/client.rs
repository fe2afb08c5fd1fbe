//! What the client commands print: one line per applied resource, one line
//! per definition problem, tables of resources and executions, the lines
//! of an execution's log, and what a command did. Pure functions of the
//! API's answers, so they are tested without a server.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Render, Stream};
use crate::client::api::{AppliedResource, DefinitionProblem, Kind};

/// One result (or problem) of a client command.
#[derive(Debug)]
pub enum Output {
    LoggedIn { server: String, credential: &'static str, profile: String, file: PathBuf },
    LoggedOut { server: String, profile: String },
    NoProfile { profile: String, file: PathBuf },
    Applied(AppliedResource),
    /// What is wrong with a definition file the server refused.
    Problem { file: String, problem: DefinitionProblem },
    Resources { kind: Kind, answer: Value },
    Versions(Value),
    Executions(Value),
    RolledBack { name: String, to_version: i32, now: Value },
    Deleted { kind: Kind, name: String },
    /// The id of an execution `run` started.
    Started(String),
    /// How an execution `run --wait` waited for ended: its state, then its
    /// output (or error) as JSON.
    Finished { state: String, result: Value },
    Step(Value),
    Outcome(Value),
    /// A page of audit records (`GET /api/audit`).
    Audit(Value),
    /// What `GET /api/audit/verify` found.
    AuditVerified(Value),
    /// Text passed through as the server wrote it (an export).
    Raw(String),
}

impl Render for Output {
    fn text(&self) -> String {
        match self {
            Output::LoggedIn { server, credential, profile, file } => {
                format!("logged in to {server} ({credential} saved as profile {profile:?} in {})", file.display())
            }
            Output::LoggedOut { server, profile } => format!("logged out of {server} (profile {profile:?} removed)"),
            Output::NoProfile { profile, file } => format!("no profile {profile:?} in {}", file.display()),
            Output::Applied(resource) => applied(resource),
            Output::Problem { file, problem: p } => problem(file, p),
            Output::Resources { kind, answer } => resources(*kind, answer),
            Output::Versions(answer) => versions(answer),
            Output::Executions(answer) => executions(answer),
            Output::RolledBack { name, to_version, now } => {
                format!("integration/{name} rolled back to version {to_version} (now version {})", now["version"])
            }
            Output::Deleted { kind, name } => format!("{}/{name} deleted", kind.singular()),
            Output::Started(id) => id.clone(),
            Output::Finished { state, result } => format!("{state}\n{result:#}"),
            Output::Step(s) => step(s),
            Output::Outcome(execution) => outcome(execution),
            Output::Audit(answer) => audit(answer),
            Output::AuditVerified(answer) => audit_verified(answer),
            Output::Raw(text) => text.trim_end().to_string(),
        }
    }

    fn stream(&self) -> Stream {
        match self {
            Output::Problem { .. } => Stream::Problem,
            _ => Stream::Result,
        }
    }
}

/// `integration/order-intake created (version 1)`.
pub fn applied(resource: &AppliedResource) -> String {
    format!("{}/{} {} (version {})", resource.kind.to_ascii_lowercase(), resource.name, resource.result, resource.version)
}

/// `FILE: document N, PATH (line L, column C): MESSAGE`; the document and
/// path are left out when the problem is with the file or resource as a
/// whole.
pub fn problem(file: &str, problem: &DefinitionProblem) -> String {
    let mut place = Vec::new();
    if let Some(document) = problem.document {
        place.push(format!("document {document}"));
    }
    if !problem.path.is_empty() {
        place.push(problem.path.clone());
    }
    let place = if place.is_empty() { String::new() } else { format!(": {}", place.join(", ")) };
    format!("{file}{place} (line {}, column {}): {}", problem.line, problem.column, problem.message)
}

/// A table of the resources in `answer`: a list (`{"items": [...]}`) or a
/// single resource.
pub fn resources(kind: Kind, answer: &Value) -> String {
    let rows: Vec<Vec<String>> = items(answer).iter().map(|item| resource_row(kind, item)).collect();
    match kind {
        Kind::Integration => table(&["NAME", "VERSION", "ENABLED", "UPDATED"], rows),
        Kind::Connection => table(&["NAME", "KIND", "VERSION", "UPDATED"], rows),
    }
}

/// A table of an integration's versions.
pub fn versions(answer: &Value) -> String {
    let rows = items(answer)
        .iter()
        .map(|v| vec![text(&v["version"]), timestamp(&v["created_at"]), text(&v["created_by"])])
        .collect();
    table(&["VERSION", "CREATED", "CREATED BY"], rows)
}

/// A table of audit records, newest first.
pub fn audit(answer: &Value) -> String {
    let rows = items(answer)
        .iter()
        .map(|r| {
            let actor = format!("{} ({})", text(&r["actor_name"]), text(&r["actor_kind"]));
            let resource = format!("{}/{}", text(&r["resource_kind"]), text(&r["resource_name"]));
            vec![text(&r["seq"]), timestamp(&r["at"]), actor, text(&r["via"]), text(&r["action"]), resource]
        })
        .collect();
    table(&["SEQ", "AT", "ACTOR", "VIA", "ACTION", "RESOURCE"], rows)
}

/// `chain intact: 12 records (head 12, 3f9a...)`, or every problem found.
pub fn audit_verified(answer: &Value) -> String {
    let head = format!("head {}, {}", answer["head_seq"], text(&answer["head_mac"]));
    if answer["ok"] == Value::Bool(true) {
        return format!("chain intact: {} records ({head})", answer["records"]);
    }
    let problems = answer["problems"].as_array().map(Vec::as_slice).unwrap_or_default();
    let lines: Vec<String> = problems.iter().map(|p| format!("record {}: {}", p["seq"], text(&p["problem"]))).collect();
    format!("chain broken ({} records, {head}):\n{}", answer["records"], lines.join("\n"))
}

/// A table of executions (`GET /api/executions`).
pub fn executions(answer: &Value) -> String {
    let rows = items(answer)
        .iter()
        .map(|e| {
            let took = duration(&e["started_at"], &e["finished_at"]).unwrap_or_else(|| "-".into());
            vec![text(&e["id"]), text(&e["integration"]), text(&e["version"]), text(&e["state"]), timestamp(&e["created_at"]), took]
        })
        .collect();
    table(&["ID", "INTEGRATION", "VERSION", "STATE", "CREATED", "DURATION"], rows)
}

/// The longest a step's output or error is shown in a log line; the API
/// (or `-o json`) has the whole of it.
const LOG_VALUE_CHARS: usize = 200;

/// One step of a log: `[time] path state (duration) output-or-error`, the
/// value as compact JSON.
pub fn step(step: &Value) -> String {
    let at = step["finished_at"].as_str().or(step["started_at"].as_str()).and_then(|s| s.parse::<DateTime<Utc>>().ok());
    let at = at.map_or_else(|| "-".to_string(), |t| t.format("%H:%M:%S%.3f").to_string());
    let mut line = format!("[{at}] {} {}", text(&step["path"]), text(&step["state"]));
    if let Some(took) = duration(&step["started_at"], &step["finished_at"]) {
        line.push_str(&format!(" ({took})"));
    }
    let value = if step["error"].is_null() { &step["output"] } else { &step["error"] };
    if !value.is_null() {
        line.push(' ');
        line.push_str(&compact(value));
    }
    line
}

/// The last line of a log: `execution ID STATE (duration)`, and the error
/// of a failed one.
pub fn outcome(execution: &Value) -> String {
    let mut line = format!("execution {} {}", text(&execution["id"]), text(&execution["state"]));
    if let Some(took) = duration(&execution["started_at"], &execution["finished_at"]) {
        line.push_str(&format!(" ({took})"));
    }
    if !execution["error"].is_null() {
        line.push_str(": ");
        line.push_str(&compact(&execution["error"]));
    }
    line
}

fn compact(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(LOG_VALUE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// `12 ms` or `3.4s`, when both ends are known.
fn duration(started: &Value, finished: &Value) -> Option<String> {
    let parse = |v: &Value| v.as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok());
    let millis = (parse(finished)? - parse(started)?).num_milliseconds().max(0);
    Some(if millis < 1000 { format!("{millis} ms") } else { format!("{:.1}s", millis as f64 / 1000.0) })
}

fn items(answer: &Value) -> Vec<&Value> {
    match answer.get("items").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![answer],
    }
}

fn resource_row(kind: Kind, item: &Value) -> Vec<String> {
    let updated = timestamp(&item["updated_at"]);
    match kind {
        // A list says `current_version`, a single integration `version`.
        Kind::Integration => {
            let version = if item["current_version"].is_null() { &item["version"] } else { &item["current_version"] };
            vec![text(&item["name"]), text(version), text(&item["enabled"]), updated]
        }
        Kind::Connection => vec![text(&item["name"]), text(&item["kind"]), text(&item["version"]), updated],
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Seconds are enough in a table; `-o json` has the exact value.
fn timestamp(value: &Value) -> String {
    match value.as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok()) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        None => text(value),
    }
}

/// Left-aligned columns, two spaces apart, no trailing blanks.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = headers.iter().map(|h| h.to_string()).collect();
    std::iter::once(header)
        .chain(rows)
        .map(|row: Vec<String>| {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn problems_name_file_document_path_and_position() {
        let p = DefinitionProblem { document: Some(2), path: "spec.steps[0]".into(), line: 14, column: 7, message: "bad".into() };
        assert_eq!(problem("a.yaml", &p), "a.yaml: document 2, spec.steps[0] (line 14, column 7): bad");
        let whole = DefinitionProblem { document: None, path: String::new(), line: 3, column: 1, message: "syntax".into() };
        assert_eq!(problem("a.yaml", &whole), "a.yaml (line 3, column 1): syntax");
    }

    #[test]
    fn log_lines_show_time_path_state_duration_and_value() {
        let done = json!({"path": "lines", "state": "succeeded", "attempt": 1, "output": {"a": [1, 2]}, "error": null,
            "started_at": "2026-01-02T03:04:05.100Z", "finished_at": "2026-01-02T03:04:05.112Z"});
        assert_eq!(step(&done), r#"[03:04:05.112] lines succeeded (12 ms) {"a":[1,2]}"#);
        let failed = json!({"id": "x", "state": "failed", "error": {"message": "no"},
            "started_at": "2026-01-02T03:04:05Z", "finished_at": "2026-01-02T03:04:07.5Z"});
        assert_eq!(outcome(&failed), r#"execution x failed (2.5s): {"message":"no"}"#);
        let long = json!({"path": "p", "state": "running", "output": "x".repeat(500), "started_at": "2026-01-02T03:04:05Z"});
        assert!(step(&long).ends_with("...") && step(&long).len() < 260);
    }

    #[test]
    fn integration_tables_read_lists_and_single_resources() {
        let list = json!({"items": [{"name": "order-intake", "current_version": 2, "enabled": true, "updated_at": "2026-01-02T03:04:05.678Z"}]});
        assert_eq!(
            resources(Kind::Integration, &list),
            "NAME          VERSION  ENABLED  UPDATED\norder-intake  2        true     2026-01-02 03:04:05Z"
        );
        let one = json!({"name": "x", "version": 7, "enabled": false, "updated_at": "2026-01-02T03:04:05Z"});
        assert!(resources(Kind::Integration, &one).ends_with("x     7        false    2026-01-02 03:04:05Z"));
    }
}
