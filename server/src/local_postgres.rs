//! A private PostgreSQL for `tessera dev` (and fault tests): initdb + pg_ctl
//! from the installed PostgreSQL binaries, a data directory of its own,
//! listening on loopback only.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the
//! `postgres` system user (through `runuser`) and the data directory is
//! placed where that user can reach it.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    #[error("no PostgreSQL server binaries found (initdb, pg_ctl): install PostgreSQL (e.g. `apt-get install postgresql`) or set TESSERA_DATABASE_URL")]
    NotInstalled,
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
}

/// The newest `/usr/lib/postgresql/<v>/bin` holding initdb, or the directory
/// of an `initdb` on PATH.
pub fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
}

fn running_as_root() -> bool {
    // SAFETY-free check: root's home is not needed, only the effective uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Where the private cluster lives by default.
pub fn default_data_dir() -> PathBuf {
    if running_as_root() {
        PathBuf::from("/var/lib/tessera/dev")
    } else {
        dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("tessera")
    }
}

pub struct LocalPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres_user: bool,
    /// Server settings given at every start (`-c name=value`).
    settings: Vec<(String, String)>,
}

impl LocalPostgres {
    pub fn new(data: PathBuf, port: u16) -> Result<Self, LocalPostgresError> {
        let bin = find_bin_dir().ok_or(LocalPostgresError::NotInstalled)?;
        Ok(Self { bin, data, port, as_postgres_user: running_as_root(), settings: Vec::new() })
    }

    /// Start the server with `name = value` (e.g. `max_connections`), at
    /// every start.
    pub fn with_setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn command(&self, tool: &str) -> Command {
        Command::from(self.std_command(tool))
    }

    /// `tool` of the PostgreSQL install, as the `postgres` user when this
    /// process is root.
    fn std_command(&self, tool: &str) -> std::process::Command {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres_user {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    async fn run(&self, step: &'static str, mut cmd: Command) -> Result<(), LocalPostgresError> {
        let out = cmd.output().await.map_err(|e| LocalPostgresError::Step { step, detail: e.to_string() })?;
        if out.status.success() {
            Ok(())
        } else {
            let detail = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            Err(LocalPostgresError::Step { step, detail: detail.trim().to_string() })
        }
    }

    fn pgdata(&self) -> PathBuf {
        self.data.join("postgres")
    }

    /// initdb on first use, then start the server unless it already runs.
    pub async fn start(&self) -> Result<(), LocalPostgresError> {
        let pgdata = self.pgdata();
        if !pgdata.join("PG_VERSION").exists() {
            prepare_dir(&pgdata, self.as_postgres_user).await?;
            let mut initdb = self.command("initdb");
            initdb.arg("-D").arg(&pgdata).args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-instructions"]);
            self.run("initdb", initdb).await?;
        }
        if self.is_running().await {
            return Ok(());
        }
        let log = pgdata.join("server.log");
        let mut options = format!("-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''", self.port);
        for (name, value) in &self.settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let mut start = self.command("pg_ctl");
        start.arg("-D").arg(&pgdata).arg("-l").arg(&log).arg("-o").arg(options).args(["-w", "-t", "60", "start"]);
        self.run("pg_ctl start", start).await
    }

    pub async fn is_running(&self) -> bool {
        let mut status = self.command("pg_ctl");
        status.arg("-D").arg(self.pgdata()).arg("status").stdout(Stdio::null()).stderr(Stdio::null());
        matches!(status.status().await, Ok(s) if s.success())
    }

    pub async fn stop(&self) -> Result<(), LocalPostgresError> {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D").arg(self.pgdata()).args(["-m", "fast", "-w", "stop"]);
        self.run("pg_ctl stop", stop).await
    }

    /// Stop at once, without waiting for clients (`pg_ctl -m immediate`),
    /// blocking: for a `Drop`, where nothing can be awaited. Errors are
    /// ignored, since the server may not be running.
    pub fn stop_now(&self) {
        let mut stop = self.std_command("pg_ctl");
        stop.arg("-D").arg(self.pgdata()).args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }

    /// Create `database` if it does not exist yet.
    pub async fn ensure_database(&self, database: &str) -> Result<(), LocalPostgresError> {
        let fail = |e: tokio_postgres::Error| LocalPostgresError::Step { step: "create database", detail: e.to_string() };
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await.map_err(fail)?;
        tokio::spawn(conn);
        let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database]).await.map_err(fail)?;
        if exists.is_none() {
            // The name is ours (not user input), but quote it anyway.
            client.batch_execute(&format!("CREATE DATABASE \"{}\"", database.replace('"', ""))).await.map_err(fail)?;
        }
        Ok(())
    }
}

async fn prepare_dir(dir: &Path, chown_to_postgres: bool) -> Result<(), LocalPostgresError> {
    let fail = |e: std::io::Error| LocalPostgresError::Step { step: "create data directory", detail: format!("{}: {e}", dir.display()) };
    tokio::fs::create_dir_all(dir).await.map_err(fail)?;
    if chown_to_postgres {
        let out = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir).output().await.map_err(fail)?;
        if !out.status.success() {
            return Err(LocalPostgresError::Step { step: "chown data directory", detail: String::from_utf8_lossy(&out.stderr).into() });
        }
    }
    Ok(())
}
