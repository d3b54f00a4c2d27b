//! PostgreSQL [`GasStore`] over `app_gas_accounts` and `app_gas_transactions` (migration
//! V13). Every balance change locks the owner's account row (`FOR KEY SHARE`), then the
//! gas account row (the withdrawal's conditional update does so itself), then writes the
//! ledger row; the table's CHECK refuses any balance that is negative or not
//! `available + pending`.

use super::{
    attempt, Credited, GasAccount, GasStore, GasTransaction, Lease, Target, TxKind, TxStatus,
};
use crate::amount::Amount;
use crate::error::StoreError;
use crate::ids::{AccountId, GasAccountId, GasTxId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use crate::resolver::Finish;
use crate::store::Tx;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

/// What the V13 trigger says when an account with a pending withdrawal is deleted (memory
/// mode says the same).
pub(super) const PENDING_WITHDRAWAL: &str =
    "the account has a pending withdrawal; delete it once the withdrawal is settled";

const ACCOUNT: &str = "id, account_id, wallet_address, available, pending, created_at, updated_at";
const TRANSACTION: &str = "id, gas_account_id, account_id, type, amount, net_amount, status,
    blockchain_tx_id, from_address, to_address, error, attempts, next_attempt_at,
    lease_owner, lease_until, completed_at, created_at, updated_at";

fn amount(row: &Row, column: &str) -> Result<Amount, StoreError> {
    let units: i64 = row.try_get(column)?;
    Amount::from_base_units(units)
        .ok_or_else(|| StoreError::internal(anyhow::anyhow!("negative {column} {units}")))
}

fn account_from(row: &Row) -> Result<GasAccount, StoreError> {
    Ok(GasAccount {
        id: GasAccountId::from(row.try_get::<_, Uuid>("id")?),
        account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
        wallet_address: row.try_get("wallet_address")?,
        available: amount(row, "available")?,
        pending: amount(row, "pending")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn transaction_from(row: &Row) -> Result<GasTransaction, StoreError> {
    let text = |column: &str| -> Result<String, StoreError> { Ok(row.try_get(column)?) };
    let (kind, status) = (text("type")?, text("status")?);
    let unknown =
        |what: &str, v: &str| StoreError::internal(anyhow::anyhow!("unknown {what} {v:?}"));
    let lease = match (row.try_get("lease_owner")?, row.try_get("lease_until")?) {
        (Some(owner), Some(until)) => Some(Lease { owner, until }),
        _ => None,
    };
    Ok(GasTransaction {
        id: GasTxId::from(row.try_get::<_, Uuid>("id")?),
        gas_account_id: GasAccountId::from(row.try_get::<_, Uuid>("gas_account_id")?),
        account_id: AccountId::from(row.try_get::<_, Uuid>("account_id")?),
        kind: TxKind::parse(&kind).ok_or_else(|| unknown("type", &kind))?,
        amount: amount(row, "amount")?,
        net_amount: amount(row, "net_amount")?,
        status: TxStatus::parse(&status).ok_or_else(|| unknown("status", &status))?,
        blockchain_tx_id: row.try_get("blockchain_tx_id")?,
        from_address: row.try_get("from_address")?,
        to_address: row.try_get("to_address")?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        lease,
        completed_at: row.try_get("completed_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// `$2` = a gas account id or NULL, `$3` = a wallet or NULL: the owner's (`$1`) gas
/// account if `target` names it.
const TARGET: &str = "account_id = $1 AND ($2::uuid IS NULL OR id = $2)
     AND ($3::text IS NULL OR lower(wallet_address) = lower($3))";

fn target_params(target: &Target) -> (Option<Uuid>, Option<&str>) {
    match target {
        Target::Own => (None, None),
        Target::Id(id) => (Some(*id.as_uuid()), None),
        Target::Wallet(w) => (None, Some(w.as_str())),
    }
}

async fn insert_transaction(
    db: &impl GenericClient,
    t: &GasTransaction,
    on_conflict: &str,
) -> Result<u64, tokio_postgres::Error> {
    db.execute(
        &format!(
            "INSERT INTO app_gas_transactions (id, gas_account_id, account_id, type, amount,
                 net_amount, status, blockchain_tx_id, from_address, to_address, error,
                 attempts, next_attempt_at, completed_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             {on_conflict}"
        ),
        &[
            t.id.as_uuid(),
            t.gas_account_id.as_uuid(),
            t.account_id.as_uuid(),
            &t.kind.as_str(),
            &t.amount.base_units(),
            &t.net_amount.base_units(),
            &t.status.as_str(),
            &t.blockchain_tx_id,
            &t.from_address,
            &t.to_address,
            &t.error,
            &t.attempts,
            &t.next_attempt_at,
            &t.completed_at,
            &t.created_at,
            &t.updated_at,
        ],
    )
    .await
}

async fn save_account(db: &impl GenericClient, g: &GasAccount) -> Result<(), StoreError> {
    let balance = g
        .available
        .checked_add(g.pending)
        .ok_or_else(super::too_large)?;
    db.execute(
        "UPDATE app_gas_accounts SET wallet_address = $2, balance = $3, available = $4,
             pending = $5, updated_at = $6
         WHERE id = $1",
        &[
            g.id.as_uuid(),
            &g.wallet_address,
            &balance.base_units(),
            &g.available.base_units(),
            &g.pending.base_units(),
            &g.updated_at,
        ],
    )
    .await
    .map_err(|e| wallet_conflict(&e).unwrap_or_else(|| e.into()))?;
    Ok(())
}

/// Locks the owner's `app_accounts` row against deletion (`FOR KEY SHARE`, as the
/// foreign-key checks of the inserts that follow would) before any gas bank row: an
/// account deletion locks the account first and the gas rows through its cascade, so
/// taking the account's lock first keeps the two from waiting on each other in a circle.
/// `NotFound` if the account is gone.
async fn lock_owner(db: &impl GenericClient, account: &Uuid) -> Result<(), StoreError> {
    db.query_opt(
        "SELECT 1 FROM app_accounts WHERE id = $1 FOR KEY SHARE",
        &[account],
    )
    .await?
    .map(|_| ())
    .ok_or(StoreError::NotFound)
}

fn wallet_conflict(e: &tokio_postgres::Error) -> Option<StoreError> {
    (e.code() == Some(&SqlState::UNIQUE_VIOLATION)).then(|| {
        StoreError::Conflict("wallet_address is already used by another gas account".to_owned())
    })
}

/// See [`super::ensure_in`]. The account's quota lock first (Devpack may make this call
/// beside quota-checked inserts), then the gas account's row.
pub(super) async fn ensure_in(
    db: &impl GenericClient,
    account: AccountId,
    wallet: Option<String>,
    now: DateTime<Utc>,
) -> Result<(GasAccount, bool), StoreError> {
    crate::quota::lock_pg(db, account.as_uuid()).await?;
    lock_owner(db, account.as_uuid()).await?;
    let inserted = db
        .query_opt(
            &format!(
                "INSERT INTO app_gas_accounts (id, account_id, wallet_address, balance, available,
                     pending, created_at, updated_at)
                 VALUES ($1, $2, $3, 0, 0, 0, $4, $4)
                 ON CONFLICT (account_id) DO NOTHING
                 RETURNING {ACCOUNT}"
            ),
            &[
                GasAccountId::generate().as_uuid(),
                account.as_uuid(),
                &wallet,
                &now,
            ],
        )
        .await;
    match inserted {
        Ok(Some(row)) => return Ok((account_from(&row)?, true)),
        Ok(None) => {}
        Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
            return Err(StoreError::NotFound)
        }
        Err(e) => return Err(wallet_conflict(&e).unwrap_or_else(|| e.into())),
    }
    let row = db
        .query_one(
            &format!("SELECT {ACCOUNT} FROM app_gas_accounts WHERE account_id = $1 FOR UPDATE"),
            &[account.as_uuid()],
        )
        .await?;
    let current = account_from(&row)?;
    if wallet.is_none() || current.wallet_address == wallet {
        return Ok((current, false));
    }
    let changed = GasAccount {
        wallet_address: wallet,
        updated_at: now,
        ..current
    };
    save_account(db, &changed).await?;
    Ok((changed, false))
}

/// See [`super::withdraw_in`]: the quota lock and count, then one statement that makes
/// the conditional update (which locks the gas account row) and inserts the pending row
/// from what it returned, so the row lock is held for that statement and the commit only.
pub(super) async fn withdraw_in(
    db: &impl GenericClient,
    target: &Target,
    w: &GasTransaction,
    pending: Quota,
) -> Result<(GasAccount, GasTransaction), StoreError> {
    crate::quota::lock_pg(db, w.account_id.as_uuid()).await?;
    lock_owner(db, w.account_id.as_uuid())
        .await
        // The account is gone: so is its gas account.
        .map_err(|_| StoreError::NotFound)?;
    crate::quota::check_pg(
        db,
        pending,
        w.account_id.as_uuid(),
        "SELECT count(*) FROM (SELECT 1 FROM app_gas_transactions
             WHERE account_id = $1 AND status = 'pending' LIMIT $2) held",
        "pending withdrawals",
    )
    .await?;
    let (id, wallet) = target_params(target);
    let stmt = db
        .prepare_cached(&format!(
            "WITH reserved AS (
                 UPDATE app_gas_accounts SET available = available - $4,
                     pending = pending + $4, updated_at = $5
                 WHERE {TARGET} AND available >= $4
                 RETURNING {ACCOUNT}
             ), inserted AS (
                 INSERT INTO app_gas_transactions (id, gas_account_id, account_id, type, amount,
                     net_amount, status, to_address, attempts, next_attempt_at, created_at,
                     updated_at)
                 SELECT $6, reserved.id, $1, 'withdrawal', $4, $4, 'pending', $7, 0, $5, $5, $5
                 FROM reserved
             )
             SELECT {ACCOUNT} FROM reserved"
        ))
        .await?;
    let reserved = db
        .query_opt(
            &stmt,
            &[
                w.account_id.as_uuid(),
                &id,
                &wallet,
                &w.amount.base_units(),
                &w.created_at,
                w.id.as_uuid(),
                &w.to_address,
            ],
        )
        .await?;
    let Some(row) = reserved else {
        let found = db
            .query_opt(
                &format!("SELECT {ACCOUNT} FROM app_gas_accounts WHERE {TARGET}"),
                &[w.account_id.as_uuid(), &id, &wallet],
            )
            .await?;
        return Err(match found {
            None => StoreError::NotFound,
            Some(row) => StoreError::InsufficientFunds(super::insufficient(
                account_from(&row)?.available,
                w.amount,
            )),
        });
    };
    let account = account_from(&row)?;
    let row = GasTransaction {
        gas_account_id: account.id,
        ..w.clone()
    };
    Ok((account, row))
}

pub struct PgGasStore {
    pool: Pool,
}

impl PgGasStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl GasStore for PgGasStore {
    async fn ensure(
        &self,
        account: AccountId,
        wallet: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(GasAccount, bool), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let out = ensure_in(&tx, account, wallet, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn gas_account(&self, account: AccountId) -> Result<Option<GasAccount>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {ACCOUNT} FROM app_gas_accounts WHERE account_id = $1"),
                &[account.as_uuid()],
            )
            .await?;
        row.as_ref().map(account_from).transpose()
    }

    async fn deposit(
        &self,
        target: &Target,
        d: &GasTransaction,
    ) -> Result<(GasAccount, GasTransaction, Credited), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (id, wallet) = target_params(target);
        lock_owner(&tx, d.account_id.as_uuid()).await?;
        let row = tx
            .query_opt(
                &format!("SELECT {ACCOUNT} FROM app_gas_accounts WHERE {TARGET} FOR UPDATE"),
                &[d.account_id.as_uuid(), &id, &wallet],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        let before = account_from(&row)?;
        let row = GasTransaction {
            gas_account_id: before.id,
            ..d.clone()
        };
        // A concurrent deposit of the same tx_id makes this wait for it, then do nothing.
        let inserted = insert_transaction(
            &tx,
            &row,
            "ON CONFLICT (lower(blockchain_tx_id)) WHERE type = 'deposit' DO NOTHING",
        )
        .await?;
        if inserted == 0 {
            let tx_id = d.blockchain_tx_id.as_deref().unwrap_or_default();
            let existing = tx
                .query_one(
                    &format!(
                        "SELECT {TRANSACTION} FROM app_gas_transactions
                         WHERE lower(blockchain_tx_id) = lower($1) AND type = 'deposit'"
                    ),
                    &[&tx_id],
                )
                .await?;
            let existing = transaction_from(&existing)?;
            return if super::domain::is_replay(&existing, d, before.id) {
                Ok((before, existing, Credited::Replayed))
            } else {
                Err(StoreError::Conflict(super::domain::reused_tx_id(tx_id)))
            };
        }
        let after = GasAccount {
            available: before
                .available
                .checked_add(d.amount)
                .ok_or_else(super::too_large)?,
            updated_at: d.created_at,
            ..before
        };
        save_account(&tx, &after).await?;
        tx.commit().await?;
        Ok((after, row, Credited::New))
    }

    async fn withdraw(
        &self,
        target: &Target,
        w: &GasTransaction,
        pending: Quota,
    ) -> Result<(GasAccount, GasTransaction), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let out = withdraw_in(&tx, target, w, pending).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn list_transactions(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<GasTransaction>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {TRANSACTION} FROM app_gas_transactions
                 WHERE account_id = $1
                   AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ))
            .await?;
        let rows = client
            .query(
                &stmt,
                &[
                    account.as_uuid(),
                    &page.after.map(|k| k.at),
                    &page.after.map(|k| k.id),
                    &page.fetch_limit(),
                ],
            )
            .await?;
        let items = rows
            .iter()
            .map(transaction_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, &page))
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<GasTransaction>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "WITH picked AS (
                     SELECT id FROM app_gas_transactions
                     WHERE status = 'pending' AND next_attempt_at <= $1
                       AND (lease_until IS NULL OR lease_until <= $1)
                     ORDER BY next_attempt_at
                     LIMIT $4
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE app_gas_transactions t
                 SET lease_owner = $2, lease_until = $3, next_attempt_at = $3,
                     attempts = t.attempts + 1
                 FROM picked WHERE t.id = picked.id
                 RETURNING t.*",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&now, &owner, &lease_until, &limit])
            .await?;
        rows.iter().map(transaction_from).collect()
    }

    async fn renew(
        &self,
        id: GasTxId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE app_gas_transactions SET lease_until = $3, next_attempt_at = $3
                 WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
                &[id.as_uuid(), &owner, &lease_until],
            )
            .await?;
        Ok(n == 1)
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT min(next_attempt_at) FROM app_gas_transactions WHERE status = 'pending'",
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The gas account's row lock first, then the withdrawal's (the order every writer
    /// takes them in), and the compare-and-set on `pending` under both.
    async fn settle(
        &self,
        id: GasTxId,
        owner: &str,
        attempts: i32,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let mut tx = Tx::Postgres(client.transaction().await?);
        let Tx::Postgres(db) = &mut tx else {
            unreachable!("a PostgreSQL transaction")
        };
        // The owner's row first, then the gas account, then the withdrawal: the order
        // every gas bank writer and an account deletion take them in.
        let locked = db
            .query_opt(
                "SELECT 1 FROM app_accounts WHERE id = (
                     SELECT account_id FROM app_gas_transactions WHERE id = $1)
                 FOR KEY SHARE",
                &[id.as_uuid()],
            )
            .await?;
        if locked.is_none() {
            return Err(StoreError::NotFound);
        }
        let account = db
            .query_opt(
                &format!(
                    "SELECT {ACCOUNT} FROM app_gas_accounts
                     WHERE id = (SELECT gas_account_id FROM app_gas_transactions WHERE id = $1)
                     FOR UPDATE"
                ),
                &[id.as_uuid()],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        let account = account_from(&account)?;
        let current = db
            .query_opt(
                &format!("SELECT {TRANSACTION} FROM app_gas_transactions WHERE id = $1 FOR UPDATE"),
                &[id.as_uuid()],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        let current = transaction_from(&current)?;
        let (next, moved) = attempt(&current, &account, owner, attempts, finish, now)?;
        let (lease_owner, lease_until) = match &next.lease {
            Some(lease) => (Some(lease.owner.as_str()), Some(lease.until)),
            None => (None, None),
        };
        let changed = db
            .execute(
                "UPDATE app_gas_transactions SET status = $2, net_amount = $3, error = $4,
                     attempts = $5, next_attempt_at = $6, lease_owner = $7, lease_until = $8,
                     completed_at = $9, updated_at = $10
                 WHERE id = $1 AND status = 'pending'",
                &[
                    id.as_uuid(),
                    &next.status.as_str(),
                    &next.net_amount.base_units(),
                    &next.error,
                    &next.attempts,
                    &next.next_attempt_at,
                    &lease_owner,
                    &lease_until,
                    &next.completed_at,
                    &next.updated_at,
                ],
            )
            .await?;
        if changed != 1 {
            return Err(super::not_ours());
        }
        let settled = match moved {
            Some(moved) => {
                save_account(db, &moved).await?;
                crate::events::insert(&mut tx, &super::settled_event(&next)).await?;
                true
            }
            None => false,
        };
        tx.commit().await?;
        Ok(settled)
    }
}
