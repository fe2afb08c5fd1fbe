//! The operator commands: running a node (`serve`) or the local platform
//! (`dev`), and administering the platform's database (`migrate`,
//! `platform`, `tenant`, `status`, `node`, `secrets`). They parse, call the
//! server library, which does the work, and hand what it answers to the
//! renderer (`render::operator`).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use deadpool_postgres::Pool;
use serde_json::json;
use tessera_server::{
    audit::{Actor, Change, Scope, Trail},
    auth::Passwords,
    cluster,
    config::{Config, DatabaseConfig},
    database::build_pool,
    egress::{self, Action},
    limits::LimitBook,
    provisioning::{
        clusters::{self, NewCluster},
        domains, migrate, NewTenant, Provisioner,
    },
    resources::connections,
    sealing::KeyRing,
    startup::Application,
    telemetry,
    tenancy::{Lanes, TenantDb, TenantDirectory, TenantStatus},
};

use crate::{
    args::{ClusterCommand, DomainCommand, EgressCommand, LimitsCommand, MigrateArgs, NodeCommand, OperatorCommand, PlatformCommand, SecretsCommand, TenantCommand},
    render::{operator::Output, Terminal},
};

pub async fn run(config: Config, command: OperatorCommand, out: Terminal) -> anyhow::Result<()> {
    let operator = match command {
        OperatorCommand::Serve => return serve(config).await,
        OperatorCommand::Dev => return tessera_server::dev::run(config, |event| out.show(&Output::Dev(event))).await,
        _ => Operator::connect(config).await?,
    };
    let change = audited(&command);
    let done = match command {
        OperatorCommand::Migrate(args) => operator.migrate(args, out).await,
        OperatorCommand::Platform(cmd) => operator.platform(cmd, out).await,
        OperatorCommand::Tenant(cmd) => operator.tenant(cmd, out).await,
        OperatorCommand::Status { json } => operator.status(json, out).await,
        OperatorCommand::Node(NodeCommand::Drain { id, wait }) => operator.drain(id, wait, out).await,
        OperatorCommand::Cluster(cmd) => operator.cluster(cmd, out).await,
        OperatorCommand::Secrets(SecretsCommand::Reseal) => operator.reseal(out).await,
        OperatorCommand::Serve | OperatorCommand::Dev => unreachable!("they returned above"),
    };
    if let (Ok(()), Some(change)) = (&done, change) {
        operator.record(change).await?;
    }
    done
}

/// What a command that changes the platform says in its audit trail
/// (never a password or a database address); None for one that only reads.
fn audited(command: &OperatorCommand) -> Option<Change> {
    let tenant = |action: &str, slug: &str, detail: serde_json::Value| Some(Change::new(format!("tenant.{action}"), "tenant", slug).with(detail));
    match command {
        OperatorCommand::Tenant(cmd) => match cmd {
            TenantCommand::Create { slug, owner_email, cluster, .. } => tenant("create", slug, json!({"owner_email": owner_email, "cluster": cluster})),
            TenantCommand::Suspend { slug } => tenant("suspend", slug, json!({})),
            TenantCommand::Resume { slug } => tenant("resume", slug, json!({})),
            TenantCommand::Delete { slug, .. } => tenant("delete", slug, json!({})),
            TenantCommand::Move { slug, to, abort } => tenant("move", slug, json!({"to": to, "abort": abort})),
            TenantCommand::Domain(DomainCommand::Add { slug, domain }) => Some(Change::new("domain.add", "domain", domain).with(json!({"tenant": slug}))),
            TenantCommand::Domain(DomainCommand::Verify { slug, domain }) => Some(Change::new("domain.verify", "domain", domain).with(json!({"tenant": slug}))),
            TenantCommand::Domain(DomainCommand::Remove { slug, domain }) => Some(Change::new("domain.remove", "domain", domain).with(json!({"tenant": slug}))),
            TenantCommand::Limits(LimitsCommand::Set { slug, limits }) => {
                tenant("limits", slug, json!({"changes": limits.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()}))
            }
            TenantCommand::Limits(LimitsCommand::Unset { slug, names }) => tenant("limits", slug, json!({"unset": names})),
            TenantCommand::Egress(EgressCommand::Allow(args)) => {
                tenant("egress", &args.slug, json!({"action": "allow", "rules": args.rules, "removed": args.remove}))
            }
            TenantCommand::Egress(EgressCommand::Deny(args)) => {
                tenant("egress", &args.slug, json!({"action": "deny", "rules": args.rules, "removed": args.remove}))
            }
            _ => None,
        },
        OperatorCommand::Cluster(ClusterCommand::Create { id, kind, partner, .. }) => {
            Some(Change::new("cluster.create", "cluster", id).with(json!({"kind": kind, "partner": partner})))
        }
        OperatorCommand::Cluster(ClusterCommand::Drain { id }) => Some(Change::new("cluster.drain", "cluster", id)),
        OperatorCommand::Cluster(ClusterCommand::Activate { id }) => Some(Change::new("cluster.activate", "cluster", id)),
        OperatorCommand::Node(NodeCommand::Drain { id, .. }) => Some(Change::new("node.drain", "node", id.to_string())),
        OperatorCommand::Platform(PlatformCommand::Init { email, .. }) => Some(Change::new("owner.create", "owner", email)),
        OperatorCommand::Secrets(SecretsCommand::Reseal) => Some(Change::new("secrets.reseal", "secrets", "connections")),
        _ => None,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(&config.log);
    let app = Application::build(config).await?;
    tracing::info!(port = app.port(), "serving");
    app.run_until_signalled().await?;
    telemetry::flush();
    Ok(())
}

/// What every command on the database works with: the configuration, and
/// one small pool on a database whose platform schema this run migrated
/// once, before anything else.
struct Operator {
    config: Config,
    database_url: String,
    pool: Pool,
    /// The platform migrations this run applied.
    applied: usize,
    trail: Trail,
}

impl Operator {
    async fn connect(config: Config) -> anyhow::Result<Self> {
        let url = config.require_database_url()?.to_string();
        let applied = migrate::migrate_platform(&url).await.context("migrating the platform schema")?;
        // A command makes a handful of queries, one after the other.
        let mut db = config.database.clone();
        db.pool_size = 2;
        let pool = build_pool(&db, &url)?;
        // Signed with the nodes' key when this configuration has it.
        let trail = match KeyRing::from_config(&config.secrets) {
            Ok(keys) => Trail::new(Arc::new(keys)),
            Err(_) => Trail::unsigned(),
        };
        Ok(Self { config, database_url: url, pool, applied, trail })
    }

    /// Record a change this command made in the platform's audit trail.
    async fn record(&self, change: Change) -> anyhow::Result<()> {
        self.trail.record_platform(&self.pool, &Actor::operator(), change).await.context("recording the change in the audit trail")
    }

    fn provisioner(&self) -> Provisioner {
        let directory = TenantDirectory::new(self.pool.clone(), self.config.cluster.id.clone());
        // One password hash at a time: a command creates one account.
        Provisioner::new(
            self.pool.clone(),
            Passwords::new(1),
            directory,
            self.config.provisioning.clone(),
            self.database_url.clone(),
            self.config.cluster.id.clone(),
        )
    }

    async fn migrate(&self, args: MigrateArgs, out: Terminal) -> anyhow::Result<()> {
        let started = Instant::now();
        out.show(&Output::PlatformMigrated { applied: self.applied });
        let parallelism = args.parallelism.unwrap_or(self.config.provisioning.migrate_parallelism).max(1);
        // Redraw the progress line every 5 %, and at the end.
        let last_percent = AtomicUsize::new(usize::MAX);
        let report = migrate::migrate_tenants(&self.database_url, parallelism, move |p| {
            let percent = p.done * 100 / p.total.max(1);
            if percent / 5 != last_percent.swap(percent, Ordering::Relaxed) / 5 || p.done == p.total {
                out.show(&Output::TenantsMigrating(p.clone()));
            }
        })
        .await?;
        for (schema, error) in &report.failures {
            out.show(&Output::TenantMigrationFailed { schema: schema.clone(), error: error.clone() });
        }
        let failed = report.failures.len();
        out.show(&Output::TenantsMigrated { report, took: started.elapsed() });
        anyhow::ensure!(failed == 0, "{failed} tenant schema(s) failed to migrate; run again after fixing");
        Ok(())
    }

    async fn status(&self, json: bool, out: Terminal) -> anyhow::Result<()> {
        let cluster = &self.config.cluster;
        let timeout = Duration::from_millis(cluster.node_timeout_ms);
        let mut status = cluster::status::read(&self.pool, &cluster.id, timeout).await?;
        if let Some(url) = cluster.amqp_url.as_deref() {
            let broker = cluster::mail::broker::Broker::new(url, &cluster.id, timeout)?;
            cluster::status::add_queue_depths(&mut status, &broker).await;
        }
        if json {
            return out.json(&status);
        }
        out.show(&Output::Cluster(status));
        Ok(())
    }

    async fn drain(&self, id: uuid::Uuid, wait: Option<u64>, out: Terminal) -> anyhow::Result<()> {
        cluster::mark_draining(&self.pool, id).await?;
        out.show(&Output::NodeDraining(id));
        let Some(limit) = wait else { return Ok(()) };
        let timeout = Duration::from_millis(self.config.cluster.node_timeout_ms);
        let until = Instant::now() + Duration::from_secs(limit);
        loop {
            let status = cluster::status::read(&self.pool, &self.config.cluster.id, timeout).await?;
            let held = status.nodes.iter().find(|n| n.id == id).map_or(0, |n| n.tenants);
            if held == 0 {
                out.show(&Output::NodeDrained(id));
                return Ok(());
            }
            if Instant::now() >= until {
                bail!("node {id} still holds {held} tenant(s) after {limit} s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn cluster(&self, cmd: ClusterCommand, out: Terminal) -> anyhow::Result<()> {
        let output = match cmd {
            ClusterCommand::Create { id, name, kind, partner, database_url, amqp_url } => {
                let new = NewCluster { id, name, kind: Some(kind), partner, database_url, amqp_url };
                Output::ClusterCreated(clusters::create(&self.pool, new).await?)
            }
            ClusterCommand::List { json: true } => return out.json(&clusters::list(&self.pool).await?),
            ClusterCommand::List { json: false } => Output::Clusters(clusters::list(&self.pool).await?),
            ClusterCommand::Show { id, json } => {
                let timeout = Duration::from_millis(self.config.cluster.node_timeout_ms);
                let detail = clusters::show(&self.pool, &id, timeout).await?;
                if json {
                    return out.json(&detail);
                }
                Output::ClusterDetail(detail)
            }
            ClusterCommand::Drain { id } => Output::ClusterState(clusters::set_state(&self.pool, &id, true).await?),
            ClusterCommand::Activate { id } => Output::ClusterState(clusters::set_state(&self.pool, &id, false).await?),
        };
        out.show(&output);
        Ok(())
    }

    async fn reseal(&self, out: Terminal) -> anyhow::Result<()> {
        let keys = KeyRing::from_config(&self.config.secrets)?;
        // One lane: the connections go one tenant after the other.
        let lanes = Lanes::build(&DatabaseConfig { pool_size: 1, ..self.config.database.clone() }, &self.database_url)?;
        let db = TenantDb::new(lanes);
        let (mut tenants, mut resealed) = (0, 0);
        for tenant in self.provisioner().list().await? {
            let count = connections::reseal_all(&db, &keys, &tenant)
                .await
                .with_context(|| format!("re-sealing the connections of tenant {}", tenant.slug))?;
            if count > 0 {
                out.show(&Output::Resealed { tenant: tenant.slug.to_string(), connections: count });
            }
            tenants += 1;
            resealed += count;
        }
        out.show(&Output::AllResealed { connections: resealed, tenants, key: keys.current_key_id().to_string() });
        Ok(())
    }

    async fn platform(&self, cmd: PlatformCommand, out: Terminal) -> anyhow::Result<()> {
        let (email, password) = match cmd {
            PlatformCommand::Init { email, password } => (email, password),
            PlatformCommand::VerifyAudit { tenant, json } => {
                return self.verify_audit(tenant, json, out).await;
            }
        };
        let generated = password.is_none();
        let password = password.unwrap_or_else(tessera_server::dev::random_password);
        self.provisioner().init_platform(&email, password.clone()).await?;
        out.show(&Output::OwnerCreated { email, generated_password: generated.then_some(password) });
        Ok(())
    }

    async fn verify_audit(&self, tenant: Option<String>, json: bool, out: Terminal) -> anyhow::Result<()> {
        let keys = KeyRing::from_config(&self.config.secrets).context("verifying needs the nodes' secrets.key")?;
        let trail = Trail::new(Arc::new(keys));
        let verification = match tenant {
            None => trail.verify(Scope::Platform(&self.pool)).await?,
            Some(slug) => {
                let tenant = self.provisioner().get(&slug).await?;
                let lanes = Lanes::build(&DatabaseConfig { pool_size: 1, ..self.config.database.clone() }, &self.database_url)?;
                trail.verify(Scope::Tenant(&TenantDb::new(lanes), &tenant)).await?
            }
        };
        let value = serde_json::to_value(&verification)?;
        if json {
            out.json(&value)?;
        } else {
            out.show(&Output::AuditVerified(value));
        }
        if !verification.ok {
            bail!("the audit trail's chain is broken");
        }
        Ok(())
    }

    async fn tenant(&self, cmd: TenantCommand, out: Terminal) -> anyhow::Result<()> {
        let provisioner = self.provisioner();
        let output = match cmd {
            TenantCommand::Create { slug, owner_email, owner_password, name, cluster, schema_version } => {
                let new = NewTenant { slug, name, owner_email, owner_password, cluster };
                let started = Instant::now();
                let created = match schema_version {
                    Some(v) => provisioner.create_tenant_at(new, v).await?,
                    None => provisioner.create_tenant(new).await?,
                };
                Output::TenantCreated { created, took: started.elapsed() }
            }
            TenantCommand::List { json: true } => return out.json(&provisioner.list().await?),
            TenantCommand::List { json: false } => Output::Tenants(provisioner.list().await?),
            TenantCommand::Suspend { slug } => set_status(&provisioner, slug, TenantStatus::Suspended).await?,
            TenantCommand::Resume { slug } => set_status(&provisioner, slug, TenantStatus::Active).await?,
            TenantCommand::Delete { slug, confirm } => {
                let deleted = provisioner.delete(&slug, &confirm, "cli").await?;
                Output::TenantDeleted { slug, export_path: deleted.export_path }
            }
            TenantCommand::Move { slug, to: Some(to), .. } => {
                let report = provisioner.move_tenant(&slug, &to, |phase| out.show(&Output::MovePhase(phase))).await?;
                Output::TenantMoved(report)
            }
            TenantCommand::Move { slug, to: None, .. } => Output::MoveSettled { finished: provisioner.settle_move(&slug).await?, slug },
            TenantCommand::Domain(cmd) => return self.domain(cmd, out).await,
            TenantCommand::Limits(cmd) => return self.limits(cmd, out).await,
            TenantCommand::Egress(cmd) => return self.egress(cmd, out).await,
        };
        out.show(&output);
        Ok(())
    }

    async fn domain(&self, cmd: DomainCommand, out: Terminal) -> anyhow::Result<()> {
        let (pool, base) = (&self.pool, &self.config.base_domain);
        let output = match cmd {
            DomainCommand::Add { slug, domain } => Output::Domain(domains::add(pool, base, &slug, &domain).await?),
            DomainCommand::Verify { slug, domain } => {
                Output::Domain(domains::verify(pool, &self.config.provisioning.dns_servers, &slug, &domain).await?)
            }
            DomainCommand::List { slug, json: true } => return out.json(&domains::list(pool, &slug).await?),
            DomainCommand::List { slug, json: false } => Output::Domains(domains::list(pool, &slug).await?),
            DomainCommand::Remove { slug, domain } => {
                domains::remove(pool, &slug, &domain).await?;
                Output::DomainRemoved { slug, domain }
            }
        };
        out.show(&output);
        Ok(())
    }

    async fn limits(&self, cmd: LimitsCommand, out: Terminal) -> anyhow::Result<()> {
        let book = LimitBook::new(self.pool.clone(), &self.config);
        let (view, json) = match cmd {
            LimitsCommand::Show { slug, json } => (book.show(&slug).await?, json),
            LimitsCommand::Set { slug, limits } => {
                let changes = limits.into_iter().map(|(name, value)| (name, serde_json::Value::from(value))).collect();
                (book.update(&slug, &changes).await?, false)
            }
            LimitsCommand::Unset { slug, names } => {
                let changes = names.into_iter().map(|name| (name, serde_json::Value::Null)).collect();
                (book.update(&slug, &changes).await?, false)
            }
        };
        if json {
            return out.json(&view);
        }
        out.show(&Output::Limits(view));
        Ok(())
    }

    async fn egress(&self, cmd: EgressCommand, out: Terminal) -> anyhow::Result<()> {
        let (action, args) = match cmd {
            EgressCommand::Allow(args) => (Action::Allow, args),
            EgressCommand::Deny(args) => (Action::Deny, args),
            EgressCommand::Show { slug, json } => {
                let shown = egress::show(&self.pool, &self.config, &slug).await?;
                if json {
                    return out.json(&shown);
                }
                out.show(&Output::Egress(shown));
                return Ok(());
            }
        };
        egress::change(&self.pool, &args.slug, action, &args.rules, args.remove).await?;
        out.show(&Output::EgressChanged { slug: args.slug, action, rules: args.rules, removed: args.remove });
        Ok(())
    }
}

async fn set_status(provisioner: &Provisioner, slug: String, status: TenantStatus) -> anyhow::Result<Output> {
    provisioner.set_status(&slug, status).await?;
    Ok(Output::TenantStatusSet { slug, status })
}
