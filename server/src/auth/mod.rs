//! Who is calling: passwords, tokens, API keys, login throttling, and the
//! authentication that turns a request's host and credential into a caller
//! with a role (read from requests by `routes::extract`).
//!
//! Must never accept a credential issued for another tenant, and must answer
//! a login for an unknown account exactly as for a wrong password.

pub mod api_keys;
mod caller;
mod password;
mod rate_limit;
mod roles;
mod standing;
mod token;

pub use caller::{bearer_credential, client_address, Origin, PlatformCaller, Principal, TenantCaller, TenantHost};
pub use password::Passwords;
pub use rate_limit::LoginLimiter;
pub use roles::Role;
pub use standing::{announce_change, AccountStanding, USER_CHANGES_CHANNEL};
pub use token::{tenant_audience, Claims, IssuedToken, TokenKeys, PLATFORM_AUDIENCE};

use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::{
    database::DbError,
    tenancy::{Tenant, TenantDb},
};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("this endpoint needs credentials: a bearer token or an API key")]
    MissingCredentials,
    #[error("the token is invalid, expired, or not valid for this host")]
    InvalidToken,
    #[error("the API key is invalid or revoked")]
    InvalidApiKey,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("this action needs the {required} role or higher")]
    Forbidden { required: &'static str },
    #[error("this endpoint is not served on this host")]
    WrongHost,
    #[error("there is no tenant '{0}'")]
    NoSuchTenant(String),
    #[error("tenant '{0}' is suspended")]
    TenantSuspended(String),
    #[error("this tenant is moving to another cluster; try again in a moment")]
    TenantMoving { retry_after_secs: u64 },
    #[error("too many login attempts; try again later")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("token signing failed: {0}")]
    Token(String),
}

/// Everything authentication needs, built once per node.
#[derive(Clone)]
pub struct AuthService {
    pub tokens: TokenKeys,
    pub passwords: Passwords,
    pub limiter: LoginLimiter,
    pub standing: AccountStanding,
}

impl AuthService {
    /// Sign a tenant user in: a token for this tenant only.
    pub async fn login_tenant(
        &self,
        db: &TenantDb,
        tenant: &Tenant,
        email: &str,
        password: String,
        address: &str,
    ) -> Result<IssuedToken, AuthError> {
        let email = email.trim().to_lowercase();
        self.limiter.check(&format!("{}:{email}", tenant.id), address)?;
        let row = db.statement(tenant, "SELECT id, password_hash, role, disabled FROM @tenant.users WHERE email = $1", &[&email])
            .await?
            .into_iter()
            .next();
        let hash = row.as_ref().map(|r| r.get::<_, String>(1));
        let verified = self.passwords.verify(password, hash).await?;
        let row = match row {
            Some(row) if verified && !row.get::<_, bool>(3) => row,
            _ => return Err(AuthError::InvalidCredentials),
        };
        let role: Role = row.try_get(2).map_err(DbError::from)?;
        let user_id: Uuid = row.get(0);
        self.tokens.issue(user_id, &email, tenant_audience(tenant.id), Some(tenant.id), Some(role))
    }

    /// Sign a platform owner in: a token valid only on the platform host.
    pub async fn login_platform(&self, pool: &Pool, email: &str, password: String, address: &str) -> Result<IssuedToken, AuthError> {
        let email = email.trim().to_lowercase();
        self.limiter.check(&format!("platform:{email}"), address)?;
        let row = {
            let client = pool.get().await.map_err(DbError::from)?;
            client
                .query_opt("SELECT id, password_hash FROM platform.owners WHERE email = $1", &[&email])
                .await
                .map_err(DbError::from)?
        };
        let verified = self.passwords.verify(password, row.as_ref().map(|r| r.get(1))).await?;
        match row {
            Some(row) if verified => self.tokens.issue(row.get(0), &email, PLATFORM_AUDIENCE.into(), None, None),
            _ => Err(AuthError::InvalidCredentials),
        }
    }
}
