//! In-memory [`FunctionStore`]: functions in list order per account, executions newest
//! first per function; both removed with their account (functions) or function
//! (executions, and through the cascade, its jobs and triggers).

use super::{Effect, Execution, Fence, Function, FunctionStore, Refused};
use crate::error::StoreError;
use crate::events::Event;
use crate::ids::{AccountId, ExecutionId, FunctionId};
use crate::page::{Keyed, Page, PageKey, PageRequest};
use crate::quota::Quota;
use crate::store::memory::AccountRows;
use crate::store::{MemoryDb, MemoryTx, Row, Table, Tx};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `app_functions` and `app_function_executions`.
#[derive(Debug, Default)]
struct FunctionTable {
    functions: AccountRows<FunctionId, Function>,
    executions: HashMap<ExecutionId, Execution>,
    /// `(function, started_at, id)`: a function's executions in list order.
    by_function: BTreeMap<(FunctionId, PageKey), ExecutionId>,
    /// `(started_at, id)` of every execution, oldest first: retention and the cap.
    by_age: BTreeMap<PageKey, FunctionId>,
}

impl FunctionTable {
    fn remove_executions(&mut self, function: FunctionId) {
        let keys: Vec<_> = self
            .by_function
            .range((function, PageKey::MIN)..)
            .take_while(|((f, _), _)| *f == function)
            .map(|(key, id)| (*key, *id))
            .collect();
        for (key, id) in keys {
            self.by_function.remove(&key);
            self.by_age.remove(&key.1);
            self.executions.remove(&id);
        }
    }

    fn remove_execution(&mut self, age: PageKey, function: FunctionId) {
        if let Some(id) = self.by_function.remove(&(function, age)) {
            self.executions.remove(&id);
        }
        self.by_age.remove(&age);
    }

    /// Removes the oldest executions while `remove` says so; how many went.
    fn remove_oldest(&mut self, mut remove: impl FnMut(&Self, &PageKey) -> bool) -> u64 {
        let mut removed = 0;
        while let Some((&age, &function)) = self.by_age.first_key_value() {
            if !remove(self, &age) {
                break;
            }
            self.remove_execution(age, function);
            removed += 1;
        }
        removed
    }
}

impl Table for FunctionTable {
    fn cascade(&mut self, parent: Row, removed: &mut Vec<Row>) {
        match parent {
            Row::Account(account) => {
                for id in self.functions.remove_account(account) {
                    removed.push(Row::Function(account, id));
                }
            }
            Row::Function(_, id) => self.remove_executions(id),
            Row::Job(..) | Row::Trigger(..) => {}
        }
    }

    fn contains(&self, row: Row) -> bool {
        matches!(row, Row::Function(account, id) if self.functions.get_in(account, &id).is_some())
    }
}

/// Records an execution inside a memory transaction; `NotFound` if its function was
/// deleted during the run (the record goes with it, as the foreign key does in
/// PostgreSQL).
pub(super) fn insert_execution(
    tx: &mut MemoryTx<'_>,
    execution: &Execution,
) -> Result<(), StoreError> {
    let table = tx.get::<FunctionTable>();
    if table
        .functions
        .get_in(execution.account_id, &execution.function_id)
        .is_none()
    {
        return Err(StoreError::NotFound);
    }
    let key = (execution.function_id, execution.page_key());
    table.by_function.insert(key, execution.id);
    table.by_age.insert(key.1, execution.function_id);
    table.executions.insert(execution.id, execution.clone());
    tx.on_rollback(move |tables| {
        tables.get::<FunctionTable>().remove_execution(key.1, key.0);
    });
    Ok(())
}

pub struct MemoryFunctionStore {
    db: Arc<MemoryDb>,
    /// `MEMORY_MAX_EXECUTIONS`: past it the oldest executions go first.
    max_executions: usize,
}

impl MemoryFunctionStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self {
            db,
            max_executions: 100_000,
        }
    }

    pub fn with_max_executions(mut self, max: usize) -> Self {
        self.max_executions = max.max(1);
        self
    }
}

#[async_trait::async_trait]
impl FunctionStore for MemoryFunctionStore {
    async fn create(&self, function: &Function, quota: Quota) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        if !tables.exists(Row::Account(function.account_id)) {
            return Err(StoreError::NotFound);
        }
        let table = tables.get::<FunctionTable>();
        table
            .functions
            .check_quota(function.account_id, quota, "functions")?;
        table
            .functions
            .insert(function.account_id, function.id, function.clone());
        Ok(())
    }

    async fn get(&self, account: AccountId, id: FunctionId) -> Result<Function, StoreError> {
        let mut tables = self.db.lock().await;
        tables
            .get::<FunctionTable>()
            .functions
            .get_in(account, &id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Function>, StoreError> {
        let mut tables = self.db.lock().await;
        Ok(tables.get::<FunctionTable>().functions.page(account, &page))
    }

    async fn replace(&self, function: &Function) -> Result<Function, StoreError> {
        let mut tables = self.db.lock().await;
        match tables
            .get::<FunctionTable>()
            .functions
            .get_mut(&function.id)
        {
            Some(current) if current.account_id == function.account_id => {
                *current = function.clone();
                Ok(function.clone())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, account: AccountId, id: FunctionId) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        let table = tables.get::<FunctionTable>();
        if table.functions.get_in(account, &id).is_none() {
            return Err(StoreError::NotFound);
        }
        table.functions.remove(&id);
        tables.cascade(Row::Function(account, id));
        Ok(())
    }

    async fn insert_execution(
        &self,
        execution: &Execution,
        event: Option<&Event>,
        fence: Option<&Arc<dyn Fence>>,
        effects: &[Box<dyn Effect>],
    ) -> Result<Option<Refused>, StoreError> {
        let mut tx = Tx::Memory(self.db.begin().await);
        let refused =
            super::record(&mut tx, execution, event, fence.map(|f| &**f), effects).await?;
        if refused.is_none() {
            let Tx::Memory(memory) = &mut tx else {
                unreachable!("a memory store's transaction")
            };
            // The cap holds memory mode's memory: the oldest records make room, never
            // the one just written (its id was promised to the caller).
            let max = self.max_executions;
            let inserted = execution.page_key();
            memory
                .get::<FunctionTable>()
                .remove_oldest(|table, age| table.executions.len() > max && *age != inserted);
            tx.commit().await?;
        }
        Ok(refused)
    }

    async fn purge_executions(
        &self,
        started_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let mut tables = self.db.lock().await;
        let mut left = u64::try_from(limit).unwrap_or(0);
        Ok(tables.get::<FunctionTable>().remove_oldest(|_, age| {
            let go = left > 0 && age.at < started_before;
            left = left.saturating_sub(1);
            go
        }))
    }

    async fn list_executions(
        &self,
        account: AccountId,
        function: FunctionId,
        page: PageRequest,
    ) -> Result<Page<Execution>, StoreError> {
        use std::ops::Bound;
        let mut tables = self.db.lock().await;
        let table = tables.get::<FunctionTable>();
        if table.functions.get_in(account, &function).is_none() {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        // Newest first: walk the function's range backwards from the page key.
        let upper = match page.after {
            Some(after) => Bound::Excluded((function, after)),
            None => Bound::Included((function, PageKey::MAX)),
        };
        let rows = table
            .by_function
            .range((Bound::Included((function, PageKey::MIN)), upper))
            .rev()
            .take(page.fetch_limit() as usize)
            .filter_map(|(_, id)| table.executions.get(id).cloned())
            .collect();
        Ok(Page::from_overfetch(rows, &page))
    }

    async fn get_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
        function: Option<FunctionId>,
    ) -> Result<Execution, StoreError> {
        let mut tables = self.db.lock().await;
        tables
            .get::<FunctionTable>()
            .executions
            .get(&id)
            .filter(|e| e.account_id == account && function.is_none_or(|f| e.function_id == f))
            .cloned()
            .ok_or(StoreError::NotFound)
    }
}
