//! The `tessera` command line: one binary for running a node, the local
//! demo, migrations and tenant administration.

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
