//! The OpenAPI 3.1 document, served at `/openapi.json`. Each operation is described by a
//! `#[utoipa::path]` on its handler and each body by `ToSchema` on the type the handler
//! really (de)serialises; what every operation shares (the bearer scheme, the error
//! body, the path parameters) is added here once by [`Shared`].

use super::error::{ApiError, ErrorBody};
use super::extract::{NoParams, Query};
use actix_web::HttpResponse;
use std::sync::OnceLock;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Required};
use utoipa::{Modify, OpenApi, PartialSchema as _, ToSchema as _};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "service-layer",
        description = "Off-chain services for blockchain applications behind one \
                       authenticated HTTP API. Conventions, limits and error codes: docs/api.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::system::healthz,
        super::system::readyz,
        super::system::metrics,
        document,
        super::accounts::list,
        super::accounts::create,
        super::accounts::get,
        super::accounts::update,
        super::accounts::delete,
        super::tokens::list,
        super::tokens::create,
        super::tokens::get,
        super::tokens::delete,
        super::secrets::list,
        super::secrets::create,
        super::secrets::get,
        super::secrets::update,
        super::secrets::delete,
        super::functions::list,
        super::functions::create,
        super::functions::get,
        super::functions::replace,
        super::functions::delete,
        super::functions::execute,
        super::functions::list_executions,
        super::functions::get_execution,
        super::functions::get_any_execution,
        super::automation::list,
        super::automation::create,
        super::automation::get,
        super::automation::update,
        super::automation::delete,
        super::automation::runs,
        super::pricefeeds::list,
        super::pricefeeds::create,
        super::pricefeeds::get,
        super::pricefeeds::update,
        super::pricefeeds::delete,
        super::pricefeeds::snapshots,
        super::pricefeeds::create_snapshot,
        super::oracle::list_sources,
        super::oracle::create_source,
        super::oracle::get_source,
        super::oracle::update_source,
        super::oracle::delete_source,
        super::oracle::list_requests,
        super::oracle::create_request,
        super::oracle::get_request,
        super::oracle::patch_request,
        super::gasbank::get,
        super::gasbank::ensure,
        super::gasbank::deposit,
        super::gasbank::withdraw,
        super::gasbank::transactions,
        super::random::generate,
        super::random::public_key,
        super::random::verify,
        super::triggers::list,
        super::triggers::create,
        super::triggers::get,
        super::triggers::update,
        super::triggers::delete,
        super::triggers::webhook,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Shared),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// What every operation shares, added once instead of on 60 handlers: the bearer scheme,
/// the error responses (any 4xx, and 503 when a dependency is down or the executor is
/// full) and a string parameter for each `{name}` of the path that the handler did not
/// describe itself.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin token (API_TOKENS) or an account token (slt_…, scoped to \
                         its account)",
                    ))
                    .build(),
            ),
        );
        let error = ResponseBuilder::new()
            .description("An error: `{\"error\", \"code\"}` (docs/api.md lists the codes)")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                    .build(),
            )
            .build();
        for (path, item) in doc.paths.paths.iter_mut() {
            let names: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for code in ["4XX", "503"] {
                    operation
                        .responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| error.clone().into());
                }
                let params = operation.parameters.get_or_insert_with(Vec::new);
                for name in &names {
                    let described = params
                        .iter()
                        .any(|p| p.name == *name && p.parameter_in == ParameterIn::Path);
                    if !described {
                        params.push(path_parameter(name));
                    }
                }
            }
        }
    }
}

fn path_parameter(name: &str) -> Parameter {
    let description = match name {
        "id" => "The account's id (a UUID)".to_owned(),
        "name" => "The secret's name".to_owned(),
        other => format!("The {} (a UUID)", other.replace('_', " ")),
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(String::schema()))
        .build()
}

/// The document as JSON, built once. Serialising it cannot fail in practice (it is plain
/// maps and strings), but product code does not panic: a failure is a 500.
pub fn json() -> Result<&'static str, ApiError> {
    static DOCUMENT: OnceLock<Result<String, String>> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            ApiDoc::openapi()
                .to_pretty_json()
                .map_err(|e| e.to_string())
        })
        .as_deref()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("serialise the OpenAPI document: {e}")))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)),
)]
pub async fn document(_: Query<NoParams>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json()?))
}
