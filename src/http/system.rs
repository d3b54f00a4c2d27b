//! `/healthz` (liveness), `/readyz` (readiness with checks) and `/metrics` (Prometheus).

use super::error::ApiError;
use super::extract::{NoParams, Query};
use super::state::AppState;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use actors::health::{ActorStatus, Phase};
use prometheus::{Encoder as _, TextEncoder};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// The process is alive. Nothing else is checked: a liveness probe must not restart a pod
/// because its database is down.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    summary = "Liveness: the process is up",
    security(()),
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)),
)]
pub async fn healthz(_: Query<NoParams>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready to take traffic: started and not shutting down, database reachable (2 s ping),
/// no actor `failed`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    summary = "Readiness: started, database reachable, no actor failed",
    security(()),
    responses((status = 200, description = "`{\"status\": \"ready\", \"checks\"}`", body = Object), (status = 503, description = "`{\"error\", \"code\": \"not_ready\", \"checks\"}`, with Retry-After", body = Object)),
)]
pub async fn readyz(state: web::Data<AppState>, _: Query<NoParams>) -> HttpResponse {
    let database = match &state.pool {
        None => "memory",
        Some(pool) => {
            match tokio::time::timeout(Duration::from_secs(2), actors::store::postgres::ping(pool))
                .await
            {
                Ok(Ok(())) => "ok",
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "readiness: database ping failed");
                    "unreachable"
                }
                Err(_) => {
                    tracing::warn!("readiness: database ping timed out");
                    "unreachable"
                }
            }
        }
    };
    let actors = state.health.actors();
    let any_failed = actors.values().any(|s| *s == ActorStatus::Failed);
    let phase = state.health.phase();
    let checks = json!({
        "database": database,
        "auth": if state.auth.disabled() { "disabled" } else { "enabled" },
        "sandbox": state.health.sandbox().as_str(),
        "actors": actors.iter().map(|(k, v)| (*k, v.as_str())).collect::<BTreeMap<_, _>>(),
    });
    if phase == Phase::Ready && database != "unreachable" && !any_failed {
        return HttpResponse::Ok().json(json!({"status": "ready", "checks": checks}));
    }
    let reason = match phase {
        Phase::Starting => "starting",
        Phase::ShuttingDown => "shutting down",
        Phase::Ready if database == "unreachable" => "database unreachable",
        Phase::Ready => "an actor has failed",
    };
    HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")))
        .json(
            json!({"error": format!("not ready: {reason}"), "code": "not_ready", "checks": checks}),
        )
}

/// Prometheus text. When `METRICS_REQUIRE_TOKEN` is set it is admin-only (403 for account
/// tokens); otherwise anyone may read it.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    summary = "Prometheus metrics (admin-only when METRICS_REQUIRE_TOKEN is set)",
    security((), ("bearer" = [])),
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")),
)]
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    if state.metrics_require_token {
        // Not `Option<Caller>`: an extractor error there would read as "no caller" and
        // skip the admin check. The middleware already refused requests without a token.
        super::auth::caller_of(&req)?.require_admin()?;
        super::auth::admit(&req)?;
    }
    let mut buffer = Vec::new();
    TextEncoder::new()
        .encode(&state.registry.gather(), &mut buffer)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(buffer))
}
