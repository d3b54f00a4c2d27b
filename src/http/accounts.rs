//! `/accounts` routes: thin handlers that turn DTOs into domain types, send a message to
//! the accounts actor and map the reply.

use super::auth::Caller;
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
use actors::AccountId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const LIST_SCOPE: &str = "accounts";

#[derive(Serialize)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    owner: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default)]
    owner: Patch<String>,
    #[serde(default)]
    metadata: Patch<BTreeMap<String, String>>,
}

/// A path id that is not a canonical UUID is simply an account that does not exist.
fn account_id(raw: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(raw).ok_or_else(|| ApiError::not_found("account"))
}

fn store_error(e: actors::StoreError) -> ApiError {
    ApiError::from_store(e, "account")
}

pub async fn create(
    state: web::Data<AppState>,
    _caller: Caller,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let new = NewAccount {
        owner: Owner::parse(body.owner.as_deref().unwrap_or_default())?,
        metadata: Metadata::parse(body.metadata.unwrap_or_default())?,
    };
    let account = state
        .accounts
        .call(CreateAccount(new))
        .await?
        .map_err(store_error)?;
    Ok(HttpResponse::Created().json(AccountBody::from(account)))
}

pub async fn list(
    state: web::Data<AppState>,
    _caller: Caller,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    let page = params.page(LIST_SCOPE)?;
    let accounts = state
        .accounts
        .call(ListAccounts { page, only: None })
        .await?
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(ListBody::new(accounts, LIST_SCOPE, AccountBody::from)))
}

pub async fn get(
    state: web::Data<AppState>,
    _caller: Caller,
    path: web::Path<String>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    let account = state
        .accounts
        .call(GetAccount(id))
        .await?
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(AccountBody::from(account)))
}

pub async fn update(
    state: web::Data<AppState>,
    _caller: Caller,
    path: web::Path<String>,
    _: Query<NoParams>,
    JsonBody(body): JsonBody<PatchBody>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    let owner = match body.owner {
        Patch::Missing => None,
        Patch::Null => return Err(ApiError::Validation("owner: must not be null".to_owned())),
        Patch::Value(owner) => Some(Owner::parse(&owner)?),
    };
    let metadata = match body.metadata {
        Patch::Missing => None,
        Patch::Null => Some(Metadata::default()),
        Patch::Value(map) => Some(Metadata::parse(map)?),
    };
    let changes = AccountChanges { owner, metadata };
    let account = state
        .accounts
        .call(UpdateAccount { id, changes })
        .await?
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(AccountBody::from(account)))
}

pub async fn delete(
    state: web::Data<AppState>,
    _caller: Caller,
    path: web::Path<String>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = account_id(&path)?;
    state
        .accounts
        .call(DeleteAccount(id))
        .await?
        .map_err(store_error)?;
    Ok(HttpResponse::NoContent().finish())
}
