//! What the operator commands print (`migrate`, `status`, `node`, `secrets`,
//! `platform`, `tenant`, `dev`): their messages, and the tables of
//! tenants, limits, egress rules and the cluster. `--json` prints the
//! library's values themselves instead (`Terminal::json`).

use std::time::Duration;

use tessera_server::{
    cluster::status::ClusterStatus,
    dev::{DevEvent, DEMO_OWNER, DEMO_TENANT, DEMO_USER},
    egress::{Action, TenantEgress},
    limits::LimitsView,
    provisioning::{
        clusters::{Cluster, ClusterDetail},
        domains::TenantDomain,
        migrate::{MigrateProgress, MigrateReport},
        moves::{MovePhase, MoveReport},
        CreatedTenant,
    },
    tenancy::{Tenant, TenantStatus},
};
use uuid::Uuid;

use super::{Render, Stream};

/// One result (or problem, or progress line) of an operator command.
#[derive(Debug)]
pub enum Output {
    /// What `platform verify-audit` found.
    AuditVerified(serde_json::Value),
    PlatformMigrated { applied: usize },
    TenantsMigrating(MigrateProgress),
    TenantMigrationFailed { schema: String, error: String },
    TenantsMigrated { report: MigrateReport, took: Duration },
    Cluster(ClusterStatus),
    NodeDraining(Uuid),
    NodeDrained(Uuid),
    ClusterCreated(Cluster),
    Clusters(Vec<Cluster>),
    ClusterDetail(ClusterDetail),
    ClusterState(Cluster),
    Resealed { tenant: String, connections: usize },
    AllResealed { connections: usize, tenants: usize, key: String },
    OwnerCreated { email: String, generated_password: Option<String> },
    TenantCreated { created: CreatedTenant, took: Duration },
    Tenants(Vec<Tenant>),
    TenantStatusSet { slug: String, status: TenantStatus },
    TenantDeleted { slug: String, export_path: String },
    Domain(TenantDomain),
    Domains(Vec<TenantDomain>),
    DomainRemoved { slug: String, domain: String },
    MovePhase(MovePhase),
    TenantMoved(MoveReport),
    MoveSettled { slug: String, finished: Option<bool> },
    Limits(LimitsView),
    Egress(TenantEgress),
    EgressChanged { slug: String, action: Action, rules: Vec<String>, removed: bool },
    Dev(DevEvent),
}

impl Render for Output {
    fn text(&self) -> String {
        match self {
            Output::PlatformMigrated { applied } => format!("platform schema: {applied} migration(s) applied"),
            Output::TenantsMigrating(p) => format!("tenant schemas: {}/{} migrated, {} failed ", p.done - p.failed, p.total, p.failed),
            Output::TenantMigrationFailed { schema, error } => format!("failed: {schema}: {error}"),
            Output::TenantsMigrated { report, took } => format!(
                "tenant schemas: {} migrated, {} failed, {} behind before the run; {:.2}s",
                report.migrated,
                report.failures.len(),
                report.total,
                took.as_secs_f64()
            ),
            Output::Cluster(status) => cluster(status),
            Output::NodeDraining(id) => format!("node {id} is draining"),
            Output::NodeDrained(id) => format!("node {id} holds no tenant"),
            Output::ClusterCreated(c) => format!("cluster {} created ({}, database {})", c.id, c.kind, c.database),
            Output::Clusters(clusters) => cluster_table(clusters),
            Output::ClusterDetail(detail) => cluster_detail(detail),
            Output::ClusterState(c) if c.state == "draining" => format!("cluster {} is draining: it takes no new tenant", c.id),
            Output::ClusterState(c) => format!("cluster {} is active", c.id),
            Output::AuditVerified(answer) => super::client::audit_verified(answer),
            Output::Resealed { tenant, connections } => format!("{tenant}: {connections} connection(s) re-sealed"),
            Output::AllResealed { connections, tenants, key } => format!("{connections} connection(s) in {tenants} tenant(s) now sealed with key {key}"),
            Output::OwnerCreated { email, generated_password } => {
                let created = format!("platform owner {email} created");
                match generated_password {
                    Some(password) => format!("{created}\npassword: {password}"),
                    None => created,
                }
            }
            Output::TenantCreated { created, took } => tenant_created(created, *took),
            Output::Tenants(tenants) => tenant_table(tenants),
            Output::TenantStatusSet { slug, status } => {
                let done = if *status == TenantStatus::Suspended { "suspended" } else { "resumed" };
                format!("tenant {slug} {done}")
            }
            Output::TenantDeleted { slug, export_path } => format!("tenant {slug} deleted; export: {export_path}"),
            Output::Domain(d) => domain_line(d),
            Output::Domains(list) if list.is_empty() => "no custom domains".into(),
            Output::Domains(list) => list.iter().map(domain_line).collect::<Vec<_>>().join("\n"),
            Output::DomainRemoved { slug, domain } => format!("{domain} no longer routes to tenant {slug}"),
            Output::MovePhase(phase) => match phase {
                MovePhase::Recovered { finished: true } => "an earlier move of this tenant had passed its switch: finished it".into(),
                MovePhase::Recovered { finished: false } => "an earlier move of this tenant stopped before its switch: undone".into(),
                MovePhase::Copied { rows } => format!("copied {rows} rows"),
                MovePhase::CaughtUp { round, changes } => format!("catch-up round {round}: {changes} changed rows"),
                MovePhase::Paused => "writes paused; waiting for running executions to finish".into(),
                MovePhase::Switched { paused_ms } => format!("switched; writes were paused {paused_ms} ms"),
                MovePhase::Exported { path } => format!("source schema exported to {path} and dropped"),
            },
            Output::TenantMoved(r) => format!(
                "tenant {} moved from {} to {}: {} rows, {} catch-up round(s), paused {} ms, {:.2}s in all",
                r.slug,
                r.from,
                r.to,
                r.rows_copied,
                r.catch_up_rounds,
                r.paused_ms,
                r.took_ms as f64 / 1000.0
            ),
            Output::MoveSettled { slug, finished: None } => format!("tenant {slug} has no unfinished move"),
            Output::MoveSettled { slug, finished: Some(true) } => format!("tenant {slug}: the unfinished move was past its switch and is now finished"),
            Output::MoveSettled { slug, finished: Some(false) } => format!("tenant {slug}: the unfinished move was undone; it stays where it was"),
            Output::Limits(view) => limits(view),
            Output::Egress(shown) => egress(shown),
            Output::EgressChanged { slug, action, rules, removed } => {
                let done = if *removed { "removed from" } else { "added to" };
                format!("{} {} rule(s) {done} tenant {slug}: {}", rules.len(), action.as_str(), rules.join(", "))
            }
            Output::Dev(event) => dev(event),
        }
    }

    fn stream(&self) -> Stream {
        match self {
            Output::TenantsMigrating(_) => Stream::Progress,
            Output::TenantMigrationFailed { .. } | Output::Dev(DevEvent::PostgresNotStopped(_)) => Stream::Problem,
            _ => Stream::Result,
        }
    }
}

fn cluster(status: &ClusterStatus) -> String {
    let mut lines = vec![format!("cluster {}", status.cluster)];
    lines.push(format!("{:<38} {:<22} {:<9} {:<6} {:>7} {:>6}  HEARTBEAT", "NODE", "ADDRESS", "STATE", "ALIVE", "TENANTS", "QUEUE"));
    for n in &status.nodes {
        let alive = if n.alive { "yes" } else { "no" };
        let queue = n.queue_depth.map_or_else(|| "-".to_string(), |d| d.to_string());
        lines.push(format!("{:<38} {:<22} {:<9} {:<6} {:>7} {:>6}  {}", n.id, n.address, n.state, alive, n.tenants, queue, n.heartbeat_at.to_rfc3339()));
    }
    let unowned: Vec<&str> = status.leases.iter().filter(|l| l.node.is_none()).map(|l| l.tenant.as_str()).collect();
    let named = if unowned.is_empty() { String::new() } else { format!(": {}", unowned.join(", ")) };
    lines.push(format!("{} tenant lease(s), {} without a live owner{named}", status.leases.len(), unowned.len()));
    lines.join("\n")
}

fn cluster_table(clusters: &[Cluster]) -> String {
    let header = format!("{:<24} {:<10} {:<16} {:<9} {:>7}  DATABASE", "CLUSTER", "KIND", "PARTNER", "STATE", "TENANTS");
    let rows = clusters.iter().map(|c| {
        let partner = c.partner.as_deref().unwrap_or("-");
        format!("{:<24} {:<10} {:<16} {:<9} {:>7}  {}", c.id, c.kind, partner, c.state, c.tenants, c.database)
    });
    std::iter::once(header).chain(rows).collect::<Vec<_>>().join("\n")
}

fn cluster_detail(detail: &ClusterDetail) -> String {
    let c = &detail.cluster;
    let mut lines = vec![
        format!("cluster {} ({}), {}", c.id, c.name, c.state),
        format!("kind {}{}", c.kind, c.partner.as_deref().map(|p| format!(", partner {p}")).unwrap_or_default()),
        format!("database {}; broker {}", c.database, if c.broker { "yes" } else { "none" }),
        format!("{} tenant(s)", c.tenants),
        format!("{:<38} {:<22} {:<9} {:<6} {:>6}  HEARTBEAT", "NODE", "ADDRESS", "STATE", "ALIVE", "LEASES"),
    ];
    for n in &detail.nodes {
        let alive = if n.live { "yes" } else { "no" };
        lines.push(format!("{:<38} {:<22} {:<9} {:<6} {:>6}  {}", n.id, n.address, n.state, alive, n.leases, n.heartbeat_at.to_rfc3339()));
    }
    lines.join("\n")
}

fn tenant_created(created: &CreatedTenant, took: Duration) -> String {
    let tenant = &created.tenant;
    let mut lines = vec![
        format!(
            "tenant {} created on cluster {} (schema {}, version {}) in {} ms",
            tenant.slug,
            tenant.cluster,
            tenant.schema,
            tenant.schema_version,
            took.as_millis()
        ),
        format!("owner: {}", created.owner_email),
    ];
    if let Some(password) = &created.initial_password {
        lines.push(format!("password: {password}"));
    }
    lines.join("\n")
}

fn tenant_table(tenants: &[Tenant]) -> String {
    let header = format!("{:<40} {:<10} {:<20} {:>7}  NAME", "SLUG", "STATUS", "CLUSTER", "SCHEMA");
    let rows = tenants
        .iter()
        .map(|t| format!("{:<40} {:<10} {:<20} {:>7}  {}", t.slug, t.status.as_str(), t.cluster, t.schema_version, t.name));
    std::iter::once(header).chain(rows).collect::<Vec<_>>().join("\n")
}

/// Every limit with its value and default; `*` marks the tenant's own.
fn limits(view: &LimitsView) -> String {
    let header = format!("{:<24} {:>14}  DEFAULT", "LIMIT", "VALUE");
    let rows = tessera_runtime::limits::LIMIT_NAMES.iter().map(|name| {
        let (value, default) = (view.limits.get(name).unwrap_or_default(), view.defaults.get(name).unwrap_or_default());
        let mark = if view.overridden.contains(name) { "*" } else { " " };
        format!("{name:<24} {value:>13}{mark}  {default}")
    });
    std::iter::once(header).chain(rows).collect::<Vec<_>>().join("\n")
}

/// The platform policy, then the tenant's own rules.
fn egress(shown: &TenantEgress) -> String {
    let p = &shown.platform;
    let mode = serde_json::to_value(p.mode).ok();
    let mode = mode.as_ref().and_then(|m| m.as_str()).unwrap_or("?");
    let mut lines = vec![format!("platform: mode {mode}, loopback {}, private {}", allowed(p.allow_loopback), allowed(p.allow_private))];
    lines.extend(p.allow.iter().map(|r| format!("platform allow {r}")));
    lines.extend(p.deny.iter().map(|r| format!("platform deny  {r}")));
    lines.extend(shown.allow.iter().map(|r| format!("allow {r}")));
    lines.extend(shown.deny.iter().map(|r| format!("deny  {r}")));
    lines.join("\n")
}

fn allowed(yes: bool) -> &'static str {
    if yes { "allowed" } else { "denied" }
}

fn dev(event: &DevEvent) -> String {
    match event {
        DevEvent::StartingPostgres { data_dir, port } => format!("starting a private PostgreSQL in {} (port {port})", data_dir.display()),
        DevEvent::BuildingLoadBalancer => "building the load balancer (tessera-lb)".to_string(),
        DevEvent::NoLoadBalancer => "no tessera-lb binary next to this one: the node serves alone".to_string(),
        DevEvent::Ready { base_domain: base, host, port, node, load_balancer, metrics } => format!(
            "\nTessera is running{}.\n\
             \n  Tenant panel     http://{DEMO_TENANT}.{base}:{port}/   ({} / {})\
             \n  Platform console http://{base}:{port}/   ({} / {})\
             \n  Tenant API       http://{DEMO_TENANT}.{base}:{port}/api\
             \n  Platform API     http://{base}:{port}/api/platform\
             \n  Node health      http://{node}/readyz{}\
             \n\nTry:\n  curl -s http://{DEMO_TENANT}.{base}:{port}/api/auth/login -H 'content-type: application/json' \\\n    -d '{{\"email\":\"{}\",\"password\":\"{}\"}}'\n\nPress Ctrl-C to stop.\n",
            if *load_balancer { format!(" (load balancer on {host}:{port}, node on {node})") } else { String::new() },
            DEMO_USER.0, DEMO_USER.1, DEMO_OWNER.0, DEMO_OWNER.1,
            metrics.map(|m| format!("\n  Node metrics     http://{m}/metrics")).unwrap_or_default(),
            DEMO_USER.0, DEMO_USER.1
        ),
        DevEvent::PostgresNotStopped(e) => format!("could not stop the private PostgreSQL: {e}"),
    }
}

fn domain_line(d: &TenantDomain) -> String {
    if d.verified {
        return format!("{}: verified, routes to the tenant", d.domain);
    }
    let c = &d.verification;
    format!("{}: not verified yet; publish {} {} \"{}\", then run `tessera tenant domain verify`", d.domain, c.name, c.record_type, c.value)
}
