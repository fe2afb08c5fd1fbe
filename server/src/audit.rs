//! The audit trail (docs/security.md, "Audit trail"): who changed what,
//! when and from where. A tenant's trail is in its schema, written in the
//! transaction of the change it records; the platform's is in the
//! `platform` schema.
//!
//! Tamper evidence: every record carries an HMAC-SHA256 over its fields and
//! the previous record's HMAC, under a key derived from the sealing key
//! (`KeyRing::audit_key`), which never enters the database. Someone with
//! database access alone can read the trail but cannot edit, insert or
//! remove a record without breaking the chain that `verify` walks. Removing
//! the newest records (with the head row rewound) is the one edit a chain
//! cannot show by itself; the node logs every new head, so the logs, kept
//! elsewhere, are the anchor.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_postgres::{types::ToSql, Row};

use crate::{
    database::DbError,
    sealing::KeyRing,
    tenancy::{Tenant, TenantDb, TenantTx},
};

/// How a change reached the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Api,
    Cli,
    Panel,
    /// An operator's command on the database (`tessera tenant ...`).
    Operator,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Cli => "cli",
            Via::Panel => "panel",
            Via::Operator => "operator",
        }
    }
}

/// Who made a change, and from where.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `user`, `api_key`, `owner` or `operator`.
    pub kind: &'static str,
    pub id: Option<String>,
    pub name: String,
    pub address: Option<String>,
    pub via: Via,
    pub request_id: Option<String>,
}

impl Actor {
    /// An operator's command run on this machine: named by the account that ran it.
    pub fn operator() -> Self {
        let name = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "operator".into());
        Actor { kind: "operator", id: None, name, address: None, via: Via::Operator, request_id: None }
    }
}

/// What changed: an action on one resource, and what is worth knowing of
/// it (versions before and after, changed fields; never a secret).
#[derive(Debug, Clone)]
pub struct Change {
    pub action: String,
    pub kind: &'static str,
    pub name: String,
    pub detail: Value,
}

impl Change {
    pub fn new(action: impl Into<String>, kind: &'static str, name: impl Into<String>) -> Self {
        Change { action: action.into(), kind, name: name.into(), detail: json!({}) }
    }

    pub fn with(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// One stored record, as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Record {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub actor_name: String,
    pub address: Option<String>,
    pub via: String,
    pub request_id: Option<String>,
    pub action: String,
    pub resource_kind: String,
    pub resource_name: String,
    pub detail: Value,
    #[serde(skip)]
    detail_text: String,
    pub key_id: String,
    pub mac: String,
}

const COLUMNS: &str = "seq, at, actor_kind, actor_id, actor_name, address, via, request_id, action, resource_kind, resource_name, detail, key_id, mac";

impl Record {
    fn from_row(row: &Row) -> Self {
        let detail_text: String = row.get(11);
        Record {
            seq: row.get(0),
            at: row.get(1),
            actor_kind: row.get(2),
            actor_id: row.get(3),
            actor_name: row.get(4),
            address: row.get(5),
            via: row.get(6),
            request_id: row.get(7),
            action: row.get(8),
            resource_kind: row.get(9),
            resource_name: row.get(10),
            detail: serde_json::from_str(&detail_text).unwrap_or(Value::Null),
            detail_text,
            key_id: row.get(12),
            mac: row.get(13),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 14] {
        [
            &self.seq,
            &self.at,
            &self.actor_kind,
            &self.actor_id,
            &self.actor_name,
            &self.address,
            &self.via,
            &self.request_id,
            &self.action,
            &self.resource_kind,
            &self.resource_name,
            &self.detail_text,
            &self.key_id,
            &self.mac,
        ]
    }

    /// The signed message: every field and the previous record's HMAC, as
    /// a JSON array, so no two different records read the same.
    fn message(&self, previous_mac: &str) -> Vec<u8> {
        let fields = json!([
            "tessera-audit-v1",
            previous_mac,
            self.seq,
            self.at.timestamp_micros(),
            self.actor_kind,
            self.actor_id,
            self.actor_name,
            self.address,
            self.via,
            self.request_id,
            self.action,
            self.resource_kind,
            self.resource_name,
            self.detail_text,
            self.key_id,
        ]);
        serde_json::to_vec(&fields).expect("a JSON value serializes")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Where a trail is: a tenant's schema or the platform's.
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    Tenant(&'a TenantDb, &'a Tenant),
    Platform(&'a Pool),
}

impl Scope<'_> {
    /// `sql` names the trail's tables `@audit.`.
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        match self {
            Scope::Tenant(db, tenant) => db.statement(tenant, &sql.replace("@audit.", "@tenant."), params).await,
            Scope::Platform(pool) => {
                let client = pool.get().await?;
                Ok(client.query(&sql.replace("@audit.", "platform."), params).await?)
            }
        }
    }
}

/// The node's handle on audit trails: the keys that sign and check them.
#[derive(Clone)]
pub struct Trail {
    /// None: an operator's command run without `secrets.key` records its
    /// changes unsigned, and `verify` reports each such record.
    keys: Option<Arc<KeyRing>>,
}

const ADVANCE_HEAD: &str = "UPDATE @audit.audit_chain SET seq = seq + 1 RETURNING seq, mac";

/// Store a signed record and make its HMAC the chain's head, in one statement.
fn append_sql(schema: &str) -> String {
    format!(
        "WITH r AS (INSERT INTO @audit.audit_records ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)) \
         UPDATE @audit.audit_chain SET mac = $14"
    )
    .replace("@audit.", schema)
}

impl Trail {
    pub fn new(keys: Arc<KeyRing>) -> Self {
        Trail { keys: Some(keys) }
    }

    pub fn unsigned() -> Self {
        Trail { keys: None }
    }

    /// The next record after `(seq - 1, previous_mac)`, signed.
    fn sign(&self, seq: i64, previous_mac: &str, actor: &Actor, change: Change) -> Record {
        let now = Utc::now();
        let at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        let key_id = self.keys.as_ref().map(|k| k.current_key_id().to_string()).unwrap_or_default();
        let mut record = Record {
            seq,
            at,
            actor_kind: actor.kind.to_string(),
            actor_id: actor.id.clone(),
            actor_name: actor.name.clone(),
            address: actor.address.clone(),
            via: actor.via.as_str().to_string(),
            request_id: actor.request_id.clone(),
            action: change.action,
            resource_kind: change.kind.to_string(),
            resource_name: change.name,
            detail_text: change.detail.to_string(),
            detail: change.detail,
            key_id,
            mac: String::new(),
        };
        record.mac = self.mac(&record.key_id, previous_mac, &record).unwrap_or_default();
        record
    }

    fn mac(&self, key_id: &str, previous_mac: &str, record: &Record) -> Option<String> {
        let key = self.keys.as_ref()?.audit_key(key_id)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(&record.message(previous_mac));
        Some(mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Record a change of a tenant in the transaction that makes it: the
    /// record commits with the change or not at all. The head row's lock
    /// orders concurrent changes; it is taken last, so it is held only
    /// until the commit.
    pub async fn record(&self, tx: &mut TenantTx, actor: &Actor, change: Change) -> Result<(), DbError> {
        let head = tx.query_one(&ADVANCE_HEAD.replace("@audit.", "@tenant."), &[]).await?;
        let record = self.sign(head.get(0), &head.get::<_, String>(1), actor, change);
        tx.execute(&append_sql("@tenant."), &record.params()).await?;
        tracing::info!(seq = record.seq, mac = %record.mac, action = %record.action, "audit record");
        Ok(())
    }

    /// Record a change of the platform, in a transaction of its own once
    /// the change is made (platform changes span databases and nodes).
    pub async fn record_platform(&self, pool: &Pool, actor: &Actor, change: Change) -> Result<(), DbError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let head = tx.query_one(&ADVANCE_HEAD.replace("@audit.", "platform."), &[]).await?;
        let record = self.sign(head.get(0), &head.get::<_, String>(1), actor, change);
        tx.execute(&append_sql("platform."), &record.params()).await?;
        tx.commit().await?;
        tracing::info!(seq = record.seq, mac = %record.mac, action = %record.action, "platform audit record");
        Ok(())
    }

    /// Walk a whole trail and check every link: each record's HMAC over
    /// its fields and its predecessor's, numbers without gaps, and the head
    /// row naming the last record.
    pub async fn verify(&self, scope: Scope<'_>) -> Result<Verification, DbError> {
        let mut check = Verification::default();
        let mut previous = (0i64, String::new());
        loop {
            let sql = format!("SELECT {COLUMNS} FROM @audit.audit_records WHERE seq > $1 ORDER BY seq LIMIT 1000");
            let rows = scope.query(&sql, &[&previous.0]).await?;
            for record in rows.iter().map(Record::from_row) {
                check.records += 1;
                if record.seq != previous.0 + 1 {
                    check.problem(previous.0 + 1, format!("records {} to {} are missing", previous.0 + 1, record.seq - 1));
                }
                match self.mac(&record.key_id, &previous.1, &record) {
                    None if record.key_id.is_empty() => check.problem(record.seq, "not signed: recorded by an operator command run without secrets.key"),
                    None => check.problem(record.seq, format!("signed with key {}, which this node does not have", record.key_id)),
                    Some(mac) if mac != record.mac => check.problem(record.seq, "its HMAC does not match its fields and the record before it"),
                    Some(_) => {}
                }
                previous = (record.seq, record.mac);
            }
            if rows.len() < 1000 {
                break;
            }
        }
        let head = scope.query("SELECT seq, mac FROM @audit.audit_chain", &[]).await?;
        let (head_seq, head_mac) = head.first().map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1))).unwrap_or_default();
        if (head_seq, &head_mac) != (previous.0, &previous.1) {
            check.problem(head_seq, format!("the chain's head names record {head_seq}, but the last record is {}", previous.0));
        }
        check.head_seq = head_seq;
        check.head_mac = head_mac;
        check.ok = check.problems.is_empty();
        Ok(check)
    }

    /// Every record matching `filter` (the newest [`MAX_EXPORT`]), oldest first.
    pub async fn export(&self, scope: Scope<'_>, mut filter: AuditFilter) -> Result<Vec<Record>, AuditError> {
        filter.limit = Some(MAX_PAGE);
        let mut all = Vec::new();
        loop {
            let page = self.list(scope, &filter).await?;
            all.extend(page.items);
            match page.next_before {
                Some(before) if all.len() < MAX_EXPORT => filter.before = Some(before),
                _ => break,
            }
        }
        all.truncate(MAX_EXPORT);
        all.reverse();
        Ok(all)
    }

    /// A page of records, newest first, matching `filter`.
    pub async fn list(&self, scope: Scope<'_>, filter: &AuditFilter) -> Result<AuditPage, AuditError> {
        let limit = filter.limit.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(AuditError::Invalid { field: "limit", message: format!("between 1 and {MAX_PAGE}") });
        }
        let (clauses, params) = filter.clauses();
        let sql = format!("SELECT {COLUMNS} FROM @audit.audit_records WHERE {} ORDER BY seq DESC LIMIT {}", clauses.join(" AND "), limit + 1);
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let mut items: Vec<Record> = scope.query(&sql, &refs).await?.iter().map(Record::from_row).collect();
        let more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        let next_before = more.then(|| items.last().map(|r| r.seq)).flatten();
        Ok(AuditPage { items, next_before })
    }
}

/// Largest page of a listing; an export pages through everything.
pub const MAX_PAGE: i64 = 1000;
/// Most records one export holds; narrow it with `since`/`until` beyond.
pub const MAX_EXPORT: usize = 100_000;

/// What `verify` found.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub ok: bool,
    pub records: i64,
    pub head_seq: i64,
    pub head_mac: String,
    /// The first problems found, in order (at most 100).
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub seq: i64,
    pub problem: String,
}

impl Verification {
    fn problem(&mut self, seq: i64, problem: impl Into<String>) {
        if self.problems.len() < 100 {
            self.problems.push(Problem { seq, problem: problem.into() });
        }
    }
}

/// Filters of a listing; every one given must match.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// The actor's name (email, key or owner name) or id.
    pub actor: Option<String>,
    pub action: Option<String>,
    pub resource_kind: Option<String>,
    pub resource: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Records older than this number: the `next_before` of the page before.
    pub before: Option<i64>,
    pub limit: Option<i64>,
}

type Param = Box<dyn ToSql + Sync + Send>;

impl AuditFilter {
    fn clauses(&self) -> (Vec<String>, Vec<Param>) {
        let mut clauses = vec!["true".to_string()];
        let mut params: Vec<Param> = Vec::new();
        let mut add = |clause: &str, param: Param| {
            params.push(param);
            clauses.push(clause.replace('?', &format!("${}", params.len())));
        };
        if let Some(actor) = &self.actor {
            // Each `?` of a clause is the same parameter.
            add("(actor_name = ? OR actor_id = ?)", Box::new(actor.clone()));
        }
        if let Some(action) = &self.action {
            add("action = ?", Box::new(action.clone()));
        }
        if let Some(kind) = &self.resource_kind {
            add("resource_kind = ?", Box::new(kind.clone()));
        }
        if let Some(name) = &self.resource {
            add("resource_name = ?", Box::new(name.clone()));
        }
        if let Some(since) = self.since {
            add("at >= ?", Box::new(since));
        }
        if let Some(until) = self.until {
            add("at < ?", Box::new(until));
        }
        if let Some(before) = self.before {
            add("seq < ?", Box::new(before));
        }
        (clauses, params)
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<Record>,
    /// Pass as `before` for the next (older) page; absent on the last.
    pub next_before: Option<i64>,
}
