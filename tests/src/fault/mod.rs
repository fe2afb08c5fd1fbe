//! What fault tests stand on: a cluster of real `tessera serve` processes
//! on a private PostgreSQL (and, when asked, a private RabbitMQ), a load
//! driver that keeps thousands of executions in flight, and a checker that
//! counts what came out.
//!
//! Everything is private to one test: the database server and the broker
//! run from their installed binaries on free loopback ports, in scratch
//! directories of their own, so a test may stop or restart them without
//! touching any other test or the shared servers. Every wait has a
//! deadline.

mod check;
mod cluster;
mod load;
mod postgres;
mod rabbitmq;

use std::{path::{Path, PathBuf}, time::Duration};

pub use check::{unfinished, verify, Verdict};
pub use cluster::{ClusterOptions, FaultCluster};
pub use load::{Accepted, Drive, Load, Progress, Workload};
pub use postgres::PrivatePostgres;
pub use rabbitmq::PrivateRabbitMq;

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("private PostgreSQL: {0}")]
    Postgres(#[from] tessera_server::local_postgres::LocalPostgresError),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{what}: HTTP {status}: {body}")]
    Refused { what: String, status: u16, body: String },
    #[error("{what} not done within {within:?}")]
    Deadline { what: String, within: Duration },
    #[error("{0}")]
    Missing(String),
}

impl FaultError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    fn deadline(what: impl Into<String>, within: Duration) -> Self {
        Self::Deadline { what: what.into(), within }
    }
}

/// A TCP port free on loopback now. Another process may take it before
/// the caller binds it; the caller's start then fails, loudly.
pub fn free_port() -> Result<u16, FaultError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(FaultError::io("bind a free port"))?;
    Ok(listener.local_addr().map_err(FaultError::io("read a bound port"))?.port())
}

/// A directory of its own under the system temp dir, removed on drop,
/// unless asked to outlive a failing test (logs worth reading).
pub struct Scratch {
    path: PathBuf,
    keep_on_failure: bool,
}

impl Scratch {
    pub fn new(label: &str, keep_on_failure: bool) -> Result<Self, FaultError> {
        let path = std::env::temp_dir().join(format!("tessera-fault-{label}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).map_err(FaultError::io(format!("create {}", path.display())))?;
        // PostgreSQL runs as its own user when the tests run as root: it
        // must be able to walk into the directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(FaultError::io("chmod a scratch dir"))?;
        Ok(Self { path, keep_on_failure })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep_on_failure && std::thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Poll `check` every `every` until it gives `Some`, or fail once `within`
/// has passed.
pub async fn poll<T, F, Fut>(what: &str, within: Duration, every: Duration, mut check: F) -> Result<T, FaultError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= until {
            return Err(FaultError::deadline(what, within));
        }
        tokio::time::sleep(every).await;
    }
}

/// Send SIGTERM or SIGKILL to process `pid` (one this harness started).
fn signal(pid: u32, signal: &str) -> Result<(), FaultError> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .map_err(FaultError::io("run kill"))?;
    if status.success() {
        Ok(())
    } else {
        Err(FaultError::Command { what: format!("kill -{signal} {pid}"), detail: status.to_string() })
    }
}
