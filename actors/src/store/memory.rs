//! The in-memory database: one lock around every domain's tables, so multi-table changes
//! (cascading deletes, later transactional claims) are atomic exactly as in PostgreSQL.
//! Critical sections never await, so a std mutex is the right tool.

use crate::accounts::Account;
use crate::ids::AccountId;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// Accounts indexed both by id and by their list order `(created_at, id)`.
#[derive(Debug, Default)]
pub struct AccountTable {
    by_id: HashMap<AccountId, Account>,
    order: BTreeMap<(chrono::DateTime<chrono::Utc>, AccountId), ()>,
}

impl AccountTable {
    pub fn insert(&mut self, account: Account) {
        self.order.insert((account.created_at, account.id), ());
        self.by_id.insert(account.id, account);
    }

    pub fn get(&self, id: &AccountId) -> Option<&Account> {
        self.by_id.get(id)
    }

    pub fn get_mut(&mut self, id: &AccountId) -> Option<&mut Account> {
        self.by_id.get_mut(id)
    }

    pub fn remove(&mut self, id: &AccountId) -> Option<Account> {
        let account = self.by_id.remove(id)?;
        self.order.remove(&(account.created_at, account.id));
        Some(account)
    }

    /// Accounts in list order strictly after `after`.
    pub fn iter_after(
        &self,
        after: Option<(chrono::DateTime<chrono::Utc>, AccountId)>,
    ) -> impl Iterator<Item = &Account> + '_ {
        use std::ops::Bound;
        let lower = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        self.order
            .range((lower, Bound::Unbounded))
            .filter_map(|((_, id), ())| self.by_id.get(id))
    }
}

/// All tables of memory mode.
#[derive(Debug, Default)]
pub struct Tables {
    pub accounts: AccountTable,
}

impl Tables {
    /// Removes an account and, as `ON DELETE CASCADE` would, every row under it. Each
    /// domain that adds a table adds its cascade here.
    pub fn delete_account(&mut self, id: &AccountId) -> Option<Account> {
        self.accounts.remove(id)
    }
}

#[derive(Debug, Default)]
pub struct MemoryDb {
    tables: Mutex<Tables>,
}

impl MemoryDb {
    /// Locks every table. A poisoned lock only means another thread panicked mid-change;
    /// the tables are still structurally valid, so carry on rather than crash every caller.
    pub fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
