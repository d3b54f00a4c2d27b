//! Errors shared by every store and actor. The HTTP edge maps each variant to one row of
//! its error-code table; nothing here knows about status codes.

use std::fmt;

/// A value broke a rule of the contract. `field` is the JSON field (or query parameter)
/// and the message reads well after it: `owner: must be 1-256 characters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

/// Failures at the store boundary, shared by the memory and PostgreSQL implementations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed resource does not exist (or is outside the caller's account).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken; the message names what clashed.
    #[error("{0}")]
    Conflict(String),
    /// An `If-Match` precondition failed: the resource is at another version.
    #[error("{0}")]
    VersionMismatch(String),
    /// The operation is not allowed in the resource's current state.
    #[error("{0}")]
    InvalidState(String),
    /// A quota (CONTRACT.md §5) would be exceeded; the message names it.
    #[error("{0}")]
    LimitExceeded(String),
    /// A withdrawal above the gas account's available balance.
    #[error("{0}")]
    InsufficientFunds(String),
    /// The database could not be reached (pool exhausted, connection refused, timeout).
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug or an unexpected database error. Opaque to clients.
    #[error("internal store error")]
    Internal(#[source] anyhow::Error),
}

impl StoreError {
    /// The same failure for each caller of a grouped operation (the error itself is not
    /// `Clone`): the kind and the message are kept.
    pub fn for_each(&self) -> Self {
        match self {
            Self::NotFound => Self::NotFound,
            Self::Conflict(m) => Self::Conflict(m.clone()),
            Self::VersionMismatch(m) => Self::VersionMismatch(m.clone()),
            Self::InvalidState(m) => Self::InvalidState(m.clone()),
            Self::LimitExceeded(m) => Self::LimitExceeded(m.clone()),
            Self::InsufficientFunds(m) => Self::InsufficientFunds(m.clone()),
            Self::Unavailable(e) => Self::Unavailable(anyhow::anyhow!("{e:#}")),
            Self::Internal(e) => Self::Internal(anyhow::anyhow!("{e:#}")),
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(err.into())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        if err.is_closed() {
            Self::Unavailable(err.into())
        } else {
            Self::Internal(err.into())
        }
    }
}

/// The contract's error codes (CONTRACT.md §1.2) that domain errors carry. The HTTP edge
/// maps each to its status in one place (`src/http/error.rs`); nothing here knows status
/// codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    ValidationFailed,
    InvalidRequest,
    InvalidSignature,
    NotFound,
    Conflict,
    VersionMismatch,
    InvalidState,
    LimitExceeded,
    /// Too much work is already waiting (a trigger's pending firings): retry later.
    Backlogged,
    InsufficientFunds,
    ExecutorBusy,
    ServiceUnavailable,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "validation_failed",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidSignature => "invalid_signature",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::VersionMismatch => "version_mismatch",
            Self::InvalidState => "invalid_state",
            Self::LimitExceeded => "limit_exceeded",
            Self::Backlogged => "rate_limited",
            Self::InsufficientFunds => "insufficient_funds",
            Self::ExecutorBusy => "executor_busy",
            Self::ServiceUnavailable => "service_unavailable",
            Self::Internal => "internal",
        }
    }
}

/// An error that knows its contract code and what the client may be told. Every
/// subsystem's error implements it (in the style of meilisearch's `ErrorCode`), so the
/// HTTP edge maps all of them the same way.
pub trait ErrorCode: std::error::Error + Send + Sync + 'static {
    fn code(&self) -> Code;

    /// What the client is told; `Internal` errors are never shown (the edge logs them).
    fn message(&self) -> String {
        self.to_string()
    }
}

impl ErrorCode for ValidationError {
    fn code(&self) -> Code {
        Code::ValidationFailed
    }
}

impl ErrorCode for StoreError {
    fn code(&self) -> Code {
        match self {
            Self::NotFound => Code::NotFound,
            Self::Conflict(_) => Code::Conflict,
            Self::VersionMismatch(_) => Code::VersionMismatch,
            Self::InvalidState(_) => Code::InvalidState,
            Self::LimitExceeded(_) => Code::LimitExceeded,
            Self::InsufficientFunds(_) => Code::InsufficientFunds,
            Self::Unavailable(_) => Code::ServiceUnavailable,
            Self::Internal(_) => Code::Internal,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Unavailable(_) => "database unavailable; retry shortly".to_owned(),
            other => other.to_string(),
        }
    }
}

impl ErrorCode for crate::supervisor::Unavailable {
    fn code(&self) -> Code {
        Code::ServiceUnavailable
    }

    fn message(&self) -> String {
        format!("the {} service is restarting; retry shortly", self.0)
    }
}

/// Declares a subsystem's error: `NotFound` naming the resource, a validation failure,
/// a conflict, a state conflict, the store's own failures and an unavailable actor, plus
/// any variants the subsystem adds with their codes. `From<StoreError>` keeps the store's code;
/// `StoreError::NotFound` must be named first with `.or_not_found("what")`.
#[macro_export]
macro_rules! subsystem_error {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident $(($($field:ty),*))? => $code:expr),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, thiserror::Error)]
        pub enum $name {
            #[error("{0} not found")]
            NotFound(&'static str),
            #[error(transparent)]
            Invalid(#[from] $crate::error::ValidationError),
            #[error("{0}")]
            Conflict(String),
            #[error("{0}")]
            InvalidState(String),
            #[error(transparent)]
            Store(#[from] $crate::error::StoreError),
            /// The actor that should answer is restarting or stopped.
            #[error(transparent)]
            Unavailable(#[from] $crate::supervisor::Unavailable),
            $($(#[$vmeta])* $variant $(($($field),*))?,)*
        }

        impl $crate::error::ErrorCode for $name {
            fn code(&self) -> $crate::error::Code {
                #[allow(unused_variables)]
                match self {
                    Self::NotFound(_) => $crate::error::Code::NotFound,
                    Self::Invalid(_) => $crate::error::Code::ValidationFailed,
                    Self::Conflict(_) => $crate::error::Code::Conflict,
                    Self::InvalidState(_) => $crate::error::Code::InvalidState,
                    Self::Store(e) => $crate::error::ErrorCode::code(e),
                    Self::Unavailable(e) => $crate::error::ErrorCode::code(e),
                    $(Self::$variant $(($($crate::subsystem_error!(@ignore $field)),*))? => $code,)*
                }
            }

            fn message(&self) -> String {
                match self {
                    Self::Store(e) => $crate::error::ErrorCode::message(e),
                    Self::Unavailable(e) => $crate::error::ErrorCode::message(e),
                    other => other.to_string(),
                }
            }
        }

        impl From<$crate::error::Lookup> for $name {
            fn from(lookup: $crate::error::Lookup) -> Self {
                match lookup {
                    $crate::error::Lookup::NotFound(what) => Self::NotFound(what),
                    $crate::error::Lookup::Store(e) => Self::Store(e),
                }
            }
        }
    };
    (@ignore $t:ty) => { _ };
}

/// A store failure whose `NotFound` names the missing resource: what
/// [`OrNotFound::or_not_found`] gives, turned into any subsystem's error by `?`.
#[derive(Debug)]
pub enum Lookup {
    NotFound(&'static str),
    Store(StoreError),
}

/// Names the resource of a store's `NotFound`.
pub trait OrNotFound<T> {
    fn or_not_found(self, what: &'static str) -> Result<T, Lookup>;
}

impl<T> OrNotFound<T> for Result<T, StoreError> {
    fn or_not_found(self, what: &'static str) -> Result<T, Lookup> {
        self.map_err(|e| match e {
            StoreError::NotFound => Lookup::NotFound(what),
            other => Lookup::Store(other),
        })
    }
}
