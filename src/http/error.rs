//! The one HTTP error type and its code table (CONTRACT.md §1.2). Every error body is
//! `{"error": "<message>", "code": "<code>"}`; 5xx messages are opaque and the cause chain
//! goes to the log, once, here.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use actors::{StoreError, ValidationError};
use std::fmt;

#[derive(Debug)]
pub enum ApiError {
    /// Malformed or empty JSON, unknown field or parameter, wrong type, bad cursor.
    InvalidRequest(String),
    /// A value breaks a rule of the contract.
    Validation(String),
    Unauthorized,
    /// A webhook's `X-Webhook-Signature` is missing or wrong.
    InvalidSignature,
    Forbidden,
    /// What was not found, e.g. `account not found` or `no route for GET /x`.
    NotFound(String),
    /// The `Allow` header value, e.g. `GET, POST`.
    MethodNotAllowed(&'static str),
    Conflict(String),
    /// `If-Match` named another version.
    VersionMismatch(String),
    InvalidState(String),
    PayloadTooLarge(usize),
    /// The credential's request budget is spent; seconds until the next request fits.
    RateLimited(u64),
    UnsupportedMediaType,
    /// The executor pool and its queue are full.
    ExecutorBusy,
    /// The subsystem's actor is restarting or failed.
    ServiceUnavailable(String),
    /// Anything unexpected; the cause is logged, the client sees `internal error`.
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    /// Maps a store failure, naming the resource for a 404.
    pub fn from_store(err: StoreError, what: &str) -> Self {
        match err {
            StoreError::NotFound => Self::not_found(what),
            StoreError::Conflict(msg) => Self::Conflict(msg),
            StoreError::VersionMismatch(msg) => Self::VersionMismatch(msg),
            StoreError::InvalidState(msg) => Self::InvalidState(msg),
            StoreError::Unavailable(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "database unavailable");
                Self::ServiceUnavailable("database unavailable; retry shortly".to_owned())
            }
            StoreError::Internal(cause) => Self::Internal(cause),
        }
    }

    /// `(status, code)` for each variant: the code table.
    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Validation(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidSignature => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::VersionMismatch(_) => (StatusCode::CONFLICT, "version_mismatch"),
            Self::InvalidState(_) => (StatusCode::CONFLICT, "invalid_state"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::ExecutorBusy => (StatusCode::SERVICE_UNAVAILABLE, "executor_busy"),
            Self::ServiceUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn message(&self) -> String {
        match self {
            Self::InvalidRequest(m)
            | Self::Validation(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::VersionMismatch(m)
            | Self::InvalidState(m)
            | Self::ServiceUnavailable(m) => m.clone(),
            Self::Unauthorized => "missing or invalid bearer token".to_owned(),
            Self::InvalidSignature => "webhook signature missing or wrong".to_owned(),
            Self::Forbidden => "this route needs an admin token".to_owned(),
            Self::MethodNotAllowed(allow) => format!("method not allowed; allowed: {allow}"),
            Self::PayloadTooLarge(limit) => {
                format!("request body exceeds the limit of {limit} bytes")
            }
            Self::UnsupportedMediaType => {
                "request body must be sent as application/json".to_owned()
            }
            Self::ExecutorBusy => {
                "all executors are busy and the queue is full; retry shortly".to_owned()
            }
            Self::RateLimited(_) => "too many requests for this credential; retry later".to_owned(),
            Self::Internal(_) => "internal error".to_owned(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        Self::Validation(err.to_string())
    }
}

impl From<actors::supervisor::Unavailable> for ApiError {
    fn from(err: actors::supervisor::Unavailable) -> Self {
        Self::ServiceUnavailable(format!(
            "the {} service is restarting; retry shortly",
            err.0
        ))
    }
}

/// The JSON error body.
#[derive(serde::Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub code: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.code();
        if let Self::Internal(cause) = self {
            tracing::error!(error = %format!("{cause:#}"), "internal error");
        }
        let message = self.message();
        let mut res = HttpResponse::build(status);
        match self {
            Self::Unauthorized => {
                res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::MethodNotAllowed(allow) => {
                res.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
            }
            Self::ServiceUnavailable(_) => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
            }
            Self::ExecutorBusy => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            Self::RateLimited(seconds) => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from(*seconds)));
            }
            _ => {}
        }
        res.json(ErrorBody {
            error: &message,
            code,
        })
    }
}
