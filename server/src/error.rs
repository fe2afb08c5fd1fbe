//! The one place where domain errors become HTTP responses.
//!
//! Every error body is `{"error": {"code": "...", "message": "..."}}`; the
//! code is stable and machine-readable, the message is for people. Internal
//! causes are logged (with the request's span: tenant, request_id) and never
//! sent to the client.

use actix_web::{
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::{header, StatusCode},
    HttpRequest, HttpResponse, ResponseError,
};
use serde_json::json;

use crate::{
    auth::AuthError,
    cluster::ClusterError,
    database::DbError,
    limits::LimitsError,
    provisioning::ProvisioningError,
    tenancy::{HostError, SlugError},
    resources::{execution_controls::ControlError, webhooks::WebhookError, ResourceError},
    routes::BodyError,
};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
    /// Itemised problems, sent as `error.errors` (an invalid definition).
    errors: Option<serde_json::Value>,
    /// The execution an error is about, sent as `error.execution_id`, so a
    /// caller can name it to the tenant.
    execution_id: Option<uuid::Uuid>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_secs: None, errors: None, execution_id: None }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Log the cause (with its whole source chain) and answer 500 without
    /// revealing it.
    pub fn internal(cause: impl std::error::Error) -> Self {
        tracing::error!(error = %with_causes(&cause), "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "an internal error occurred")
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

/// An error and its sources as one line: tokio-postgres, for one, says only
/// "db error" at the top and keeps PostgreSQL's message in the source.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        cause = c.source();
    }
    text
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(errors) = &self.errors {
            error["errors"] = errors.clone();
        }
        if let Some(id) = self.execution_id {
            error["execution_id"] = json!(id);
        }
        response.json(json!({ "error": error }))
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Pool(_) => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database is not reachable; try again")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::NotATenant(_) => ApiError::not_found("tenant_not_found", "no tenant is served at this host"),
            HostError::Missing | HostError::Malformed | HostError::ForeignDomain => {
                ApiError::bad_request("invalid_host", e.to_string())
            }
        }
    }
}

impl From<SlugError> for ApiError {
    fn from(e: SlugError) -> Self {
        ApiError::bad_request("invalid_slug", e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        use AuthError::*;
        let status = match e {
            MissingCredentials | InvalidToken | InvalidCredentials | InvalidApiKey => StatusCode::UNAUTHORIZED,
            Forbidden { .. } => StatusCode::FORBIDDEN,
            WrongHost => StatusCode::NOT_FOUND,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            // An unreachable database is a 503 wherever it surfaces.
            Db(db) => return db.into(),
            Hashing(_) | Token(_) => return ApiError::internal(e),
        };
        let mut error = ApiError::new(status, e.code(), e.to_string());
        if let RateLimited { retry_after_secs } = e {
            error.retry_after_secs = Some(retry_after_secs);
        }
        error
    }
}

impl From<ProvisioningError> for ApiError {
    fn from(e: ProvisioningError) -> Self {
        use ProvisioningError::*;
        let status = match e {
            Slug(_) | Invalid(_) | ConfirmationMismatch => StatusCode::BAD_REQUEST,
            SlugTaken(_) | OwnerExists => StatusCode::CONFLICT,
            NotFound(_) => StatusCode::NOT_FOUND,
            Db(db) => return db.into(),
            Auth(auth) => return auth.into(),
            Migration(_) | Export(_) => return ApiError::internal(e),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ResourceError> for ApiError {
    fn from(e: ResourceError) -> Self {
        use ResourceError::*;
        let status = match e {
            Invalid { .. } => StatusCode::BAD_REQUEST,
            InvalidDefinition(ref errors) => {
                let mut api = ApiError::bad_request(e.code(), e.to_string());
                api.errors = Some(serde_json::to_value(errors.errors()).expect("definition errors serialise"));
                return api;
            }
            NotFound { .. } => StatusCode::NOT_FOUND,
            Conflict { .. } | LastOwner => StatusCode::CONFLICT,
            Forbidden(_) | EgressDenied(_) => StatusCode::FORBIDDEN,
            Db(db) => return db.into(),
            Auth(auth) => return auth.into(),
            Sealing(_) => return ApiError::internal(e),
            Stopping => StatusCode::SERVICE_UNAVAILABLE,
            RateLimited { retry_after_secs, .. } => {
                let mut api = ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.code(), e.to_string());
                api.retry_after_secs = Some(retry_after_secs);
                return api;
            }
            // A backlog drains as the tenant's worker runs: try again soon.
            Limit(ref limit) if limit.code == "too_many_queued_executions" => {
                let mut api = ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.code(), e.to_string());
                api.retry_after_secs = Some(1);
                return api;
            }
            // Nothing frees room but time (retention) or the platform owner.
            Limit(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<LimitsError> for ApiError {
    fn from(e: LimitsError) -> Self {
        let status = match e {
            LimitsError::NotFound(_) => StatusCode::NOT_FOUND,
            LimitsError::Invalid(_) | LimitsError::NotANumber { .. } | LimitsError::AboveNode { .. } => StatusCode::BAD_REQUEST,
            LimitsError::Db(db) => return db.into(),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Db(db) => db.into(),
            ClusterError::UnknownNode(_) => ApiError::new(StatusCode::NOT_FOUND, "node_not_found", e.to_string()),
        }
    }
}

impl From<crate::egress::EgressError> for ApiError {
    fn from(e: crate::egress::EgressError) -> Self {
        use crate::egress::EgressError::*;
        let status = match e {
            InvalidRule(_) => StatusCode::BAD_REQUEST,
            TenantNotFound(_) => StatusCode::NOT_FOUND,
            Db(db) => return db.into(),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        let status = match e {
            BodyError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::NotUtf8 | BodyError::Read(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        use WebhookError::*;
        let status = match e {
            InvalidSignature | StaleSignature { .. } => StatusCode::UNAUTHORIZED,
            ExecutionFailed { id } => {
                let mut error = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), e.to_string());
                error.execution_id = Some(id);
                return error;
            }
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidJson(_) | NotUtf8 | InvalidIdempotencyKey(_) => StatusCode::BAD_REQUEST,
            SecretUnavailable(_) | StoredTrigger { .. } => return ApiError::internal(e),
            Auth(auth) => return auth.into(),
            Resource(resource) => return resource.into(),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Finished { .. } | ControlError::NotFailed { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
            }
            ControlError::Resource(resource) => resource.into(),
        }
    }
}

/// Bodies that are not the JSON an endpoint expects.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        ),
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request body must be JSON (Content-Type: application/json)",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::bad_request("invalid_body", e.to_string()),
        JsonPayloadError::Deserialize(e) => ApiError::bad_request("invalid_json", e.to_string()),
        other => ApiError::bad_request("invalid_body", other.to_string()),
    };
    api.into()
}

pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_path", err.to_string()).into()
}

pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_query", err.to_string()).into()
}

/// Unknown routes.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("not_found", "no such endpoint"))
}
