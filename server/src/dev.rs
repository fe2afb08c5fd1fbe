//! `tessera dev`: the whole platform on a laptop, with a demo tenant.
//!
//! Without a configured database it runs a private PostgreSQL (see
//! `local_postgres`), keeps a generated token key and secrets key next to
//! it, migrates, creates a platform owner and the `demo` tenant with known
//! local-only credentials, tells how to sign in, and serves until Ctrl-C.
//! What it has to tell goes out as [`DevEvent`]s: the command line prints them.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use base64::Engine;
use rand::RngCore;

use crate::{
    config::{Config, ProxyRange},
    local_postgres::{default_data_dir, LocalPostgres, LocalPostgresError},
    provisioning::{migrate, NewTenant, ProvisioningError},
    startup::Application,
    telemetry,
    tenancy::TenantSlug,
};

pub const DEMO_TENANT: &str = "demo";
pub const DEMO_OWNER: (&str, &str) = ("owner@localhost", "tessera-owner");
pub const DEMO_USER: (&str, &str) = ("admin@demo.localhost", "tessera-demo");

/// What `dev` tells the person who started it.
#[derive(Debug)]
pub enum DevEvent {
    /// A private PostgreSQL is starting, its data in `data_dir`.
    StartingPostgres { data_dir: PathBuf, port: u16 },
    /// `cargo run` started this: the load balancer is built first.
    BuildingLoadBalancer,
    /// No `tessera-lb` binary was found: the node serves on `listen` alone.
    NoLoadBalancer,
    /// The platform serves on `port` (the load balancer's, or the node's
    /// without one): the tenant API of [`DEMO_TENANT`] at
    /// `http://demo.{base_domain}:{port}/api`; the node's health check at
    /// `node`.
    /// `metrics`: where the node's `GET /metrics` answers.
    Ready { base_domain: String, host: String, port: u16, node: String, load_balancer: bool, metrics: Option<SocketAddr> },
    /// The private PostgreSQL did not stop when the platform did.
    PostgresNotStopped(LocalPostgresError),
}

pub fn random_password() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub async fn run(mut config: Config, tell: impl Fn(DevEvent)) -> anyhow::Result<()> {
    telemetry::init(&config.log);
    // A laptop demo integrates with what runs on the laptop; the platform's
    // own endpoints (its database, this node) stay out of reach.
    config.egress.allow_loopback = true;
    let data_dir = config.dev.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let local = match config.database_url {
        Some(_) => None,
        None => {
            let pg = LocalPostgres::new(data_dir.clone(), config.dev.postgres_port)?;
            tell(DevEvent::StartingPostgres { data_dir: data_dir.clone(), port: config.dev.postgres_port });
            pg.start().await?;
            pg.ensure_database("tessera").await?;
            config.database_url = Some(pg.url("tessera"));
            Some(pg)
        }
    };
    if config.jwt_secret.is_none() && config.jwt_key_file.is_none() {
        let key_file = data_dir.join("jwt.key");
        if !key_file.exists() {
            std::fs::write(&key_file, random_password() + &random_password())?;
        }
        config.jwt_key_file = Some(key_file);
    }
    if config.secrets.key.is_none() && config.secrets.key_file.is_none() {
        let key_file = data_dir.join("secrets.key");
        if !key_file.exists() {
            std::fs::write(&key_file, crate::sealing::generate_key())?;
        }
        config.secrets.key_file = Some(key_file);
    }
    if config.provisioning.export_dir.is_relative() {
        config.provisioning.export_dir = data_dir.join(&config.provisioning.export_dir);
    }
    let result = serve_demo(config, &tell).await;
    if let Some(pg) = local
        && let Err(e) = pg.stop().await {
            tell(DevEvent::PostgresNotStopped(e));
        }
    result
}

async fn serve_demo(mut config: Config, tell: impl Fn(DevEvent)) -> anyhow::Result<()> {
    let url = config.require_database_url()?.to_string();
    migrate::migrate_platform(&url).await?;
    migrate::migrate_tenants(&url, config.provisioning.migrate_parallelism, |_| {}).await?;
    let (listen, base) = (config.listen.clone(), config.base_domain.clone());
    let balancer = match config.dev.load_balancer {
        true => load_balancer_binary(&tell).await,
        false => None,
    };
    if balancer.is_some() {
        // The node behind it: any free loopback port (the load balancer
        // finds it in platform.nodes), and the load balancer's
        // X-Forwarded-For believed.
        config.listen = "127.0.0.1:0".into();
        config.auth.trusted_proxies.push(ProxyRange::try_from("127.0.0.1/32".to_string()).map_err(anyhow::Error::msg)?);
    }
    // Metrics on a free loopback port unless configured: there to try.
    config.metrics.listen.get_or_insert_with(|| "127.0.0.1:0".into());
    let app = Application::build(config).await?;
    let metrics = app.metrics_address();
    seed_demo(&app).await?;
    let node = format!("127.0.0.1:{}", app.port());
    let (host, port) = listen.rsplit_once(':').context("listen is host:port")?;
    let port = if balancer.is_some() { port.parse()? } else { app.port() };
    // The node serves while the load balancer starts and finds it.
    let serving = app.run_until_signalled();
    tokio::pin!(serving);
    let started = async {
        match &balancer {
            Some(binary) => start_load_balancer(binary, &url, &listen, &base).await.map(Some),
            None => Ok(None),
        }
    };
    let balancer_process = tokio::select! {
        ended = &mut serving => return ended.map_err(Into::into),
        started = started => started?,
    };
    tell(DevEvent::Ready { base_domain: base, host: host.to_string(), port, node, load_balancer: balancer_process.is_some(), metrics });
    serving.await?;
    // The load balancer stops with the node (its child is killed on drop).
    drop(balancer_process);
    Ok(())
}

/// The `tessera-lb` binary. Under `cargo run` it is built first, in the
/// same profile, so it is never older than this one; otherwise it is the
/// one installed next to this binary.
async fn load_balancer_binary(tell: &impl Fn(DevEvent)) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let beside = exe.with_file_name("tessera-lb");
    let under_cargo_run = std::env::var("CARGO_PKG_NAME").is_ok_and(|p| p == "tessera-cli");
    if let (true, Ok(cargo)) = (under_cargo_run, std::env::var("CARGO")) {
        tell(DevEvent::BuildingLoadBalancer);
        let mut build = tokio::process::Command::new(cargo);
        build.args(["build", "--quiet", "-p", "tessera-lb"]);
        match exe.parent().and_then(|dir| dir.file_name()).and_then(|p| p.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(profile) => {
                build.args(["--profile", profile]);
            }
        }
        if !build.status().await.is_ok_and(|s| s.success()) {
            tell(DevEvent::NoLoadBalancer);
            return None;
        }
    }
    if beside.exists() {
        return Some(beside);
    }
    tell(DevEvent::NoLoadBalancer);
    None
}

/// Start the load balancer on `listen` over this directory, and wait until
/// it routes to the node (its health check found it).
async fn start_load_balancer(binary: &Path, url: &str, listen: &str, base: &str) -> anyhow::Result<tokio::process::Child> {
    let mut child = tokio::process::Command::new(binary)
        .env("TESSERA_DATABASE_URL", url)
        .env("TESSERA_LB_LISTEN", listen)
        .env("TESSERA_BASE_DOMAIN", base)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    // Any answer of the node's own: a request without a token is refused
    // by the node with 401, where the load balancer alone answers 5xx.
    let probe = format!("http://{listen}/api/platform/cluster");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the load balancer exited at start ({status})");
        }
        let answer = client.get(&probe).header("host", base).send().await;
        if answer.is_ok_and(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED) {
            return Ok(child);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the load balancer did not route to the node within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Create the demo owner and tenant, or reset their passwords to the
/// printed ones if they already exist.
async fn seed_demo(app: &Application) -> anyhow::Result<()> {
    let state = app.state();
    state.provisioner.upsert_platform_owner(DEMO_OWNER.0, DEMO_OWNER.1.into()).await?;
    let new = NewTenant {
        slug: DEMO_TENANT.into(),
        name: Some("Demo".into()),
        owner_email: DEMO_USER.0.into(),
        owner_password: Some(DEMO_USER.1.into()),
        cluster: None,
    };
    match state.provisioner.create_tenant(new).await {
        Ok(_) => {}
        Err(ProvisioningError::SlugTaken(_)) => {
            let slug = TenantSlug::parse(DEMO_TENANT)?;
            let tenant = state.directory.lookup(&slug).await?.context("demo tenant vanished")?;
            let hash = state.auth.passwords.hash(DEMO_USER.1.into()).await?;
            let mut tx = state.tenant_db.begin(&tenant).await?;
            tx.execute(
                "INSERT INTO @tenant.users (id, email, password_hash, role) VALUES ($1, $2, $3, 'owner') \
                 ON CONFLICT (email) DO UPDATE SET password_hash = excluded.password_hash, disabled = false",
                &[&uuid::Uuid::now_v7(), &DEMO_USER.0, &hash],
            )
            .await?;
            tx.commit().await?;
        }
        Err(e) => return Err(e.into()),
    }
    state.reconcile_workers().await;
    Ok(())
}
