//! Every route of the API, as one table: the router is built from it, and the OpenAPI
//! test compares it with the document (`/openapi.json`), so a route cannot be served
//! without being described or described without being served.

use super::error::ApiError;
use super::{accounts, automation, functions, gasbank, openapi, oracle, pricefeeds, random};
use super::{secrets, system, tokens, triggers};
use actix_web::http::Method;
use actix_web::{web, Route};
use std::sync::Arc;

/// `(path, method, handler)`. Paths are matched exactly (no trailing-slash
/// normalisation) and in this order; the methods of one path are listed together.
type Endpoint = (&'static str, Method, fn() -> Route);

/// `METHOD "path" => handler` rows, one line each.
macro_rules! endpoints {
    ($($method:ident $path:literal => $handler:path,)*) => {
        &[$(($path, Method::$method, || web::to($handler))),*]
    };
}

static ENDPOINTS: &[Endpoint] = endpoints![
    GET "/healthz" => system::healthz,
    GET "/readyz" => system::readyz,
    GET "/metrics" => system::metrics,
    GET "/openapi.json" => openapi::document,
    GET "/accounts" => accounts::list,
    POST "/accounts" => accounts::create,
    GET "/accounts/{id}" => accounts::get,
    PATCH "/accounts/{id}" => accounts::update,
    DELETE "/accounts/{id}" => accounts::delete,
    GET "/accounts/{id}/secrets" => secrets::list,
    POST "/accounts/{id}/secrets" => secrets::create,
    GET "/accounts/{id}/secrets/{name}" => secrets::get,
    PUT "/accounts/{id}/secrets/{name}" => secrets::update,
    DELETE "/accounts/{id}/secrets/{name}" => secrets::delete,
    GET "/accounts/{id}/functions" => functions::list,
    POST "/accounts/{id}/functions" => functions::create,
    // Before `/functions/{function_id}`: `executions` is never taken for a function id.
    GET "/accounts/{id}/functions/executions/{execution_id}" => functions::get_any_execution,
    GET "/accounts/{id}/functions/{function_id}" => functions::get,
    PUT "/accounts/{id}/functions/{function_id}" => functions::replace,
    DELETE "/accounts/{id}/functions/{function_id}" => functions::delete,
    POST "/accounts/{id}/functions/{function_id}/execute" => functions::execute,
    GET "/accounts/{id}/functions/{function_id}/executions" => functions::list_executions,
    GET "/accounts/{id}/functions/{function_id}/executions/{execution_id}" => functions::get_execution,
    GET "/accounts/{id}/automation/jobs" => automation::list,
    POST "/accounts/{id}/automation/jobs" => automation::create,
    GET "/accounts/{id}/automation/jobs/{job_id}" => automation::get,
    PATCH "/accounts/{id}/automation/jobs/{job_id}" => automation::update,
    DELETE "/accounts/{id}/automation/jobs/{job_id}" => automation::delete,
    GET "/accounts/{id}/automation/jobs/{job_id}/runs" => automation::runs,
    GET "/accounts/{id}/pricefeeds" => pricefeeds::list,
    POST "/accounts/{id}/pricefeeds" => pricefeeds::create,
    GET "/accounts/{id}/pricefeeds/{feed_id}" => pricefeeds::get,
    PATCH "/accounts/{id}/pricefeeds/{feed_id}" => pricefeeds::update,
    DELETE "/accounts/{id}/pricefeeds/{feed_id}" => pricefeeds::delete,
    GET "/accounts/{id}/pricefeeds/{feed_id}/snapshots" => pricefeeds::snapshots,
    POST "/accounts/{id}/pricefeeds/{feed_id}/snapshots" => pricefeeds::create_snapshot,
    GET "/accounts/{id}/oracle/sources" => oracle::list_sources,
    POST "/accounts/{id}/oracle/sources" => oracle::create_source,
    GET "/accounts/{id}/oracle/sources/{source_id}" => oracle::get_source,
    PATCH "/accounts/{id}/oracle/sources/{source_id}" => oracle::update_source,
    DELETE "/accounts/{id}/oracle/sources/{source_id}" => oracle::delete_source,
    GET "/accounts/{id}/oracle/requests" => oracle::list_requests,
    POST "/accounts/{id}/oracle/requests" => oracle::create_request,
    GET "/accounts/{id}/oracle/requests/{request_id}" => oracle::get_request,
    PATCH "/accounts/{id}/oracle/requests/{request_id}" => oracle::patch_request,
    GET "/accounts/{id}/gasbank" => gasbank::get,
    POST "/accounts/{id}/gasbank" => gasbank::ensure,
    POST "/accounts/{id}/gasbank/deposit" => gasbank::deposit,
    POST "/accounts/{id}/gasbank/withdraw" => gasbank::withdraw,
    GET "/accounts/{id}/gasbank/transactions" => gasbank::transactions,
    POST "/accounts/{id}/random" => random::generate,
    GET "/random/public-key" => random::public_key,
    POST "/random/verify" => random::verify,
    GET "/accounts/{id}/triggers" => triggers::list,
    POST "/accounts/{id}/triggers" => triggers::create,
    GET "/accounts/{id}/triggers/{trigger_id}" => triggers::get,
    PATCH "/accounts/{id}/triggers/{trigger_id}" => triggers::update,
    DELETE "/accounts/{id}/triggers/{trigger_id}" => triggers::delete,
    POST "/webhooks/{trigger_id}" => triggers::webhook,
    GET "/accounts/{id}/tokens" => tokens::list,
    POST "/accounts/{id}/tokens" => tokens::create,
    GET "/accounts/{id}/tokens/{token_id}" => tokens::get,
    DELETE "/accounts/{id}/tokens/{token_id}" => tokens::delete,
];

/// The `(path, method)` of every route, in registration order.
pub fn endpoints() -> impl Iterator<Item = (&'static str, &'static Method)> {
    ENDPOINTS.iter().map(|(path, method, _)| (*path, method))
}

/// Registers every route; a known path with a method it does not serve answers 405
/// with `Allow`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let mut rest = ENDPOINTS;
    while let Some((path, ..)) = rest.first() {
        let count = rest.iter().take_while(|(p, ..)| p == path).count();
        let (same_path, tail) = rest.split_at(count);
        let mut resource = web::resource(*path);
        for (_, method, handler) in same_path {
            resource = resource.route(handler().method(method.clone()));
        }
        let allow: Arc<str> = same_path
            .iter()
            .map(|(_, method, _)| method.as_str())
            .collect::<Vec<_>>()
            .join(", ")
            .into();
        cfg.service(resource.default_service(web::to(move || {
            let allow = Arc::clone(&allow);
            async move { Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed(allow)) }
        })));
        rest = tail;
    }
}
