//! Secret business logic: sealing with the key ring, versioning with compare-and-set,
//! resolution for functions, and re-encryption under the current key.

use super::{
    ResolveError, SealedVersion, SecretMetadata, SecretName, SecretStore, SecretValue, SecretsError,
};
use crate::clock::Clock;
use crate::crypto::{self, KeyRing};
use crate::error::{OrNotFound, StoreError};
use crate::ids::{AccountId, SecretId};
use crate::page::{Page, PageRequest};
use crate::quota::{Quota, Quotas};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Concurrent unconditional updates retry this often before giving up with a conflict.
const UPDATE_ATTEMPTS: usize = 8;
/// Versions re-encrypted per store round trip.
const REWRAP_BATCH: i64 = 200;

#[derive(Clone)]
pub struct SecretsService {
    store: Arc<dyn SecretStore>,
    keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
    /// `MAX_SECRETS_PER_ACCOUNT`.
    quota: Quota,
}

/// What `--rewrap-secrets` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewrapReport {
    pub rewrapped: u64,
    pub already_current: u64,
    pub failed: u64,
}

impl SecretsService {
    pub fn new(store: Arc<dyn SecretStore>, keys: Arc<KeyRing>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            keys,
            clock,
            quota: Quotas::default().secrets,
        }
    }

    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = quota;
        self
    }

    fn seal(
        &self,
        account: AccountId,
        name: &str,
        version: i64,
        value: &SecretValue,
    ) -> Result<SealedVersion, StoreError> {
        let aad = crypto::secret_aad(account, name, version);
        Ok(SealedVersion {
            version,
            key_id: self.keys.current_id().to_string(),
            ciphertext: self.keys.seal(value.expose().as_bytes(), aad.as_bytes())?,
            created_at: self.clock.now(),
        })
    }

    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn create(
        &self,
        account: AccountId,
        name: SecretName,
        value: SecretValue,
    ) -> Result<SecretMetadata, SecretsError> {
        let now = self.clock.now();
        let meta = SecretMetadata {
            id: SecretId::generate(),
            account_id: account,
            name: name.as_str().to_owned(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let first = self.seal(account, name.as_str(), 1, &value)?;
        self.store
            .create(&meta, &first, self.quota)
            .await
            .or_not_found("account")?;
        tracing::info!(secret_id = %meta.id, "secret created");
        Ok(meta)
    }

    pub async fn get(
        &self,
        account: AccountId,
        name: &SecretName,
    ) -> Result<SecretMetadata, SecretsError> {
        Ok(self
            .store
            .get(account, &name.key())
            .await
            .or_not_found("secret")?)
    }

    pub async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<SecretMetadata>, SecretsError> {
        Ok(self.store.list(account, page).await?)
    }

    /// Stores a new version. With `if_match`, only if the current version is that one
    /// (`VersionMismatch` otherwise); without it, concurrent updates are retried so each
    /// lands as its own version.
    #[tracing::instrument(skip_all, fields(account_id = %account))]
    pub async fn update(
        &self,
        account: AccountId,
        name: &SecretName,
        value: SecretValue,
        if_match: Option<i64>,
    ) -> Result<SecretMetadata, SecretsError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get(account, name).await?;
            if let Some(expected) = if_match {
                if expected != current.version {
                    return Err(mismatch(current.version, expected));
                }
            }
            let next = self.seal(account, &current.name, current.version + 1, &value)?;
            match self
                .store
                .add_version(current.id, current.version, &next, self.clock.now())
                .await
            {
                Err(StoreError::VersionMismatch(_)) if if_match.is_none() => continue,
                Err(StoreError::VersionMismatch(_)) => {
                    let now_at = self.get(account, name).await?.version;
                    return Err(mismatch(now_at, current.version));
                }
                result => return Ok(result.or_not_found("secret")?),
            }
        }
        Err(SecretsError::Conflict(
            "secret is being updated concurrently; retry".to_owned(),
        ))
    }

    pub async fn delete(
        &self,
        account: AccountId,
        name: &SecretName,
        if_match: Option<i64>,
    ) -> Result<(), SecretsError> {
        Ok(self
            .store
            .delete(account, &name.key(), if_match)
            .await
            .or_not_found("secret")?)
    }

    /// Latest plaintext of each named secret, all or nothing, keyed by the name as asked.
    #[tracing::instrument(skip_all, fields(account_id = %account, secrets = names.len()))]
    pub async fn resolve(
        &self,
        account: AccountId,
        names: &[SecretName],
    ) -> Result<BTreeMap<String, String>, ResolveError> {
        let mut keys: Vec<String> = names.iter().map(SecretName::key).collect();
        keys.sort();
        keys.dedup();
        let rows = self
            .store
            .current_versions(account, &keys)
            .await
            .map_err(ResolveError::Store)?;
        let mut out = BTreeMap::new();
        for name in names {
            let Some((meta, sealed)) = rows
                .iter()
                .find(|(m, _)| m.name.eq_ignore_ascii_case(name.as_str()))
            else {
                return Err(ResolveError::Missing(name.as_str().to_owned()));
            };
            let aad = crypto::secret_aad(account, &meta.name, sealed.version);
            let plaintext = self
                .keys
                .open(&sealed.ciphertext, aad.as_bytes())
                .map_err(|e| {
                    tracing::error!(secret_id = %meta.id, version = sealed.version, error = %e, "secret cannot be decrypted");
                    ResolveError::Undecryptable(name.as_str().to_owned())
                })?;
            let text = String::from_utf8(plaintext)
                .map_err(|_| ResolveError::Undecryptable(name.as_str().to_owned()))?;
            out.insert(name.as_str().to_owned(), text);
        }
        Ok(out)
    }

    /// Re-encrypts every version not under the current key, in batches, each row by
    /// compare-and-set: safe while servers keep running (a row changed meanwhile is left
    /// to whoever changed it).
    pub async fn rewrap(&self) -> Result<RewrapReport, StoreError> {
        let current = self.keys.current_id().to_string();
        let mut report = RewrapReport {
            already_current: self.store.count_under(&current).await?,
            ..RewrapReport::default()
        };
        let mut after = None;
        loop {
            let batch = self
                .store
                .versions_not_under(&current, after, REWRAP_BATCH)
                .await?;
            let Some(last) = batch.last() else { break };
            after = Some((last.secret_id, last.version));
            for row in &batch {
                let aad = crypto::secret_aad(row.account_id, &row.name, row.version);
                let plaintext = match self.keys.open(&row.ciphertext, aad.as_bytes()) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(secret_id = %row.secret_id, version = row.version, error = %e, "cannot rewrap secret version");
                        report.failed += 1;
                        continue;
                    }
                };
                let plaintext = zeroize::Zeroizing::new(plaintext);
                let sealed = self.keys.seal(&plaintext, aad.as_bytes())?;
                if self
                    .store
                    .replace_ciphertext(
                        row.secret_id,
                        row.version,
                        &row.ciphertext,
                        &current,
                        &sealed,
                    )
                    .await?
                {
                    report.rewrapped += 1;
                } else {
                    // Someone else rewrote it first (another rewrap run).
                    report.already_current += 1;
                }
            }
        }
        Ok(report)
    }

    /// Stored key ids that the ring cannot open (logged at start-up).
    pub async fn unknown_key_ids(&self) -> Result<Vec<String>, StoreError> {
        let ids = self.store.key_ids().await?;
        Ok(ids
            .into_iter()
            .filter(|id| !crypto_knows(&self.keys, id))
            .collect())
    }
}

fn crypto_knows(keys: &KeyRing, id: &str) -> bool {
    crypto::KeyId::parse(id).is_some_and(|id| keys.contains(id))
}

fn mismatch(current: i64, expected: i64) -> SecretsError {
    StoreError::VersionMismatch(format!("secret is at version {current}, not {expected}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{Account, AccountStore, MemoryAccountStore};
    use crate::crypto::Key;
    use crate::secrets::MemorySecretStore;
    use crate::store::MemoryDb;
    use crate::SystemClock;

    fn service(db: &Arc<MemoryDb>, current: u8, previous: &[u8]) -> SecretsService {
        let ring = KeyRing::new(
            Key::from_bytes(&[current; 32]).unwrap(),
            previous
                .iter()
                .map(|b| Key::from_bytes(&[*b; 32]).unwrap())
                .collect(),
        );
        SecretsService::new(
            Arc::new(MemorySecretStore::new(db.clone())),
            Arc::new(ring),
            Arc::new(SystemClock),
        )
    }

    #[actix_rt::test]
    async fn unknown_key_ids_and_rewrap_in_memory() {
        let db = Arc::new(MemoryDb::default());
        let now = SystemClock.now();
        let account = Account::new("o", now);
        MemoryAccountStore::new(db.clone())
            .insert(&account)
            .await
            .unwrap();
        let old = service(&db, 1, &[]);
        let name = SecretName::parse("k").unwrap();
        old.create(
            account.id,
            name.clone(),
            SecretValue::parse("v".into()).unwrap(),
        )
        .await
        .unwrap();
        assert!(old.unknown_key_ids().await.unwrap().is_empty());

        let new_only = service(&db, 2, &[]);
        let old_id = KeyRing::new(Key::from_bytes(&[1; 32]).unwrap(), vec![])
            .current_id()
            .to_string();
        assert_eq!(new_only.unknown_key_ids().await.unwrap(), vec![old_id]);

        let rotated = service(&db, 2, &[1]);
        let report = rotated.rewrap().await.unwrap();
        assert_eq!(
            report,
            RewrapReport {
                rewrapped: 1,
                already_current: 0,
                failed: 0
            }
        );
        assert!(new_only.unknown_key_ids().await.unwrap().is_empty());
        let got = new_only
            .resolve(account.id, std::slice::from_ref(&name))
            .await
            .unwrap();
        assert_eq!(got["k"], "v");
    }
}
