//! Per-request telemetry: the request id (an incoming valid `X-Request-Id` or a fresh UUID
//! v4, echoed in the response), the request span that every log line and actor call of
//! the request runs in, one completion log line, and the in-flight gauge.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use prometheus::IntGauge;
use std::time::Instant;
use tracing::Instrument as _;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id, available to handlers through request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// 1-128 characters of `[A-Za-z0-9._-]`; anything else is replaced by a fresh id.
fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The in-flight gauge, registered as app data.
#[derive(Clone)]
pub struct Inflight(pub IntGauge);

/// Decrements the gauge however the request ends (including a dropped connection).
struct InflightGuard(IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn trace_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let _inflight = req.app_data::<Inflight>().map(|g| {
        g.0.inc();
        InflightGuard(g.0.clone())
    });
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
        status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    req.extensions_mut().insert(RequestId(id.clone()));
    let started = Instant::now();
    let mut res = next.call(req).instrument(span.clone()).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(X_REQUEST_ID, value);
    }
    let status = res.status().as_u16();
    span.record("status", status);
    span.record(
        "duration_ms",
        (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
    );
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!("request failed");
        } else {
            tracing::info!("request completed");
        }
    });
    Ok(res)
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_id_rules() {
        assert!(super::acceptable("abc-123_X.y"));
        assert!(!super::acceptable(""));
        assert!(!super::acceptable(&"a".repeat(129)));
        assert!(!super::acceptable("has space"));
        assert!(!super::acceptable("semi;colon"));
    }
}

/// The method as the client sent it, when [`bound_method`] replaced it.
#[derive(Debug, Clone)]
pub struct SentMethod(pub actix_web::http::Method);

/// Metric labels stay bounded (CONTRACT.md §7): a method outside the standard set (any
/// token is a valid HTTP method, so a client could mint one series per request) is
/// replaced by `other` before the metrics middleware sees it. No route serves `other`,
/// so the request is answered 404/405 as before; error messages use the method sent.
pub async fn bound_method(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    use actix_web::http::Method;
    let standard = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    if !standard.contains(req.method()) {
        if let Ok(other) = Method::from_bytes(b"other") {
            let sent = std::mem::replace(&mut req.head_mut().method, other);
            req.extensions_mut().insert(SentMethod(sent));
        }
    }
    next.call(req).await
}
