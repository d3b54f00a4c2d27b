//! `/accounts/{id}/tokens` routes (admin only). The token value appears once, in the
//! creation response.

use super::auth::{AccountPath, AdminOnly};
use super::error::ApiError;
use super::extract::{JsonBody, NoParams, Query};
use super::json::timestamp;
use super::list_under_account;
use super::pagination::ListQuery;
use super::state::AppState;
use actix_web::{web, HttpResponse};
use actors::accounts::tokens::{
    ApiToken, DeleteToken, GetToken, IssueToken, ListTokens, TokenName,
};
use actors::ids::TokenId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[schema(as = Token)]
pub struct TokenBody {
    id: String,
    account_id: String,
    name: String,
    token_prefix: String,
    #[schema(required = true)]
    expires_at: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<ApiToken> for TokenBody {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id.to_string(),
            account_id: t.account_id.to_string(),
            name: t.name,
            token_prefix: t.token_prefix,
            expires_at: t.expires_at.as_ref().map(timestamp),
            created_at: timestamp(&t.created_at),
            token: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[schema(as = TokenCreate)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[schema(required = true, min_length = 1, max_length = 128)]
    name: Option<String>,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

fn token_id(raw: &str) -> Result<TokenId, ApiError> {
    TokenId::parse(raw).ok_or_else(|| ApiError::not_found("token"))
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/tokens",
    tag = "tokens",
    summary = "Issue an account token (admin); its value is shown once",
    request_body = CreateBody,
    responses((status = 201, description = "The token with its `token` value", body = TokenBody)),
)]
pub async fn create(
    _: AdminOnly,
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let name = TokenName::parse(body.name.as_deref().unwrap_or_default())?;
    let expires_at = body
        .expires_at
        .map(|text| {
            DateTime::parse_from_rfc3339(text.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::validation(format!(
                        "expires_at: expected an RFC 3339 timestamp, got {text:?}"
                    ))
                })
        })
        .transpose()?;
    let issued = state
        .accounts
        .ask(IssueToken {
            account,
            name,
            expires_at,
        })
        .await?;
    let mut body = TokenBody::from(issued.token);
    body.token = Some(issued.value);
    Ok(HttpResponse::Created().json(body))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/tokens",
    tag = "tokens",
    summary = "List the account's tokens (admin)",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of tokens (never their values)", body = super::pagination::ListBody<TokenBody>)),
)]
pub async fn list(
    _: AdminOnly,
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    list_under_account(
        &state,
        account,
        &params,
        "tokens",
        |page| state.accounts.ask(ListTokens { account, page }),
        TokenBody::from,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/tokens/{token_id}",
    tag = "tokens",
    summary = "Get a token (admin)",
    responses((status = 200, description = "The token", body = TokenBody)),
)]
pub async fn get(
    _: AdminOnly,
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = token_id(&path.1)?;
    let token = state.accounts.ask(GetToken { account, id }).await?;
    Ok(HttpResponse::Ok().json(TokenBody::from(token)))
}

#[utoipa::path(
    delete,
    path = "/accounts/{id}/tokens/{token_id}",
    tag = "tokens",
    summary = "Revoke a token (admin)",
    responses((status = 204, description = "Revoked")),
)]
pub async fn delete(
    _: AdminOnly,
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = token_id(&path.1)?;
    state.accounts.ask(DeleteToken { account, id }).await?;
    Ok(HttpResponse::NoContent().finish())
}
