//! The capability the function runtime uses to obtain plaintext secrets at call time.
//! It is either wired to the secrets actor or explicitly not configured, in which case
//! every resolution fails with the playbook's `secret resolver not configured`.

use super::actor::ResolveSecrets;
use super::{ResolveError, SecretName};
use crate::ids::AccountId;
use crate::supervisor::Ask;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone)]
pub enum SecretResolver {
    NotConfigured,
    /// The secrets actor (or anything else that answers [`ResolveSecrets`]).
    Actor(Arc<dyn Ask<ResolveSecrets>>),
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
            Self::Actor(secrets) => secrets.ask(ResolveSecrets { account, names }).await,
        }
    }
}
