//! In-memory [`FunctionStore`]: functions in list order per account, executions newest
//! first per function; both removed with their account (functions) or function
//! (executions, and through the cascade, its jobs and triggers).

use super::{Effect, Execution, Function, FunctionStore, Refused};
use crate::error::StoreError;
use crate::events::Event;
use crate::ids::{AccountId, ExecutionId, FunctionId};
use crate::page::{Keyed, Page, PageKey, PageRequest};
use crate::store::memory::AccountRows;
use crate::store::{MemoryDb, MemoryTx, Row, Table, Tx};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// `app_functions` and `app_function_executions`.
#[derive(Debug, Default)]
struct FunctionTable {
    functions: AccountRows<FunctionId, Function>,
    executions: HashMap<ExecutionId, Execution>,
    /// `(function, started_at, id)`: a function's executions in list order.
    by_function: BTreeMap<(FunctionId, PageKey), ExecutionId>,
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
            self.executions.remove(&id);
        }
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
    table.executions.insert(execution.id, execution.clone());
    let id = execution.id;
    tx.on_rollback(move |tables| {
        let table = tables.get::<FunctionTable>();
        table.by_function.remove(&key);
        table.executions.remove(&id);
    });
    Ok(())
}

pub struct MemoryFunctionStore {
    db: Arc<MemoryDb>,
}

impl MemoryFunctionStore {
    pub fn new(db: Arc<MemoryDb>) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl FunctionStore for MemoryFunctionStore {
    async fn create(&self, function: &Function) -> Result<(), StoreError> {
        let mut tables = self.db.lock().await;
        if !tables.exists(Row::Account(function.account_id)) {
            return Err(StoreError::NotFound);
        }
        tables.get::<FunctionTable>().functions.insert(
            function.account_id,
            function.id,
            function.clone(),
        );
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
        effects: &[Box<dyn Effect>],
    ) -> Result<Option<Refused>, StoreError> {
        let mut tx = Tx::Memory(self.db.begin().await);
        let refused = super::record(&mut tx, execution, event, effects).await?;
        if refused.is_none() {
            tx.commit().await?;
        }
        Ok(refused)
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
