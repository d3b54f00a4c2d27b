//! `/accounts/{id}/triggers` (CRUD) and the public `POST /webhooks/{trigger_id}`.

use super::auth::AccountPath;
use super::error::ApiError;
use super::extract::{JsonBody, NoParams, Query, RawBody};
use super::functions::function_ref;
use super::json::timestamp;
use super::pagination::ListQuery;
use super::state::AppState;
use super::{ask, list_under_account};
use actix_web::{web, HttpRequest, HttpResponse};
use actors::ids::TriggerId;
use actors::patch::Patch;
use actors::triggers::{
    normalize_config, AcceptWebhook, CreateTrigger, DeleteTrigger, GetTrigger, ListTriggers,
    NewTrigger, Trigger, TriggerChanges, TriggerType, TriggerWithSecret, UpdateTrigger,
    WebhookError,
};
use actors::ValidationError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Serialize)]
pub struct TriggerBody {
    id: String,
    account_id: String,
    function_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    rule: String,
    config: BTreeMap<String, String>,
    enabled: bool,
    next_run: Option<String>,
    last_fired_at: Option<String>,
    webhook_path: Option<String>,
    created_at: String,
    updated_at: String,
    /// Only in the creation and rotation responses of webhook triggers.
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_secret: Option<String>,
}

impl From<Trigger> for TriggerBody {
    fn from(t: Trigger) -> Self {
        Self {
            id: t.id.to_string(),
            account_id: t.account_id.to_string(),
            function_id: t.function_id.to_string(),
            kind: t.kind.as_str(),
            rule: t.rule,
            config: t.config,
            enabled: t.enabled,
            next_run: t.next_run.as_ref().map(timestamp),
            last_fired_at: t.last_fired_at.as_ref().map(timestamp),
            webhook_path: (t.kind == TriggerType::Webhook).then(|| format!("/webhooks/{}", t.id)),
            created_at: timestamp(&t.created_at),
            updated_at: timestamp(&t.updated_at),
            webhook_secret: None,
        }
    }
}

impl From<TriggerWithSecret> for TriggerBody {
    fn from(t: TriggerWithSecret) -> Self {
        Self {
            webhook_secret: t.webhook_secret,
            ..Self::from(t.trigger)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    function_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    rule: Option<String>,
    config: Option<BTreeMap<String, String>>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default)]
    function_id: Patch<String>,
    #[serde(default, rename = "type")]
    kind: Patch<String>,
    #[serde(default)]
    rule: Patch<String>,
    #[serde(default)]
    config: Patch<BTreeMap<String, String>>,
    #[serde(default)]
    enabled: Patch<bool>,
    #[serde(default)]
    rotate_webhook_secret: Patch<bool>,
}

fn kind(raw: &str) -> Result<TriggerType, ValidationError> {
    TriggerType::parse(raw)
        .ok_or_else(|| ValidationError::new("type", "must be cron, event or webhook"))
}

fn trigger_id(raw: &str) -> Result<TriggerId, ApiError> {
    TriggerId::parse(raw).ok_or_else(|| ApiError::not_found("trigger"))
}

pub async fn create(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let trigger = NewTrigger {
        function_id: body
            .function_id
            .as_deref()
            .ok_or_else(|| ValidationError::new("function_id", "is required"))
            .and_then(function_ref)?,
        kind: body
            .kind
            .as_deref()
            .map(kind)
            .transpose()?
            .unwrap_or(TriggerType::Cron),
        rule: body.rule.unwrap_or_default(),
        config: normalize_config(body.config.unwrap_or_default())?,
        enabled: body.enabled.unwrap_or(true),
    };
    let created = ask(
        &state.triggers,
        CreateTrigger { account, trigger },
        "account",
    )
    .await??;
    Ok(HttpResponse::Created().json(TriggerBody::from(created)))
}

pub async fn list(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    list_under_account(
        &state,
        &state.triggers,
        account,
        &params,
        "triggers",
        |page| ListTriggers { account, page },
        TriggerBody::from,
    )
    .await
}

pub async fn get(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = trigger_id(&path.1)?;
    let trigger = ask(&state.triggers, GetTrigger { account, id }, "trigger").await?;
    Ok(HttpResponse::Ok().json(TriggerBody::from(trigger)))
}

pub async fn update(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<PatchBody>,
) -> Result<HttpResponse, ApiError> {
    let id = trigger_id(&path.1)?;
    let changes = TriggerChanges {
        function_id: body
            .function_id
            .required("function_id")?
            .as_deref()
            .map(function_ref)
            .transpose()?,
        kind: body
            .kind
            .required("type")?
            .as_deref()
            .map(kind)
            .transpose()?,
        // `null` clears the rule, which only a webhook trigger accepts.
        rule: match body.rule {
            Patch::Missing => None,
            Patch::Null => Some(String::new()),
            Patch::Value(rule) => Some(rule),
        },
        config: match body.config {
            Patch::Missing => None,
            Patch::Null => Some(BTreeMap::new()),
            Patch::Value(map) => Some(normalize_config(map)?),
        },
        enabled: body.enabled.required("enabled")?,
        rotate_webhook_secret: body
            .rotate_webhook_secret
            .required("rotate_webhook_secret")?
            .unwrap_or(false),
    };
    let updated = ask(
        &state.triggers,
        UpdateTrigger {
            account,
            id,
            changes,
        },
        "trigger",
    )
    .await??;
    Ok(HttpResponse::Ok().json(TriggerBody::from(updated)))
}

pub async fn delete(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = trigger_id(&path.1)?;
    ask(&state.triggers, DeleteTrigger { account, id }, "trigger").await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize)]
struct Accepted {
    trigger_id: String,
    execution_id: String,
}

/// `POST /webhooks/{trigger_id}`: public, authenticated by the signature alone. The
/// body is read first (413 over the limit); the trigger's checks follow in the order
/// of [`actors::triggers::TriggersService::accept_webhook`]. Answered 202 once the
/// firing is stored.
pub async fn webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: RawBody,
) -> Result<HttpResponse, ApiError> {
    let id = trigger_id(&path)?;
    let signature = req
        .headers()
        .get("X-Webhook-Signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let auth = state.auth.clone();
    // Each webhook trigger is its own credential for the rate limit.
    let admit = Box::new(move |id: TriggerId| {
        let credential: [u8; 32] = Sha256::digest(format!("webhook:{id}")).into();
        match auth.check_rate(Some(credential)) {
            Err(ApiError::RateLimited(seconds)) => Err(seconds),
            _ => Ok(()),
        }
    });
    let message = AcceptWebhook {
        id,
        signature,
        body: body.bytes.to_vec(),
        json_media_type: body.json_media_type,
        admit,
    };
    let accepted = state.triggers.call(message).await?.map_err(|e| match e {
        WebhookError::NotFound => ApiError::not_found("trigger"),
        WebhookError::BadSignature => ApiError::InvalidSignature,
        WebhookError::RateLimited(seconds) => ApiError::RateLimited(seconds),
        WebhookError::Disabled => ApiError::InvalidState("trigger is disabled".to_owned()),
        WebhookError::UnsupportedMediaType => ApiError::UnsupportedMediaType,
        WebhookError::BadBody(message) => ApiError::InvalidRequest(message),
        WebhookError::Store(e) => ApiError::from_store(e, "trigger"),
    })?;
    Ok(HttpResponse::Accepted().json(Accepted {
        trigger_id: accepted.trigger_id.to_string(),
        execution_id: accepted.execution_id.to_string(),
    }))
}
