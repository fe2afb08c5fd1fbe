//! What each `tessera` subcommand does.

use std::{
    collections::HashSet,
    io::Write,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use tessera_server::{
    auth::Passwords,
    config::Config,
    database::build_pool,
    provisioning::{migrate, NewTenant, Provisioner},
    startup::Application,
    telemetry,
    tenancy::{TenantDirectory, TenantStatus},
};

use crate::{
    args::{
        ApplyArgs, Cli, Command, DeleteArgs, ExecutionArgs, GetArgs, GetKind, LoginArgs, LogsArgs, MigrateArgs, OutputFormat, PlatformCommand,
        LimitsCommand, NodeCommand, ProfileArgs, SecretsCommand, ResourceKind, RollbackArgs, RunArgs, ServerArgs, TenantCommand, EgressCommand,
    },
    client::{
        api::{is_final, Kind},
        source, ApiClient, ApiError, Credential, ExecutionFilter, Profile, ProfileFile,
    },
    render::client as render,
};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // API client commands need no node configuration: they only talk HTTP.
    let command = match cli.command {
        Command::Login(args) => return login(args).await,
        Command::Logout(args) => return logout(args),
        Command::Apply(args) => return apply(args).await,
        Command::Get(args) => return get(args).await,
        Command::Rollback(args) => return rollback(args).await,
        Command::Delete(args) => return delete(args).await,
        Command::Run(args) => return run_integration(args).await,
        Command::Logs(args) => return logs(args).await,
        Command::Cancel(args) => return cancel(args).await,
        Command::Retry(args) => return retry(args).await,
        node_command => node_command,
    };
    let config = Config::load(cli.config.as_deref())?;
    match command {
        Command::Serve => serve(config).await,
        Command::Dev => tessera_server::dev::run(config).await,
        Command::Migrate(args) => migrate_all(&config, args).await,
        Command::Platform(cmd) => platform(config, cmd).await,
        Command::Tenant(cmd) => tenant(config, cmd).await,
        Command::Status { json } => cluster_status(&config, json).await,
        Command::Node(NodeCommand::Drain { id, wait }) => drain_node(&config, id, wait).await,
        Command::Secrets(SecretsCommand::Reseal) => reseal(&config).await,
        _ => unreachable!("client commands returned above"),
    }
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(&config.log);
    let app = Application::build(config).await?;
    tracing::info!(port = app.port(), "serving");
    app.run_until_signalled().await?;
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

async fn operator_pool(config: &Config) -> anyhow::Result<deadpool_postgres::Pool> {
    let url = config.require_database_url()?;
    migrate::migrate_platform(url).await.context("migrating the platform schema")?;
    let mut db = config.database.clone();
    db.pool_size = 2;
    Ok(build_pool(&db, url)?)
}

async fn cluster_status(config: &Config, json: bool) -> anyhow::Result<()> {
    let pool = operator_pool(config).await?;
    let timeout = Duration::from_millis(config.cluster.node_timeout_ms);
    let mut status = tessera_server::cluster::status::read(&pool, &config.cluster.id, timeout).await?;
    if let Some(url) = config.cluster.amqp_url.as_deref() {
        let broker = tessera_server::cluster::mail::broker::Broker::new(url, &config.cluster.id, timeout)?;
        tessera_server::cluster::status::add_queue_depths(&mut status, &broker).await;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!("cluster {}", status.cluster);
    println!("{:<38} {:<22} {:<9} {:<6} {:>7} {:>6}  HEARTBEAT", "NODE", "ADDRESS", "STATE", "ALIVE", "TENANTS", "QUEUE");
    for n in &status.nodes {
        let alive = if n.alive { "yes" } else { "no" };
        let queue = n.queue_depth.map_or_else(|| "-".to_string(), |d| d.to_string());
        println!("{:<38} {:<22} {:<9} {:<6} {:>7} {:>6}  {}", n.id, n.address, n.state, alive, n.tenants, queue, n.heartbeat_at.to_rfc3339());
    }
    let unowned: Vec<&str> = status.leases.iter().filter(|l| l.node.is_none()).map(|l| l.tenant.as_str()).collect();
    println!("{} tenant lease(s), {} without a live owner{}", status.leases.len(), unowned.len(), if unowned.is_empty() { String::new() } else { format!(": {}", unowned.join(", ")) });
    Ok(())
}

async fn reseal(config: &Config) -> anyhow::Result<()> {
    let keys = tessera_server::sealing::KeyRing::from_config(&config.secrets)?;
    let provisioner = provisioner(config).await?;
    let db = tessera_server::tenancy::TenantDb::new(operator_pool(config).await?);
    let (mut tenants, mut resealed) = (0, 0);
    for tenant in provisioner.list().await? {
        let count = tessera_server::resources::connections::reseal_all(&db, &keys, &tenant)
            .await
            .with_context(|| format!("re-sealing the connections of tenant {}", tenant.slug))?;
        if count > 0 {
            println!("{}: {count} connection(s) re-sealed", tenant.slug);
        }
        tenants += 1;
        resealed += count;
    }
    println!("{resealed} connection(s) in {tenants} tenant(s) now sealed with key {}", keys.current_key_id());
    Ok(())
}

async fn drain_node(config: &Config, id: uuid::Uuid, wait: Option<u64>) -> anyhow::Result<()> {
    let pool = operator_pool(config).await?;
    tessera_server::cluster::mark_draining(&pool, id).await?;
    println!("node {id} is draining");
    let Some(limit) = wait else { return Ok(()) };
    let timeout = Duration::from_millis(config.cluster.node_timeout_ms);
    let until = Instant::now() + Duration::from_secs(limit);
    loop {
        let status = tessera_server::cluster::status::read(&pool, &config.cluster.id, timeout).await?;
        let held = status.nodes.iter().find(|n| n.id == id).map_or(0, |n| n.tenants);
        if held == 0 {
            println!("node {id} holds no tenant");
            return Ok(());
        }
        if Instant::now() >= until {
            bail!("node {id} still holds {held} tenant(s) after {limit} s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn platform(config: Config, cmd: PlatformCommand) -> anyhow::Result<()> {
    let provisioner = provisioner(&config).await?;
    match cmd {
        PlatformCommand::Init { email, password } => {
            let generated = password.is_none();
            let password = password.unwrap_or_else(tessera_server::dev::random_password);
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
                println!("{:<40} {:<10} {:>7}  NAME", "SLUG", "STATUS", "SCHEMA");
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
        TenantCommand::Limits(cmd) => tenant_limits(&config, cmd).await?,
        TenantCommand::Egress(cmd) => tenant_egress(&config, cmd).await?,
    }
    Ok(())
}

async fn tenant_limits(config: &Config, cmd: LimitsCommand) -> anyhow::Result<()> {
    let book = tessera_server::limits::LimitBook::new(operator_pool(config).await?, config);
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
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    println!("{:<24} {:>14}  DEFAULT", "LIMIT", "VALUE");
    for name in tessera_runtime::limits::LIMIT_NAMES {
        let (value, default) = (view.limits.get(name).unwrap_or_default(), view.defaults.get(name).unwrap_or_default());
        let mark = if view.overridden.contains(name) { "*" } else { " " };
        println!("{name:<24} {value:>13}{mark}  {default}");
    }
    Ok(())
}

async fn tenant_egress(config: &Config, cmd: EgressCommand) -> anyhow::Result<()> {
    use tessera_server::egress::{self, Action};
    let pool = operator_pool(config).await?;
    let (slug, action, args) = match cmd {
        EgressCommand::Allow(args) => (args.slug.clone(), Action::Allow, args),
        EgressCommand::Deny(args) => (args.slug.clone(), Action::Deny, args),
        EgressCommand::Show { slug, json } => {
            let shown = egress::show(&pool, config, &slug).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                let p = &shown.platform;
                let mode = serde_json::to_value(p.mode)?;
                println!("platform: mode {}, loopback {}, private {}", mode.as_str().unwrap_or("?"), allowed(p.allow_loopback), allowed(p.allow_private));
                shown.platform.allow.iter().for_each(|r| println!("platform allow {r}"));
                shown.platform.deny.iter().for_each(|r| println!("platform deny  {r}"));
                shown.allow.iter().for_each(|r| println!("allow {r}"));
                shown.deny.iter().for_each(|r| println!("deny  {r}"));
            }
            return Ok(());
        }
    };
    egress::change(&pool, &slug, action, &args.rules, args.remove).await?;
    let done = if args.remove { "removed from" } else { "added to" };
    println!("{} {} rule(s) {done} tenant {slug}: {}", args.rules.len(), action.as_str(), args.rules.join(", "));
    Ok(())
}

fn allowed(yes: bool) -> &'static str {
    if yes { "allowed" } else { "denied" }
}

// ---- API client commands (see client/) ----

async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let file = ProfileFile::at(args.profile.profile_file)?;
    let credential = match (args.api_key, args.email) {
        (Some(key), _) => {
            // Check the key before storing it, so a typo fails now rather
            // than in the next CI run.
            ApiClient::new(&args.server, Some(key.clone()))?.me().await?;
            Credential::ApiKey(key)
        }
        (None, Some(email)) => {
            let password = password(args.password)?;
            Credential::Token(ApiClient::new(&args.server, None)?.login(&email, &password).await?)
        }
        (None, None) => bail!("pass --email (to sign in as a user) or --api-key"),
    };
    let server = ApiClient::new(&args.server, None)?.server().to_string();
    let kind = credential.describe();
    file.save(&args.profile.profile, Profile { server: server.clone(), credential })?;
    println!("logged in to {server} ({kind} saved as profile {:?} in {})", args.profile.profile, file.path().display());
    Ok(())
}

/// The password given, or asked for without echo when a person is there.
fn password(given: Option<String>) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if let Some(password) = given {
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password: pass --password, set TESSERA_PASSWORD, or run in a terminal to be asked for it");
    }
    rpassword::prompt_password("Password: ").context("reading the password")
}

fn logout(args: ProfileArgs) -> anyhow::Result<()> {
    let file = ProfileFile::at(args.profile_file)?;
    match file.remove(&args.profile)? {
        Some(profile) => println!("logged out of {} (profile {:?} removed)", profile.server, args.profile),
        None => println!("no profile {:?} in {}", args.profile, file.path().display()),
    }
    Ok(())
}

/// A client for one call: `--server`/`--token` (or their environment
/// variables) over the stored profile.
fn api_client(target: ServerArgs) -> anyhow::Result<ApiClient> {
    let name = target.profile.profile;
    let stored = ProfileFile::at(target.profile.profile_file)?.get(&name)?;
    let Some(server) = target.server.clone().or_else(|| stored.as_ref().map(|p| p.server.clone())) else {
        bail!("no server: run `tessera login --server URL ...` (profile {name:?}) or pass --server");
    };
    let client = ApiClient::new(&server, None)?;
    // A stored credential belongs to its server: a --server override never
    // receives another server's token.
    let credential = target.token.or_else(|| {
        stored.filter(|p| p.server.trim_end_matches('/') == client.server()).map(|p| p.credential.secret().to_string())
    });
    Ok(ApiClient::new(&server, credential)?)
}

fn kind(kind: ResourceKind) -> Kind {
    match kind {
        ResourceKind::Integration => Kind::Integration,
        ResourceKind::Connection => Kind::Connection,
    }
}

/// Applies each file in turn, each one all or nothing; stops at the first
/// file the server refuses, since later files may build on it.
async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    for file in source::read_all(&args.files)? {
        match client.apply(file.text, file.content_type).await {
            Ok(applied) => applied.iter().for_each(|r| println!("{}", render::applied(r))),
            Err(ApiError::InvalidDefinition(problems)) => {
                for problem in &problems {
                    eprintln!("{}", render::problem(&file.name, problem));
                }
                bail!("{}: {} error(s); nothing from this file was applied", file.name, problems.len());
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("applying {}", file.name))),
        }
    }
    Ok(())
}

async fn get(args: GetArgs) -> anyhow::Result<()> {
    let client = api_client(args.target.clone())?;
    let kind = match args.kind {
        GetKind::Integration => Kind::Integration,
        GetKind::Connection => Kind::Connection,
        GetKind::Execution => return get_executions(&client, args).await,
    };
    if args.integration.is_some() || args.state.is_some() || args.limit.is_some() {
        bail!("--integration, --state and --limit are for executions");
    }
    let answer = match (&args.name, args.versions) {
        (Some(name), true) if kind == Kind::Integration => client.versions(name).await?,
        (_, true) => bail!("--versions is for integrations"),
        (Some(name), false) => client.get(kind, name).await?,
        (None, false) => client.list(kind).await?,
    };
    let printed = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&answer)?,
        OutputFormat::Table if args.versions => render::versions(&answer),
        OutputFormat::Table => render::resources(kind, &answer),
    };
    println!("{printed}");
    Ok(())
}

/// `get executions [ID]`: one execution, or the newest ones matching the filters.
async fn get_executions(client: &ApiClient, args: GetArgs) -> anyhow::Result<()> {
    if args.versions {
        bail!("--versions is for integrations");
    }
    let answer = match &args.name {
        Some(id) => client.execution(id).await?,
        None => {
            let filter = ExecutionFilter { integration: args.integration, state: args.state, limit: args.limit };
            client.executions(&filter).await?
        }
    };
    let printed = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&answer)?,
        OutputFormat::Table => render::executions(&answer),
    };
    println!("{printed}");
    Ok(())
}

async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    let now = client.rollback(&args.name, args.to_version).await?;
    println!("integration/{} rolled back to version {} (now version {})", args.name, args.to_version, now["version"]);
    Ok(())
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    let kind = kind(args.kind);
    client.delete(kind, &args.name).await?;
    println!("{}/{} deleted", kind.singular(), args.name);
    Ok(())
}

/// How often `logs --follow` and `run --wait` ask how an execution is doing.
const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// `run NAME`: the execution id; with `--wait`, its final state and output
/// (or error) as JSON, failing unless it succeeded.
async fn run_integration(args: RunArgs) -> anyhow::Result<()> {
    let payload = source::payload(args.data.as_deref(), args.file.as_deref())?;
    let client = api_client(args.target)?;
    let started = client.run(&args.name, payload.as_ref(), args.wait).await?;
    let id = execution_id(&started)?;
    println!("{id}");
    if !args.wait {
        return Ok(());
    }
    // The server waits up to its own limit; past it, keep asking.
    let execution = if is_final(&started) { started } else { wait_until_final(&client, &id, args.timeout).await? };
    let state = execution["state"].as_str().unwrap_or("unknown");
    println!("{state}");
    let result = if state == "succeeded" { &execution["output"] } else { &execution["error"] };
    println!("{}", serde_json::to_string_pretty(result)?);
    if state != "succeeded" {
        bail!("execution {id} {state}");
    }
    Ok(())
}

fn execution_id(execution: &serde_json::Value) -> anyhow::Result<String> {
    execution["id"].as_str().map(str::to_string).context("the server's answer has no execution id")
}

async fn wait_until_final(client: &ApiClient, id: &str, limit: Duration) -> anyhow::Result<serde_json::Value> {
    let until = Instant::now() + limit;
    loop {
        let execution = client.execution(id).await?;
        if is_final(&execution) {
            return Ok(execution);
        }
        if Instant::now() >= until {
            bail!("execution {id} still {} after {}s", execution["state"], limit.as_secs());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `logs ID` / `logs --integration NAME`: one line per checkpointed step,
/// then the final state; `--follow` (implied by `--integration`) polls
/// until the execution is finished.
/// `tessera cancel ID`: one line, the execution as the cancel left it.
async fn cancel(args: ExecutionArgs) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    let execution = client.cancel(&args.id).await?;
    println!("{}", render::outcome(&execution));
    Ok(())
}

/// `tessera retry ID`: the execution is queued again; follow it with `logs`.
async fn retry(args: ExecutionArgs) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    let execution = client.retry(&args.id).await?;
    println!("{}", render::outcome(&execution));
    Ok(())
}

async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    let follow = args.follow || args.integration.is_some();
    let id = match (args.id, &args.integration) {
        (Some(id), _) => id,
        (None, Some(name)) => newest_execution(&client, name).await?,
        (None, None) => bail!("pass an execution id or --integration NAME"),
    };
    let until = Instant::now() + args.timeout;
    let mut printed = HashSet::new();
    loop {
        let execution = client.execution(&id).await?;
        let done = is_final(&execution) || !follow;
        print_new_steps(&execution, &mut printed, done);
        if done {
            println!("{}", render::outcome(&execution));
            return Ok(());
        }
        if Instant::now() >= until {
            bail!("execution {id} still {} after {}s (--timeout)", execution["state"], args.timeout.as_secs());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn newest_execution(client: &ApiClient, integration: &str) -> anyhow::Result<String> {
    let filter = ExecutionFilter { integration: Some(integration.to_string()), state: None, limit: Some(1) };
    let page = client.executions(&filter).await?;
    match page["items"].get(0) {
        Some(newest) => execution_id(newest),
        None => bail!("integration {integration:?} has no executions"),
    }
}

/// Prints each step checkpoint not printed yet: finished ones as they come,
/// and on the `last` pass whatever is still running.
fn print_new_steps(execution: &serde_json::Value, printed: &mut HashSet<(String, i64, String)>, last: bool) {
    for step in execution["steps"].as_array().into_iter().flatten() {
        let state = step["state"].as_str().unwrap_or_default();
        if state == "running" && !last {
            continue;
        }
        let key = (step["path"].as_str().unwrap_or_default().to_string(), step["attempt"].as_i64().unwrap_or(0), state.to_string());
        if printed.insert(key) {
            println!("{}", render::step(step));
        }
    }
    let _ = std::io::stdout().flush();
}
