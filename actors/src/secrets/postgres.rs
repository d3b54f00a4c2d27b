//! PostgreSQL [`SecretStore`]. `app_secrets` holds the metadata (with `version` = the
//! current version), `app_secret_versions` every sealed version; both cascade from the
//! account. Version changes are compare-and-set on `app_secrets.version`.

use super::{SealedVersion, SecretMetadata, SecretStore, VersionRef};
use crate::error::StoreError;
use crate::ids::{AccountId, SecretId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

const META: &str = "s.id, s.account_id, s.name, s.version, s.created_at, s.updated_at";

pub struct PgSecretStore {
    pool: Pool,
}

impl PgSecretStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn meta_from(row: &Row) -> Result<SecretMetadata, StoreError> {
    Ok(SecretMetadata {
        id: SecretId::from(row.try_get::<_, Uuid>("id")?),
        account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn mismatch(current: i64, expected: i64) -> StoreError {
    StoreError::VersionMismatch(format!("secret is at version {current}, not {expected}"))
}

#[async_trait::async_trait]
impl SecretStore for PgSecretStore {
    async fn create(
        &self,
        meta: &SecretMetadata,
        first: &SealedVersion,
        quota: Quota,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        crate::quota::check_pg(
            &tx,
            quota,
            meta.account_id.as_uuid(),
            "SELECT count(*) FROM (SELECT 1 FROM app_secrets WHERE account_id = $1 LIMIT $2) held",
            "secrets",
        )
        .await?;
        let inserted = tx
            .execute(
                "INSERT INTO app_secrets (id, account_id, name, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    meta.id.as_uuid(),
                    meta.account_id.as_uuid(),
                    &meta.name,
                    &meta.version,
                    &meta.created_at,
                    &meta.updated_at,
                ],
            )
            .await;
        match inserted {
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(StoreError::Conflict(format!(
                    "secret \"{}\" already exists",
                    meta.name
                )))
            }
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                return Err(StoreError::NotFound)
            }
            other => other?,
        };
        tx.execute(
            "INSERT INTO app_secret_versions (id, secret_id, version, key_id, ciphertext, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &Uuid::new_v4(),
                meta.id.as_uuid(),
                &first.version,
                &first.key_id,
                &first.ciphertext,
                &first.created_at,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, account: AccountId, name_key: &str) -> Result<SecretMetadata, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {META} FROM app_secrets s WHERE s.account_id = $1 AND lower(s.name) = $2"
            ))
            .await?;
        let row = client
            .query_opt(&stmt, &[account.as_uuid(), &name_key])
            .await?;
        row.as_ref().map(meta_from).ok_or(StoreError::NotFound)?
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<SecretMetadata>, StoreError> {
        crate::store::postgres::account_page(
            &self.pool,
            META,
            "app_secrets s",
            account,
            &page,
            meta_from,
        )
        .await
    }

    async fn add_version(
        &self,
        id: SecretId,
        expected: i64,
        next: &SealedVersion,
        now: DateTime<Utc>,
    ) -> Result<SecretMetadata, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE app_secrets s SET version = $3, updated_at = $4
                     WHERE s.id = $1 AND s.version = $2
                     RETURNING {META}"
                ),
                &[id.as_uuid(), &expected, &next.version, &now],
            )
            .await?;
        let Some(row) = row else {
            let current = tx
                .query_opt(
                    "SELECT version FROM app_secrets WHERE id = $1",
                    &[id.as_uuid()],
                )
                .await?;
            return Err(match current {
                Some(r) => mismatch(r.try_get(0)?, expected),
                None => StoreError::NotFound,
            });
        };
        tx.execute(
            "INSERT INTO app_secret_versions (id, secret_id, version, key_id, ciphertext, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&Uuid::new_v4(), id.as_uuid(), &next.version, &next.key_id, &next.ciphertext, &next.created_at],
        )
        .await?;
        tx.commit().await?;
        meta_from(&row)
    }

    async fn delete(
        &self,
        account: AccountId,
        name_key: &str,
        expected: Option<i64>,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let deleted = client
            .execute(
                "DELETE FROM app_secrets
                 WHERE account_id = $1 AND lower(name) = $2 AND ($3::bigint IS NULL OR version = $3)",
                &[account.as_uuid(), &name_key, &expected],
            )
            .await?;
        if deleted > 0 {
            return Ok(());
        }
        let current = client
            .query_opt(
                "SELECT version FROM app_secrets WHERE account_id = $1 AND lower(name) = $2",
                &[account.as_uuid(), &name_key],
            )
            .await?;
        match (current, expected) {
            (Some(r), Some(expected)) => Err(mismatch(r.try_get(0)?, expected)),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn current_versions(
        &self,
        account: AccountId,
        name_keys: &[String],
    ) -> Result<Vec<(SecretMetadata, SealedVersion)>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {META}, v.key_id, v.ciphertext, v.created_at AS sealed_at
                 FROM app_secrets s
                 JOIN app_secret_versions v ON v.secret_id = s.id AND v.version = s.version
                 WHERE s.account_id = $1 AND lower(s.name) = ANY($2)"
            ))
            .await?;
        let rows = client
            .query(&stmt, &[account.as_uuid(), &name_keys])
            .await?;
        rows.iter()
            .map(|row| {
                let meta = meta_from(row)?;
                let sealed = SealedVersion {
                    version: meta.version,
                    key_id: row.try_get("key_id")?,
                    ciphertext: row.try_get("ciphertext")?,
                    created_at: row.try_get("sealed_at")?,
                };
                Ok((meta, sealed))
            })
            .collect()
    }

    async fn versions_not_under(
        &self,
        key_id: &str,
        after: Option<(SecretId, i64)>,
        limit: i64,
    ) -> Result<Vec<VersionRef>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT v.secret_id, s.account_id, s.name, v.version, v.ciphertext
                 FROM app_secret_versions v JOIN app_secrets s ON s.id = v.secret_id
                 WHERE v.key_id <> $1
                   AND ($2::uuid IS NULL OR (v.secret_id, v.version) > ($2, $3::bigint))
                 ORDER BY v.secret_id, v.version
                 LIMIT $4",
                &[
                    &key_id,
                    &after.map(|a| *a.0.as_uuid()),
                    &after.map(|a| a.1),
                    &limit,
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(VersionRef {
                    secret_id: SecretId::from(row.try_get::<_, Uuid>("secret_id")?),
                    account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
                    name: row.try_get("name")?,
                    version: row.try_get("version")?,
                    ciphertext: row.try_get("ciphertext")?,
                })
            })
            .collect()
    }

    async fn replace_ciphertext(
        &self,
        id: SecretId,
        version: i64,
        old: &str,
        key_id: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE app_secret_versions SET key_id = $4, ciphertext = $5
                 WHERE secret_id = $1 AND version = $2 AND ciphertext = $3",
                &[id.as_uuid(), &version, &old, &key_id, &new],
            )
            .await?;
        Ok(n == 1)
    }

    async fn count_under(&self, key_id: &str) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM app_secret_versions WHERE key_id = $1",
                &[&key_id],
            )
            .await?;
        Ok(u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0))
    }

    async fn key_ids(&self) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT DISTINCT key_id FROM app_secret_versions ORDER BY key_id",
                &[],
            )
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }
}
