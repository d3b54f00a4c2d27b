//! `/accounts/{id}/triggers` (CRUD) and the public `POST /webhooks/{trigger_id}`.

use super::auth::AccountPath;
use super::error::ApiError;
use super::extract::{JsonBody, NoParams, Query, RawBody};
use super::json::timestamp;
use super::list_under_account;
use super::pagination::ListQuery;
use super::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::error::{Code, ErrorCode as _};
use actors::ids::TriggerId;
use actors::triggers::{
    AcceptWebhook, CreateTrigger, DeleteTrigger, GetTrigger, ListTriggers, NewTrigger, Trigger,
    TriggerInput, TriggerPatch, TriggerPatchInput, TriggerType, TriggerWithSecret, UpdateTrigger,
    VerifyWebhook,
};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[schema(as = Trigger)]
pub struct TriggerBody {
    id: String,
    account_id: String,
    function_id: String,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    rule: String,
    config: BTreeMap<String, String>,
    enabled: bool,
    #[schema(required = true)]
    next_run: Option<String>,
    #[schema(required = true)]
    last_fired_at: Option<String>,
    #[schema(required = true)]
    webhook_path: Option<String>,
    created_at: String,
    updated_at: String,
    /// Only in the creation and rotation responses of webhook triggers.
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_secret: Option<String>,
}

impl From<Trigger> for TriggerBody {
    fn from(t: Trigger) -> Self {
        let kind = t.kind();
        Self {
            id: t.id.to_string(),
            account_id: t.account_id.to_string(),
            function_id: t.function_id.to_string(),
            kind: kind.as_str(),
            rule: t.rule.text(),
            config: t.config,
            enabled: t.enabled,
            next_run: t.next_run.as_ref().map(timestamp),
            last_fired_at: t.last_fired_at.as_ref().map(timestamp),
            webhook_path: (kind == TriggerType::Webhook).then(|| format!("/webhooks/{}", t.id)),
            created_at: timestamp(&t.created_at),
            updated_at: timestamp(&t.updated_at),
            webhook_secret: None,
        }
    }
}

impl From<TriggerWithSecret> for TriggerBody {
    fn from(t: TriggerWithSecret) -> Self {
        Self {
            // The response itself must carry it: shown once, here.
            webhook_secret: t.webhook_secret.as_deref().cloned(),
            ..Self::from(t.trigger)
        }
    }
}

fn trigger_id(raw: &str) -> Result<TriggerId, ApiError> {
    TriggerId::parse(raw).ok_or_else(|| ApiError::not_found("trigger"))
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/triggers",
    tag = "triggers",
    summary = "Create a cron, event or webhook trigger",
    request_body = actors::triggers::TriggerInput,
    responses((status = 201, description = "The trigger (a webhook trigger shows its secret once)", body = TriggerBody)),
)]
pub async fn create(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<TriggerInput>,
) -> Result<HttpResponse, ApiError> {
    let trigger = NewTrigger::parse(input)?;
    let created = state
        .triggers
        .ask(CreateTrigger { account, trigger })
        .await?;
    Ok(HttpResponse::Created().json(TriggerBody::from(created)))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/triggers",
    tag = "triggers",
    summary = "List the account's triggers",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of triggers", body = super::pagination::ListBody<TriggerBody>)),
)]
pub async fn list(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    list_under_account(
        &state,
        account,
        &params,
        "triggers",
        |page| state.triggers.ask(ListTriggers { account, page }),
        TriggerBody::from,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/triggers/{trigger_id}",
    tag = "triggers",
    summary = "Get a trigger",
    responses((status = 200, description = "The trigger", body = TriggerBody)),
)]
pub async fn get(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = trigger_id(&path.1)?;
    let trigger = state.triggers.ask(GetTrigger { account, id }).await?;
    Ok(HttpResponse::Ok().json(TriggerBody::from(trigger)))
}

#[utoipa::path(
    patch,
    path = "/accounts/{id}/triggers/{trigger_id}",
    tag = "triggers",
    summary = "Change a trigger",
    request_body = actors::triggers::TriggerPatchInput,
    responses((status = 200, description = "The trigger", body = TriggerBody)),
)]
pub async fn update(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<TriggerPatchInput>,
) -> Result<HttpResponse, ApiError> {
    let id = trigger_id(&path.1)?;
    let patch = TriggerPatch::parse(input)?;
    let updated = state
        .triggers
        .ask(UpdateTrigger { account, id, patch })
        .await?;
    Ok(HttpResponse::Ok().json(TriggerBody::from(updated)))
}

#[utoipa::path(
    delete,
    path = "/accounts/{id}/triggers/{trigger_id}",
    tag = "triggers",
    summary = "Delete a trigger",
    responses((status = 204, description = "Deleted")),
)]
pub async fn delete(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = trigger_id(&path.1)?;
    state.triggers.ask(DeleteTrigger { account, id }).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, ToSchema)]
#[schema(as = WebhookAccepted)]
struct Accepted {
    trigger_id: String,
    execution_id: String,
}

/// `POST /webhooks/{trigger_id}`: public, authenticated by the signature alone. Checked
/// in this order: the body is read (413 over the limit); the client address's
/// failed-authentication budget (429); the trigger and the signature (404, 401: nothing
/// stored, and counted as a failure); the trigger's rate limit (429, asked only once the
/// signature proved the caller); disabled (409); a non-JSON media type (415); a body
/// that is not a JSON object (400; empty = `{}`); NUL characters (400); too many firings
/// pending (429). Answered 202 once the firing is stored.
#[utoipa::path(
    post,
    path = "/webhooks/{trigger_id}",
    tag = "triggers",
    summary = "Fire a webhook trigger (authenticated by its signature)",
    security(()),
    request_body(content = Option<Object>, description = "A JSON object: the params (an empty body is `{}`)", content_type = "application/json"),
    params(("X-Webhook-Signature" = String, Header, description = "`sha256=` and the hex HMAC-SHA256 of the body under the trigger's secret")),
    responses((status = 202, description = "Stored; the function runs soon", body = Accepted)),
)]
pub async fn webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    // An address over its failure budget was refused by the middleware, before the body
    // was read (§1.5); failures are counted here.
    let ip = req.peer_addr().map(|a| a.ip());
    let Some(id) = TriggerId::parse(&path) else {
        state.auth.record_failure(ip)?;
        return Err(ApiError::not_found("trigger"));
    };
    let signature = req
        .headers()
        .get("X-Webhook-Signature")
        .map(|v| v.as_bytes().to_vec());
    let verified = match state
        .triggers
        .ask(VerifyWebhook {
            id,
            body: body.bytes.clone(),
            signature,
        })
        .await
    {
        Ok(verified) => verified,
        // An unknown trigger or a bad signature is a failed authentication.
        Err(e) => {
            if matches!(e.code(), Code::NotFound | Code::InvalidSignature) {
                state.auth.record_failure(ip)?;
            }
            return Err(e.into());
        }
    };
    // Each webhook trigger is its own credential for the rate limit.
    let credential = super::auth::webhook_credential(&id.to_string());
    state.auth.vouch(credential);
    state.auth.check_rate(Some(credential))?;
    verified.check_enabled()?;
    if !body.json_media_type {
        return Err(ApiError::UnsupportedMediaType);
    }
    let params = webhook_params(&body.bytes)?;
    super::extract::reject_nul(&body.bytes, Some("body"))?;
    let accepted = state
        .triggers
        .ask(AcceptWebhook { verified, params })
        .await?;
    Ok(HttpResponse::Accepted().json(Accepted {
        trigger_id: accepted.trigger_id.to_string(),
        execution_id: accepted.execution_id.to_string(),
    }))
}

/// The firing's params: the body's JSON object, `{}` for an empty body.
fn webhook_params(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::invalid_request(
            "request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::invalid_request(format!("malformed JSON: {e}"))),
    }
}
