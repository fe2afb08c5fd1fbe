//! A RabbitMQ broker of one test's own: `rabbitmq-server` with its own
//! node name, AMQP and distribution ports on loopback, configuration,
//! database and logs in a scratch directory, and no plugins (so no
//! management listener). Its Erlang cookie lives in that directory too
//! (HOME points there), so `rabbitmqctl -n NODE` reaches this node only.
//! `stop` stops it cleanly; `start_again` boots it on the same ports and
//! data, so durable queues come back.

use std::{
    ffi::OsString,
    path::PathBuf,
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

use super::{free_port, poll, signal, FaultError, Scratch};

const BOOT: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(60);

pub struct PrivateRabbitMq {
    node: String,
    port: u16,
    dist_port: u16,
    /// The start script, run in a process group of its own: it runs the
    /// Erlang VM as its child, and a kill of the group ends both.
    server: Option<Child>,
    dir: Scratch,
}

impl PrivateRabbitMq {
    pub async fn start() -> Result<Self, FaultError> {
        let dir = Scratch::new("rabbitmq", true)?;
        let (port, dist_port) = (free_port()?, free_port()?);
        let node = format!("tessera-fault-{}@localhost", uuid::Uuid::new_v4().simple());
        for sub in ["mnesia", "log", "home"] {
            std::fs::create_dir_all(dir.path().join(sub)).map_err(FaultError::io("create the broker's directories"))?;
        }
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).map_err(FaultError::io(format!("write {name}")))
        };
        write("rabbitmq.conf", format!("listeners.tcp.local = 127.0.0.1:{port}\n"))?;
        write("enabled_plugins", "[].\n".into())?;
        // An empty environment file: the machine's own may name a node.
        write("rabbitmq-env.conf", String::new())?;
        let mut broker = Self { node, port, dist_port, server: None, dir };
        broker.start_again().await?;
        Ok(broker)
    }

    /// `amqp://` URL of this broker's default virtual host.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Boot the node (again) and wait until it accepts AMQP connections.
    pub async fn start_again(&mut self) -> Result<(), FaultError> {
        let log = std::fs::File::create(self.dir.path().join("server.out")).map_err(FaultError::io("create the broker's log"))?;
        let err = log.try_clone().map_err(FaultError::io("clone a log handle"))?;
        let child = Command::new(tool("rabbitmq-server"))
            .envs(self.env())
            .current_dir(self.dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(FaultError::io("start rabbitmq-server"))?;
        self.server = Some(child);
        let port = self.port;
        poll("RabbitMQ accepting connections", BOOT, Duration::from_millis(200), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await
    }

    /// Stop the node cleanly and wait for its processes to end.
    ///
    /// SIGTERM to the start script, which stops the broker as
    /// `rabbitmqctl stop` does (the script's own documented signal
    /// handling): on a loaded two-core machine `rabbitmqctl` takes up to
    /// half a minute to boot its own Erlang VM before it asks, which would
    /// put the outage after the load instead of under it.
    pub async fn stop(&mut self) -> Result<(), FaultError> {
        let mut server = self.server.take().ok_or_else(|| FaultError::Missing("the broker is not running".into()))?;
        let pid = server.id().ok_or_else(|| FaultError::Missing("the broker has exited already".into()))?;
        signal(pid, "TERM")?;
        let status = tokio::time::timeout(STOP, server.wait())
            .await
            .map_err(|_| FaultError::deadline("rabbitmq-server exit after SIGTERM", STOP))?
            .map_err(FaultError::io("wait for rabbitmq-server"))?;
        if !status.success() {
            return Err(FaultError::Command { what: "rabbitmq-server stopping on SIGTERM".into(), detail: status.to_string() });
        }
        Ok(())
    }

    fn env(&self) -> Vec<(&'static str, OsString)> {
        let path = |sub: &str| self.dir.path().join(sub).into_os_string();
        vec![
            ("HOME", path("home")),
            ("RABBITMQ_NODENAME", self.node.clone().into()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", self.port.to_string().into()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string().into()),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
            ("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf")),
            ("ERL_CRASH_DUMP", path("erl_crash.dump")),
            // Loopback only: the port mapper it may start, and its
            // distribution listener.
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}".into()),
        ]
    }
}

impl Drop for PrivateRabbitMq {
    fn drop(&mut self) {
        if let Some(pid) = self.server.as_ref().and_then(Child::id) {
            // The whole group: the start script and the VM it runs.
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
    }
}

/// A RabbitMQ script: the package's own copy (the one on PATH may be a
/// wrapper that switches user), else whatever PATH has.
fn tool(name: &str) -> PathBuf {
    let packaged = PathBuf::from("/usr/lib/rabbitmq/bin").join(name);
    if packaged.is_file() { packaged } else { PathBuf::from(name) }
}
