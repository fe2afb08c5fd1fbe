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
use tessera_runtime::limits::LimitError;

use crate::{
    audit::AuditError,
    gateway::{self, AdmissionError, BackendError, GatewayError, Refusal},
    auth::AuthError,
    cluster::ClusterError,
    database::DbError,
    egress::EgressError,
    limits::LimitsError,
    provisioning::{clusters::ClustersError, domains::DomainsError, ProvisioningError},
    tenancy::{HostError, SlugError},
    resources::{execution_controls::ControlError, webhooks::WebhookError, ResourceError},
    body::BodyError,
    telemetry::with_causes,
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
    /// Further headers: a managed API's `RateLimit-*` on its 429.
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_secs: None, errors: None, execution_id: None, headers: Vec::new() }
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
        Self::internal_logged()
    }

    /// The 500 of a request whose handler panicked (the panic is logged
    /// where it is caught), the same as any other internal error.
    pub fn panicked() -> Self {
        Self::internal_logged()
    }

    fn internal_logged() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "an internal error occurred")
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
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
        for (name, value) in &self.headers {
            response.insert_header((*name, value.clone()));
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
        let (status, code) = match e {
            MissingCredentials => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            InvalidApiKey => (StatusCode::UNAUTHORIZED, "invalid_api_key"),
            Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            WrongHost => (StatusCode::NOT_FOUND, "wrong_host"),
            NoSuchTenant(_) => (StatusCode::NOT_FOUND, "tenant_not_found"),
            TenantSuspended(_) => (StatusCode::FORBIDDEN, "tenant_suspended"),
            RateLimited { retry_after_secs } => {
                let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", e.to_string());
                error.retry_after_secs = Some(retry_after_secs);
                return error;
            }
            TenantMoving { retry_after_secs } => {
                let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "tenant_moving", e.to_string());
                error.retry_after_secs = Some(retry_after_secs);
                return error;
            }
            // An unreachable database is a 503 wherever it surfaces.
            Db(db) => return db.into(),
            Hashing(_) | Token(_) => return ApiError::internal(e),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ProvisioningError> for ApiError {
    fn from(e: ProvisioningError) -> Self {
        use ProvisioningError::*;
        let (status, code) = match e {
            Slug(_) => (StatusCode::BAD_REQUEST, "invalid_slug"),
            Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ConfirmationMismatch => (StatusCode::BAD_REQUEST, "confirmation_required"),
            SlugTaken(_) => (StatusCode::CONFLICT, "tenant_exists"),
            OwnerExists => (StatusCode::CONFLICT, "owner_exists"),
            NotFound(_) => (StatusCode::NOT_FOUND, "tenant_not_found"),
            MoveInProgress(_) => (StatusCode::CONFLICT, "move_in_progress"),
            MoveTimedOut { .. } => (StatusCode::CONFLICT, "move_timed_out"),
            Db(db) => return db.into(),
            Auth(auth) => return auth.into(),
            Cluster(cluster) => return cluster.into(),
            Migration(_) | Export(_) => return ApiError::internal(e),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<DomainsError> for ApiError {
    fn from(e: DomainsError) -> Self {
        use DomainsError::*;
        let (status, code) = match e {
            Invalid(..) => (StatusCode::BAD_REQUEST, "invalid_domain"),
            Taken(_) => (StatusCode::CONFLICT, "domain_taken"),
            NotFound { .. } => (StatusCode::NOT_FOUND, "domain_not_found"),
            NoTenant(_) => (StatusCode::NOT_FOUND, "tenant_not_found"),
            NotVerified { .. } => (StatusCode::CONFLICT, "domain_not_verified"),
            Lookup(_) => (StatusCode::BAD_GATEWAY, "dns_lookup_failed"),
            Db(db) => return db.into(),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ClustersError> for ApiError {
    fn from(e: ClustersError) -> Self {
        use ClustersError::*;
        let (status, code) = match e {
            Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            NotFound(_) => (StatusCode::NOT_FOUND, "cluster_not_found"),
            Exists(_) => (StatusCode::CONFLICT, "cluster_exists"),
            Draining(_) => (StatusCode::CONFLICT, "cluster_draining"),
            NoneActive => (StatusCode::CONFLICT, "no_active_cluster"),
            Unreachable { .. } => (StatusCode::BAD_GATEWAY, "cluster_unreachable"),
            Db(db) => return db.into(),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ResourceError> for ApiError {
    fn from(e: ResourceError) -> Self {
        use ResourceError::*;
        let (status, code) = match e {
            Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            InvalidIdempotencyKey(_) => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            InvalidDefinition(ref errors) => {
                let mut api = ApiError::bad_request("invalid_definition", e.to_string());
                api.errors = Some(serde_json::to_value(errors.errors()).expect("definition errors serialise"));
                return api;
            }
            NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            InUse { .. } => (StatusCode::CONFLICT, "in_use"),
            LastOwner => (StatusCode::CONFLICT, "last_owner"),
            EgressDenied(_) => (StatusCode::FORBIDDEN, "egress_denied"),
            // A caller without the role, and every other refusal of a
            // caller, is answered as `auth` answers it wherever it surfaces.
            Forbidden(auth) | Auth(auth) => return auth.into(),
            Db(db) => return db.into(),
            Sealing(_) => return ApiError::internal(e),
            Stopping => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            RateLimited { retry_after_secs, .. } => {
                let mut api = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string());
                api.retry_after_secs = Some(retry_after_secs);
                return api;
            }
            // A backlog drains as the tenant's worker runs: try again soon.
            Limit(ref limit) if limit.code == "too_many_queued_executions" => {
                let mut api = ApiError::new(StatusCode::TOO_MANY_REQUESTS, limit.code, e.to_string());
                api.retry_after_secs = Some(1);
                return api;
            }
            // Nothing frees room but time (retention) or the platform owner.
            Limit(ref exceeded) => (StatusCode::TOO_MANY_REQUESTS, exceeded.code),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<LimitsError> for ApiError {
    fn from(e: LimitsError) -> Self {
        let (status, code) = match e {
            LimitsError::NotFound(_) => (StatusCode::NOT_FOUND, "tenant_not_found"),
            LimitsError::Invalid(LimitError::Unknown { .. }) => (StatusCode::BAD_REQUEST, "unknown_limit"),
            LimitsError::Invalid(_) | LimitsError::NotANumber { .. } | LimitsError::AboveNode { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_limit")
            }
            LimitsError::Db(db) => return db.into(),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        let (status, code) = match e {
            ClusterError::Db(db) => return db.into(),
            ClusterError::InvalidNodeId(_) => (StatusCode::BAD_REQUEST, "invalid_node_id"),
            ClusterError::UnknownNode(_) => (StatusCode::NOT_FOUND, "node_not_found"),
            ClusterError::UnknownCluster(_) => (StatusCode::NOT_FOUND, "cluster_not_found"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<EgressError> for ApiError {
    fn from(e: EgressError) -> Self {
        use EgressError::*;
        let (status, code) = match e {
            InvalidRule(_) | NoRules => (StatusCode::BAD_REQUEST, "invalid_egress_rule"),
            // The action is a path segment: another one is another endpoint.
            UnknownAction(_) => (StatusCode::NOT_FOUND, "not_found"),
            TenantNotFound(_) => (StatusCode::NOT_FOUND, "tenant_not_found"),
            Db(db) => return db.into(),
        };
        ApiError::new(status, code, e.to_string())
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
        let (status, code) = match e {
            InvalidSignature => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            StaleSignature { .. } => (StatusCode::UNAUTHORIZED, "stale_signature"),
            ExecutionFailed { id } => {
                let mut error = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "execution_failed", e.to_string());
                error.execution_id = Some(id);
                return error;
            }
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            NotUtf8 => (StatusCode::BAD_REQUEST, "invalid_body"),
            InvalidIdempotencyKey(_) => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            SecretUnavailable(_) | StoredTrigger { .. } => return ApiError::internal(e),
            Auth(auth) => return auth.into(),
            Resource(resource) => return resource.into(),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let code = match e {
            ControlError::Finished { .. } => "execution_finished",
            ControlError::NotFailed { .. } => "execution_not_failed",
            ControlError::Resource(resource) => return resource.into(),
        };
        ApiError::new(StatusCode::CONFLICT, code, e.to_string())
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Invalid { .. } => ApiError::bad_request("invalid_request", e.to_string()),
            AuditError::Db(db) => db.into(),
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        use GatewayError::*;
        let (status, code) = match &e {
            NoSuchApi { .. } => (StatusCode::NOT_FOUND, "api_not_found"),
            NoSuchRoute { .. } => (StatusCode::NOT_FOUND, "route_not_found"),
            MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            DotSegment => (StatusCode::BAD_REQUEST, "invalid_path"),
            MissingKey => (StatusCode::UNAUTHORIZED, "missing_api_key"),
            MissingToken => (StatusCode::UNAUTHORIZED, "missing_token"),
            InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            Jwks(_) => (StatusCode::BAD_GATEWAY, "jwks_unavailable"),
            CorsRefused { .. } => (StatusCode::FORBIDDEN, "cors_origin_not_allowed"),
            Backend(BackendError::Refused) => (StatusCode::BAD_GATEWAY, "backend_refused"),
            Backend(BackendError::Unreachable) => (StatusCode::BAD_GATEWAY, "backend_unreachable"),
            Backend(BackendError::Timeout(_)) => (StatusCode::GATEWAY_TIMEOUT, "backend_timeout"),
            Backend(BackendError::TooLarge) => (StatusCode::BAD_GATEWAY, "backend_answer_too_large"),
            Backend(BackendError::NotJson) => (StatusCode::BAD_GATEWAY, "transform_failed"),
            Admission(AdmissionError::UnknownKey) => (StatusCode::UNAUTHORIZED, "invalid_api_key"),
            Admission(AdmissionError::RateLimited { limits, retry_after_ms, .. } | AdmissionError::QuotaExceeded { limits, retry_after_ms, .. }) => {
                let code = if matches!(e, Admission(AdmissionError::RateLimited { .. })) { "rate_limited" } else { "quota_exceeded" };
                let mut api = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, e.to_string());
                api.retry_after_secs = Some(retry_after_ms.div_ceil(1000));
                api.headers = gateway::rate_headers(limits, 0.0, Some(*retry_after_ms));
                return api;
            }
            Admission(AdmissionError::Db(_)) | Db(_) => {
                let (Admission(AdmissionError::Db(db)) | Db(db)) = e else { unreachable!() };
                return db.into();
            }
            InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            RequestInvalid(errors) => {
                let mut api = ApiError::bad_request("request_invalid", e.to_string());
                api.errors = Some(serde_json::to_value(errors).expect("schema errors serialise"));
                return api;
            }
            Transform { .. } => (StatusCode::BAD_GATEWAY, "transform_failed"),
            Failed { execution_id, .. } => {
                let mut api = ApiError::new(StatusCode::BAD_GATEWAY, "integration_failed", e.to_string());
                api.execution_id = Some(*execution_id);
                return api;
            }
            Unfinished { execution_id } => {
                let mut api = ApiError::new(StatusCode::GATEWAY_TIMEOUT, "integration_timeout", e.to_string());
                api.execution_id = Some(*execution_id);
                return api;
            }
            Start(_) => {
                let Start(resource) = e else { unreachable!() };
                return resource.into();
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// A refused call of a managed API keeps the headers that go with it (CORS, deprecation).
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let mut api = ApiError::from(refusal.error);
        api.headers.extend(refusal.headers);
        api
    }
}

/// A query string that does not parse, wherever it is read.
impl From<QueryPayloadError> for ApiError {
    fn from(e: QueryPayloadError) -> Self {
        ApiError::bad_request("invalid_query", e.to_string())
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
    ApiError::from(err).into()
}


#[cfg(test)]
mod tests {
    use actix_web::ResponseError;

    use super::*;

    fn refusals() -> Vec<(AuthError, StatusCode, &'static str)> {
        vec![
            (AuthError::MissingCredentials, StatusCode::UNAUTHORIZED, "unauthenticated"),
            (AuthError::InvalidToken, StatusCode::UNAUTHORIZED, "invalid_token"),
            (AuthError::InvalidApiKey, StatusCode::UNAUTHORIZED, "invalid_api_key"),
            (AuthError::Forbidden { required: "editor" }, StatusCode::FORBIDDEN, "forbidden"),
            (AuthError::WrongHost, StatusCode::NOT_FOUND, "wrong_host"),
            (AuthError::NoSuchTenant("acme".into()), StatusCode::NOT_FOUND, "tenant_not_found"),
            (AuthError::TenantSuspended("acme".into()), StatusCode::FORBIDDEN, "tenant_suspended"),
            (AuthError::RateLimited { retry_after_secs: 3 }, StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            (AuthError::TenantMoving { retry_after_secs: 1 }, StatusCode::SERVICE_UNAVAILABLE, "tenant_moving"),
            (AuthError::Hashing("boom".into()), StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        ]
    }

    /// A refusal of the caller is answered alike whether it surfaces by
    /// itself, through a resource operation, or through a webhook.
    #[test]
    fn an_auth_error_has_one_status_and_code_wherever_it_surfaces() {
        for (error, status, code) in refusals() {
            let direct = ApiError::from(error);
            assert_eq!((direct.status_code(), direct.code()), (status, code));
        }
        for (error, status, code) in refusals() {
            let through_resource = ApiError::from(ResourceError::from(error));
            assert_eq!((through_resource.status_code(), through_resource.code()), (status, code), "through a resource");
        }
        for (error, status, code) in refusals() {
            let through_webhook = ApiError::from(WebhookError::Resource(ResourceError::from(error)));
            assert_eq!((through_webhook.status_code(), through_webhook.code()), (status, code), "through a webhook");
        }
    }
}
