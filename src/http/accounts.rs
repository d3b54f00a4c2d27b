//! `/accounts` routes: thin handlers that turn DTOs into domain types, send a message to
//! the accounts subsystem and shape the reply.

use super::auth::{AccountPath, AdminOnly, Caller};
use super::error::ApiError;
use super::extract::{JsonBody, NoParams, Query};
use super::json::timestamp;
use super::pagination::{ListBody, ListQuery};
use super::state::AppState;
use actix_web::{web, HttpResponse};
use actors::accounts::{
    Account, AccountChanges, CreateAccount, DeleteAccount, GetAccount, ListAccounts, Metadata,
    NewAccount, Owner, UpdateAccount,
};
use actors::patch::Patch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

const LIST_SCOPE: &str = "accounts";

#[derive(Serialize, ToSchema)]
#[schema(as = Account)]
pub struct AccountBody {
    id: String,
    owner: String,
    metadata: BTreeMap<String, String>,
    created_at: String,
    updated_at: String,
}

impl From<Account> for AccountBody {
    fn from(a: Account) -> Self {
        Self {
            id: a.id.to_string(),
            owner: a.owner,
            metadata: a.metadata,
            created_at: timestamp(&a.created_at),
            updated_at: timestamp(&a.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[schema(as = AccountCreate)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[schema(required = true, min_length = 1, max_length = 256)]
    owner: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, ToSchema)]
#[schema(as = AccountPatch)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 256)]
    owner: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    metadata: Patch<BTreeMap<String, String>>,
}

#[utoipa::path(
    post,
    path = "/accounts",
    tag = "accounts",
    summary = "Create an account (admin)",
    request_body = CreateBody,
    responses((status = 201, description = "The account", body = AccountBody)),
)]
pub async fn create(
    _: AdminOnly,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let new = NewAccount {
        owner: Owner::parse(body.owner.as_deref().unwrap_or_default())?,
        metadata: Metadata::parse(body.metadata.unwrap_or_default())?,
    };
    let account = state.accounts.ask(CreateAccount(new)).await?;
    Ok(HttpResponse::Created().json(AccountBody::from(account)))
}

#[utoipa::path(
    get,
    path = "/accounts",
    tag = "accounts",
    summary = "List accounts (an account token sees only its own)",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of accounts, oldest first", body = super::pagination::ListBody<AccountBody>)),
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    let page = params.page(LIST_SCOPE)?;
    let only = caller.only_account();
    let accounts = state.accounts.ask(ListAccounts { page, only }).await?;
    Ok(HttpResponse::Ok().json(ListBody::new(accounts, LIST_SCOPE, AccountBody::from)))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}",
    tag = "accounts",
    summary = "Get an account",
    responses((status = 200, description = "The account", body = AccountBody)),
)]
pub async fn get(
    AccountPath(id): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let account = state.accounts.ask(GetAccount(id)).await?;
    Ok(HttpResponse::Ok().json(AccountBody::from(account)))
}

#[utoipa::path(
    patch,
    path = "/accounts/{id}",
    tag = "accounts",
    summary = "Change an account's owner or metadata",
    request_body = PatchBody,
    responses((status = 200, description = "The account", body = AccountBody)),
)]
pub async fn update(
    AccountPath(id): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<PatchBody>,
) -> Result<HttpResponse, ApiError> {
    let owner = match body.owner {
        Patch::Missing => None,
        Patch::Null => return Err(ApiError::validation("owner: must not be null")),
        Patch::Value(owner) => Some(Owner::parse(&owner)?),
    };
    let metadata = match body.metadata {
        Patch::Missing => None,
        Patch::Null => Some(Metadata::default()),
        Patch::Value(map) => Some(Metadata::parse(map)?),
    };
    let changes = AccountChanges { owner, metadata };
    let account = state.accounts.ask(UpdateAccount { id, changes }).await?;
    Ok(HttpResponse::Ok().json(AccountBody::from(account)))
}

#[utoipa::path(
    delete,
    path = "/accounts/{id}",
    tag = "accounts",
    summary = "Delete an account and everything it owns (admin)",
    responses((status = 204, description = "Deleted")),
)]
pub async fn delete(
    _: AdminOnly,
    AccountPath(id): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    state.accounts.ask(DeleteAccount(id)).await?;
    Ok(HttpResponse::NoContent().finish())
}
