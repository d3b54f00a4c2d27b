//! The HTTP edge: routes, middleware and the error/extractor conventions. Handlers are
//! thin (extract → domain type → actor message → response); no SQL and no business rule
//! lives here.

pub mod accounts;
pub mod auth;
pub mod auth_failures;
pub mod automation;
pub mod error;
pub mod extract;
pub mod functions;
pub mod gasbank;
pub mod json;
pub mod oracle;
pub mod pagination;
pub mod pricefeeds;
pub mod random;
pub mod rate_limit;
pub mod request;
pub mod secrets;
pub mod state;
pub mod system;
pub mod tokens;
pub mod triggers;

use actix_web::{web, HttpMessage as _, HttpRequest};
use actors::accounts::GetAccount;
use actors::page::{Page, PageRequest};
use error::ApiError;
use std::future::Future;

/// Lists a collection under an account (`/accounts/{id}/<collection>`): 404 for an
/// unknown account, the page decoded for this list's cursor scope, `list`'s page wrapped
/// with its next cursor.
pub async fn list_under_account<T, B, E, F>(
    state: &state::AppState,
    account: actors::AccountId,
    params: &pagination::ListParams,
    collection: &str,
    list: impl FnOnce(PageRequest) -> F,
    body: impl Fn(T) -> B,
) -> Result<actix_web::HttpResponse, ApiError>
where
    F: Future<Output = Result<Page<T>, E>>,
    ApiError: From<E>,
    B: serde::Serialize,
{
    let scope = format!("accounts/{account}/{collection}");
    let page = params.page(&scope)?;
    // 404 for an account that does not exist (the list would otherwise be empty).
    state.accounts.ask(GetAccount(account)).await?;
    let items = list(page).await?;
    Ok(actix_web::HttpResponse::Ok().json(pagination::ListBody::new(items, &scope, body)))
}

/// A handler for a known path with a method it does not serve: 405 with `Allow`.
fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::route().to(move || async move {
        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed(allow))
    })
}

/// Unknown paths: 404 in the usual JSON shape.
pub async fn no_route(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let sent = req
        .extensions()
        .get::<request::SentMethod>()
        .map(|m| m.0.clone());
    Err(ApiError::no_route(format!(
        "no route for {} {}",
        sent.as_ref().unwrap_or(req.method()),
        req.path()
    )))
}

/// Every route of the API. Paths are matched exactly (no trailing-slash normalisation).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/healthz")
            .route(web::get().to(system::healthz))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(system::readyz))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(system::metrics))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/accounts")
            .route(web::get().to(accounts::list))
            .route(web::post().to(accounts::create))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/accounts/{id}")
            .route(web::get().to(accounts::get))
            .route(web::patch().to(accounts::update))
            .route(web::delete().to(accounts::delete))
            .default_service(not_allowed("GET, PATCH, DELETE")),
    )
    .service(
        web::resource("/accounts/{id}/secrets")
            .route(web::get().to(secrets::list))
            .route(web::post().to(secrets::create))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/accounts/{id}/secrets/{name}")
            .route(web::get().to(secrets::get))
            .route(web::put().to(secrets::update))
            .route(web::delete().to(secrets::delete))
            .default_service(not_allowed("GET, PUT, DELETE")),
    )
    .service(
        web::resource("/accounts/{id}/functions")
            .route(web::get().to(functions::list))
            .route(web::post().to(functions::create))
            .default_service(not_allowed("GET, POST")),
    )
    // Registered before `/{function_id}/…` so `executions` is never taken for an id.
    .service(
        web::resource("/accounts/{id}/functions/executions/{execution_id}")
            .route(web::get().to(functions::get_any_execution))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/accounts/{id}/functions/{function_id}")
            .route(web::get().to(functions::get))
            .route(web::put().to(functions::replace))
            .route(web::delete().to(functions::delete))
            .default_service(not_allowed("GET, PUT, DELETE")),
    )
    .service(
        web::resource("/accounts/{id}/functions/{function_id}/execute")
            .route(web::post().to(functions::execute))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/accounts/{id}/functions/{function_id}/executions")
            .route(web::get().to(functions::list_executions))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/accounts/{id}/functions/{function_id}/executions/{execution_id}")
            .route(web::get().to(functions::get_execution))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/accounts/{id}/automation/jobs")
            .route(web::get().to(automation::list))
            .route(web::post().to(automation::create))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/accounts/{id}/automation/jobs/{job_id}")
            .route(web::get().to(automation::get))
            .route(web::patch().to(automation::update))
            .route(web::delete().to(automation::delete))
            .default_service(not_allowed("GET, PATCH, DELETE")),
    )
    .service(
        web::resource("/accounts/{id}/automation/jobs/{job_id}/runs")
            .route(web::get().to(automation::runs))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/accounts/{id}/pricefeeds")
            .route(web::get().to(pricefeeds::list))
            .route(web::post().to(pricefeeds::create))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/accounts/{id}/pricefeeds/{feed_id}")
            .route(web::get().to(pricefeeds::get))
            .route(web::patch().to(pricefeeds::update))
            .route(web::delete().to(pricefeeds::delete))
            .default_service(not_allowed("GET, PATCH, DELETE")),
    )
    .service(
        web::resource("/accounts/{id}/pricefeeds/{feed_id}/snapshots")
            .route(web::get().to(pricefeeds::snapshots))
            .route(web::post().to(pricefeeds::create_snapshot))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/accounts/{id}/oracle/sources")
            .route(web::get().to(oracle::list_sources))
            .route(web::post().to(oracle::create_source))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/accounts/{id}/oracle/sources/{source_id}")
            .route(web::get().to(oracle::get_source))
            .route(web::patch().to(oracle::update_source))
            .route(web::delete().to(oracle::delete_source))
            .default_service(not_allowed("GET, PATCH, DELETE")),
    )
    .service(
        web::resource("/accounts/{id}/oracle/requests")
            .route(web::get().to(oracle::list_requests))
            .route(web::post().to(oracle::create_request))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/accounts/{id}/oracle/requests/{request_id}")
            .route(web::get().to(oracle::get_request))
            .route(web::patch().to(oracle::patch_request))
            .default_service(not_allowed("GET, PATCH")),
    )
    .service(
        web::resource("/accounts/{id}/gasbank")
            .route(web::get().to(gasbank::get))
            .route(web::post().to(gasbank::ensure))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/accounts/{id}/gasbank/deposit")
            .route(web::post().to(gasbank::deposit))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/accounts/{id}/gasbank/withdraw")
            .route(web::post().to(gasbank::withdraw))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/accounts/{id}/gasbank/transactions")
            .route(web::get().to(gasbank::transactions))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/accounts/{id}/random")
            .route(web::post().to(random::generate))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/random/public-key")
            .route(web::get().to(random::public_key))
            .default_service(not_allowed("GET")),
    )
    .service(
        web::resource("/random/verify")
            .route(web::post().to(random::verify))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/accounts/{id}/triggers")
            .route(web::get().to(triggers::list))
            .route(web::post().to(triggers::create))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/accounts/{id}/triggers/{trigger_id}")
            .route(web::get().to(triggers::get))
            .route(web::patch().to(triggers::update))
            .route(web::delete().to(triggers::delete))
            .default_service(not_allowed("GET, PATCH, DELETE")),
    )
    .service(
        web::resource("/webhooks/{trigger_id}")
            .route(web::post().to(triggers::webhook))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/accounts/{id}/tokens")
            .route(web::get().to(tokens::list))
            .route(web::post().to(tokens::create))
            .default_service(not_allowed("GET, POST")),
    )
    .service(
        web::resource("/accounts/{id}/tokens/{token_id}")
            .route(web::get().to(tokens::get))
            .route(web::delete().to(tokens::delete))
            .default_service(not_allowed("GET, DELETE")),
    );
}
