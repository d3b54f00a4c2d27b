//! The capability the function runtime uses to obtain plaintext secrets at call time.
//! It is either wired to the secrets actor or explicitly not configured, in which case
//! every resolution fails with the playbook's `secret resolver not configured`.

use super::actor::{ResolveSecrets, SecretsActor};
use super::SecretName;
use crate::error::StoreError;
use crate::ids::AccountId;
use crate::supervisor::ActorHandle;
use std::collections::BTreeMap;

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

#[derive(Clone)]
pub enum SecretResolver {
    NotConfigured,
    Actor(ActorHandle<SecretsActor>),
}

impl SecretResolver {
    /// Name → latest plaintext for every name, or an error and nothing.
    pub async fn resolve(
        &self,
        account: AccountId,
        names: Vec<SecretName>,
    ) -> Result<BTreeMap<String, String>, ResolveError> {
        match self {
            Self::NotConfigured => Err(ResolveError::NotConfigured),
            Self::Actor(handle) => handle
                .call(ResolveSecrets { account, names })
                .await
                .map_err(|_| ResolveError::Unavailable)?,
        }
    }
}
