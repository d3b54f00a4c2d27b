//! The secrets subsystem's errors: one for requests, one for resolution at call time.

use crate::error::StoreError;

crate::subsystem_error!(
    /// Why a secrets request failed.
    SecretsError {}
);

/// Why a function's secrets could not be resolved (the run fails with
/// `secret_unavailable` and this message).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("secret resolver not configured")]
    NotConfigured,
    #[error("secret \"{0}\" not found")]
    Missing(String),
    #[error("secret \"{0}\" cannot be decrypted with the configured keys")]
    Undecryptable(String),
    #[error("secrets service unavailable")]
    Unavailable,
    #[error("secret store error")]
    Store(#[source] StoreError),
}

impl From<crate::supervisor::Unavailable> for ResolveError {
    fn from(_: crate::supervisor::Unavailable) -> Self {
        Self::Unavailable
    }
}
