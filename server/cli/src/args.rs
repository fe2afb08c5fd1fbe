//! The `tessera` command line as clap reads it: one binary for running a
//! node, the local demo, migrations and tenant administration (operator
//! commands, on the database: see `operator`), and for managing a tenant's
//! integrations through its API (client commands: `login`, `apply`, `get`,
//! `rollback`, `delete`, `run`, `logs`, `cancel`, `retry`: see `client`).

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tessera", version, about = "Tessera: a multi-tenant integration platform")]
pub struct Cli {
    /// Configuration file (TOML). TESSERA_* environment variables override it.
    #[arg(long, short = 'c', global = true, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Every command, the operator's first: one flat list in `--help`.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Operator(OperatorCommand),
    #[command(flatten)]
    Client(ClientCommand),
}

/// The commands that work on the platform's database and its nodes.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Run one server node: the REST API for every tenant of its database,
    /// and the workers of its active tenants. Needs TESSERA_DATABASE_URL and
    /// a token key (TESSERA_JWT_SECRET or TESSERA_JWT_KEY_FILE).
    Serve,
    /// Start the whole platform locally with a demo tenant. Without
    /// TESSERA_DATABASE_URL it runs a private PostgreSQL of its own (from the
    /// installed PostgreSQL binaries) under the user's data directory.
    Dev,
    /// Bring the platform schema and every tenant schema to the latest
    /// version. Safe to interrupt and re-run: it continues where it stopped.
    Migrate(MigrateArgs),
    /// Platform administration.
    #[command(subcommand)]
    Platform(PlatformCommand),
    /// Tenant administration (works directly on the database).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Show the cluster: its nodes with their health and tenants, and every
    /// tenant's lease (works directly on the database).
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Node administration (works directly on the database).
    #[command(subcommand)]
    Node(NodeCommand),
    /// The platform's clusters: create, list, show, drain (works directly on
    /// the directory database).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Connection secrets at rest (works directly on the database).
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

/// The commands that manage a tenant's integrations through its API.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Sign in to a tenant's API and keep the credential in a profile.
    Login(LoginArgs),
    /// Forget a profile and its credential.
    Logout(ProfileArgs),
    /// Create or update integrations and connections from definition files.
    Apply(ApplyArgs),
    /// Show integrations, connections or executions.
    Get(GetArgs),
    /// Make an older version of an integration current again (as a new version).
    Rollback(RollbackArgs),
    /// Delete an integration or a connection.
    Delete(DeleteArgs),
    /// Run an integration now; prints the execution id.
    Run(RunArgs),
    /// Show an execution's steps as they are checkpointed, and its final state.
    Logs(LogsArgs),
    /// Cancel a queued or running execution; prints its state after the cancel.
    Cancel(ExecutionArgs),
    /// Run a failed execution again from the step that failed.
    Retry(ExecutionArgs),
    /// The tenant's audit trail: who changed what, when and from where.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest records matching the filters.
    List(AuditListArgs),
    /// Every record matching the filters, oldest first, as JSON lines.
    Export(AuditFilterArgs),
    /// Check the trail's chain of HMACs; fails when a record was edited,
    /// inserted or removed.
    Verify {
        #[command(flatten)]
        target: ServerArgs,
    },
}

#[derive(Debug, Args)]
pub struct AuditListArgs {
    #[command(flatten)]
    pub filter: AuditFilterArgs,
    /// At most this many records (1 to 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct AuditFilterArgs {
    #[command(flatten)]
    pub target: ServerArgs,
    /// Only this actor's changes (an email, an API key's name, or an id).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action, e.g. integration.update.
    #[arg(long)]
    pub action: Option<String>,
    /// Only resources of this kind: integration, connection, user, api_key, variable, execution.
    #[arg(long)]
    pub resource_kind: Option<String>,
    /// Only the resource of this name.
    #[arg(long)]
    pub resource: Option<String>,
    /// From this time on (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
}

impl AuditFilterArgs {
    /// The filters as query pairs.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let given = [
            ("actor", &self.actor),
            ("action", &self.action),
            ("resource_kind", &self.resource_kind),
            ("resource", &self.resource),
            ("since", &self.since),
            ("until", &self.until),
        ];
        given.into_iter().filter_map(|(key, value)| value.clone().map(|v| (key, v))).collect()
    }
}

/// Which stored profile to use.
#[derive(Debug, Clone, Args)]
pub struct ProfileArgs {
    /// Profile name.
    #[arg(long, env = "TESSERA_PROFILE", default_value = crate::client::profile::DEFAULT_PROFILE)]
    pub profile: String,
    /// Profile file (default: <user config dir>/tessera/profiles.toml).
    #[arg(long, env = "TESSERA_PROFILE_FILE")]
    pub profile_file: Option<PathBuf>,
}

/// Where to send an API call: the profile, or these overrides (for CI).
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Tenant API URL, e.g. https://acme.example.com (overrides the profile's).
    #[arg(long, env = "TESSERA_SERVER")]
    pub server: Option<String>,
    /// Token or API key to send (overrides the profile's).
    #[arg(long, env = "TESSERA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// Tenant API URL, e.g. http://acme.localhost:8080.
    #[arg(long, env = "TESSERA_SERVER")]
    pub server: String,
    /// Sign in as this user (asks for the password when none is given).
    #[arg(long, required_unless_present = "api_key", conflicts_with = "api_key")]
    pub email: Option<String>,
    /// The user's password. Prefer TESSERA_PASSWORD or the prompt: a
    /// password on the command line is visible to other local users.
    #[arg(long, env = "TESSERA_PASSWORD", hide_env_values = true, requires = "email")]
    pub password: Option<String>,
    /// Store this API key (tsk_...) instead of signing in as a user.
    #[arg(long, env = "TESSERA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub target: ServerArgs,
    /// A definition file, a directory of them (*.yaml, *.yml, *.json), or -
    /// for stdin. Repeatable; applied in the order given, each file all or
    /// nothing.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

/// A kind of resource, singular or plural.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResourceKind {
    #[value(alias = "integrations")]
    Integration,
    #[value(alias = "connections")]
    Connection,
}

/// What `get` shows: a kind of resource, or executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GetKind {
    #[value(alias = "integrations")]
    Integration,
    #[value(alias = "connections")]
    Connection,
    #[value(alias = "executions")]
    Execution,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub target: ServerArgs,
    /// integrations, connections or executions.
    pub kind: GetKind,
    /// One resource (or execution id); all of them when omitted.
    pub name: Option<String>,
    /// List an integration's versions.
    #[arg(long, requires = "name")]
    pub versions: bool,
    /// Executions: only those of this integration.
    #[arg(long)]
    pub integration: Option<String>,
    /// Executions: only those in this state (queued, running, succeeded, failed, cancelled).
    #[arg(long)]
    pub state: Option<String>,
    /// Executions: at most this many, newest first (1-100).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: ServerArgs,
    /// The integration.
    pub name: String,
    /// The version whose definition becomes current again.
    #[arg(long)]
    pub to_version: i32,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub target: ServerArgs,
    /// integration or connection.
    pub kind: ResourceKind,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: ServerArgs,
    /// The integration.
    pub name: String,
    /// The trigger payload, as JSON.
    #[arg(short = 'd', long, conflicts_with = "file")]
    pub data: Option<String>,
    /// A file holding the JSON payload, or - for stdin.
    #[arg(short = 'f', long)]
    pub file: Option<PathBuf>,
    /// Wait for the end; print the final state and the output (or error)
    /// as JSON, and exit 1 unless it succeeded.
    #[arg(long)]
    pub wait: bool,
    /// The longest --wait waits (e.g. 90s, 5m).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub target: ServerArgs,
    /// The execution.
    #[arg(required_unless_present = "integration", conflicts_with = "integration")]
    pub id: Option<String>,
    /// Follow this integration's newest execution instead.
    #[arg(long)]
    pub integration: Option<String>,
    /// Keep printing steps until the execution is finished.
    #[arg(long)]
    pub follow: bool,
    /// The longest --follow follows (e.g. 90s, 5m).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// One execution to act on.
#[derive(Debug, Args)]
pub struct ExecutionArgs {
    #[command(flatten)]
    pub target: ServerArgs,
    /// The execution's id.
    pub id: String,
}

/// `300`, `300s`, `5m`, `1h` or `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 90s or 5m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "h" => Ok(Duration::from_secs(number * 3600)),
        _ => Err(format!("`{text}`: the unit must be ms, s, m or h")),
    }
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Tenant schemas migrated at once (default: provisioning.migrate_parallelism).
    #[arg(long)]
    pub parallelism: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum PlatformCommand {
    /// Create the first platform owner. Refused once an owner exists.
    Init {
        /// The owner's email address (their sign-in name).
        #[arg(long)]
        email: String,
        /// The owner's password; generated and printed when omitted.
        #[arg(long, env = "TESSERA_INIT_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Check an audit trail's chain of HMACs on the database, with this
    /// configuration's `secrets.key`: the platform's, or one tenant's.
    /// Fails when a record was edited, inserted or removed.
    VerifyAudit {
        /// A tenant's trail instead of the platform's.
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// After a key rotation: seal every tenant's connections with the
    /// current key (`secrets.key`), so the old one can leave
    /// `secrets.previous_keys`.
    Reseal,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Register a cluster. With --database-url its tenants' schemas live in
    /// that database, which is migrated now; without, in this one.
    Create {
        /// The cluster's id, as its nodes name it in `cluster.id`.
        id: String,
        /// Display name (defaults to the id).
        #[arg(long)]
        name: Option<String>,
        /// `shared` (takes new tenants by default) or `dedicated` (only
        /// tenants placed on it by name, for one partner).
        #[arg(long, default_value = "shared")]
        kind: String,
        /// The partner a dedicated cluster belongs to.
        #[arg(long)]
        partner: Option<String>,
        /// The cluster's own PostgreSQL database.
        #[arg(long, env = "TESSERA_CLUSTER_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// The cluster's RabbitMQ, for its nodes' worker commands.
        #[arg(long, hide_env_values = true)]
        amqp_url: Option<String>,
    },
    /// List the clusters with their kind, state and tenant count.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One cluster with its nodes.
    Show {
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop placing new tenants on a cluster (its tenants stay until moved).
    Drain { id: String },
    /// Place new tenants on a drained cluster again.
    Activate { id: String },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Hand a node's tenants over to the other nodes as their running
    /// executions finish (within `cluster.drain_timeout_ms`); it takes no
    /// new ones until it restarts. A stopping node (SIGTERM) does the same
    /// by itself.
    Drain {
        /// The node's id (`tessera status` lists them).
        id: uuid::Uuid,
        /// Wait until the node holds no tenant any more (at most this many seconds).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant: its schema, tables and first owner, all or nothing.
    Create {
        /// The tenant's slug: its subdomain and the base of its schema name.
        slug: String,
        /// The first owner's email address.
        #[arg(long)]
        owner_email: String,
        /// The first owner's password; generated and printed when omitted.
        #[arg(long, env = "TESSERA_OWNER_PASSWORD", hide_env_values = true)]
        owner_password: Option<String>,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
        /// The cluster to place it on (default: this configuration's
        /// `cluster.id` when it is an active shared cluster, else the active
        /// shared cluster with the fewest tenants).
        #[arg(long)]
        cluster: Option<String>,
        /// Create the schema at this migration version instead of the latest
        /// (for testing upgrades).
        #[arg(long, hide = true)]
        schema_version: Option<i32>,
    },
    /// List tenants with their status and schema version.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Suspend a tenant: its API answers 403 and its worker stops.
    Suspend { slug: String },
    /// Resume a suspended tenant.
    Resume { slug: String },
    /// Delete a tenant for good, after exporting its schema with pg_dump.
    Delete {
        slug: String,
        /// Must repeat the slug: deleting is not undoable.
        #[arg(long)]
        confirm: String,
    },
    /// Move a tenant to another cluster under load: copy its schema, catch
    /// up, pause its writes briefly, switch, and export and drop the source's
    /// copy. A move that fails leaves the tenant whole where it was.
    Move {
        slug: String,
        /// The target cluster.
        #[arg(long, required_unless_present = "abort")]
        to: Option<String>,
        /// Only finish or undo a move of this tenant that stopped half-way.
        #[arg(long, conflicts_with = "to")]
        abort: bool,
    },
    /// Custom domains a tenant serves its hooks and APIs on, each routed
    /// once a DNS TXT record proves the tenant controls it.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// A tenant's limits: show them, or override the configured defaults
    /// (applied on every node without a restart).
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// What a tenant's steps may connect to, beyond the platform policy
    /// (`egress` in the configuration); every node applies a change at once.
    #[command(subcommand)]
    Egress(EgressCommand),
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Add a domain; prints the TXT record to publish.
    Add { slug: String, domain: String },
    /// Look the TXT record up and, when it is there, let the domain route.
    Verify { slug: String, domain: String },
    /// The tenant's domains and their state.
    List {
        slug: String,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Stop serving the tenant on a domain.
    Remove { slug: String, domain: String },
}

#[derive(Debug, Subcommand)]
pub enum EgressCommand {
    /// Allow CIDRs, addresses or host patterns (`10.0.0.0/8`, `*.acme.internal:443`).
    Allow(EgressRulesArgs),
    /// Deny them; a deny wins over any allow.
    Deny(EgressRulesArgs),
    /// The tenant's rules and the platform policy.
    Show {
        slug: String,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct EgressRulesArgs {
    pub slug: String,
    #[arg(required = true)]
    pub rules: Vec<String>,
    /// Remove these rules instead of adding them.
    #[arg(long)]
    pub remove: bool,
}

#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// The tenant's effective limits; `*` marks its own (overridden) ones.
    Show {
        slug: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Override limits: `tessera tenant limits set acme running_executions=4 foreach_items=500`.
    Set {
        slug: String,
        /// `name=value` pairs (whole numbers).
        #[arg(required = true, value_parser = parse_limit)]
        limits: Vec<(String, u64)>,
    },
    /// Go back to the defaults for these limits.
    Unset {
        slug: String,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `name=value`, the value a whole number.
fn parse_limit(text: &str) -> Result<(String, u64), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("expected name=value, found `{text}`"))?;
    let value = value.trim().parse().map_err(|_| format!("`{name}`: `{value}` is not a whole number"))?;
    Ok((name.trim().to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 days").is_err() && parse_duration("s").is_err());
    }
}
