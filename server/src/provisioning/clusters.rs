//! The platform's clusters: the directory's `platform.clusters`, and where
//! a new tenant is placed.
//!
//! The directory is the `platform` schema of one database (the directory
//! database; a single-cluster install has only that one). A cluster either
//! keeps its tenant schemas in the directory database (`database_url`
//! NULL) or in a database of its own, which is a complete Tessera database:
//! its own `platform` schema holds the rows its nodes work from (its
//! tenants, nodes, leases, work), so a node never needs two databases.
//! Only the directory knows every cluster and every tenant's placement;
//! the load balancer reads it. Every change announces itself with a
//! trigger (`tessera_directory_changes`, migration V6).

use std::str::FromStr;

use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::{error::SqlState, GenericClient};
use uuid::Uuid;

use super::migrate;
use crate::database::{connect, DbError};

#[derive(Debug, thiserror::Error)]
pub enum ClustersError {
    #[error("{0}")]
    Invalid(String),
    #[error("there is no cluster '{0}'")]
    NotFound(String),
    #[error("a cluster named '{0}' already exists")]
    Exists(String),
    #[error("cluster '{0}' is draining: it takes no new tenants")]
    Draining(String),
    #[error("no active shared cluster can take a new tenant")]
    NoneActive,
    #[error("the database of cluster '{cluster}' cannot be used: {detail}")]
    Unreachable { cluster: String, detail: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for ClustersError {
    fn from(e: tokio_postgres::Error) -> Self {
        ClustersError::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for ClustersError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ClustersError::Db(e.into())
    }
}

pub struct NewCluster {
    pub id: String,
    pub name: Option<String>,
    /// `shared` (default) or `dedicated`; a dedicated cluster names its partner.
    pub kind: Option<String>,
    pub partner: Option<String>,
    /// Where its tenant schemas live; none: the directory database.
    pub database_url: Option<String>,
    pub amqp_url: Option<String>,
}

/// A cluster as the platform API shows it: its database by host and name,
/// never with its credentials.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub partner: Option<String>,
    pub state: String,
    pub database: String,
    pub broker: bool,
    pub tenants: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterNode {
    pub id: Uuid,
    pub address: String,
    pub state: String,
    pub live: bool,
    pub leases: i64,
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterDetail {
    #[serde(flatten)]
    pub cluster: Cluster,
    pub nodes: Vec<ClusterNode>,
}

/// Where a tenant goes: a cluster, and its database when not the directory's.
#[derive(Debug, Clone)]
pub struct Placement {
    pub cluster: String,
    pub database_url: Option<String>,
}

const COLUMNS: &str = "c.id, c.name, c.kind, c.partner, c.state, c.database_url, c.amqp_url IS NOT NULL, \
     (SELECT count(*) FROM platform.tenants t WHERE t.cluster_id = c.id), c.created_at";

fn from_row(row: &tokio_postgres::Row) -> Cluster {
    let url: Option<String> = row.get(5);
    Cluster {
        id: row.get(0),
        name: row.get(1),
        kind: row.get(2),
        partner: row.get(3),
        state: row.get(4),
        database: url.as_deref().map_or_else(|| "the directory database".to_string(), describe_database),
        broker: row.get(6),
        tenants: row.get(7),
        created_at: row.get(8),
    }
}

/// `host:port/dbname` of a connection URL: what an operator needs to
/// recognise it, without the password.
fn describe_database(url: &str) -> String {
    let Ok(config) = tokio_postgres::Config::from_str(url) else { return "(unreadable URL)".into() };
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("postgres"))
}

fn check_name(what: &str, raw: &str) -> Result<(), ClustersError> {
    let mut chars = raw.chars();
    let ok = raw.len() <= 40
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    ok.then_some(())
        .ok_or_else(|| ClustersError::Invalid(format!("a {what} is 1 to 40 characters: a lowercase letter, then lowercase letters, digits or '-'")))
}

fn check(new: &NewCluster) -> Result<&'static str, ClustersError> {
    check_name("cluster id", &new.id)?;
    let kind = match new.kind.as_deref().unwrap_or("shared") {
        "shared" => "shared",
        "dedicated" => "dedicated",
        other => return Err(ClustersError::Invalid(format!("kind '{other}' is neither 'shared' nor 'dedicated'"))),
    };
    match (&new.partner, kind) {
        (Some(p), _) => check_name("partner", p)?,
        (None, "dedicated") => return Err(ClustersError::Invalid("a dedicated cluster names its partner".into())),
        (None, _) => {}
    }
    if new.name.as_deref().is_some_and(|n| n.chars().count() > 200) {
        return Err(ClustersError::Invalid("a cluster name has at most 200 characters".into()));
    }
    if let Some(url) = &new.database_url {
        tokio_postgres::Config::from_str(url).map_err(|_| ClustersError::Invalid("database_url is not a PostgreSQL URL".into()))?;
    }
    if new.amqp_url.as_deref().is_some_and(|u| u.parse::<lapin::uri::AMQPUri>().is_err()) {
        return Err(ClustersError::Invalid("amqp_url is not an AMQP URL".into()));
    }
    Ok(kind)
}

/// Register a cluster. One with a database of its own gets that database
/// migrated and its own row there first (its nodes register under it), so
/// the directory never lists a cluster whose database cannot hold tenants.
pub async fn create(pool: &Pool, new: NewCluster) -> Result<Cluster, ClustersError> {
    let kind = check(&new)?;
    let name = new.name.clone().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).unwrap_or_else(|| new.id.clone());
    if let Some(url) = &new.database_url {
        prepare_database(url, &new.id, &name, kind, new.partner.as_deref()).await?;
    }
    let client = pool.get().await?;
    let inserted = client
        .execute(
            "INSERT INTO platform.clusters (id, name, kind, partner, database_url, amqp_url) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&new.id, &name, &kind, &new.partner, &new.database_url, &new.amqp_url],
        )
        .await;
    match inserted {
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Err(ClustersError::Exists(new.id)),
        other => other?,
    };
    tracing::info!(cluster = %new.id, kind, "cluster created");
    get(&**client, &new.id).await
}

async fn prepare_database(url: &str, id: &str, name: &str, kind: &str, partner: Option<&str>) -> Result<(), ClustersError> {
    let unreachable = |detail: String| ClustersError::Unreachable { cluster: id.to_string(), detail };
    migrate::migrate_platform(url).await.map_err(|e| unreachable(e.to_string()))?;
    let client = connect(url).await.map_err(|e| unreachable(e.to_string()))?;
    client
        .execute(
            "INSERT INTO platform.clusters (id, name, kind, partner) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
            &[&id, &name, &kind, &partner],
        )
        .await?;
    Ok(())
}

pub async fn list(pool: &Pool) -> Result<Vec<Cluster>, ClustersError> {
    let client = pool.get().await?;
    let rows = client.query(&format!("SELECT {COLUMNS} FROM platform.clusters c ORDER BY c.id"), &[]).await?;
    Ok(rows.iter().map(from_row).collect())
}

async fn get(client: &impl GenericClient, id: &str) -> Result<Cluster, ClustersError> {
    let row = client.query_opt(&format!("SELECT {COLUMNS} FROM platform.clusters c WHERE c.id = $1"), &[&id]).await?;
    row.as_ref().map(from_row).ok_or_else(|| ClustersError::NotFound(id.to_string()))
}

/// A cluster with its nodes, read from the cluster's own database.
pub async fn show(pool: &Pool, id: &str, node_timeout: std::time::Duration) -> Result<ClusterDetail, ClustersError> {
    let client = pool.get().await?;
    let cluster = get(&**client, id).await?;
    let sql = "SELECT n.id, n.address, n.state, n.state <> 'stopped' AND n.heartbeat_at > now() - make_interval(secs => $2), \
               (SELECT count(*) FROM platform.tenant_leases l WHERE l.node_id = n.id AND l.expires_at > now()), n.heartbeat_at \
               FROM platform.nodes n WHERE n.cluster_id = $1 ORDER BY n.started_at";
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&id, &node_timeout.as_secs_f64()];
    let rows = match database_url(&**client, id).await? {
        None => client.query(sql, &args).await?,
        Some(url) => {
            let remote = connect(&url).await.map_err(|e| ClustersError::Unreachable { cluster: id.into(), detail: e.to_string() })?;
            remote.query(sql, &args).await?
        }
    };
    let nodes = rows
        .iter()
        .map(|r| ClusterNode {
            id: r.get(0),
            address: r.get(1),
            state: r.get(2),
            live: r.get(3),
            leases: r.get(4),
            heartbeat_at: r.get(5),
        })
        .collect();
    Ok(ClusterDetail { cluster, nodes })
}

/// The database of `tenant`'s cluster when it is not this one: a change
/// to the tenant's platform rows (limits, egress rules) is written there
/// too, where its nodes read it.
pub async fn database_of(client: &impl GenericClient, tenant: Uuid) -> Result<Option<String>, tokio_postgres::Error> {
    let sql = "SELECT c.database_url FROM platform.tenants t JOIN platform.clusters c ON c.id = t.cluster_id WHERE t.id = $1";
    Ok(client.query_opt(sql, &[&tenant]).await?.and_then(|row| row.get(0)))
}

/// Fails unless the database at `url` lists cluster `id`.
pub async fn require(url: &str, id: &str) -> Result<(), ClustersError> {
    let client = connect(url).await?;
    let found = client.query_opt("SELECT 1 FROM platform.clusters WHERE id = $1", &[&id]).await?;
    found.map(|_| ()).ok_or_else(|| ClustersError::NotFound(id.to_string()))
}

/// The database of cluster `id` when it is not this one.
pub(super) async fn database_url(client: &impl GenericClient, id: &str) -> Result<Option<String>, ClustersError> {
    let row = client.query_opt("SELECT database_url FROM platform.clusters WHERE id = $1", &[&id]).await?;
    row.map(|r| r.get(0)).ok_or_else(|| ClustersError::NotFound(id.to_string()))
}

/// `draining`: the cluster takes no new tenant (its tenants stay until
/// moved); `active`: it takes them again.
pub async fn set_state(pool: &Pool, id: &str, draining: bool) -> Result<Cluster, ClustersError> {
    let client = pool.get().await?;
    let state = if draining { "draining" } else { "active" };
    let changed = client.execute("UPDATE platform.clusters SET state = $2 WHERE id = $1", &[&id, &state]).await?;
    if changed == 0 {
        return Err(ClustersError::NotFound(id.to_string()));
    }
    tracing::info!(cluster = %id, state, "cluster state changed");
    get(&**client, id).await
}

/// Where a new tenant goes: the cluster asked for, which must be active;
/// else `home` (the cluster of the node or operator placing it) when it is
/// an active shared cluster; else the active shared cluster with the fewest
/// tenants. Dedicated clusters only take tenants placed there by name.
pub async fn place(client: &impl GenericClient, asked: Option<&str>, home: &str) -> Result<Placement, ClustersError> {
    let sql = "SELECT id, state, kind, database_url FROM platform.clusters WHERE id = $1";
    if let Some(id) = asked {
        let row = client.query_opt(sql, &[&id]).await?.ok_or_else(|| ClustersError::NotFound(id.to_string()))?;
        if row.get::<_, &str>(1) != "active" {
            return Err(ClustersError::Draining(id.to_string()));
        }
        return Ok(Placement { cluster: row.get(0), database_url: row.get(3) });
    }
    if let Some(row) = client.query_opt(sql, &[&home]).await? {
        if row.get::<_, &str>(1) == "active" && row.get::<_, &str>(2) == "shared" {
            return Ok(Placement { cluster: row.get(0), database_url: row.get(3) });
        }
    }
    let fewest = "SELECT c.id, c.database_url FROM platform.clusters c WHERE c.state = 'active' AND c.kind = 'shared' \
                  ORDER BY (SELECT count(*) FROM platform.tenants t WHERE t.cluster_id = c.id), c.id LIMIT 1";
    let row = client.query_opt(fewest, &[]).await?.ok_or(ClustersError::NoneActive)?;
    Ok(Placement { cluster: row.get(0), database_url: row.get(1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_is_shown_without_its_password() {
        let shown = describe_database("postgres://app:s3cret@db.internal:6543/tessera_b");
        assert_eq!(shown, "db.internal:6543/tessera_b");
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn names_and_kinds_are_checked() {
        let new = |id: &str, kind: Option<&str>, partner: Option<&str>| NewCluster {
            id: id.into(),
            name: None,
            kind: kind.map(Into::into),
            partner: partner.map(Into::into),
            database_url: None,
            amqp_url: None,
        };
        assert_eq!(check(&new("eu-2", None, None)).unwrap(), "shared");
        assert_eq!(check(&new("partner-x", Some("dedicated"), Some("x"))).unwrap(), "dedicated");
        for bad in [new("Eu", None, None), new("", None, None), new("a_b", None, None), new("p", Some("dedicated"), None), new("p", Some("big"), None)] {
            assert!(matches!(check(&bad), Err(ClustersError::Invalid(_))), "{}", bad.id);
        }
    }
}
