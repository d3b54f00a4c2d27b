//! The gas bank (CONTRACT.md §2.9, §3.8): one gas account per owner, deposits credited
//! once per `tx_id`, withdrawals that reserve funds by one conditional update, and the
//! `settler` that asks the resolver how each withdrawal ended (`settler.rs`). Tables
//! `app_gas_accounts` and `app_gas_transactions` are owned here.
//!
//! Money is integer base units ([`Amount`]); every balance change and its ledger row
//! are one transaction under the gas account's row lock, and the database refuses a
//! negative or inconsistent balance (a CHECK; memory mode checks the same). Lock order,
//! everywhere: the account's quota lock (writes that Devpack may make), then the owner's
//! `app_accounts` row (key share: what an account deletion locks first), then the gas
//! account, then its transactions, so no two writers wait on each other in a circle.

mod actor;
mod domain;
mod memory;
mod postgres;
mod service;
mod settler;

pub use actor::{Deposit, Ensure, GasBankActor, GetGasAccount, ListTransactions, Withdraw};
pub use domain::{
    amount, insufficient, unknown_gas_account, wallet, Credited, DepositInput, EnsureInput,
    GasAccount, GasTransaction, Lease, NewDeposit, NewWithdrawal, Target, TxKind, TxStatus,
    WithdrawInput, MAX_ADDRESS, MAX_ERROR as MAX_ERROR_TEXT,
};
pub use memory::MemoryGasStore;
pub use postgres::PgGasStore;
pub use service::{missing as missing_target, GasBankService, Movement};
pub use settler::{settler_metrics, GasWork, Settler, SettlerActor};

use crate::amount::Amount;
use crate::error::StoreError;
use crate::events::Event;
use crate::ids::{AccountId, GasTxId};
use crate::page::{Page, PageRequest};
use crate::quota::Quota;
use crate::resolver::Finish;
use crate::store::Tx;
use chrono::{DateTime, Utc};

crate::subsystem_error!(
    /// Why a gas bank request failed.
    GasBankError {}
);

crate::handle_trait!(
    /// What the HTTP edge may ask of the gas bank.
    GasBankHandle: Ensure,
    GetGasAccount,
    Deposit,
    Withdraw,
    ListTransactions,
);

/// The gas bank tables. Both implementations give the same guarantees: one gas account
/// per owner, wallets unique across owners case-insensitively, `balance = available +
/// pending` with all three ≥ 0, deposits unique per `tx_id` case-insensitively, and a
/// withdrawal settled once.
#[async_trait::async_trait]
pub trait GasStore: Send + Sync + 'static {
    /// See [`ensure_in`]; in a transaction of its own.
    async fn ensure(
        &self,
        account: AccountId,
        wallet: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(GasAccount, bool), StoreError>;
    /// The owner's gas account (`None` if it has none).
    async fn gas_account(&self, account: AccountId) -> Result<Option<GasAccount>, StoreError>;
    /// Credits a deposit once per `tx_id` (case-insensitively, service-wide), in one
    /// transaction with its ledger row. The same deposit again (same amount, same gas
    /// account) credits nothing and returns the original row, `Replayed`. `Conflict` if
    /// the `tx_id` was used otherwise; `NotFound` if `target` names no gas account of the
    /// account; `InvalidState` if the balance would pass [`Amount::MAX`].
    async fn deposit(
        &self,
        target: &Target,
        deposit: &GasTransaction,
    ) -> Result<(GasAccount, GasTransaction, Credited), StoreError>;
    /// See [`withdraw_in`]; in a transaction of its own.
    async fn withdraw(
        &self,
        target: &Target,
        withdrawal: &GasTransaction,
        pending: Quota,
    ) -> Result<(GasAccount, GasTransaction), StoreError>;
    /// The account's ledger, newest first (`created_at`, then id, descending).
    async fn list_transactions(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<GasTransaction>, StoreError>;
    /// Claims up to `limit` pending withdrawals due at `now` whose lease is free or
    /// expired, earliest first, under `owner`'s lease until `lease_until` (also their
    /// `next_attempt_at`), counting the call in `attempts`.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<GasTransaction>, StoreError>;
    /// Extends `owner`'s lease; `false` if the withdrawal is no longer held by it.
    async fn renew(
        &self,
        id: GasTxId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The earliest `next_attempt_at` of a pending withdrawal.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Records a resolver attempt on a pending withdrawal held by `owner`: a retry time,
    /// or its settlement by compare-and-set on `pending` (the gas account moved and the
    /// `gasbank.withdrawal.settled` event written in the same transaction); `Ok(true)`
    /// if it settled. `InvalidState` (nothing changes) if it is settled already or no
    /// longer this lease's; `NotFound` if it is gone.
    async fn settle(
        &self,
        id: GasTxId,
        owner: &str,
        attempts: i32,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// The owner's gas account, created (`true`) with `wallet` if it has none; an existing
/// one gets `wallet` when a different non-empty one is given. Inside the caller's
/// transaction (the API's own, or an execution's for `Devpack.gasBank.ensureAccount`).
/// `Conflict` if another owner holds the wallet (case-insensitively); `NotFound` if the
/// account is gone.
pub async fn ensure_in(
    tx: &mut Tx<'_>,
    account: AccountId,
    wallet: Option<String>,
    now: DateTime<Utc>,
) -> Result<(GasAccount, bool), StoreError> {
    match tx {
        Tx::Memory(tx) => memory::ensure_in(tx, account, wallet, now),
        Tx::Postgres(tx) => postgres::ensure_in(tx, account, wallet, now).await,
    }
}

/// Reserves a withdrawal inside the caller's transaction: one conditional update moves
/// `amount` from `available` to `pending` only if `available ≥ amount`, and the pending
/// row is inserted. `NotFound` if `target` names no gas account of the account;
/// `InsufficientFunds` above `available`; `LimitExceeded` when the account already has
/// `pending` pending withdrawals.
pub async fn withdraw_in(
    tx: &mut Tx<'_>,
    target: &Target,
    withdrawal: &GasTransaction,
    pending: Quota,
) -> Result<(GasAccount, GasTransaction), StoreError> {
    match tx {
        Tx::Memory(tx) => memory::withdraw_in(tx, target, withdrawal, pending),
        Tx::Postgres(tx) => postgres::withdraw_in(tx, target, withdrawal, pending).await,
    }
}

/// The `gasbank.withdrawal.settled` event of a withdrawal that just settled.
fn settled_event(w: &GasTransaction) -> Event {
    Event::new(
        w.account_id,
        crate::events::GASBANK_WITHDRAWAL_SETTLED,
        serde_json::json!({
            "transaction_id": w.id.to_string(),
            "gas_account_id": w.gas_account_id.to_string(),
            "status": w.status.as_str(),
            "amount": w.amount.to_string(),
            "error": w.error,
        }),
        w.completed_at.unwrap_or(w.updated_at),
    )
}

/// What refuses an attempt on a withdrawal that is no longer this lease's pending one:
/// settled already (by another replica, or by this one's earlier answer), or taken over.
fn not_ours() -> StoreError {
    StoreError::InvalidState("the withdrawal is settled or held by another lease".to_owned())
}

/// The refusal of a deposit that would take a balance past the largest amount.
fn too_large() -> StoreError {
    StoreError::InvalidState(format!(
        "the deposit would take the balance past {} GAS",
        Amount::MAX
    ))
}

/// The withdrawal after an attempt: `finish` applied, `attempts` recorded; the gas
/// account after it if it settled. `InvalidState` if `current` is not `owner`'s pending
/// withdrawal.
fn attempt(
    current: &GasTransaction,
    account: &GasAccount,
    owner: &str,
    attempts: i32,
    finish: Finish,
    now: DateTime<Utc>,
) -> Result<(GasTransaction, Option<GasAccount>), StoreError> {
    let ours = current.lease.as_ref().is_some_and(|l| l.owner == owner);
    if current.status != TxStatus::Pending || current.kind != TxKind::Withdrawal || !ours {
        return Err(not_ours());
    }
    let mut next = current.finish(finish, now);
    next.attempts = attempts;
    if next.status == TxStatus::Pending {
        return Ok((next, None));
    }
    let moved = next.settle(account, now).ok_or_else(|| {
        StoreError::internal(anyhow::anyhow!(
            "gas account {} holds less pending than withdrawal {} reserved",
            account.id,
            next.id
        ))
    })?;
    Ok((next, Some(moved)))
}
