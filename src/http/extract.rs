//! Request extractors with the contract's rules and error order: 413 (declared or actual
//! size over `HTTP_BODY_LIMIT`) → 415 (a `Content-Type` that is not JSON) → 400 (empty,
//! not an object, malformed, unknown field, wrong type). Query strings reject unknown
//! parameters. Field paths appear in messages (`metadata.k: invalid type …`).

use super::error::ApiError;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use std::future::{ready, Ready};

/// Per-app HTTP limits, registered as app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON object body deserialised into `T`. An empty body is a 400.
pub struct JsonBody<T>(pub T);

/// A JSON object body where an empty body means `{}` (execute, webhooks).
pub struct JsonOrEmpty<T>(pub T);

fn check_headers(req: &HttpRequest, limit: usize) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let essence = ct
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    Ok(())
}

async fn read_body(mut payload: Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::invalid_request(format!("could not read request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Deserialises a JSON object, reporting the path of the offending field.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => {
            return Err(ApiError::invalid_request(
                "request body must be a JSON object".to_owned(),
            ))
        }
        Some(b'{') => {}
        Some(_) => {
            // Distinguish "valid JSON but not an object" from "not JSON at all".
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                    Ok(_) => {
                        ApiError::invalid_request("request body must be a JSON object".to_owned())
                    }
                    Err(e) => ApiError::invalid_request(format!("malformed JSON: {e}")),
                },
            );
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid_request(format!("malformed JSON: {inner}"))
        } else {
            let message = strip_position(&inner.to_string());
            // For an unknown field the path ends with the field itself, which the message
            // already names; say where it was found instead.
            let at = if message.starts_with("unknown field") {
                path.rsplit_once('.')
                    .map_or(".", |(parent, _)| parent)
                    .to_owned()
            } else {
                path
            };
            if at == "." || at.is_empty() {
                ApiError::invalid_request(message)
            } else {
                ApiError::invalid_request(format!("{at}: {message}"))
            }
        }
    })?;
    Ok(value)
}

/// No NUL (CONTRACT.md §1.1): PostgreSQL cannot store U+0000 in TEXT or JSONB, so both
/// modes refuse it. `whole` names the field when the body as a whole is one input
/// (`params` of an execute, `body` of a webhook); otherwise the top-level field holding
/// the NUL is named. Checked after the body parsed (JSON errors come first).
pub fn reject_nul(bytes: &[u8], whole: Option<&str>) -> Result<(), ApiError> {
    // JSON can only spell NUL as this escape (a raw control character is a syntax
    // error), so a body without it, nearly every body, costs one scan and no parse.
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(());
    };
    let field = match (whole, &value) {
        (Some(name), _) => has_nul(&value).then(|| name.to_owned()),
        (None, serde_json::Value::Object(map)) => map
            .iter()
            .find(|(key, v)| key.contains('\0') || has_nul(v))
            .map(|(key, _)| key.replace('\0', "\u{FFFD}")),
        (None, other) => has_nul(other).then(|| "body".to_owned()),
    };
    match field {
        Some(field) => Err(ApiError::validation(format!(
            "{field}: must not contain NUL characters"
        ))),
        None => Ok(()),
    }
}

/// Whether any string or key in `value` holds U+0000. Iterative: depth costs no stack.
fn has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    false
}

/// serde_json appends ` at line 1 column 17`; the field path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn limit_of(req: &HttpRequest) -> usize {
    req.app_data::<BodyLimit>().map_or(1 << 20, |l| l.0)
}

/// A raw body read within the limit (413), for routes that must see the exact bytes
/// (webhook signatures). `json_media_type` tells whether `Content-Type` was absent or
/// JSON; the route decides when a wrong one is reported.
pub struct RawBody {
    pub bytes: web::Bytes,
    pub json_media_type: bool,
}

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = limit_of(req);
        let checked = check_headers(req, limit);
        let json_media_type = !matches!(checked, Err(ApiError::UnsupportedMediaType));
        let payload = payload.take();
        Box::pin(async move {
            if let Err(e @ ApiError::PayloadTooLarge(_)) = checked {
                return Err(e);
            }
            let bytes = read_body(payload, limit).await?.freeze();
            Ok(RawBody {
                bytes,
                json_media_type,
            })
        })
    }
}

/// Shared by both body extractors: header checks first (413, 415), then the body.
/// `whole` names the body for NUL errors when it is one input (see [`reject_nul`]).
fn extract_json<T: DeserializeOwned + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    empty_is_object: bool,
    whole: Option<&'static str>,
) -> LocalBoxFuture<'static, Result<T, ApiError>> {
    let limit = limit_of(req);
    let checked = check_headers(req, limit);
    let payload = payload.take();
    Box::pin(async move {
        checked?;
        let body = read_body(payload, limit).await?;
        if empty_is_object && body.iter().all(u8::is_ascii_whitespace) {
            return parse_object(b"{}");
        }
        let value = parse_object(&body)?;
        reject_nul(&body, whole)?;
        Ok(value)
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = extract_json(req, payload, false, None);
        Box::pin(async move { body.await.map(JsonBody) })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonOrEmpty<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = extract_json(req, payload, true, Some("params"));
        Box::pin(async move { body.await.map(JsonOrEmpty) })
    }
}

/// Query parameters deserialised into `T`; `T` should deny unknown fields.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let de = serde_urlencoded::Deserializer::new(form_urlencoded(req.query_string()));
        ready(
            serde_path_to_error::deserialize(de)
                .map(Query)
                .map_err(|e| {
                    let path = e.path().to_string();
                    let inner = e.into_inner().to_string();
                    if path == "." {
                        ApiError::invalid_request(format!("query: {inner}"))
                    } else {
                        ApiError::invalid_request(format!("{path}: {inner}"))
                    }
                }),
        )
    }
}

fn form_urlencoded(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// For routes that take no query parameters: any parameter is a 400.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}
