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
    /// The database could not be reached (pool exhausted, connection refused, timeout).
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug or an unexpected database error. Opaque to clients.
    #[error("internal store error")]
    Internal(#[source] anyhow::Error),
}

impl StoreError {
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
