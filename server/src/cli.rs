//! The `tessera` command line: one binary for running a node, the local
//! demo, migrations and tenant administration (on the database), and for
//! managing a tenant's integrations through its API (`login`, `apply`,
//! `get`, `rollback`, `delete`: see `client/`).

use std::path::PathBuf;

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

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Sign in to a tenant's API and keep the credential in a profile.
    Login(LoginArgs),
    /// Forget a profile and its credential.
    Logout(ProfileArgs),
    /// Create or update integrations and connections from definition files.
    Apply(ApplyArgs),
    /// Show integrations or connections.
    Get(GetArgs),
    /// Make an older version of an integration current again (as a new version).
    Rollback(RollbackArgs),
    /// Delete an integration or a connection.
    Delete(DeleteArgs),
}

/// Which stored profile to use.
#[derive(Debug, Clone, Args)]
pub struct ProfileArgs {
    /// Profile name.
    #[arg(long, env = "TESSERA_PROFILE", default_value = "default")]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub target: ServerArgs,
    /// integrations or connections.
    pub kind: ResourceKind,
    /// One resource; all of them when omitted.
    pub name: Option<String>,
    /// List an integration's versions.
    #[arg(long, requires = "name")]
    pub versions: bool,
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
}
