//! `/accounts/{id}/secrets` routes. Values go in, metadata comes out: no route ever
//! returns a secret value.

use super::auth::AccountPath;
use super::error::ApiError;
use super::extract::{JsonBody, NoParams, Query};
use super::json::timestamp;
use super::list_under_account;
use super::pagination::ListQuery;
use super::state::AppState;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use actors::secrets::{
    CreateSecret, DeleteSecret, GetSecret, ListSecrets, SecretMetadata, SecretName, SecretValue,
    UpdateSecret,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[schema(as = Secret)]
pub struct SecretBody {
    id: String,
    account_id: String,
    name: String,
    version: i64,
    created_at: String,
    updated_at: String,
}

impl From<SecretMetadata> for SecretBody {
    fn from(m: SecretMetadata) -> Self {
        Self {
            id: m.id.to_string(),
            account_id: m.account_id.to_string(),
            name: m.name,
            version: m.version,
            created_at: timestamp(&m.created_at),
            updated_at: timestamp(&m.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[schema(as = SecretCreate)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[schema(required = true, pattern = "^[A-Za-z0-9_.-]{1,128}$")]
    name: Option<String>,
    #[schema(required = true, min_length = 1)]
    value: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[schema(as = SecretUpdate)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    #[schema(required = true, min_length = 1)]
    value: Option<String>,
}

/// A secret named in the path; names that cannot exist are simply not found.
fn secret_name(raw: &str) -> Result<SecretName, ApiError> {
    SecretName::from_path(raw).ok_or_else(|| ApiError::not_found("secret"))
}

fn value(raw: Option<String>) -> Result<SecretValue, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::validation("value: is required"))?;
    Ok(SecretValue::parse(raw)?)
}

/// `If-Match: 3` or `If-Match: "3"`; `*` (any version) is the same as no header.
fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(raw) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = raw.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    unquoted
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 1)
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid_request(format!(
                "If-Match: expected a version such as 3 or \"3\", got {text:?}"
            ))
        })
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/secrets",
    tag = "secrets",
    summary = "Store a secret",
    request_body = CreateBody,
    responses((status = 201, description = "The secret's metadata", body = SecretBody)),
)]
pub async fn create(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let name = SecretName::parse(body.name.as_deref().unwrap_or_default())?;
    let value = value(body.value)?;
    let meta = state
        .secrets
        .ask(CreateSecret {
            account,
            name,
            value,
        })
        .await?;
    Ok(HttpResponse::Created().json(SecretBody::from(meta)))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/secrets",
    tag = "secrets",
    summary = "List the account's secrets (names and versions, never values)",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of secrets", body = super::pagination::ListBody<SecretBody>)),
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
        "secrets",
        |page| state.secrets.ask(ListSecrets { account, page }),
        SecretBody::from,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/secrets/{name}",
    tag = "secrets",
    summary = "Get a secret's metadata (the value is write-only)",
    responses((status = 200, description = "The secret's metadata", body = SecretBody, headers(("ETag" = String, description = "The current version, quoted: `\"3\"`")))),
)]
pub async fn get(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let name = secret_name(&path.1)?;
    let meta = state.secrets.ask(GetSecret { account, name }).await?;
    let etag = HeaderValue::from_str(&format!("\"{}\"", meta.version))
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .json(SecretBody::from(meta)))
}

#[utoipa::path(
    put,
    path = "/accounts/{id}/secrets/{name}",
    tag = "secrets",
    summary = "Store a new version of a secret",
    request_body = UpdateBody,
    params(("If-Match" = Option<String>, Header, description = "Expected current version (`3` or `\"3\"`; `*` = any): 409 version_mismatch otherwise")),
    responses((status = 200, description = "The secret's metadata", body = SecretBody)),
)]
pub async fn update(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<HttpResponse, ApiError> {
    let name = secret_name(&path.1)?;
    let if_match = if_match(&req)?;
    let value = value(body.value)?;
    let meta = state
        .secrets
        .ask(UpdateSecret {
            account,
            name,
            value,
            if_match,
        })
        .await?;
    Ok(HttpResponse::Ok().json(SecretBody::from(meta)))
}

#[utoipa::path(
    delete,
    path = "/accounts/{id}/secrets/{name}",
    tag = "secrets",
    summary = "Delete a secret and its versions",
    params(("If-Match" = Option<String>, Header, description = "Expected current version (`3` or `\"3\"`; `*` = any): 409 version_mismatch otherwise")),
    responses((status = 204, description = "Deleted")),
)]
pub async fn delete(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let name = secret_name(&path.1)?;
    let if_match = if_match(&req)?;
    state
        .secrets
        .ask(DeleteSecret {
            account,
            name,
            if_match,
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
