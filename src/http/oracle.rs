//! `/accounts/{id}/oracle` routes: data sources CRUD and requests (create, list, get,
//! PATCH by the transition table). Bodies are the domain's request shapes, parsed by the
//! domain.

use super::auth::AccountPath;
use super::error::ApiError;
use super::extract::{JsonBody, NoParams, Query};
use super::json::timestamp;
use super::list_under_account;
use super::pagination::ListQuery;
use super::state::AppState;
use actix_web::{web, HttpResponse};
use actors::ids::{RequestId, SourceId};
use actors::oracle::{
    CreateRequest, CreateSource, DeleteSource, GetRequest, GetSource, ListRequests, ListSources,
    NewRequest, NewSource, PatchRequest, Request, RequestInput, Source, SourceInput, SourcePatch,
    SourcePatchInput, Transition, TransitionInput, UpdateSource,
};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[schema(as = OracleSource)]
pub struct SourceBody {
    id: String,
    account_id: String,
    name: String,
    description: String,
    url: String,
    method: String,
    headers: BTreeMap<String, String>,
    body: String,
    enabled: bool,
    created_at: String,
    updated_at: String,
}

impl From<Source> for SourceBody {
    fn from(s: Source) -> Self {
        Self {
            id: s.id.to_string(),
            account_id: s.account_id.to_string(),
            name: s.name,
            description: s.description,
            url: s.url,
            method: s.method,
            headers: s.headers,
            body: s.body,
            enabled: s.enabled,
            created_at: timestamp(&s.created_at),
            updated_at: timestamp(&s.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = OracleRequest)]
pub struct RequestBody {
    id: String,
    account_id: String,
    data_source_id: String,
    #[schema(value_type = String)]
    status: &'static str,
    payload: String,
    #[schema(required = true)]
    result: Option<String>,
    #[schema(required = true)]
    error: Option<String>,
    attempts: i32,
    #[schema(required = true)]
    next_attempt_at: Option<String>,
    created_at: String,
    updated_at: String,
    #[schema(required = true)]
    completed_at: Option<String>,
}

impl From<Request> for RequestBody {
    fn from(r: Request) -> Self {
        Self {
            id: r.id.to_string(),
            account_id: r.account_id.to_string(),
            data_source_id: r.data_source_id.to_string(),
            status: r.status.as_str(),
            payload: r.payload,
            result: r.result,
            error: r.error,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at.as_ref().map(timestamp),
            created_at: timestamp(&r.created_at),
            updated_at: timestamp(&r.updated_at),
            completed_at: r.completed_at.as_ref().map(timestamp),
        }
    }
}

fn source_id(raw: &str) -> Result<SourceId, ApiError> {
    SourceId::parse(raw).ok_or_else(|| ApiError::not_found("oracle data source"))
}

fn request_id(raw: &str) -> Result<RequestId, ApiError> {
    RequestId::parse(raw).ok_or_else(|| ApiError::not_found("oracle request"))
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/oracle/sources",
    tag = "oracle",
    summary = "Create an oracle data source",
    request_body = actors::oracle::SourceInput,
    responses((status = 201, description = "The source", body = SourceBody)),
)]
pub async fn create_source(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<SourceInput>,
) -> Result<HttpResponse, ApiError> {
    let source = NewSource::parse(input)?;
    let source = state.oracle.ask(CreateSource { account, source }).await?;
    Ok(HttpResponse::Created().json(SourceBody::from(source)))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/oracle/sources",
    tag = "oracle",
    summary = "List the account's oracle data sources",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of sources", body = super::pagination::ListBody<SourceBody>)),
)]
pub async fn list_sources(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    list_under_account(
        &state,
        account,
        &params,
        "oracle/sources",
        |page| state.oracle.ask(ListSources { account, page }),
        SourceBody::from,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/oracle/sources/{source_id}",
    tag = "oracle",
    summary = "Get an oracle data source",
    responses((status = 200, description = "The source", body = SourceBody)),
)]
pub async fn get_source(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = source_id(&path.1)?;
    let source = state.oracle.ask(GetSource { account, id }).await?;
    Ok(HttpResponse::Ok().json(SourceBody::from(source)))
}

#[utoipa::path(
    patch,
    path = "/accounts/{id}/oracle/sources/{source_id}",
    tag = "oracle",
    summary = "Change an oracle data source",
    request_body = actors::oracle::SourcePatchInput,
    responses((status = 200, description = "The source", body = SourceBody)),
)]
pub async fn update_source(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<SourcePatchInput>,
) -> Result<HttpResponse, ApiError> {
    let id = source_id(&path.1)?;
    let patch = SourcePatch::parse(input)?;
    let source = state
        .oracle
        .ask(UpdateSource { account, id, patch })
        .await?;
    Ok(HttpResponse::Ok().json(SourceBody::from(source)))
}

#[utoipa::path(
    delete,
    path = "/accounts/{id}/oracle/sources/{source_id}",
    tag = "oracle",
    summary = "Delete an oracle data source",
    responses((status = 204, description = "Deleted")),
)]
pub async fn delete_source(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = source_id(&path.1)?;
    state.oracle.ask(DeleteSource { account, id }).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/oracle/requests",
    tag = "oracle",
    summary = "Ask the resolver for data",
    request_body = actors::oracle::RequestInput,
    responses((status = 201, description = "The request, pending", body = RequestBody)),
)]
pub async fn create_request(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<RequestInput>,
) -> Result<HttpResponse, ApiError> {
    let request = NewRequest::parse(input)?;
    let request = state.oracle.ask(CreateRequest { account, request }).await?;
    Ok(HttpResponse::Created().json(RequestBody::from(request)))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/oracle/requests",
    tag = "oracle",
    summary = "List the account's oracle requests, newest first",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of requests", body = super::pagination::ListBody<RequestBody>)),
)]
pub async fn list_requests(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    list_under_account(
        &state,
        account,
        &params,
        "oracle/requests",
        |page| state.oracle.ask(ListRequests { account, page }),
        RequestBody::from,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/oracle/requests/{request_id}",
    tag = "oracle",
    summary = "Get an oracle request",
    responses((status = 200, description = "The request", body = RequestBody)),
)]
pub async fn get_request(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = request_id(&path.1)?;
    let request = state.oracle.ask(GetRequest { account, id }).await?;
    Ok(HttpResponse::Ok().json(RequestBody::from(request)))
}

#[utoipa::path(
    patch,
    path = "/accounts/{id}/oracle/requests/{request_id}",
    tag = "oracle",
    summary = "Move an oracle request to running, succeeded or failed",
    request_body = actors::oracle::TransitionInput,
    responses((status = 200, description = "The request", body = RequestBody)),
)]
pub async fn patch_request(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<TransitionInput>,
) -> Result<HttpResponse, ApiError> {
    let id = request_id(&path.1)?;
    let transition = Transition::parse(input)?;
    let request = state
        .oracle
        .ask(PatchRequest {
            account,
            id,
            transition,
        })
        .await?;
    Ok(HttpResponse::Ok().json(RequestBody::from(request)))
}
