//! What each `tessera` subcommand does.

use std::{
    io::Write,
    sync::atomic::{AtomicUsize, Ordering},
    time::Instant,
};

use anyhow::Context;

use crate::{
    auth::Passwords,
    cli::{Cli, Command, MigrateArgs, PlatformCommand, TenantCommand},
    config::Config,
    database::build_pool,
    provisioning::{migrate, NewTenant, Provisioner},
    startup::Application,
    telemetry,
    tenancy::{TenantDirectory, TenantStatus},
};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Dev => crate::dev::run(config).await,
        Command::Migrate(args) => migrate_all(&config, args).await,
        Command::Platform(cmd) => platform(config, cmd).await,
        Command::Tenant(cmd) => tenant(config, cmd).await,
    }
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(&config.log);
    let app = Application::build(config).await?;
    tracing::info!(port = app.port(), "serving");
    app.run_until_stopped().await?;
    Ok(())
}

/// A provisioner for the command line: a small pool, no server.
async fn provisioner(config: &Config) -> anyhow::Result<Provisioner> {
    let url = config.require_database_url()?;
    migrate::migrate_platform(url).await.context("migrating the platform schema")?;
    let mut db = config.database.clone();
    db.pool_size = 2;
    let pool = build_pool(&db, url)?;
    let directory = TenantDirectory::new(pool.clone());
    Ok(Provisioner::new(pool, Passwords::new(1), directory, config.provisioning.clone(), url.to_string()))
}

pub async fn migrate_all(config: &Config, args: MigrateArgs) -> anyhow::Result<()> {
    let url = config.require_database_url()?;
    let started = Instant::now();
    let applied = migrate::migrate_platform(url).await?;
    println!("platform schema: {applied} migration(s) applied");
    let parallelism = args.parallelism.unwrap_or(config.provisioning.migrate_parallelism).max(1);
    let last_percent = AtomicUsize::new(usize::MAX);
    let report = migrate::migrate_tenants(url, parallelism, move |p| {
        let percent = p.done * 100 / p.total.max(1);
        if percent / 5 != last_percent.swap(percent, Ordering::Relaxed) / 5 || p.done == p.total {
            eprint!("\rtenant schemas: {}/{} migrated, {} failed ", p.done - p.failed, p.total, p.failed);
            let _ = std::io::stderr().flush();
        }
    })
    .await?;
    if report.total > 0 {
        eprintln!();
    }
    for (schema, error) in &report.failures {
        eprintln!("failed: {schema}: {error}");
    }
    println!(
        "tenant schemas: {} migrated, {} failed, {} behind before the run; {:.2}s",
        report.migrated,
        report.failures.len(),
        report.total,
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(report.failures.is_empty(), "{} tenant schema(s) failed to migrate; run again after fixing", report.failures.len());
    Ok(())
}

async fn platform(config: Config, cmd: PlatformCommand) -> anyhow::Result<()> {
    let provisioner = provisioner(&config).await?;
    match cmd {
        PlatformCommand::Init { email, password } => {
            let generated = password.is_none();
            let password = password.unwrap_or_else(crate::dev::random_password);
            provisioner.init_platform(&email, password.clone()).await?;
            println!("platform owner {email} created");
            if generated {
                println!("password: {password}");
            }
        }
    }
    Ok(())
}

async fn tenant(config: Config, cmd: TenantCommand) -> anyhow::Result<()> {
    let provisioner = provisioner(&config).await?;
    match cmd {
        TenantCommand::Create { slug, owner_email, owner_password, name, schema_version } => {
            let new = NewTenant { slug, name, owner_email, owner_password };
            let started = Instant::now();
            let created = match schema_version {
                Some(v) => provisioner.create_tenant_at(new, v).await?,
                None => provisioner.create_tenant(new).await?,
            };
            println!(
                "tenant {} created (schema {}, version {}) in {} ms",
                created.tenant.slug,
                created.tenant.schema,
                created.tenant.schema_version,
                started.elapsed().as_millis()
            );
            println!("owner: {}", created.owner_email);
            if let Some(password) = created.initial_password {
                println!("password: {password}");
            }
        }
        TenantCommand::List { json } => {
            let tenants = provisioner.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else {
                println!("{:<40} {:<10} {:>7}  {}", "SLUG", "STATUS", "SCHEMA", "NAME");
                for t in tenants {
                    println!("{:<40} {:<10} {:>7}  {}", t.slug, t.status.as_str(), t.schema_version, t.name);
                }
            }
        }
        TenantCommand::Suspend { slug } => {
            provisioner.set_status(&slug, TenantStatus::Suspended).await?;
            println!("tenant {slug} suspended");
        }
        TenantCommand::Resume { slug } => {
            provisioner.set_status(&slug, TenantStatus::Active).await?;
            println!("tenant {slug} resumed");
        }
        TenantCommand::Delete { slug, confirm } => {
            let deleted = provisioner.delete(&slug, &confirm, "cli").await?;
            println!("tenant {slug} deleted; export: {}", deleted.export_path);
        }
    }
    Ok(())
}
