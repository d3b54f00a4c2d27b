//! In-memory [`GasStore`] with the indexes the PostgreSQL tables have: one gas account
//! per owner, wallets by lower case, deposits by lower-case `tx_id`, pending withdrawals
//! by due time and per account, each account's ledger in list order. Every change runs
//! under the one memory lock, so a check and the change it guards are one step, as the
//! row lock makes them in PostgreSQL; [`GasTable::put_account`] refuses what the
//! database's CHECK refuses.

use super::{
    attempt, Credited, GasAccount, GasStore, GasTransaction, Lease, Target, TxKind, TxStatus,
};
use crate::error::StoreError;
use crate::ids::{AccountId, GasAccountId, GasTxId};
use crate::page::{Keyed, Page, PageKey, PageRequest};
use crate::quota::Quota;
use crate::resolver::Finish;
use crate::store::memory::MemoryTx;
use crate::store::{MemoryDb, Row, Table, Tx};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Default)]
struct GasTable {
    /// By owner: one each.
    accounts: HashMap<AccountId, GasAccount>,
    /// `lower(wallet_address)` → owner.
    wallets: HashMap<String, AccountId>,
    transactions: HashMap<GasTxId, GasTransaction>,
    /// Each owner's ledger in list order `(created_at, id)`.
    ledger: BTreeMap<(AccountId, PageKey), GasTxId>,
    /// `lower(tx_id)` of every deposit.
    deposits: HashMap<String, GasTxId>,
    /// Pending withdrawals by `next_attempt_at`: what the settler claims from.
    due: BTreeSet<(DateTime<Utc>, GasTxId)>,
    /// Pending withdrawals per owner: what the quota counts and what blocks deleting it.
    pending: HashMap<AccountId, HashSet<GasTxId>>,
}

impl GasTable {
    /// The owner's gas account if `target` names it.
    fn target(&self, account: AccountId, target: &Target) -> Option<&GasAccount> {
        self.accounts.get(&account).filter(|g| match target {
            Target::Own => true,
            Target::Id(id) => g.id == *id,
            Target::Wallet(w) => g
                .wallet_address
                .as_ref()
                .is_some_and(|mine| mine.eq_ignore_ascii_case(w)),
        })
    }

    /// Stores a gas account, keeping the wallet index. The stores only ever compute
    /// balances with checked arithmetic; this is the CHECK constraint's twin.
    fn put_account(&mut self, account: GasAccount) -> Result<(), StoreError> {
        if account.available.checked_add(account.pending).is_none() {
            return Err(super::too_large());
        }
        if let Some(old) = self.accounts.get(&account.account_id) {
            if let Some(w) = &old.wallet_address {
                self.wallets.remove(&w.to_ascii_lowercase());
            }
        }
        if let Some(w) = &account.wallet_address {
            self.wallets
                .insert(w.to_ascii_lowercase(), account.account_id);
        }
        self.accounts.insert(account.account_id, account);
        Ok(())
    }

    /// Inserts or replaces a transaction, moving it in every index.
    fn put(&mut self, t: GasTransaction) {
        self.take(&t.id);
        self.ledger.insert((t.account_id, t.page_key()), t.id);
        if t.kind == TxKind::Deposit {
            if let Some(tx_id) = &t.blockchain_tx_id {
                self.deposits.insert(tx_id.to_ascii_lowercase(), t.id);
            }
        }
        if t.status == TxStatus::Pending {
            if let Some(at) = t.next_attempt_at {
                self.due.insert((at, t.id));
            }
            self.pending.entry(t.account_id).or_default().insert(t.id);
        }
        self.transactions.insert(t.id, t);
    }

    fn take(&mut self, id: &GasTxId) -> Option<GasTransaction> {
        let t = self.transactions.remove(id)?;
        self.ledger.remove(&(t.account_id, t.page_key()));
        if let (TxKind::Deposit, Some(tx_id)) = (t.kind, &t.blockchain_tx_id) {
            self.deposits.remove(&tx_id.to_ascii_lowercase());
        }
        if let Some(at) = t.next_attempt_at {
            self.due.remove(&(at, *id));
        }
        if let Some(pending) = self.pending.get_mut(&t.account_id) {
            pending.remove(id);
            if pending.is_empty() {
                self.pending.remove(&t.account_id);
            }
        }
        Some(t)
    }
}

impl Table for GasTable {
    fn cascade(&mut self, parent: Row, _removed: &mut Vec<Row>) {
        if let Row::Account(account) = parent {
            if let Some(g) = self.accounts.remove(&account) {
                if let Some(w) = g.wallet_address {
                    self.wallets.remove(&w.to_ascii_lowercase());
                }
            }
            let ids: Vec<GasTxId> = self
                .ledger
                .range((account, PageKey::MIN)..=(account, PageKey::MAX))
                .map(|(_, id)| *id)
                .collect();
            for id in ids {
                self.take(&id);
            }
        }
    }

    fn restricts(&self, parent: Row) -> Option<String> {
        match parent {
            Row::Account(account) if self.pending.contains_key(&account) => {
                Some(super::postgres::PENDING_WITHDRAWAL.to_owned())
            }
            _ => None,
        }
    }
}

fn wallet_taken() -> StoreError {
    StoreError::Conflict("wallet_address is already used by another gas account".to_owned())
}

/// See [`super::ensure_in`].
pub(super) fn ensure_in(
    tx: &mut MemoryTx<'_>,
    account: AccountId,
    wallet: Option<String>,
    now: DateTime<Utc>,
) -> Result<(GasAccount, bool), StoreError> {
    if !tx.tables().exists(Row::Account(account)) {
        return Err(StoreError::NotFound);
    }
    let table = tx.get::<GasTable>();
    if let Some(w) = &wallet {
        if table
            .wallets
            .get(&w.to_ascii_lowercase())
            .is_some_and(|owner| *owner != account)
        {
            return Err(wallet_taken());
        }
    }
    let before = table.accounts.get(&account).cloned();
    let (after, created) = match &before {
        None => (
            GasAccount {
                id: GasAccountId::generate(),
                account_id: account,
                wallet_address: wallet,
                available: crate::amount::Amount::ZERO,
                pending: crate::amount::Amount::ZERO,
                created_at: now,
                updated_at: now,
            },
            true,
        ),
        Some(g) if wallet.is_some() && g.wallet_address != wallet => (
            GasAccount {
                wallet_address: wallet,
                updated_at: now,
                ..g.clone()
            },
            false,
        ),
        Some(g) => return Ok((g.clone(), false)),
    };
    table.put_account(after.clone())?;
    let added_wallet = after.wallet_address.clone();
    tx.on_rollback(move |tables| {
        let table = tables.get::<GasTable>();
        match before {
            Some(before) => {
                let _ = table.put_account(before);
            }
            None => {
                if let Some(w) = added_wallet {
                    table.wallets.remove(&w.to_ascii_lowercase());
                }
                table.accounts.remove(&account);
            }
        }
    });
    Ok((after, created))
}

/// See [`super::withdraw_in`].
pub(super) fn withdraw_in(
    tx: &mut MemoryTx<'_>,
    target: &Target,
    w: &GasTransaction,
    pending: Quota,
) -> Result<(GasAccount, GasTransaction), StoreError> {
    let table = tx.get::<GasTable>();
    // The quota first, as PostgreSQL counts before its reservation.
    let held = table
        .pending
        .get(&w.account_id)
        .map_or(0, |p| p.len() as u64);
    pending.check(held, "pending withdrawals", "account")?;
    let Some(before) = table.target(w.account_id, target).cloned() else {
        return Err(StoreError::NotFound);
    };
    let Some(available) = before.available.checked_sub(w.amount) else {
        return Err(StoreError::InsufficientFunds(super::insufficient(
            before.available,
            w.amount,
        )));
    };
    let after = GasAccount {
        available,
        pending: before
            .pending
            .checked_add(w.amount)
            .ok_or_else(super::too_large)?,
        updated_at: w.created_at,
        ..before.clone()
    };
    let row = GasTransaction {
        gas_account_id: before.id,
        ..w.clone()
    };
    table.put_account(after.clone())?;
    table.put(row.clone());
    let id = row.id;
    tx.on_rollback(move |tables| {
        let table = tables.get::<GasTable>();
        table.take(&id);
        let _ = table.put_account(before);
    });
    Ok((after, row))
}

pub struct MemoryGasStore {
    db: Arc<MemoryDb>,
}

impl MemoryGasStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl GasStore for MemoryGasStore {
    async fn ensure(
        &self,
        account: AccountId,
        wallet: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(GasAccount, bool), StoreError> {
        let mut tx = self.db.begin().await;
        let out = ensure_in(&mut tx, account, wallet, now)?;
        tx.commit();
        Ok(out)
    }

    async fn gas_account(&self, account: AccountId) -> Result<Option<GasAccount>, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(tables.get::<GasTable>().accounts.get(&account).cloned())
    }

    async fn deposit(
        &self,
        target: &Target,
        d: &GasTransaction,
    ) -> Result<(GasAccount, GasTransaction, Credited), StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<GasTable>();
        let Some(before) = table.target(d.account_id, target).cloned() else {
            return Err(StoreError::NotFound);
        };
        let tx_id = d.blockchain_tx_id.as_deref().unwrap_or_default();
        if let Some(existing) = table
            .deposits
            .get(&tx_id.to_ascii_lowercase())
            .and_then(|id| table.transactions.get(id))
        {
            return if super::domain::is_replay(existing, d, before.id) {
                Ok((before, existing.clone(), Credited::Replayed))
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
            ..before.clone()
        };
        let row = GasTransaction {
            gas_account_id: before.id,
            ..d.clone()
        };
        table.put_account(after.clone())?;
        table.put(row.clone());
        Ok((after, row, Credited::New))
    }

    async fn withdraw(
        &self,
        target: &Target,
        w: &GasTransaction,
        pending: Quota,
    ) -> Result<(GasAccount, GasTransaction), StoreError> {
        let mut tx = self.db.begin().await;
        let out = withdraw_in(&mut tx, target, w, pending)?;
        tx.commit();
        Ok(out)
    }

    async fn list_transactions(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<GasTransaction>, StoreError> {
        use std::ops::Bound;
        let mut tables = self.db.lock().await;
        let table = tables.get::<GasTable>();
        // Newest first: walk backwards from the page key.
        let upper = match page.after {
            Some(after) => Bound::Excluded((account, after)),
            None => Bound::Included((account, PageKey::MAX)),
        };
        let rows = table
            .ledger
            .range((Bound::Included((account, PageKey::MIN)), upper))
            .rev()
            .take(page.fetch_limit() as usize)
            .filter_map(|(_, id)| table.transactions.get(id).cloned())
            .collect();
        Ok(Page::from_overfetch(rows, &page))
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<GasTransaction>, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<GasTable>();
        let due: Vec<GasTxId> = table
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .filter(|id| {
                table
                    .transactions
                    .get(id)
                    .is_some_and(|t| t.lease.as_ref().is_none_or(|l| l.until <= now))
            })
            .take(usize::try_from(limit).unwrap_or(0))
            .collect();
        let mut claimed = Vec::with_capacity(due.len());
        for id in due {
            let Some(mut t) = table.transactions.get(&id).cloned() else {
                continue;
            };
            t.lease = Some(Lease {
                owner: owner.to_owned(),
                until: lease_until,
            });
            t.attempts = t.attempts.saturating_add(1);
            t.next_attempt_at = Some(lease_until);
            table.put(t.clone());
            claimed.push(t);
        }
        Ok(claimed)
    }

    async fn renew(
        &self,
        id: GasTxId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<GasTable>();
        let Some(mut t) = table.transactions.get(&id).cloned() else {
            return Ok(false);
        };
        let pending = t.status == TxStatus::Pending;
        match &mut t.lease {
            Some(lease) if lease.owner == owner && pending => lease.until = lease_until,
            _ => return Ok(false),
        }
        t.next_attempt_at = Some(lease_until);
        table.put(t);
        Ok(true)
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(tables.get::<GasTable>().due.first().map(|(at, _)| *at))
    }

    async fn settle(
        &self,
        id: GasTxId,
        owner: &str,
        attempts: i32,
        finish: Finish,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = Tx::Memory(self.db.begin().await);
        let Tx::Memory(memory) = &mut tx else {
            unreachable!("a memory transaction")
        };
        let table = memory.get::<GasTable>();
        let current = table
            .transactions
            .get(&id)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        let account = table
            .accounts
            .get(&current.account_id)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        let (next, moved) = attempt(&current, &account, owner, attempts, finish, now)?;
        let settled = moved.is_some();
        table.put(next.clone());
        memory.on_rollback(move |tables| {
            let table = tables.get::<GasTable>();
            table.put(current);
            let _ = table.put_account(account);
        });
        if let Some(moved) = moved {
            memory.get::<GasTable>().put_account(moved)?;
            crate::events::insert(&mut tx, &super::settled_event(&next)).await?;
        }
        tx.commit().await?;
        Ok(settled)
    }
}
