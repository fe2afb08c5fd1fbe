//! "Test connection": try one of the tenant's connections for real and say
//! whether it works, before an integration depends on it. Editors and
//! above (a test opens the connection's secrets to use them). The answer
//! never holds a secret: failure details are scrubbed of them. A test
//! connects through the egress gate like a step: a refused address is a
//! 403 `egress_denied`, and nothing is sent.

use std::time::Duration;

use serde::Serialize;
use tessera_runtime::{
    amqp::AmqpError,
    definition::{ConnectionSpec, OAuth2ClientCredentialsConnection},
    egress::{Denied, Egress, EgressError},
    execution::{
        io::{scrub, url_secrets, IoError},
        oauth, sql,
    },
};
use uuid::Uuid;
use tokio_postgres::NoTls;

use super::{connections, parse_name, ResourceError};
use crate::{
    auth::{Role, TenantCaller},
    sealing::KeyRing,
    tenancy::TenantDb,
};

/// A test never takes longer than this.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the connection worked, and what happened, in words.
#[derive(Debug, Serialize)]
pub struct TestResult {
    pub ok: bool,
    pub detail: String,
}

pub async fn test(db: &TenantDb, keys: &KeyRing, egress: &Egress, caller: &TenantCaller, name: &str) -> Result<TestResult, ResourceError> {
    caller.require(Role::Editor)?;
    let name = parse_name(connections::KIND, name)?;
    let connection =
        connections::open(db, keys, &caller.tenant, &name).await?.ok_or_else(|| connections::not_found(name.as_str()))?;
    let spec = &connection.spec;
    let secrets = secrets_of(spec);
    let result = match tokio::time::timeout(TEST_TIMEOUT, probe(egress, caller.tenant.id, spec)).await {
        Ok(Ok(detail)) => TestResult { ok: true, detail },
        Ok(Err(Failed::Denied(denied))) => {
            tracing::info!(connection = %name, kind = %spec.kind(), %denied, "connection test refused by the egress gate");
            return Err(ResourceError::EgressDenied(denied));
        }
        Ok(Err(Failed::Other(detail))) => TestResult { ok: false, detail },
        Err(_) => TestResult { ok: false, detail: format!("no answer within {} s", TEST_TIMEOUT.as_secs()) },
    };
    tracing::info!(connection = %name, kind = %spec.kind(), ok = result.ok, "connection tested");
    Ok(TestResult { detail: scrub(&result.detail, &secrets), ..result })
}

/// Why a test did not work.
enum Failed {
    Denied(Denied),
    Other(String),
}

impl From<String> for Failed {
    fn from(detail: String) -> Self {
        Self::Other(detail)
    }
}

impl From<IoError> for Failed {
    fn from(e: IoError) -> Self {
        match e {
            IoError::EgressDenied(denied) => Self::Denied(denied),
            other => Self::Other(other.to_string()),
        }
    }
}

/// Try the connection: `Ok` with what worked, `Err` with what did not.
async fn probe(egress: &Egress, tenant: Uuid, spec: &ConnectionSpec) -> Result<String, Failed> {
    match spec {
        ConnectionSpec::Postgres(c) => postgres(egress, tenant, c.url.expose()).await,
        ConnectionSpec::Amqp(c) => amqp(egress, tenant, c.url.expose()).await,
        ConnectionSpec::OAuth2ClientCredentials(c) => oauth2(egress, tenant, c).await,
        other => Ok(format!("{} credentials are sent with each request; they are checked on first use", other.kind())),
    }
}

async fn postgres(egress: &Egress, tenant: Uuid, url: &str) -> Result<String, Failed> {
    let gate = egress.tenant(tenant).await.map_err(|e| format!("cannot read the tenant's egress rules: {e}"))?;
    let mut config = sql::gated_config(&gate, url).await?;
    config.connect_timeout(TEST_TIMEOUT);
    let (client, connection) = config.connect(NoTls).await.map_err(|e| format!("cannot connect: {}", chain(&e)))?;
    let driver = tokio::spawn(connection);
    let answer = client.simple_query("SELECT 1").await.map_err(|e| format!("SELECT 1 failed: {}", chain(&e)));
    drop(client); // ends the session, so its driver task ends too
    let _ = driver.await;
    Ok(answer.map(|_| "connected; SELECT 1 answered".to_string())?)
}

async fn amqp(egress: &Egress, tenant: Uuid, url: &str) -> Result<String, Failed> {
    let uri: lapin::uri::AMQPUri = url.parse().map_err(|_| "the URL is not a valid AMQP URL".to_string())?;
    let connection = match tessera_runtime::amqp::connect(egress, tenant, uri, "tested").await {
        Ok(connection) => connection,
        Err(AmqpError::Egress { source: EgressError::Denied(denied), .. }) => return Err(Failed::Denied(denied)),
        Err(e) => return Err(format!("cannot connect: {}", chain(&e)).into()),
    };
    connection.close(200, "connection test done").await.map_err(|e| format!("cannot close the connection: {}", chain(&e)))?;
    Ok("connected to the broker and closed the connection".into())
}

async fn oauth2(egress: &Egress, tenant: Uuid, connection: &OAuth2ClientCredentialsConnection) -> Result<String, Failed> {
    let http = tessera_runtime::execution::http::HttpClient::new();
    oauth::fetch_token(&http, egress, tenant, connection).await?;
    Ok("the token endpoint issued an access token".into())
}

/// Every secret string of a connection, for scrubbing.
fn secrets_of(spec: &ConnectionSpec) -> Vec<String> {
    let secret = match spec {
        ConnectionSpec::Postgres(c) => return url_secrets(c.url.expose()),
        ConnectionSpec::Amqp(c) => return url_secrets(c.url.expose()),
        ConnectionSpec::ApiKey(c) => &c.value,
        ConnectionSpec::Basic(c) => &c.password,
        ConnectionSpec::Bearer(c) => &c.token,
        ConnectionSpec::OAuth2ClientCredentials(c) => &c.client_secret,
    };
    vec![secret.expose().to_string()]
}

fn chain(e: &dyn std::error::Error) -> String {
    oauth::chain(e)
}
