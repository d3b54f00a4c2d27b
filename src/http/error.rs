//! The one HTTP error type and its code table (CONTRACT.md §1.2). Every error body is
//! `{"error": "<message>", "code": "<code>"}`; 5xx messages are opaque and the cause chain
//! goes to the log, once, here.
//!
//! Domain errors arrive as any subsystem's error (each implements
//! [`actors::error::ErrorCode`]) and become [`ApiError::Domain`] through one `From`; the
//! status of each contract code is decided in [`status`] and nowhere else. The other
//! variants are what only the HTTP edge can find wrong (credentials, methods, bodies).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use actors::error::{Code, ErrorCode};
use std::fmt;

#[derive(Debug)]
pub enum ApiError {
    /// An error with a contract code and a message the client may read.
    Domain {
        code: Code,
        message: String,
    },
    Unauthorized,
    Forbidden,
    /// The `Allow` header value, e.g. `GET, POST`.
    MethodNotAllowed(std::sync::Arc<str>),
    PayloadTooLarge(usize),
    /// The credential's request budget is spent; seconds until the next request fits.
    RateLimited(u64),
    UnsupportedMediaType,
    /// Anything unexpected; the cause is logged, the client sees `internal error`.
    Internal(anyhow::Error),
}

/// The status of each contract code: the code table.
fn status(code: Code) -> StatusCode {
    match code {
        Code::InvalidRequest | Code::ValidationFailed => StatusCode::BAD_REQUEST,
        Code::InvalidSignature => StatusCode::UNAUTHORIZED,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Conflict | Code::VersionMismatch | Code::InvalidState | Code::LimitExceeded => {
            StatusCode::CONFLICT
        }
        Code::InsufficientFunds => StatusCode::UNPROCESSABLE_ENTITY,
        Code::Backlogged => StatusCode::TOO_MANY_REQUESTS,
        Code::ExecutorBusy | Code::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    fn domain(code: Code, message: impl Into<String>) -> Self {
        Self::Domain {
            code,
            message: message.into(),
        }
    }

    /// Malformed or empty JSON, unknown field or parameter, wrong type, bad cursor.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::domain(Code::InvalidRequest, message)
    }

    /// A value breaks a rule of the contract (`field: rule`).
    pub fn validation(message: impl Into<String>) -> Self {
        Self::domain(Code::ValidationFailed, message)
    }

    /// `<what> not found`, e.g. for an id in the path that cannot exist.
    pub fn not_found(what: &str) -> Self {
        Self::domain(Code::NotFound, format!("{what} not found"))
    }

    /// A 404 with its whole message (unknown routes).
    pub fn no_route(message: String) -> Self {
        Self::domain(Code::NotFound, message)
    }

    /// `(status, code)` of this error.
    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Domain { code, .. } => (status(*code), code.as_str()),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Domain { message, .. } => message.clone(),
            Self::Unauthorized => "missing or invalid bearer token".to_owned(),
            Self::Forbidden => "this route needs an admin token".to_owned(),
            Self::MethodNotAllowed(allow) => format!("method not allowed; allowed: {allow}"),
            Self::PayloadTooLarge(limit) => {
                format!("request body exceeds the limit of {limit} bytes")
            }
            Self::UnsupportedMediaType => {
                "request body must be sent as application/json".to_owned()
            }
            Self::RateLimited(_) => "too many requests for this credential; retry later".to_owned(),
            Self::Internal(_) => "internal error".to_owned(),
        }
    }
}

/// Every subsystem's error, mapped the same way. A 5xx keeps its cause for the log and
/// shows the client only what the error's `message` allows.
impl<E: ErrorCode> From<E> for ApiError {
    fn from(err: E) -> Self {
        match err.code() {
            Code::Internal => Self::Internal(anyhow::Error::new(err)),
            Code::ServiceUnavailable => {
                if std::error::Error::source(&err).is_some() {
                    tracing::error!(error = %chain(&err), "service unavailable");
                }
                Self::domain(Code::ServiceUnavailable, err.message())
            }
            code => Self::domain(code, err.message()),
        }
    }
}

/// `error: cause: cause…`, for the log.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// The JSON error body.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
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
                if let Ok(allow) = HeaderValue::from_str(allow) {
                    res.insert_header((header::ALLOW, allow));
                }
            }
            Self::Domain {
                code: Code::ServiceUnavailable,
                ..
            } => {
                res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
            }
            Self::Domain {
                code: Code::ExecutorBusy | Code::Backlogged,
                ..
            } => {
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

/// The contract's code for a status that reached the client without one (an error
/// actix-web raised itself: a path that does not decode, a payload error).
fn code_of_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        503 => "service_unavailable",
        s if s >= 500 => "internal",
        _ => "invalid_request",
    }
}

/// Every error leaves as `{error, code}` JSON, including the ones actix-web answers by
/// itself with a plain-text or empty body; their headers (`Allow`, `Retry-After`) are
/// kept. Registered with `ErrorHandlers::default_handler`, innermost, so it sees every
/// response the application makes.
pub fn json_error_body<B: actix_web::body::MessageBody + 'static>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::middleware::ErrorHandlerResponse;
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    if let Some(err) = res.response().error() {
        tracing::debug!(error = %err, status = status.as_u16(), "framework error answered as JSON");
    }
    let (req, old) = res.into_parts();
    let mut new = HttpResponse::build(status);
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = old.headers().get(&name) {
            new.insert_header((name, value.clone()));
        }
    }
    let message = match status.as_u16() {
        s if s >= 500 => "internal error".to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase(),
    };
    let new = new.json(ErrorBody {
        error: &message,
        code: code_of_status(status),
    });
    Ok(ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, new).map_into_right_body(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::automation::AutomationError;
    use actors::StoreError;

    fn answer(err: impl Into<ApiError>) -> (StatusCode, String, String) {
        let err = err.into();
        let (status, code) = err.code();
        (status, code.to_owned(), err.message())
    }

    #[test]
    fn subsystem_errors_map_through_the_code_table() {
        let cases = [
            (
                AutomationError::NotFound("job"),
                StatusCode::NOT_FOUND,
                "not_found",
                "job not found",
            ),
            (
                AutomationError::Conflict("taken".into()),
                StatusCode::CONFLICT,
                "conflict",
                "taken",
            ),
            (
                actors::ValidationError::new("name", "is required").into(),
                StatusCode::BAD_REQUEST,
                "validation_failed",
                "name: is required",
            ),
            (
                StoreError::VersionMismatch("at 2".into()).into(),
                StatusCode::CONFLICT,
                "version_mismatch",
                "at 2",
            ),
            (
                StoreError::Unavailable(anyhow::anyhow!("pool timed out")).into(),
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "database unavailable; retry shortly",
            ),
            (
                actors::supervisor::Unavailable("automation").into(),
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the automation service is restarting; retry shortly",
            ),
            (
                StoreError::LimitExceeded("jobs: at most 2 per account".into()).into(),
                StatusCode::CONFLICT,
                "limit_exceeded",
                "jobs: at most 2 per account",
            ),
            (
                StoreError::Internal(anyhow::anyhow!("secret detail")).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            ),
        ];
        for (err, status, code, message) in cases {
            assert_eq!(
                answer(err),
                (status, code.to_owned(), message.to_owned()),
                "each code has one status and internal causes stay hidden"
            );
        }
    }
}
