//! Where the random subsystem keeps its counter and its signing key: the sequence
//! `app_random_counter` and the table `app_signing_keys` (migration V13), or, in memory
//! mode, a per-process counter and no key at all (it is ephemeral).

use crate::error::StoreError;
use deadpool_postgres::Pool;
use std::sync::atomic::{AtomicU64, Ordering};

/// A signing key as stored: sealed under the secret key ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key ring id it is sealed under.
    pub key_id: String,
    pub ciphertext: String,
    pub public_key: [u8; 32],
}

#[async_trait::async_trait]
pub trait RandomStore: Send + Sync + 'static {
    /// The next counter: increasing and unique (across replicas with PostgreSQL).
    async fn next_counter(&self) -> Result<u64, StoreError>;
    /// Whether keys outlive the process (memory mode: no).
    fn persists(&self) -> bool;
    /// The key stored under `name`, storing `candidate` first if there is none: the
    /// first writer wins and every caller gets the same key.
    async fn signing_key(&self, name: &str, candidate: &StoredKey)
        -> Result<StoredKey, StoreError>;
    async fn stored_key(&self, name: &str) -> Result<Option<StoredKey>, StoreError>;
    /// Replaces the key's ciphertext if it is still `old`; `false` if it changed.
    async fn replace_key(&self, name: &str, old: &str, new: &StoredKey)
        -> Result<bool, StoreError>;
}

#[derive(Default)]
pub struct MemoryRandomStore {
    counter: AtomicU64,
}

#[async_trait::async_trait]
impl RandomStore for MemoryRandomStore {
    async fn next_counter(&self) -> Result<u64, StoreError> {
        Ok(self.counter.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn persists(&self) -> bool {
        false
    }

    async fn signing_key(&self, _: &str, candidate: &StoredKey) -> Result<StoredKey, StoreError> {
        Ok(candidate.clone())
    }

    async fn stored_key(&self, _: &str) -> Result<Option<StoredKey>, StoreError> {
        Ok(None)
    }

    async fn replace_key(&self, _: &str, _: &str, _: &StoredKey) -> Result<bool, StoreError> {
        Ok(false)
    }
}

pub struct PgRandomStore {
    pool: Pool,
}

impl PgRandomStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn key_from(row: &tokio_postgres::Row) -> Result<StoredKey, StoreError> {
    let public: Vec<u8> = row.try_get("public_key")?;
    Ok(StoredKey {
        key_id: row.try_get("key_id")?,
        ciphertext: row.try_get("ciphertext")?,
        public_key: public.try_into().map_err(|_| {
            StoreError::internal(anyhow::anyhow!("a stored public key is not 32 bytes"))
        })?,
    })
}

#[async_trait::async_trait]
impl RandomStore for PgRandomStore {
    async fn next_counter(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached("SELECT nextval('app_random_counter')")
            .await?;
        let n: i64 = client.query_one(&stmt, &[]).await?.try_get(0)?;
        u64::try_from(n).map_err(|_| StoreError::internal(anyhow::anyhow!("counter {n} < 0")))
    }

    fn persists(&self) -> bool {
        true
    }

    async fn signing_key(
        &self,
        name: &str,
        candidate: &StoredKey,
    ) -> Result<StoredKey, StoreError> {
        let client = self.pool.get().await?;
        let now = chrono::Utc::now();
        // Replicas starting together race here: the loser's insert waits for the
        // winner's, then does nothing, and both read the winner's key.
        client
            .execute(
                "INSERT INTO app_signing_keys (id, name, key_id, ciphertext, public_key,
                     created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)
                 ON CONFLICT (name) DO NOTHING",
                &[
                    &uuid::Uuid::new_v4(),
                    &name,
                    &candidate.key_id,
                    &candidate.ciphertext,
                    &candidate.public_key.as_slice(),
                    &now,
                ],
            )
            .await?;
        self.stored_key(name)
            .await?
            .ok_or_else(|| StoreError::internal(anyhow::anyhow!("signing key {name} vanished")))
    }

    async fn stored_key(&self, name: &str) -> Result<Option<StoredKey>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT key_id, ciphertext, public_key FROM app_signing_keys WHERE name = $1",
                &[&name],
            )
            .await?;
        row.as_ref().map(key_from).transpose()
    }

    async fn replace_key(
        &self,
        name: &str,
        old: &str,
        new: &StoredKey,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE app_signing_keys SET key_id = $3, ciphertext = $4, updated_at = now()
                 WHERE name = $1 AND ciphertext = $2",
                &[&name, &old, &new.key_id, &new.ciphertext],
            )
            .await?;
        Ok(n == 1)
    }
}
