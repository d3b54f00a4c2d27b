//! Oracle data sources and requests (CONTRACT.md §2.8), and the parsing of their HTTP
//! bodies: a [`SourceInput`] / [`SourcePatchInput`] / [`RequestInput`] /
//! [`TransitionInput`] holds raw values; `parse` turns each into checked values before
//! anything else sees them. The status rules live here too ([`Transition::apply`],
//! [`Request::finish`]), so PATCH and the dispatcher share them.

use crate::error::{StoreError, ValidationError};
use crate::ids::{AccountId, RequestId, SourceId};
use crate::page::{Keyed, PageKey};
use crate::patch::Patch;
pub use crate::resolver::Finish;
use crate::validate;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// A source's `url` length limit.
pub const MAX_URL: usize = 2048;
/// At most this many headers per source.
pub const MAX_HEADERS: usize = 32;
/// A header name's length limit (characters; names are ASCII) and the bytes of all
/// header names and values together (what one source may make the resolver send).
const MAX_HEADER_NAME: usize = 128;
const MAX_HEADER_BYTES: usize = 16 << 10;
/// A source's `body`, a request's `payload` and `result`: at most 64 KiB (bytes).
pub const MAX_TEXT: usize = 64 << 10;
/// A request's `error` length limit (characters).
pub const MAX_ERROR: usize = 4096;
/// The methods a source may name.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: SourceId,
    pub account_id: AccountId,
    pub name: String,
    pub description: String,
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Keyed for Source {
    fn page_key(&self) -> PageKey {
        PageKey {
            at: self.created_at,
            id: *self.id.as_uuid(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// `succeeded` or `failed`: nothing changes it any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// The dispatcher's hold on a request while it calls the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: RequestId,
    pub account_id: AccountId,
    pub data_source_id: SourceId,
    pub status: RequestStatus,
    pub payload: String,
    pub result: Option<String>,
    pub error: Option<String>,
    /// Resolver calls made so far.
    pub attempts: i32,
    /// When the dispatcher may call the resolver next; `None` once final.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub lease: Option<Lease>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Keyed for Request {
    fn page_key(&self) -> PageKey {
        PageKey {
            at: self.created_at,
            id: *self.id.as_uuid(),
        }
    }
}

impl Request {
    /// The request after `finish` at `now`, its lease released: a final status clears
    /// `next_attempt_at` and sets `completed_at`.
    pub fn finish(&self, finish: Finish, now: DateTime<Utc>) -> Self {
        let mut next = Self {
            lease: None,
            updated_at: now,
            ..self.clone()
        };
        match finish {
            Finish::Succeeded(result) => {
                next.status = RequestStatus::Succeeded;
                next.result = Some(result);
                next.error = None;
            }
            Finish::Failed(error) => {
                next.status = RequestStatus::Failed;
                next.error = Some(error);
            }
            Finish::RetryAt(at) => {
                next.next_attempt_at = Some(at);
                return next;
            }
        }
        next.next_attempt_at = None;
        next.completed_at = Some(now);
        next
    }
}

/// A data source as requested (the HTTP body), before any check.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = OracleSourceInput)]
#[serde(deny_unknown_fields)]
pub struct SourceInput {
    #[schema(required = true, min_length = 1, max_length = 128)]
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(
        required = true,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://",
        example = "https://api.example.com/price"
    )]
    pub url: Option<String>,
    pub method: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<String>,
    pub enabled: Option<bool>,
}

/// A data source whose every field follows the contract.
#[derive(Debug, Clone)]
pub struct NewSource {
    pub name: String,
    pub description: String,
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub enabled: bool,
}

/// The PATCH body: omitted fields stay unchanged; `null` clears `description`, `headers`
/// and `body` (to empty) and is refused for the others.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = OracleSourcePatch)]
#[serde(deny_unknown_fields)]
pub struct SourcePatchInput {
    #[schema(value_type = String)]
    #[serde(default)]
    pub name: Patch<String>,
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub description: Patch<String>,
    #[schema(value_type = String)]
    #[serde(default)]
    pub url: Patch<String>,
    #[schema(value_type = String)]
    #[serde(default)]
    pub method: Patch<String>,
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    #[serde(default)]
    pub headers: Patch<BTreeMap<String, String>>,
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub body: Patch<String>,
    #[schema(value_type = bool)]
    #[serde(default)]
    pub enabled: Patch<bool>,
}

/// A checked PATCH; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct SourcePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub url: Option<String>,
    pub method: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<String>,
    pub enabled: Option<bool>,
}

fn name(raw: &str) -> Result<String, ValidationError> {
    validate::trimmed("name", raw, 1, 128)
}

fn description(raw: &str) -> Result<String, ValidationError> {
    validate::trimmed("description", raw, 0, 1024)
}

fn url(raw: &str) -> Result<String, ValidationError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(ValidationError::new("url", "is required"));
    }
    if text.len() > MAX_URL {
        return Err(ValidationError::new(
            "url",
            format!("must be at most {MAX_URL} bytes"),
        ));
    }
    let parsed = url::Url::parse(text)
        .map_err(|e| ValidationError::new("url", format!("not an absolute URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ValidationError::new("url", "must be an http or https URL"));
    }
    Ok(text.to_owned())
}

fn method(raw: &str) -> Result<String, ValidationError> {
    let method = raw.trim().to_ascii_uppercase();
    if METHODS.contains(&method.as_str()) {
        Ok(method)
    } else {
        Err(ValidationError::new(
            "method",
            "must be one of GET, POST, PUT, PATCH, DELETE",
        ))
    }
}

/// Header names are HTTP tokens, unique whatever their case, and values carry no control
/// characters: the resolver sends them as they are, so nothing here may smuggle a second
/// header or a request.
fn headers(map: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ValidationError> {
    let map = validate::string_map(
        "headers",
        map,
        MAX_HEADERS,
        MAX_HEADER_NAME,
        MAX_HEADER_BYTES,
    )?;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let mut seen = std::collections::HashSet::with_capacity(map.len());
    let mut bytes = 0;
    for (key, value) in &map {
        if !key.chars().all(token) {
            return Err(ValidationError::new(
                "headers",
                format!("{key:?} is not a valid header name"),
            ));
        }
        if !seen.insert(key.to_ascii_lowercase()) {
            return Err(ValidationError::new(
                "headers",
                format!("{key:?} repeats a header name (names are case-insensitive)"),
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ValidationError::new(
                format!("headers.{key}"),
                "must not contain control characters",
            ));
        }
        bytes += key.len() + value.len();
    }
    if bytes > MAX_HEADER_BYTES {
        return Err(ValidationError::new(
            "headers",
            format!("names and values must total at most {MAX_HEADER_BYTES} bytes"),
        ));
    }
    Ok(map)
}

/// At most [`MAX_TEXT`] bytes.
fn text(field: &str, raw: String) -> Result<String, ValidationError> {
    if raw.len() > MAX_TEXT {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_TEXT} bytes"),
        ));
    }
    Ok(raw)
}

impl NewSource {
    pub fn parse(input: SourceInput) -> Result<Self, ValidationError> {
        Ok(Self {
            name: name(input.name.as_deref().unwrap_or_default())?,
            description: description(input.description.as_deref().unwrap_or_default())?,
            url: url(input.url.as_deref().unwrap_or_default())?,
            method: match input.method.as_deref() {
                Some(raw) => method(raw)?,
                None => "GET".to_owned(),
            },
            headers: headers(input.headers.unwrap_or_default())?,
            body: text("body", input.body.unwrap_or_default())?,
            enabled: input.enabled.unwrap_or(true),
        })
    }

    pub fn into_source(self, account_id: AccountId, now: DateTime<Utc>) -> Source {
        Source {
            id: SourceId::generate(),
            account_id,
            name: self.name,
            description: self.description,
            url: self.url,
            method: self.method,
            headers: self.headers,
            body: self.body,
            enabled: self.enabled,
            created_at: now,
            updated_at: now,
        }
    }
}

impl SourcePatch {
    pub fn parse(input: SourcePatchInput) -> Result<Self, ValidationError> {
        let cleared = |patch: Patch<String>| match patch {
            Patch::Missing => None,
            Patch::Null => Some(String::new()),
            Patch::Value(v) => Some(v),
        };
        Ok(Self {
            name: input
                .name
                .required("name")?
                .as_deref()
                .map(name)
                .transpose()?,
            description: cleared(input.description)
                .as_deref()
                .map(description)
                .transpose()?,
            url: input.url.required("url")?.as_deref().map(url).transpose()?,
            method: input
                .method
                .required("method")?
                .as_deref()
                .map(method)
                .transpose()?,
            headers: match input.headers {
                Patch::Missing => None,
                Patch::Null => Some(BTreeMap::new()),
                Patch::Value(map) => Some(headers(map)?),
            },
            body: cleared(input.body).map(|b| text("body", b)).transpose()?,
            enabled: input.enabled.required("enabled")?,
        })
    }

    pub fn apply(&self, source: &mut Source, now: DateTime<Utc>) {
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = &self.$field { source.$field = v.clone(); })* };
        }
        set!(name, description, url, method, headers, body, enabled);
        source.updated_at = now;
    }
}

/// A request as asked for (the HTTP body).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = OracleRequestInput)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    #[schema(required = true)]
    pub data_source_id: Option<String>,
    pub payload: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewRequest {
    pub data_source_id: SourceId,
    pub payload: String,
}

/// What a `data_source_id` that names no enabled source of the account is refused with.
pub fn unusable_source() -> ValidationError {
    ValidationError::new(
        "data_source_id",
        "no enabled data source with this id in this account",
    )
}

impl NewRequest {
    pub fn parse(input: RequestInput) -> Result<Self, ValidationError> {
        let data_source_id = match input.data_source_id.as_deref().map(str::trim) {
            None | Some("") => return Err(ValidationError::new("data_source_id", "is required")),
            Some(text) => SourceId::parse(text).ok_or_else(unusable_source)?,
        };
        Ok(Self {
            data_source_id,
            payload: text("payload", input.payload.unwrap_or_default())?,
        })
    }

    /// The request to store, created at `now`: pending and due at once.
    pub fn into_request(self, account_id: AccountId, now: DateTime<Utc>) -> Request {
        Request {
            id: RequestId::generate(),
            account_id,
            data_source_id: self.data_source_id,
            status: RequestStatus::Pending,
            payload: self.payload,
            result: None,
            error: None,
            attempts: 0,
            next_attempt_at: Some(now),
            lease: None,
            created_at: now,
            updated_at: now,
            completed_at: None,
        }
    }
}

/// The PATCH body of a request.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = OracleTransition)]
#[serde(deny_unknown_fields)]
pub struct TransitionInput {
    #[schema(required = true)]
    pub status: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
}

/// A checked status change: where to, with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// To `pending`: valid as a value, allowed from no state (409).
    Pending,
    Running,
    Succeeded(String),
    Failed(String),
}

impl Transition {
    pub fn parse(input: TransitionInput) -> Result<Self, ValidationError> {
        let status = input.status.as_deref().unwrap_or_default().trim();
        if status.is_empty() {
            return Err(ValidationError::new("status", "is required"));
        }
        let (has_result, has_error) = (input.result.is_some(), input.error.is_some());
        let transition = match status.to_lowercase().as_str() {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "succeeded" | "completed" => match input.result {
                Some(result) => Self::Succeeded(text("result", result)?),
                None => {
                    return Err(ValidationError::new(
                        "result",
                        "is required when status is succeeded",
                    ))
                }
            },
            "failed" => {
                let error = input.error.as_deref().map(str::trim).unwrap_or_default();
                let error = if error.is_empty() { "failed" } else { error };
                Self::Failed(validate::trimmed("error", error, 1, MAX_ERROR)?)
            }
            _ => {
                return Err(ValidationError::new(
                    "status",
                    "must be one of pending, running, succeeded (or completed), failed",
                ))
            }
        };
        // Each field belongs to one target status: a result on a failure (or an error
        // on a success) would be dropped, so it is refused instead.
        if has_result && !matches!(transition, Self::Succeeded(_)) {
            return Err(ValidationError::new(
                "result",
                "only allowed when status is succeeded",
            ));
        }
        if has_error && !matches!(transition, Self::Failed(_)) {
            return Err(ValidationError::new(
                "error",
                "only allowed when status is failed",
            ));
        }
        Ok(transition)
    }

    fn target(&self) -> RequestStatus {
        match self {
            Self::Pending => RequestStatus::Pending,
            Self::Running => RequestStatus::Running,
            Self::Succeeded(_) => RequestStatus::Succeeded,
            Self::Failed(_) => RequestStatus::Failed,
        }
    }

    /// The request after this change at `now`; `InvalidState` unless the contract's
    /// table allows it from the request's current status: `pending` → `running`,
    /// `running` → `succeeded` | `failed`.
    pub fn apply(&self, current: &Request, now: DateTime<Utc>) -> Result<Request, StoreError> {
        use RequestStatus::{Pending, Running};
        match (current.status, self) {
            (Pending, Self::Running) => Ok(Request {
                status: Running,
                updated_at: now,
                ..current.clone()
            }),
            (Running, Self::Succeeded(result)) => {
                Ok(current.finish(Finish::Succeeded(result.clone()), now))
            }
            (Running, Self::Failed(error)) => {
                Ok(current.finish(Finish::Failed(error.clone()), now))
            }
            (from, _) => Err(StoreError::InvalidState(format!(
                "oracle request is {}; it cannot become {}",
                from.as_str(),
                self.target().as_str()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(status: RequestStatus) -> Request {
        let now = Utc::now();
        Request {
            status,
            ..NewRequest {
                data_source_id: SourceId::generate(),
                payload: String::new(),
            }
            .into_request(AccountId::generate(), now)
        }
    }

    fn transition(status: &str, result: Option<&str>, error: Option<&str>) -> Transition {
        Transition::parse(TransitionInput {
            status: Some(status.to_owned()),
            result: result.map(str::to_owned),
            error: error.map(str::to_owned),
        })
        .unwrap()
    }

    #[test]
    fn the_transition_table_holds() {
        use RequestStatus::*;
        let now = Utc::now();
        let cases: [(RequestStatus, Transition, Option<RequestStatus>); 16] = [
            (Pending, transition("running", None, None), Some(Running)),
            (Pending, transition("succeeded", Some("r"), None), None),
            (Pending, transition("failed", None, None), None),
            (Pending, transition("pending", None, None), None),
            (Running, transition("running", None, None), None),
            (
                Running,
                transition(" Completed ", Some("r"), None),
                Some(Succeeded),
            ),
            (Running, transition("FAILED", None, None), Some(Failed)),
            (Running, transition("pending", None, None), None),
            (Succeeded, transition("running", None, None), None),
            (Succeeded, transition("succeeded", Some("r"), None), None),
            (Succeeded, transition("failed", None, None), None),
            (Succeeded, transition("pending", None, None), None),
            (Failed, transition("running", None, None), None),
            (Failed, transition("succeeded", Some("r"), None), None),
            (Failed, transition("failed", None, None), None),
            (Failed, transition("pending", None, None), None),
        ];
        for (from, change, to) in cases {
            let got = change.apply(&request(from), now);
            match to {
                Some(to) => assert_eq!(got.unwrap().status, to, "{from:?} {change:?}"),
                None => assert!(
                    matches!(got, Err(StoreError::InvalidState(_))),
                    "{from:?} {change:?}"
                ),
            }
        }
    }

    #[test]
    fn finishing_sets_and_clears_the_right_fields() {
        let now = Utc::now();
        let mut running = request(RequestStatus::Running);
        running.error = Some("old".into());
        running.lease = Some(Lease {
            owner: "r".into(),
            until: now,
        });
        let done = transition("succeeded", Some("42"), None)
            .apply(&running, now)
            .unwrap();
        assert_eq!(done.result.as_deref(), Some("42"));
        assert_eq!(done.error, None, "error cleared");
        assert_eq!(done.completed_at, Some(now));
        assert_eq!((done.next_attempt_at, done.lease), (None, None));
        let failed = transition("failed", None, None)
            .apply(&running, now)
            .unwrap();
        assert_eq!(failed.error.as_deref(), Some("failed"), "the default error");
        let retry = running.finish(Finish::RetryAt(now), now);
        assert_eq!(retry.status, RequestStatus::Running);
        assert_eq!(
            (retry.next_attempt_at, retry.completed_at),
            (Some(now), None)
        );
    }

    #[test]
    fn bodies_are_checked() {
        let bad = |input: TransitionInput| Transition::parse(input).unwrap_err().to_string();
        assert_eq!(bad(TransitionInput::default()), "status: is required");
        assert_eq!(
            bad(TransitionInput {
                status: Some("succeeded".into()),
                ..Default::default()
            }),
            "result: is required when status is succeeded"
        );
        assert_eq!(
            bad(TransitionInput {
                status: Some("failed".into()),
                result: Some("x".into()),
                ..Default::default()
            }),
            "result: only allowed when status is succeeded"
        );
        assert!(bad(TransitionInput {
            status: Some("done".into()),
            ..Default::default()
        })
        .starts_with("status: must be one of"));
        let source = |input: SourceInput| NewSource::parse(input).map(|s| s.method);
        let base = || SourceInput {
            name: Some("n".into()),
            url: Some("https://example.com/x".into()),
            ..Default::default()
        };
        assert_eq!(source(base()).unwrap(), "GET");
        assert_eq!(
            source(SourceInput {
                method: Some(" post ".into()),
                ..base()
            })
            .unwrap(),
            "POST"
        );
        for (input, message) in [
            (
                SourceInput {
                    method: Some("TRACE".into()),
                    ..base()
                },
                "method: must be one of GET, POST, PUT, PATCH, DELETE",
            ),
            (
                SourceInput {
                    url: Some("ftp://x/".into()),
                    ..base()
                },
                "url: must be an http or https URL",
            ),
            (
                SourceInput {
                    headers: Some([("a b".to_owned(), "v".to_owned())].into()),
                    ..base()
                },
                "headers: \"a b\" is not a valid header name",
            ),
            (
                SourceInput {
                    headers: Some([("X".to_owned(), "v\r\nY: z".to_owned())].into()),
                    ..base()
                },
                "headers.X: must not contain control characters",
            ),
            (
                SourceInput {
                    headers: Some(
                        [
                            ("A".to_owned(), "1".to_owned()),
                            ("a".to_owned(), "2".to_owned()),
                        ]
                        .into(),
                    ),
                    ..base()
                },
                "headers: \"a\" repeats a header name (names are case-insensitive)",
            ),
            (
                SourceInput {
                    headers: Some(
                        (0..5)
                            .map(|i| (format!("h{i}"), "é".repeat(2000)))
                            .collect(),
                    ),
                    ..base()
                },
                "headers: names and values must total at most 16384 bytes",
            ),
            (
                SourceInput {
                    body: Some("x".repeat(MAX_TEXT + 1)),
                    ..base()
                },
                "body: must be at most 65536 bytes",
            ),
        ] {
            assert_eq!(source(input).unwrap_err().to_string(), message);
        }
    }
}
