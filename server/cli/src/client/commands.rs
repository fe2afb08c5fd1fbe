//! The client commands: a tenant's integrations, connections and
//! executions through its REST API, as a profile (or `--server` and
//! `--token`) says. They parse, call the API (`api`) and hand its answers
//! to the renderer (`render::client`).

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::{
    api::{is_final, Kind},
    source, ApiClient, CallError, Credential, ExecutionFilter, Profile, ProfileFile,
};
use crate::{
    args::{ApplyArgs, AuditCommand, ClientCommand, DeleteArgs, ExecutionArgs, GetArgs, GetKind, LoginArgs, LogsArgs, OutputFormat, ProfileArgs, ResourceKind, RollbackArgs, RunArgs, ServerArgs},
    render::{client::Output, Terminal},
};

/// Client commands need no node configuration: they only talk HTTP.
pub async fn run(command: ClientCommand, out: Terminal) -> anyhow::Result<()> {
    match command {
        ClientCommand::Login(args) => login(args, out).await,
        ClientCommand::Logout(args) => logout(args, out),
        ClientCommand::Apply(args) => apply(args, out).await,
        ClientCommand::Get(args) => get(args, out).await,
        ClientCommand::Rollback(args) => rollback(args, out).await,
        ClientCommand::Delete(args) => delete(args, out).await,
        ClientCommand::Run(args) => run_integration(args, out).await,
        ClientCommand::Logs(args) => logs(args, out).await,
        ClientCommand::Cancel(args) => cancel(args, out).await,
        ClientCommand::Retry(args) => retry(args, out).await,
        ClientCommand::Audit(cmd) => audit(cmd, out).await,
    }
}

async fn login(args: LoginArgs, out: Terminal) -> anyhow::Result<()> {
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
    out.show(&Output::LoggedIn { server, credential: kind, profile: args.profile.profile, file: file.path().to_path_buf() });
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

fn logout(args: ProfileArgs, out: Terminal) -> anyhow::Result<()> {
    let file = ProfileFile::at(args.profile_file)?;
    match file.remove(&args.profile)? {
        Some(removed) => out.show(&Output::LoggedOut { server: removed.server, profile: args.profile }),
        None => out.show(&Output::NoProfile { profile: args.profile, file: file.path().to_path_buf() }),
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
async fn apply(args: ApplyArgs, out: Terminal) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    for file in source::read_all(&args.files)? {
        match client.apply(file.text, file.content_type).await {
            Ok(applied) => applied.into_iter().for_each(|r| out.show(&Output::Applied(r))),
            Err(CallError::InvalidDefinition(problems)) => {
                let count = problems.len();
                for problem in problems {
                    out.show(&Output::Problem { file: file.name.clone(), problem });
                }
                bail!("{}: {count} error(s); nothing from this file was applied", file.name);
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("applying {}", file.name))),
        }
    }
    Ok(())
}

async fn get(args: GetArgs, out: Terminal) -> anyhow::Result<()> {
    let client = api_client(args.target.clone())?;
    let kind = match args.kind {
        GetKind::Integration => Kind::Integration,
        GetKind::Connection => Kind::Connection,
        GetKind::Execution => return get_executions(&client, args, out).await,
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
    match args.output {
        OutputFormat::Json => out.json(&answer)?,
        OutputFormat::Table if args.versions => out.show(&Output::Versions(answer)),
        OutputFormat::Table => out.show(&Output::Resources { kind, answer }),
    }
    Ok(())
}

/// `get executions [ID]`: one execution, or the newest ones matching the filters.
async fn get_executions(client: &ApiClient, args: GetArgs, out: Terminal) -> anyhow::Result<()> {
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
    match args.output {
        OutputFormat::Json => out.json(&answer)?,
        OutputFormat::Table => out.show(&Output::Executions(answer)),
    }
    Ok(())
}

async fn rollback(args: RollbackArgs, out: Terminal) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    let now = client.rollback(&args.name, args.to_version).await?;
    out.show(&Output::RolledBack { name: args.name, to_version: args.to_version, now });
    Ok(())
}

async fn delete(args: DeleteArgs, out: Terminal) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    let kind = kind(args.kind);
    client.delete(kind, &args.name).await?;
    out.show(&Output::Deleted { kind, name: args.name });
    Ok(())
}

/// How often `logs --follow` and `run --wait` ask how an execution is doing.
const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// `run NAME`: the execution id; with `--wait`, its final state and output
/// (or error) as JSON, failing unless it succeeded.
async fn run_integration(args: RunArgs, out: Terminal) -> anyhow::Result<()> {
    let payload = source::payload(args.data.as_deref(), args.file.as_deref())?;
    let client = api_client(args.target)?;
    let started = client.run(&args.name, payload.as_ref(), args.wait).await?;
    let id = execution_id(&started)?;
    out.show(&Output::Started(id.clone()));
    if !args.wait {
        return Ok(());
    }
    // The server waits up to its own limit; past it, keep asking.
    let execution = if is_final(&started) { started } else { wait_until_final(&client, &id, args.timeout).await? };
    let state = execution["state"].as_str().unwrap_or("unknown").to_string();
    let result = if state == "succeeded" { &execution["output"] } else { &execution["error"] };
    out.show(&Output::Finished { state: state.clone(), result: result.clone() });
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

/// `tessera cancel ID`: one line, the execution as the cancel left it.
async fn cancel(args: ExecutionArgs, out: Terminal) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    let execution = client.cancel(&args.id).await?;
    out.show(&Output::Outcome(execution));
    Ok(())
}

/// `tessera retry ID`: the execution is queued again; follow it with `logs`.
async fn retry(args: ExecutionArgs, out: Terminal) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    let execution = client.retry(&args.id).await?;
    out.show(&Output::Outcome(execution));
    Ok(())
}

/// `logs ID` / `logs --integration NAME`: one line per checkpointed step,
/// then the final state; `--follow` (implied by `--integration`) polls
/// until the execution is finished.
async fn logs(args: LogsArgs, out: Terminal) -> anyhow::Result<()> {
    let client = api_client(args.target)?;
    let follow = args.follow || args.integration.is_some();
    let id = match (args.id, &args.integration) {
        (Some(id), _) => id,
        (None, Some(name)) => newest_execution(&client, name).await?,
        (None, None) => bail!("pass an execution id or --integration NAME"),
    };
    let until = Instant::now() + args.timeout;
    let mut shown = HashSet::new();
    loop {
        let execution = client.execution(&id).await?;
        let done = is_final(&execution) || !follow;
        show_new_steps(&execution, &mut shown, done, out);
        if done {
            out.show(&Output::Outcome(execution));
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

/// Shows each step checkpoint not shown yet: finished ones as they come,
/// and on the `last` pass whatever is still running.
fn show_new_steps(execution: &serde_json::Value, shown: &mut HashSet<(String, i64, String)>, last: bool, out: Terminal) {
    for step in execution["steps"].as_array().into_iter().flatten() {
        let state = step["state"].as_str().unwrap_or_default();
        if state == "running" && !last {
            continue;
        }
        let key = (step["path"].as_str().unwrap_or_default().to_string(), step["attempt"].as_i64().unwrap_or(0), state.to_string());
        if shown.insert(key) {
            out.show(&Output::Step(step.clone()));
        }
    }
}

/// `audit list|export|verify`: the tenant's audit trail. `verify` fails
/// (exit 1) when the chain is broken.
async fn audit(cmd: AuditCommand, out: Terminal) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::List(args) => {
            let client = api_client(args.filter.target.clone())?;
            let mut pairs = args.filter.pairs();
            pairs.push(("limit", args.limit.to_string()));
            let answer = client.audit(&["audit"], &pairs).await?;
            match args.output {
                OutputFormat::Json => out.json(&answer)?,
                OutputFormat::Table => out.show(&Output::Audit(answer)),
            }
        }
        AuditCommand::Export(filter) => {
            let client = api_client(filter.target.clone())?;
            out.show(&Output::Raw(client.audit_export(&filter.pairs()).await?));
        }
        AuditCommand::Verify { target } => {
            let answer = api_client(target)?.audit(&["audit", "verify"], &[]).await?;
            out.show(&Output::AuditVerified(answer.clone()));
            if answer["ok"] != serde_json::Value::Bool(true) {
                bail!("the audit trail's chain is broken");
            }
        }
    }
    Ok(())
}
