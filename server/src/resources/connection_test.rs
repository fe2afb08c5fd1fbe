//! "Test connection": try one of the tenant's connections for real and say
//! whether it works, before an integration depends on it. Editors and
//! above (a test opens the connection's secrets to use them). The answer
//! never holds a secret: failure details are scrubbed of them.

use std::time::Duration;

use serde::Serialize;
use tessera_runtime::{
    definition::{ConnectionSpec, OAuth2ClientCredentialsConnection},
    execution::{
        io::{scrub, url_secrets},
        oauth,
    },
};
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

pub async fn test(db: &TenantDb, keys: &KeyRing, caller: &TenantCaller, name: &str) -> Result<TestResult, ResourceError> {
    caller.require(Role::Editor)?;
    let name = parse_name(connections::KIND, name)?;
    let connection =
        connections::open(db, keys, &caller.tenant, &name).await?.ok_or_else(|| connections::not_found(name.as_str()))?;
    let spec = &connection.spec;
    let secrets = secrets_of(spec);
    let result = match tokio::time::timeout(TEST_TIMEOUT, probe(spec)).await {
        Ok(Ok(detail)) => TestResult { ok: true, detail },
        Ok(Err(detail)) => TestResult { ok: false, detail },
        Err(_) => TestResult { ok: false, detail: format!("no answer within {} s", TEST_TIMEOUT.as_secs()) },
    };
    tracing::info!(connection = %name, kind = %spec.kind(), ok = result.ok, "connection tested");
    Ok(TestResult { detail: scrub(&result.detail, &secrets), ..result })
}

/// Try the connection: `Ok` with what worked, `Err` with what did not.
async fn probe(spec: &ConnectionSpec) -> Result<String, String> {
    match spec {
        ConnectionSpec::Postgres(c) => postgres(c.url.expose()).await,
        ConnectionSpec::Amqp(c) => amqp(c.url.expose()).await,
        ConnectionSpec::OAuth2ClientCredentials(c) => oauth2(c).await,
        other => Ok(format!("{} credentials are sent with each request; they are checked on first use", other.kind())),
    }
}

async fn postgres(url: &str) -> Result<String, String> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|_| "the URL is not a valid PostgreSQL connection URL".to_string())?;
    config.connect_timeout(TEST_TIMEOUT);
    let (client, connection) = config.connect(NoTls).await.map_err(|e| format!("cannot connect: {}", chain(&e)))?;
    let driver = tokio::spawn(connection);
    let answer = client.simple_query("SELECT 1").await.map_err(|e| format!("SELECT 1 failed: {}", chain(&e)));
    drop(client); // ends the session, so its driver task ends too
    let _ = driver.await;
    answer.map(|_| "connected; SELECT 1 answered".to_string())
}

async fn amqp(url: &str) -> Result<String, String> {
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot connect: {}", chain(&e)))?;
    connection.close(200, "connection test done").await.map_err(|e| format!("cannot close the connection: {}", chain(&e)))?;
    Ok("connected to the broker and closed the connection".into())
}

async fn oauth2(connection: &OAuth2ClientCredentialsConnection) -> Result<String, String> {
    let client = reqwest::Client::builder().timeout(TEST_TIMEOUT).build().map_err(|e| e.to_string())?;
    match oauth::fetch_token(&client, connection).await {
        Ok(_) => Ok("the token endpoint issued an access token".into()),
        Err(e) => Err(e.to_string()),
    }
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
