//! The list protocol (CONTRACT.md §1.4): `limit` and `cursor` in, `{items, next_cursor}`
//! out. A cursor is opaque to clients: base64url of `<scope>|<unix micros>|<id>`, where the
//! scope names the list it belongs to, so a cursor from another list is rejected.

use super::error::ApiError;
use super::extract::Query;
use actors::page::{PageKey, PageRequest, DEFAULT_LIMIT};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The query of every list route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size, 1 or more (default 50; above 500 acts as 500).
    #[param(value_type = Option<u32>, minimum = 1)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl ListParams {
    /// The list query of a route that takes more parameters than these two.
    pub fn new(limit: Option<String>, cursor: Option<String>) -> Self {
        Self { limit, cursor }
    }

    /// Validates `limit` (integer ≥ 1; above 500 acts as 500) and decodes `cursor` for the
    /// list named `scope`.
    pub fn page(&self, scope: &str) -> Result<PageRequest, ApiError> {
        let limit = match &self.limit {
            None => DEFAULT_LIMIT,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(n) if n >= 1 => u32::try_from(n).unwrap_or(u32::MAX),
                _ => {
                    return Err(ApiError::invalid_request(format!(
                        "limit: must be a positive integer, got {text:?}"
                    )))
                }
            },
        };
        let after = self
            .cursor
            .as_deref()
            .map(|c| decode(scope, c))
            .transpose()?;
        Ok(PageRequest::new(limit, after))
    }
}

/// Shorthand for handlers: `Query<ListParams>`.
pub type ListQuery = Query<ListParams>;

fn bad_cursor() -> ApiError {
    ApiError::invalid_request("cursor: not a cursor of this list".to_owned())
}

pub fn encode(scope: &str, key: &PageKey) -> String {
    let text = format!(
        "{scope}|{}|{}",
        key.at.timestamp_micros(),
        key.id.hyphenated()
    );
    URL_SAFE_NO_PAD.encode(text)
}

fn decode(scope: &str, cursor: &str) -> Result<PageKey, ApiError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    let mut parts = text.rsplitn(3, '|');
    let (Some(id), Some(micros), Some(cursor_scope)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_cursor());
    };
    if cursor_scope != scope {
        return Err(bad_cursor());
    }
    let micros: i64 = micros.parse().map_err(|_| bad_cursor())?;
    let at = Utc
        .timestamp_micros(micros)
        .single()
        .ok_or_else(bad_cursor)?;
    let id = uuid::Uuid::try_parse(id).map_err(|_| bad_cursor())?;
    Ok(PageKey { at, id })
}

/// `{"items": [...], "next_cursor": ...}`: `next_cursor` is `null` on the last page.
#[derive(Serialize, ToSchema)]
pub struct ListBody<T> {
    pub items: Vec<T>,
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl<T> ListBody<T> {
    pub fn new<U>(page: actors::page::Page<U>, scope: &str, map: impl Fn(U) -> T) -> Self {
        Self {
            next_cursor: page.next.as_ref().map(|k| encode(scope, k)),
            items: page.items.into_iter().map(map).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_scope() {
        let key = PageKey {
            at: Utc.timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: uuid::Uuid::new_v4(),
        };
        let c = encode("accounts", &key);
        assert_eq!(decode("accounts", &c).unwrap(), key);
        assert!(decode("accounts/x/secrets", &c).is_err());
        assert!(decode("accounts", "%%%").is_err());
        assert!(decode("accounts", &URL_SAFE_NO_PAD.encode("accounts|x|y")).is_err());
    }
}
