//! Moving a tenant to another cluster (docs/clustering.md, "Moving a
//! tenant"): copy its schema to the target cluster's database while it
//! runs, catch up, pause its writes briefly, switch, and retire the
//! source's copy after exporting it.
//!
//! Changes are captured with triggers, not logical replication: they need
//! no `wal_level = logical` (a restart of a production database), no
//! replication slot that fills the disk when a move is abandoned, and no
//! path from one cluster's database to another's; the mover is an ordinary
//! client of both. While a move copies, each tenant table has statement
//! triggers that record the primary keys its writes touch; each catch-up
//! round copies the current rows of those keys (and deletes those gone)
//! and forgets the keys it handled.
//!
//! The pause (`platform.tenants.paused_until`) makes the tenant's nodes
//! answer 503 with Retry-After and hand its worker over as soon as its
//! running executions finish, as a rebalancing does; it ends by itself, so
//! a mover that dies cannot leave a tenant paused. The switch locks the
//! tenant's tables, copies the last changes, and in the same source
//! transaction renames the source schema away: a write still in flight
//! fails instead of landing where nobody reads. That commit is the point
//! of no return. Before it, any failure (or the next run after a kill)
//! drops what the target got and the tenant stays whole on the source;
//! after it, the next run finishes the move.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_postgres::{Client, IsolationLevel, Transaction};
use uuid::Uuid;

use super::{clusters, migrate, ProvisioningError, Provisioner};
use crate::{
    database::connect,
    tenancy::{SchemaName, Tenant, TENANT_CHANGES_CHANNEL},
};

/// Where the keys of changed rows wait for the next catch-up round.
const CHANGES: &str = "tessera_move_changes";
/// A catch-up round with fewer changes than this is the last before the pause.
const QUIET: i64 = 500;
const MAX_ROUNDS: u32 = 20;
/// A pause that only the move lifts: far away, yet a time every reader
/// can hold (PostgreSQL's `infinity` is no date for chrono).
const PAUSED_FOR_GOOD: &str = "'9999-12-31 00:00:00+00'";
/// How long the source keeps answering "moving" (503) after the switch
/// before its copy of the tenant's row goes: load balancers hear of the
/// switch within a second.
const SOURCE_GRACE: Duration = Duration::from_secs(2);

/// What a move reports as it goes (the CLI prints it).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum MovePhase {
    /// A move of this tenant stopped earlier: finished or undone first.
    Recovered { finished: bool },
    Copied { rows: u64 },
    CaughtUp { round: u32, changes: i64 },
    Paused,
    Switched { paused_ms: u64 },
    Exported { path: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct MoveReport {
    pub id: Uuid,
    pub slug: String,
    pub from: String,
    pub to: String,
    pub rows_copied: u64,
    pub catch_up_rounds: u32,
    /// From the pause to the target serving the tenant.
    pub paused_ms: u64,
    pub took_ms: u64,
    /// The source schema's export; empty when no schema moved (both
    /// clusters share one database).
    pub export_path: Option<String>,
}

/// One move as it runs: the tenant, both ends and the directory.
struct Move {
    id: Uuid,
    tenant: Tenant,
    from: String,
    to: String,
    /// The clusters' own databases; `None`: the directory's.
    from_url: Option<String>,
    to_url: Option<String>,
    directory_url: String,
    /// What the source schema is renamed to at the switch.
    retired: String,
    max_pause: Duration,
}

impl Move {
    fn source_url(&self) -> &str {
        self.from_url.as_deref().unwrap_or(&self.directory_url)
    }

    fn target_url(&self) -> &str {
        self.to_url.as_deref().unwrap_or(&self.directory_url)
    }

    /// Both clusters keep their schemas in one database: nothing to copy.
    fn same_database(&self) -> bool {
        self.source_url() == self.target_url()
    }

    fn schema(&self) -> &SchemaName {
        &self.tenant.schema
    }
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A tenant table as the copy sees it.
struct Table {
    name: String,
    /// Quoted, in column order.
    columns: Vec<String>,
    /// The primary key's columns (quoted) and their types.
    key: Vec<(String, String)>,
}

impl Table {
    fn qualified(&self, schema: &SchemaName) -> String {
        format!("{}.{}", schema.quoted(), ident(&self.name))
    }

    fn column_list(&self) -> String {
        self.columns.join(", ")
    }

    fn key_list(&self) -> String {
        self.key.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The recorded keys (`jsonb` arrays in `from`) as typed rows.
    fn keys_from(&self, from: &str) -> String {
        let typed: Vec<String> = self.key.iter().enumerate().map(|(i, (_, ty))| format!("(key->>{i})::{ty}")).collect();
        format!("SELECT DISTINCT {} FROM {from}", typed.join(", "))
    }
}

/// The tenant tables of `schema` (not the migration history, not the change log).
async fn tables(client: &impl tokio_postgres::GenericClient, schema: &SchemaName) -> Result<Vec<Table>, ProvisioningError> {
    let sql = "SELECT c.relname, \
         (SELECT array_agg(quote_ident(a.attname) ORDER BY a.attnum) FROM pg_attribute a \
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), \
         (SELECT array_agg(quote_ident(a.attname) ORDER BY array_position(i.indkey::int2[], a.attnum)) \
           FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
           WHERE i.indrelid = c.oid AND i.indisprimary), \
         (SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY array_position(i.indkey::int2[], a.attnum)) \
           FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
           WHERE i.indrelid = c.oid AND i.indisprimary) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> ALL ($2) ORDER BY c.relname";
    let skip = vec![migrate::HISTORY_TABLE, CHANGES];
    let rows = client.query(sql, &[&schema.as_str(), &skip]).await?;
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let keys: Option<Vec<String>> = r.get(2);
            let types: Option<Vec<String>> = r.get(3);
            let (Some(keys), Some(types)) = (keys, types) else {
                return Err(ProvisioningError::Invalid(format!("table {name} has no primary key: it cannot be moved")));
            };
            Ok(Table { name, columns: r.get(1), key: keys.into_iter().zip(types).collect() })
        })
        .collect()
}

/// Stream `query`'s rows out of `from` into `table` of `to`, in binary.
async fn pipe(from: &Transaction<'_>, query: &str, to: &Transaction<'_>, into: &str) -> Result<u64, ProvisioningError> {
    let out = from.copy_out(&format!("COPY ({query}) TO STDOUT (FORMAT binary)")).await?;
    let sink = to.copy_in(&format!("COPY {into} FROM STDIN (FORMAT binary)")).await?;
    futures::pin_mut!(out, sink);
    while let Some(chunk) = out.next().await {
        sink.send(chunk?).await?;
    }
    Ok(sink.finish().await?)
}

impl Provisioner {
    /// Move tenant `slug` to cluster `to`; see the module's documentation.
    pub async fn move_tenant(
        &self,
        slug: &str,
        to: &str,
        progress: impl Fn(MovePhase) + Send + Sync,
    ) -> Result<MoveReport, ProvisioningError> {
        let started = Instant::now();
        let directory = connect(&self.database_url).await?;
        let tenant = self.get(slug).await?;
        self.lock_moves(&directory, &tenant).await?;
        if let Some(finished) = self.settle_interrupted(&directory, tenant.id).await? {
            progress(MovePhase::Recovered { finished });
        }
        let tenant = self.get(slug).await?;
        if tenant.cluster == to {
            return Err(ProvisioningError::Invalid(format!("tenant '{slug}' is already on cluster '{to}'")));
        }
        let target = clusters::place(&directory, Some(to), &self.home_cluster).await?;
        let from_url = clusters::database_url(&directory, &tenant.cluster).await?;
        let id = Uuid::now_v7();
        let plan = Move {
            id,
            retired: format!("{}_moved_{}", tenant.schema, &id.simple().to_string()[20..]),
            from: tenant.cluster.clone(),
            to: target.cluster,
            from_url,
            to_url: target.database_url,
            directory_url: self.database_url.clone(),
            max_pause: Duration::from_millis(self.config.move_max_pause_ms.max(1000)),
            tenant,
        };
        directory
            .execute(
                "INSERT INTO platform.tenant_moves (id, tenant_id, slug, from_cluster, to_cluster, state, retired_schema) \
                 VALUES ($1, $2, $3, $4, $5, 'copying', $6)",
                &[&plan.id, &plan.tenant.id, &slug, &plan.from, &plan.to, &plan.retired],
            )
            .await?;
        tracing::info!(tenant = %slug, from = %plan.from, to = %plan.to, "tenant move begins");
        let outcome = self.run_move(&plan, &progress).await;
        let mut report = match outcome {
            Ok(report) => report,
            Err(e) => {
                self.after_failure(&directory, &plan).await;
                record_failure(&directory, plan.id, &e).await;
                tracing::warn!(tenant = %slug, error = %e, "tenant move failed");
                return Err(e);
            }
        };
        report.took_ms = started.elapsed().as_millis() as u64;
        directory
            .execute(
                "UPDATE platform.tenant_moves SET state = 'done', finished_at = now(), rows_copied = $2, paused_ms = $3, \
                 export_path = $4 WHERE id = $1",
                &[&plan.id, &(report.rows_copied as i64), &(report.paused_ms as i64), &report.export_path],
            )
            .await?;
        tracing::info!(tenant = %slug, to = %plan.to, paused_ms = report.paused_ms, took_ms = report.took_ms, "tenant moved");
        Ok(report)
    }

    /// Finish or undo a move of `slug` that stopped half-way, without
    /// starting another (`tessera tenant move <slug> --abort`).
    pub async fn settle_move(&self, slug: &str) -> Result<Option<bool>, ProvisioningError> {
        let directory = connect(&self.database_url).await?;
        let tenant = self.get(slug).await?;
        self.lock_moves(&directory, &tenant).await?;
        self.settle_interrupted(&directory, tenant.id).await
    }

    /// One mover per tenant: a session lock on the directory, released
    /// when the mover's connection ends, however it ends.
    async fn lock_moves(&self, directory: &Client, tenant: &Tenant) -> Result<(), ProvisioningError> {
        let key = format!("tessera:move:{}", tenant.id);
        let locked: bool = directory.query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key]).await?.get(0);
        if !locked {
            return Err(ProvisioningError::MoveInProgress(tenant.slug.to_string()));
        }
        Ok(())
    }

    async fn run_move(&self, plan: &Move, progress: &(impl Fn(MovePhase) + Send + Sync)) -> Result<MoveReport, ProvisioningError> {
        let mut report = MoveReport {
            id: plan.id,
            slug: plan.tenant.slug.to_string(),
            from: plan.from.clone(),
            to: plan.to.clone(),
            rows_copied: 0,
            catch_up_rounds: 0,
            paused_ms: 0,
            took_ms: 0,
            export_path: None,
        };
        if plan.same_database() {
            let paused = pause(plan).await?;
            progress(MovePhase::Paused);
            wait_for_handover(plan, paused).await?;
            relabel(plan).await?;
            report.paused_ms = paused.elapsed().as_millis() as u64;
            progress(MovePhase::Switched { paused_ms: report.paused_ms });
            return Ok(report);
        }
        let mut source = connect(plan.source_url()).await?;
        let mut target = connect(plan.target_url()).await?;
        let tables = tables(&source, plan.schema()).await?;
        capture(&mut source, plan, &tables).await?;
        let foreign_keys = self.prepare_target(&mut source, &mut target, plan, &tables, &mut report).await?;
        progress(MovePhase::Copied { rows: report.rows_copied });
        loop {
            report.catch_up_rounds += 1;
            let tx = source.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().await?;
            let changes = catch_up(&tx, &mut target, plan, &tables, None).await?;
            tx.commit().await?;
            progress(MovePhase::CaughtUp { round: report.catch_up_rounds, changes });
            if changes < QUIET || report.catch_up_rounds >= MAX_ROUNDS {
                break;
            }
        }
        let paused = pause(plan).await?;
        progress(MovePhase::Paused);
        wait_for_handover(plan, paused).await?;
        switch(&mut source, &mut target, plan, &tables, &foreign_keys).await?;
        publish(plan).await?;
        let published = Instant::now();
        report.paused_ms = paused.elapsed().as_millis() as u64;
        progress(MovePhase::Switched { paused_ms: report.paused_ms });
        let path = self.retire(plan, published).await?;
        progress(MovePhase::Exported { path: path.clone() });
        report.export_path = Some(path);
        Ok(report)
    }

    /// The target's schema at the source's version, without its foreign
    /// keys (rows arrive in any order; they are added back, and checked, at
    /// the switch), filled from one snapshot of the source; and the
    /// tenant's platform rows, paused until the switch. One transaction:
    /// a move killed here leaves nothing in the target.
    async fn prepare_target(
        &self,
        source: &mut Client,
        target: &mut Client,
        plan: &Move,
        tables: &[Table],
        report: &mut MoveReport,
    ) -> Result<Vec<(String, String, String)>, ProvisioningError> {
        let schema = plan.schema();
        let version: i32 = source
            .query_one("SELECT schema_version FROM platform.tenants WHERE id = $1", &[&plan.tenant.id])
            .await?
            .get(0);
        let tx = target.transaction().await?;
        if plan.to_url.is_some() {
            tx.execute(
                &format!(
                    "INSERT INTO platform.tenants (id, slug, schema_name, name, status, schema_version, cluster_id, created_at, paused_until) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {PAUSED_FOR_GOOD})"
                ),
                &[
                    &plan.tenant.id,
                    &plan.tenant.slug.as_str(),
                    &schema.as_str(),
                    &plan.tenant.name,
                    &plan.tenant.status.as_str(),
                    &version,
                    &plan.to,
                    &plan.tenant.created_at,
                ],
            )
            .await?;
            copy_platform_rows(&self.database_url, &tx, plan.tenant.id).await?;
        }
        tx.batch_execute(&format!("CREATE SCHEMA {q}; SET LOCAL search_path TO {q}", q = schema.quoted())).await?;
        migrate::apply_in_transaction(&tx, version).await?;
        // From here on every name is written and shown qualified.
        tx.batch_execute("SET LOCAL search_path TO pg_catalog").await?;
        let foreign_keys: Vec<(String, String, String)> = tx
            .query(
                "SELECT c.conrelid::regclass::text, quote_ident(c.conname), pg_get_constraintdef(c.oid) FROM pg_constraint c \
                 JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1 AND c.contype = 'f'",
                &[&schema.as_str()],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        for (table, name, _) in &foreign_keys {
            tx.batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}")).await?;
        }
        for table in tables {
            tx.batch_execute(&format!("TRUNCATE {}", table.qualified(schema))).await?;
        }
        let snapshot = source.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
        for table in tables {
            let query = format!("SELECT {} FROM {}", table.column_list(), table.qualified(schema));
            let into = format!("{} ({})", table.qualified(schema), table.column_list());
            report.rows_copied += pipe(&snapshot, &query, &tx, &into).await?;
        }
        snapshot.commit().await?;
        tx.commit().await?;
        Ok(foreign_keys)
    }

    /// After a failure: undo the move unless its switch committed, in
    /// which case finish it. A database that does not answer leaves it to
    /// the next run, which decides the same way.
    async fn after_failure(&self, directory: &Client, plan: &Move) {
        let outcome = match switched(plan).await {
            Ok(true) => self.finish(directory, plan).await.map(|_| ()),
            Ok(false) => undo(plan).await,
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            tracing::warn!(tenant = %plan.tenant.slug, error = %e, "an interrupted move is settled at the next `tessera tenant move`");
        }
    }

    /// The switch committed: route to the target and retire the source.
    async fn finish(&self, directory: &Client, plan: &Move) -> Result<Option<String>, ProvisioningError> {
        publish(plan).await?;
        let published = Instant::now();
        let path = if plan.same_database() { None } else { Some(self.retire(plan, published).await?) };
        directory
            .execute(
                "UPDATE platform.tenant_moves SET state = 'done', finished_at = now(), export_path = $2 WHERE id = $1",
                &[&plan.id, &path],
            )
            .await?;
        Ok(path)
    }

    /// A move of `tenant` left unfinished by a mover that stopped: finished
    /// (`Some(true)`) if its switch committed, else undone (`Some(false)`).
    async fn settle_interrupted(&self, directory: &Client, tenant: Uuid) -> Result<Option<bool>, ProvisioningError> {
        let row = directory
            .query_opt(
                "SELECT m.id, m.from_cluster, m.to_cluster, m.retired_schema, f.database_url, t.database_url \
                 FROM platform.tenant_moves m JOIN platform.clusters f ON f.id = m.from_cluster \
                 JOIN platform.clusters t ON t.id = m.to_cluster \
                 WHERE m.tenant_id = $1 AND m.state IN ('copying', 'switching') ORDER BY m.started_at DESC LIMIT 1",
                &[&tenant],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let stored = directory
            .query_one(&format!("SELECT {} FROM platform.tenants WHERE id = $1", crate::tenancy::TENANT_COLUMNS), &[&tenant])
            .await?;
        let tenant = Tenant::from_row(&stored).ok_or_else(|| ProvisioningError::Invalid("stored tenant is invalid".into()))?;
        let plan = Move {
            id: row.get(0),
            from: row.get(1),
            to: row.get(2),
            retired: row.get(3),
            from_url: row.get(4),
            to_url: row.get(5),
            directory_url: self.database_url.clone(),
            max_pause: Duration::ZERO,
            tenant,
        };
        let finished = switched(&plan).await?;
        if finished {
            self.finish(directory, &plan).await?;
        } else {
            undo(&plan).await?;
            let interrupted = ProvisioningError::Invalid("the mover stopped before the switch; undone".into());
            record_failure(directory, plan.id, &interrupted).await;
        }
        tracing::info!(tenant = %plan.tenant.slug, finished, "interrupted tenant move settled");
        Ok(Some(finished))
    }

    /// Export the source's retired schema, then drop it and, once load
    /// balancers have heard of the switch (`SOURCE_GRACE` after
    /// `published`), the tenant's rows there. The path of the export.
    async fn retire(&self, plan: &Move, published: Instant) -> Result<String, ProvisioningError> {
        let source = connect(plan.source_url()).await?;
        let exists: bool = source
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[&plan.retired])
            .await?
            .get(0);
        let label = format!("{}-{}-moved-to-{}", plan.tenant.slug, plan.tenant.id, plan.to);
        let path = if exists { self.export_schema(&plan.retired, &label, plan.source_url()).await?.display().to_string() } else { String::new() };
        source.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(&plan.retired))).await?;
        if plan.from_url.is_some() {
            tokio::time::sleep(SOURCE_GRACE.saturating_sub(published.elapsed())).await;
            source.execute("DELETE FROM platform.tenants WHERE id = $1", &[&plan.tenant.id]).await?;
            source.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &plan.tenant.slug.as_str()]).await?;
        }
        Ok(path)
    }
}

async fn record_failure(directory: &Client, id: Uuid, error: &ProvisioningError) {
    let recorded = directory
        .execute(
            "UPDATE platform.tenant_moves SET state = 'failed', finished_at = now(), error = $2 WHERE id = $1 AND state <> 'done'",
            &[&id, &error.to_string()],
        )
        .await;
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "cannot record the move's failure");
    }
}

/// The tenant's limits and egress rules, from the directory (which always
/// holds them) to the target's platform schema.
async fn copy_platform_rows(directory_url: &str, target: &Transaction<'_>, tenant: Uuid) -> Result<(), ProvisioningError> {
    let directory = connect(directory_url).await?;
    if let Some(row) = directory.query_opt("SELECT overrides FROM platform.tenant_limits WHERE tenant_id = $1", &[&tenant]).await? {
        let overrides: serde_json::Value = row.get(0);
        target.execute("INSERT INTO platform.tenant_limits (tenant_id, overrides) VALUES ($1, $2)", &[&tenant, &overrides]).await?;
    }
    for row in directory.query("SELECT action, rule FROM platform.tenant_egress_rules WHERE tenant_id = $1", &[&tenant]).await? {
        let (action, rule): (String, String) = (row.get(0), row.get(1));
        target
            .execute("INSERT INTO platform.tenant_egress_rules (tenant_id, action, rule) VALUES ($1, $2, $3)", &[&tenant, &action, &rule])
            .await?;
    }
    Ok(())
}

/// Record the keys every write to the tenant's tables touches, from now
/// until the switch. Creating a trigger waits for the writes in flight on
/// its table, so every later write is recorded.
async fn capture(source: &mut Client, plan: &Move, tables: &[Table]) -> Result<(), ProvisioningError> {
    let schema = plan.schema();
    let tx = source.transaction().await?;
    tx.batch_execute(&format!(
        "CREATE TABLE {s}.{CHANGES} (seq bigserial PRIMARY KEY, tbl text NOT NULL, key jsonb NOT NULL)",
        s = schema.quoted()
    ))
    .await?;
    for table in tables {
        let function = format!("{}.{}", schema.quoted(), ident(&format!("tessera_move_{}", table.name)));
        let log = format!(
            "INSERT INTO {s}.{CHANGES} (tbl, key) SELECT {name}, jsonb_build_array({keys}) FROM",
            s = schema.quoted(),
            name = literal(&table.name),
            keys = table.key_list()
        );
        let on = table.qualified(schema);
        tx.batch_execute(&format!(
            "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN \
               IF TG_OP IN ('UPDATE', 'DELETE') THEN {log} old_rows; END IF; \
               IF TG_OP IN ('INSERT', 'UPDATE') THEN {log} new_rows; END IF; \
               RETURN NULL; END $f$; \
             CREATE TRIGGER tessera_move_insert AFTER INSERT ON {on} REFERENCING NEW TABLE AS new_rows \
               FOR EACH STATEMENT EXECUTE FUNCTION {function}(); \
             CREATE TRIGGER tessera_move_update AFTER UPDATE ON {on} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows \
               FOR EACH STATEMENT EXECUTE FUNCTION {function}(); \
             CREATE TRIGGER tessera_move_delete AFTER DELETE ON {on} REFERENCING OLD TABLE AS old_rows \
               FOR EACH STATEMENT EXECUTE FUNCTION {function}();"
        ))
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Drop the capture: its functions (with their triggers) and its log.
async fn drop_capture(client: &impl tokio_postgres::GenericClient, schema: &str) -> Result<(), ProvisioningError> {
    let functions: Vec<String> = client
        .query(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = $1 AND p.proname LIKE 'tessera\\_move\\_%'",
            &[&schema],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for function in functions {
        client.batch_execute(&format!("DROP FUNCTION IF EXISTS {}.{}() CASCADE", ident(schema), ident(&function))).await?;
    }
    client.batch_execute(&format!("DROP TABLE IF EXISTS {}.{CHANGES}", ident(schema))).await?;
    Ok(())
}

/// Apply the changes `source` sees (a repeatable-read snapshot, or the
/// switch's locked transaction) to the target in one transaction, then
/// forget them in `source` (committed by the caller, after the target:
/// a crash between the two only applies them twice). With `foreign_keys`,
/// the target's are added back (and checked) in the same transaction.
async fn catch_up(
    source: &Transaction<'_>,
    target: &mut Client,
    plan: &Move,
    tables: &[Table],
    foreign_keys: Option<&[(String, String, String)]>,
) -> Result<i64, ProvisioningError> {
    let schema = plan.schema();
    let counts: Vec<(String, i64)> = source
        .query(&format!("SELECT tbl, count(*) FROM {}.{CHANGES} GROUP BY tbl", schema.quoted()), &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let tx = target.transaction().await?;
    tx.batch_execute("CREATE TEMP TABLE tessera_move_keys (key jsonb) ON COMMIT DROP").await?;
    for table in tables.iter().filter(|t| counts.iter().any(|(name, _)| *name == t.name)) {
        let changed = format!("{}.{CHANGES} WHERE tbl = {}", schema.quoted(), literal(&table.name));
        pipe(source, &format!("SELECT key FROM {changed}"), &tx, "tessera_move_keys (key)").await?;
        tx.batch_execute(&format!(
            "DELETE FROM {t} WHERE ({k}) IN ({keys}); TRUNCATE tessera_move_keys",
            t = table.qualified(schema),
            k = table.key_list(),
            keys = table.keys_from("tessera_move_keys")
        ))
        .await?;
        let rows = format!(
            "SELECT {c} FROM {t} WHERE ({k}) IN ({keys})",
            c = table.column_list(),
            t = table.qualified(schema),
            k = table.key_list(),
            keys = table.keys_from(&changed)
        );
        pipe(source, &rows, &tx, &format!("{} ({})", table.qualified(schema), table.column_list())).await?;
    }
    if let Some(foreign_keys) = foreign_keys {
        for (table, name, definition) in foreign_keys {
            tx.batch_execute(&format!("ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")).await?;
        }
        // The new owner looks for unfinished work at once.
        tx.execute("INSERT INTO platform.tenant_work (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", &[&plan.tenant.id]).await?;
    }
    tx.commit().await?;
    source.batch_execute(&format!("DELETE FROM {}.{CHANGES}", schema.quoted())).await?;
    Ok(counts.iter().map(|(_, n)| n).sum())
}

/// Pause the tenant's writes where it runs now, until `max_pause` from
/// now at most. Returns when the pause began.
async fn pause(plan: &Move) -> Result<Instant, ProvisioningError> {
    let source = connect(plan.source_url()).await?;
    let began = Instant::now();
    let secs = plan.max_pause.as_secs_f64();
    source
        .execute(
            "UPDATE platform.tenants SET paused_until = now() + make_interval(secs => $2) WHERE id = $1",
            &[&plan.tenant.id, &secs],
        )
        .await?;
    source.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &plan.tenant.slug.as_str()]).await?;
    Ok(began)
}

/// Wait until no node holds the tenant's lease: its owner saw the pause
/// and its running executions finished. Past `max_pause`, the move fails.
async fn wait_for_handover(plan: &Move, paused: Instant) -> Result<(), ProvisioningError> {
    let source = connect(plan.source_url()).await?;
    let sql = "SELECT EXISTS (SELECT 1 FROM platform.tenant_leases WHERE tenant_id = $1 \
               AND node_id IS NOT NULL AND expires_at > now())";
    // Leave time for the switch itself before the pause runs out.
    let deadline = paused + plan.max_pause.saturating_sub(Duration::from_millis(500));
    loop {
        let held: bool = source.query_one(sql, &[&plan.tenant.id]).await?.get(0);
        if !held {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ProvisioningError::MoveTimedOut { waited_ms: paused.elapsed().as_millis() as u64 });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Lock out the tenant's writers in `source`: the worker's (the lease's
/// write lock, then a new epoch that fences any write still to come) and
/// every other (its tables), and check the pause still holds.
async fn lock_out_writers(tx: &Transaction<'_>, plan: &Move, tables: &[String]) -> Result<(), ProvisioningError> {
    tx.batch_execute("SET LOCAL lock_timeout = '5s'").await?;
    // The worker takes the write lock before its tables: so do we.
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))", &[&plan.tenant.id]).await?;
    tx.execute(
        "UPDATE platform.tenant_leases SET node_id = NULL, expires_at = now(), epoch = epoch + 1 WHERE tenant_id = $1",
        &[&plan.tenant.id],
    )
    .await?;
    if !tables.is_empty() {
        tx.batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", tables.join(", "))).await?;
    }
    let paused: bool = tx
        .query_one("SELECT coalesce(paused_until > now(), false) FROM platform.tenants WHERE id = $1 FOR UPDATE", &[&plan.tenant.id])
        .await?
        .get(0);
    if !paused {
        return Err(ProvisioningError::MoveTimedOut { waited_ms: plan.max_pause.as_millis() as u64 });
    }
    Ok(())
}

/// The switch: the last changes reach the target, which gets its foreign
/// keys back; the source's schema is renamed away in the same transaction
/// that locked its writers out, and the tenant's rows there say it left.
/// The source's commit is the point of no return.
async fn switch(
    source: &mut Client,
    target: &mut Client,
    plan: &Move,
    tables: &[Table],
    foreign_keys: &[(String, String, String)],
) -> Result<(), ProvisioningError> {
    let schema = plan.schema();
    let mut locked: Vec<String> = tables.iter().map(|t| t.qualified(schema)).collect();
    locked.push(format!("{}.{CHANGES}", schema.quoted()));
    let tx = source.transaction().await?;
    lock_out_writers(&tx, plan, &locked).await?;
    catch_up(&tx, target, plan, tables, Some(foreign_keys)).await?;
    drop_capture(&tx, schema.as_str()).await?;
    tx.batch_execute(&format!("ALTER SCHEMA {} RENAME TO {}", schema.quoted(), ident(&plan.retired))).await?;
    tx.execute("DELETE FROM platform.tenant_work WHERE tenant_id = $1", &[&plan.tenant.id]).await?;
    if plan.from_url.is_some() {
        // The source cluster's own row: paused for good, until retired.
        tx.execute(&format!("UPDATE platform.tenants SET paused_until = {PAUSED_FOR_GOOD} WHERE id = $1"), &[&plan.tenant.id]).await?;
    } else {
        // The source is the directory: its row moves in this same commit.
        move_directory_row(&tx, plan).await?;
    }
    tx.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &plan.tenant.slug.as_str()]).await?;
    tx.commit().await?;
    Ok(())
}

/// The directory places the tenant on the target (served at once when the
/// target's schemas are the directory's), and the move is past its point
/// of no return.
async fn move_directory_row(tx: &impl tokio_postgres::GenericClient, plan: &Move) -> Result<(), ProvisioningError> {
    tx.execute("UPDATE platform.tenants SET cluster_id = $2, paused_until = NULL WHERE id = $1", &[&plan.tenant.id, &plan.to])
        .await?;
    tx.execute("UPDATE platform.tenant_moves SET state = 'switching' WHERE id = $1", &[&plan.id]).await?;
    if plan.to_url.is_none() {
        tx.execute("INSERT INTO platform.tenant_work (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", &[&plan.tenant.id]).await?;
    }
    tx.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &plan.tenant.slug.as_str()]).await?;
    Ok(())
}

/// After the switch: the directory routes to the target, and the target's
/// nodes serve the tenant. Each step may run again (a resumed move).
async fn publish(plan: &Move) -> Result<(), ProvisioningError> {
    if plan.from_url.is_some() {
        let mut directory = connect(&plan.directory_url).await?;
        let tx = directory.transaction().await?;
        move_directory_row(&tx, plan).await?;
        tx.commit().await?;
    }
    if plan.to_url.is_some() {
        let target = connect(plan.target_url()).await?;
        target.execute("UPDATE platform.tenants SET paused_until = NULL WHERE id = $1", &[&plan.tenant.id]).await?;
        target.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &plan.tenant.slug.as_str()]).await?;
    }
    Ok(())
}

/// Whether the move's switch committed: the source schema was renamed.
async fn switched(plan: &Move) -> Result<bool, ProvisioningError> {
    let source = connect(plan.source_url()).await?;
    if plan.same_database() {
        let placed: Option<String> =
            source.query_opt("SELECT cluster_id FROM platform.tenants WHERE id = $1", &[&plan.tenant.id]).await?.map(|r| r.get(0));
        return Ok(placed.as_deref() == Some(plan.to.as_str()));
    }
    let renamed = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AND NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $2)";
    Ok(source.query_one(renamed, &[&plan.retired, &plan.schema().as_str()]).await?.get(0))
}

/// Before the switch: the source is whole; drop what the target got, the
/// capture, and the pause.
async fn undo(plan: &Move) -> Result<(), ProvisioningError> {
    let source = connect(plan.source_url()).await?;
    if !plan.same_database() {
        let target = connect(plan.target_url()).await?;
        target.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", plan.schema().quoted())).await?;
        if plan.to_url.is_some() {
            target.execute("DELETE FROM platform.tenants WHERE id = $1", &[&plan.tenant.id]).await?;
        }
        drop_capture(&source, plan.schema().as_str()).await?;
    }
    source.execute("UPDATE platform.tenants SET paused_until = NULL WHERE id = $1", &[&plan.tenant.id]).await?;
    source.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &plan.tenant.slug.as_str()]).await?;
    Ok(())
}

/// Both clusters keep their schemas in one database: the switch is the
/// tenant's row changing cluster, once its writers are locked out.
async fn relabel(plan: &Move) -> Result<(), ProvisioningError> {
    let mut source = connect(plan.source_url()).await?;
    let tx = source.transaction().await?;
    lock_out_writers(&tx, plan, &[]).await?;
    tx.execute("UPDATE platform.tenants SET cluster_id = $2, paused_until = NULL WHERE id = $1", &[&plan.tenant.id, &plan.to])
        .await?;
    tx.execute("INSERT INTO platform.tenant_work (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", &[&plan.tenant.id]).await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&TENANT_CHANGES_CHANNEL, &plan.tenant.slug.as_str()]).await?;
    if plan.from_url.is_none() {
        tx.execute("UPDATE platform.tenant_moves SET state = 'switching' WHERE id = $1", &[&plan.id]).await?;
    }
    tx.commit().await?;
    if plan.from_url.is_some() {
        let mut directory = connect(&plan.directory_url).await?;
        let tx = directory.transaction().await?;
        move_directory_row(&tx, plan).await?;
        tx.commit().await?;
    }
    Ok(())
}
