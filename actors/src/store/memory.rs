//! The in-memory database of memory mode: every subsystem's tables behind one lock, so a
//! change that spans tables (a cascade, a Devpack transaction, a claim with a lease) is
//! atomic, as one PostgreSQL transaction would be.
//!
//! The tables belong to their subsystems; this module knows none of them. It keeps them
//! by type ([`Tables::get`]), gives transactions with rollback ([`MemoryTx`]), and runs
//! cascades: removing a row ([`Row`]) asks every table to remove what hangs off it, as
//! `ON DELETE CASCADE` does, until nothing more goes.
//!
//! The lock is tokio's: a transaction may span calls into other subsystems' store APIs
//! taking the transaction (Devpack effects, outbox inserts), which are `async` for
//! PostgreSQL's sake, and a guard held across them must be `Send`. No critical section
//! waits on anything but memory: code holding a transaction must never ask an actor or
//! call [`MemoryDb::lock`]/[`MemoryDb::begin`] again (the lock is not re-entrant; memory
//! mode would hang). Writers inside a transaction record an undo step
//! ([`MemoryTx::on_rollback`]) unless nothing after them can fail.

use crate::ids::{AccountId, FunctionId, JobId, TriggerId};
use crate::page::{Keyed, Page, PageKey, PageRequest};
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::{Mutex, MutexGuard};

/// A row that other tables may hang off (and so may be checked for, or cascade). Rows
/// under an account name it, so a table finds what hangs off them among that account's
/// rows only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    Account(AccountId),
    Function(AccountId, FunctionId),
    Job(AccountId, JobId),
    Trigger(AccountId, TriggerId),
}

/// One subsystem's table (or set of tables) in memory mode.
pub trait Table: Any + Send + Default {
    /// Removes the rows that hang off `parent` (`ON DELETE CASCADE`), pushing onto
    /// `removed` each removed row that others may hang off in turn.
    fn cascade(&mut self, parent: Row, removed: &mut Vec<Row>);

    /// Whether this table holds `row` (the memory form of a foreign-key check).
    fn contains(&self, _row: Row) -> bool {
        false
    }

    /// Why `parent` may not be deleted because of what hangs off it here (the memory
    /// form of a trigger refusing a cascade), if it may not.
    fn restricts(&self, _parent: Row) -> Option<String> {
        None
    }
}

/// [`Table`] behind a type-erased box.
trait AnyTable: Send {
    fn cascade(&mut self, parent: Row, removed: &mut Vec<Row>);
    fn contains(&self, row: Row) -> bool;
    fn restricts(&self, parent: Row) -> Option<String>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Table> AnyTable for T {
    fn cascade(&mut self, parent: Row, removed: &mut Vec<Row>) {
        Table::cascade(self, parent, removed);
    }

    fn contains(&self, row: Row) -> bool {
        Table::contains(self, row)
    }

    fn restricts(&self, parent: Row) -> Option<String> {
        Table::restricts(self, parent)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Every table, by type. A table nobody has touched yet is empty and not stored.
#[derive(Default)]
pub struct Tables {
    by_type: HashMap<TypeId, Box<dyn AnyTable>>,
}

impl Tables {
    /// The table of type `T`, created empty on first use.
    pub fn get<T: Table>(&mut self) -> &mut T {
        let table = self
            .by_type
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()));
        match table.as_any_mut().downcast_mut::<T>() {
            Some(table) => table,
            // The entry for `TypeId::of::<T>()` only ever holds a `T`.
            None => unreachable!("table stored under another type's id"),
        }
    }

    /// Whether `row` exists in whichever table owns it: what a foreign key checks.
    pub fn exists(&self, row: Row) -> bool {
        self.by_type.values().any(|table| table.contains(row))
    }

    /// Why `row` may not be deleted, if a table refuses (see [`Table::restricts`]).
    pub fn restricts(&self, row: Row) -> Option<String> {
        self.by_type.values().find_map(|table| table.restricts(row))
    }

    /// Removes everything that hangs off `root`, however deep (the caller has removed
    /// `root` itself from its own table).
    pub fn cascade(&mut self, root: Row) {
        let mut pending = vec![root];
        while let Some(parent) = pending.pop() {
            for table in self.by_type.values_mut() {
                table.cascade(parent, &mut pending);
            }
        }
    }
}

#[derive(Default)]
pub struct MemoryDb {
    tables: Mutex<Tables>,
}

impl MemoryDb {
    pub async fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().await
    }

    /// A transaction: the lock, plus an undo log that [`MemoryTx::commit`] discards and a
    /// drop without commit replays.
    pub async fn begin(&self) -> MemoryTx<'_> {
        MemoryTx {
            tables: self.tables.lock().await,
            undo: Vec::new(),
        }
    }
}

type Undo = Box<dyn FnOnce(&mut Tables) + Send>;

/// A memory-mode transaction. Writers that may be rolled back record how to undo
/// themselves with [`MemoryTx::on_rollback`]; dropping the transaction without
/// [`MemoryTx::commit`] undoes them in reverse order, so a Devpack action refused halfway
/// leaves nothing behind, as in PostgreSQL.
pub struct MemoryTx<'a> {
    tables: MutexGuard<'a, Tables>,
    undo: Vec<Undo>,
}

impl MemoryTx<'_> {
    pub fn get<T: Table>(&mut self) -> &mut T {
        self.tables.get::<T>()
    }

    pub fn tables(&mut self) -> &mut Tables {
        &mut self.tables
    }

    /// How to undo the change just made, should the transaction not commit.
    pub fn on_rollback(&mut self, undo: impl FnOnce(&mut Tables) + Send + 'static) {
        self.undo.push(Box::new(undo));
    }

    pub fn commit(mut self) {
        self.undo.clear();
    }
}

impl Drop for MemoryTx<'_> {
    fn drop(&mut self) {
        while let Some(undo) = self.undo.pop() {
            undo(&mut self.tables);
        }
    }
}

/// Rows owned by accounts, indexed by id and in list order per account, so a page is
/// read from its starting point without looking at the account's other rows, let alone
/// other accounts'. `T::page_key` must not change while the row is stored.
#[derive(Debug)]
pub struct AccountRows<Id, T> {
    by_id: HashMap<Id, (AccountId, T)>,
    /// `(account, created_at, id)` in list order.
    order: BTreeMap<(AccountId, PageKey), Id>,
}

impl<Id, T> Default for AccountRows<Id, T> {
    fn default() -> Self {
        Self {
            by_id: HashMap::new(),
            order: BTreeMap::new(),
        }
    }
}

impl<Id: Copy + Eq + std::hash::Hash, T: Keyed> AccountRows<Id, T> {
    /// Inserts or replaces the row `id`.
    pub fn insert(&mut self, account: AccountId, id: Id, row: T) {
        self.remove(&id);
        self.order.insert((account, row.page_key()), id);
        self.by_id.insert(id, (account, row));
    }

    pub fn get(&self, id: &Id) -> Option<&T> {
        self.by_id.get(id).map(|(_, row)| row)
    }

    /// The row, if it belongs to `account`.
    pub fn get_in(&self, account: AccountId, id: &Id) -> Option<&T> {
        self.by_id
            .get(id)
            .filter(|(owner, _)| *owner == account)
            .map(|(_, row)| row)
    }

    /// Mutable access; the caller must not change the row's page key.
    pub fn get_mut(&mut self, id: &Id) -> Option<&mut T> {
        self.by_id.get_mut(id).map(|(_, row)| row)
    }

    pub fn remove(&mut self, id: &Id) -> Option<T> {
        let (account, row) = self.by_id.remove(id)?;
        self.order.remove(&(account, row.page_key()));
        Some(row)
    }

    /// How many rows `account` has, counting no further than `max` (quotas count with
    /// this: the work is bounded by the quota, not by the table).
    pub fn count_up_to(&self, account: AccountId, max: u32) -> u64 {
        self.ids_of(account).take(max as usize).count() as u64
    }

    /// `LimitExceeded` unless `account` has room for one more row under `quota`.
    pub fn check_quota(
        &self,
        account: AccountId,
        quota: crate::quota::Quota,
        what: &str,
    ) -> Result<(), crate::error::StoreError> {
        match quota.max() {
            Some(max) => quota.check(self.count_up_to(account, max), what, "account"),
            None => Ok(()),
        }
    }

    /// The ids of `account`'s rows, in list order.
    pub fn ids_of(&self, account: AccountId) -> impl Iterator<Item = Id> + '_ {
        self.order
            .range((account, PageKey::MIN)..)
            .take_while(move |((owner, _), _)| *owner == account)
            .map(|(_, id)| *id)
    }

    /// Every row, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.by_id.values().map(|(_, row)| row)
    }

    /// Removes every row of `account`, returning their ids.
    pub fn remove_account(&mut self, account: AccountId) -> Vec<Id> {
        let ids: Vec<Id> = self.ids_of(account).collect();
        for id in &ids {
            self.remove(id);
        }
        ids
    }

    /// One page of `account`'s rows in list order `(created_at, id)`: only the page is
    /// read and cloned.
    pub fn page(&self, account: AccountId, page: &PageRequest) -> Page<T>
    where
        T: Clone,
    {
        use std::ops::Bound;
        let lower = match page.after {
            Some(after) => Bound::Excluded((account, after)),
            None => Bound::Included((account, PageKey::MIN)),
        };
        let rows = self
            .order
            .range((lower, Bound::Unbounded))
            .take_while(|((owner, _), _)| *owner == account)
            .take(page.fetch_limit() as usize)
            .filter_map(|(_, id)| self.get(id).cloned())
            .collect();
        Page::from_overfetch(rows, page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Parents(Vec<AccountId>);
    #[derive(Default)]
    struct Children(Vec<(AccountId, FunctionId)>);
    #[derive(Default)]
    struct Grandchildren(Vec<FunctionId>);

    impl Table for Parents {
        fn cascade(&mut self, _: Row, _: &mut Vec<Row>) {}
    }
    impl Table for Children {
        fn cascade(&mut self, parent: Row, removed: &mut Vec<Row>) {
            if let Row::Account(account) = parent {
                for (_, f) in self.0.iter().filter(|(a, _)| *a == account) {
                    removed.push(Row::Function(account, *f));
                }
                self.0.retain(|(a, _)| *a != account);
            }
        }

        fn contains(&self, row: Row) -> bool {
            matches!(row, Row::Function(a, f) if self.0.contains(&(a, f)))
        }
    }
    impl Table for Grandchildren {
        fn cascade(&mut self, parent: Row, _: &mut Vec<Row>) {
            if let Row::Function(_, f) = parent {
                self.0.retain(|g| *g != f);
            }
        }
    }

    #[tokio::test]
    async fn cascades_reach_every_level_and_rollback_undoes() {
        let db = MemoryDb::default();
        let (a, b) = (AccountId::generate(), AccountId::generate());
        let (fa, fb) = (FunctionId::generate(), FunctionId::generate());
        {
            let mut t = db.lock().await;
            t.get::<Parents>().0.extend([a, b]);
            t.get::<Children>().0.extend([(a, fa), (b, fb)]);
            t.get::<Grandchildren>().0.extend([fa, fb]);
            assert!(t.exists(Row::Function(a, fa)));
            assert!(
                !t.exists(Row::Function(b, fa)),
                "a function of another account"
            );
            t.get::<Parents>().0.retain(|x| *x != a);
            t.cascade(Row::Account(a));
            assert!(!t.exists(Row::Function(a, fa)));
            assert_eq!(t.get::<Children>().0, [(b, fb)]);
            assert_eq!(t.get::<Grandchildren>().0, [fb]);
        }
        {
            let mut tx = db.begin().await;
            tx.get::<Grandchildren>().0.push(fa);
            tx.on_rollback(move |t| t.get::<Grandchildren>().0.retain(|g| *g != fa));
            // Dropped without commit.
        }
        assert_eq!(db.lock().await.get::<Grandchildren>().0, [fb]);
        let mut tx = db.begin().await;
        tx.get::<Grandchildren>().0.push(fa);
        tx.on_rollback(move |t| t.get::<Grandchildren>().0.retain(|g| *g != fa));
        tx.commit();
        assert_eq!(db.lock().await.get::<Grandchildren>().0, [fb, fa]);
    }
}
