//! An audit trail's export: newline-delimited JSON, one record per line,
//! offered as a file download.

use actix_web::{http::header, HttpResponse};

use crate::audit::Record;

pub fn ndjson(records: &[Record], name: &str) -> HttpResponse {
    let mut body = Vec::with_capacity(records.len() * 400);
    for record in records {
        serde_json::to_writer(&mut body, record).expect("a record serializes");
        body.push(b'\n');
    }
    HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}-audit.ndjson\"")))
        .body(body)
}
