//! `/accounts/{id}/pricefeeds` routes: feeds CRUD and their snapshots. Bodies are the
//! domain's request shapes ([`FeedInput`], [`FeedPatchInput`], [`SnapshotInput`]),
//! parsed by the domain.

use super::auth::AccountPath;
use super::error::ApiError;
use super::extract::{JsonBody, NoParams, Query};
use super::json::timestamp;
use super::list_under_account;
use super::pagination::{ListBody, ListQuery};
use super::state::AppState;
use actix_web::{web, HttpResponse};
use actors::ids::FeedId;
use actors::pricefeeds::{
    format_interval, CreateFeed, CreateSnapshot, DeleteFeed, FeedInput, FeedPatch, FeedPatchInput,
    FeedView, GetFeed, ListFeeds, ListSnapshots, NewFeed, NewSnapshot, Snapshot, SnapshotInput,
    UpdateFeed,
};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
#[schema(as = PriceFeed)]
pub struct FeedBody {
    id: String,
    account_id: String,
    base_asset: String,
    quote_asset: String,
    pair: String,
    update_interval: String,
    heartbeat_interval: String,
    deviation_percent: f64,
    active: bool,
    sources: Vec<String>,
    #[schema(required = true)]
    latest_price: Option<f64>,
    #[schema(required = true)]
    latest_at: Option<String>,
    stale: bool,
    created_at: String,
    updated_at: String,
}

impl From<FeedView> for FeedBody {
    fn from(FeedView { feed: f, stale }: FeedView) -> Self {
        Self {
            id: f.id.to_string(),
            account_id: f.account_id.to_string(),
            pair: f.pair(),
            base_asset: f.base_asset,
            quote_asset: f.quote_asset,
            update_interval: format_interval(f.update_interval),
            heartbeat_interval: format_interval(f.heartbeat_interval),
            deviation_percent: f.deviation_percent,
            active: f.active,
            sources: f.sources,
            latest_price: f.latest.map(|l| l.price),
            latest_at: f.latest.as_ref().map(|l| timestamp(&l.at)),
            stale,
            created_at: timestamp(&f.created_at),
            updated_at: timestamp(&f.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = PriceSnapshot)]
pub struct SnapshotBody {
    id: String,
    feed_id: String,
    round: i64,
    price: f64,
    source: String,
    collected_at: String,
    created_at: String,
}

impl From<Snapshot> for SnapshotBody {
    fn from(s: Snapshot) -> Self {
        Self {
            id: s.id.to_string(),
            feed_id: s.feed_id.to_string(),
            round: s.round,
            price: s.price,
            source: s.source,
            collected_at: timestamp(&s.collected_at),
            created_at: timestamp(&s.created_at),
        }
    }
}

fn feed_id(raw: &str) -> Result<FeedId, ApiError> {
    FeedId::parse(raw).ok_or_else(|| ApiError::not_found("price feed"))
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/pricefeeds",
    tag = "pricefeeds",
    summary = "Create a price feed",
    request_body = actors::pricefeeds::FeedInput,
    responses((status = 201, description = "The feed", body = FeedBody)),
)]
pub async fn create(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<FeedInput>,
) -> Result<HttpResponse, ApiError> {
    let feed = NewFeed::parse(input)?;
    let feed = state.pricefeeds.ask(CreateFeed { account, feed }).await?;
    Ok(HttpResponse::Created().json(FeedBody::from(feed)))
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/pricefeeds",
    tag = "pricefeeds",
    summary = "List the account's price feeds",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of feeds", body = super::pagination::ListBody<FeedBody>)),
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
        "pricefeeds",
        |page| state.pricefeeds.ask(ListFeeds { account, page }),
        FeedBody::from,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/pricefeeds/{feed_id}",
    tag = "pricefeeds",
    summary = "Get a price feed",
    responses((status = 200, description = "The feed", body = FeedBody)),
)]
pub async fn get(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = feed_id(&path.1)?;
    let feed = state.pricefeeds.ask(GetFeed { account, id }).await?;
    Ok(HttpResponse::Ok().json(FeedBody::from(feed)))
}

#[utoipa::path(
    patch,
    path = "/accounts/{id}/pricefeeds/{feed_id}",
    tag = "pricefeeds",
    summary = "Change a price feed",
    request_body = actors::pricefeeds::FeedPatchInput,
    responses((status = 200, description = "The feed", body = FeedBody)),
)]
pub async fn update(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<FeedPatchInput>,
) -> Result<HttpResponse, ApiError> {
    let id = feed_id(&path.1)?;
    let patch = FeedPatch::parse(input)?;
    let feed = state
        .pricefeeds
        .ask(UpdateFeed { account, id, patch })
        .await?;
    Ok(HttpResponse::Ok().json(FeedBody::from(feed)))
}

#[utoipa::path(
    delete,
    path = "/accounts/{id}/pricefeeds/{feed_id}",
    tag = "pricefeeds",
    summary = "Delete a price feed and its snapshots",
    responses((status = 204, description = "Deleted")),
)]
pub async fn delete(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let id = feed_id(&path.1)?;
    state.pricefeeds.ask(DeleteFeed { account, id }).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/accounts/{id}/pricefeeds/{feed_id}/snapshots",
    tag = "pricefeeds",
    summary = "List a feed's snapshots, newest first",
    params(super::pagination::ListParams),
    responses((status = 200, description = "A page of snapshots", body = super::pagination::ListBody<SnapshotBody>)),
)]
pub async fn snapshots(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    Query(params): ListQuery,
) -> Result<HttpResponse, ApiError> {
    let feed = feed_id(&path.1)?;
    let scope = format!("accounts/{account}/pricefeeds/{feed}/snapshots");
    let page = params.page(&scope)?;
    let snapshots = state
        .pricefeeds
        .ask(ListSnapshots {
            account,
            feed,
            page,
        })
        .await?;
    Ok(HttpResponse::Ok().json(ListBody::new(snapshots, &scope, SnapshotBody::from)))
}

#[utoipa::path(
    post,
    path = "/accounts/{id}/pricefeeds/{feed_id}/snapshots",
    tag = "pricefeeds",
    summary = "Record a price observation",
    request_body = actors::pricefeeds::SnapshotInput,
    responses((status = 201, description = "The snapshot", body = SnapshotBody)),
)]
pub async fn create_snapshot(
    AccountPath(account): AccountPath,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    _: Query<NoParams>,
    JsonBody(input): JsonBody<SnapshotInput>,
) -> Result<HttpResponse, ApiError> {
    let feed = feed_id(&path.1)?;
    let snapshot = NewSnapshot::parse(input, chrono::Utc::now())?;
    let snapshot = state
        .pricefeeds
        .ask(CreateSnapshot {
            account,
            feed,
            snapshot,
        })
        .await?;
    Ok(HttpResponse::Created().json(SnapshotBody::from(snapshot)))
}
