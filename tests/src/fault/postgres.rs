//! A PostgreSQL server of one test's own: `initdb` and `pg_ctl` from the
//! installed binaries (`tessera_server::local_postgres`), a free loopback
//! port, a scratch data directory. Stop it and start it again at will;
//! dropped, it stops at once and its directory goes.

use std::time::Duration;

use tessera_server::local_postgres::LocalPostgres;

use super::{free_port, FaultError, Scratch};

const CONNECT: Duration = Duration::from_secs(10);

pub struct PrivatePostgres {
    server: LocalPostgres,
    /// Declared after `server`, so the data outlives the stop in `drop`.
    _dir: Scratch,
}

impl PrivatePostgres {
    /// Initialise and start a server allowing `max_connections` sessions:
    /// three nodes with their pools, plus an `sql` step pool per tenant
    /// and node, need far more than the default 100.
    pub async fn start(max_connections: u32) -> Result<Self, FaultError> {
        let dir = Scratch::new("pg", false)?;
        let server = LocalPostgres::new(dir.path().to_path_buf(), free_port()?)?
            .with_setting("max_connections", &max_connections.to_string());
        server.start().await?;
        Ok(Self { server, _dir: dir })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn url(&self, database: &str) -> String {
        self.server.url(database)
    }

    pub async fn create_database(&self, name: &str) -> Result<(), FaultError> {
        Ok(self.server.ensure_database(name).await?)
    }

    /// A client session on `database`; statements on it are bounded by
    /// the server (`statement_timeout`), the connection by `CONNECT`.
    pub async fn connect(&self, database: &str) -> Result<tokio_postgres::Client, FaultError> {
        let mut config: tokio_postgres::Config = self.url(database).parse()?;
        config.connect_timeout(CONNECT).options("-c statement_timeout=30000");
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// A clean stop (`pg_ctl -m fast`): every session is ended.
    pub async fn stop(&self) -> Result<(), FaultError> {
        Ok(self.server.stop().await?)
    }

    /// Start again on the same port and data.
    pub async fn start_again(&self) -> Result<(), FaultError> {
        Ok(self.server.start().await?)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.server.stop_now();
    }
}
