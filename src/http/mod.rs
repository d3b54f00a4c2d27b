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
pub mod openapi;
pub mod oracle;
pub mod pagination;
pub mod pricefeeds;
pub mod random;
pub mod rate_limit;
pub mod request;
pub mod routes;
pub mod secrets;
pub mod state;
pub mod system;
pub mod tokens;
pub mod triggers;

use actix_web::{HttpMessage as _, HttpRequest};
use actors::accounts::GetAccount;
use actors::page::{Page, PageRequest};
use error::ApiError;
pub use routes::routes;
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
