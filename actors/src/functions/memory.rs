//! In-memory [`FunctionStore`], inside the shared [`MemoryDb`] so deletes cascade.

use super::actions::{Effect, Refused};
use super::{Execution, Function, FunctionStore};
use crate::error::StoreError;
use crate::ids::{AccountId, ExecutionId, FunctionId};
use crate::page::{Page, PageRequest};
use crate::store::MemoryDb;
use std::sync::Arc;

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
        let mut tables = self.db.lock();
        if tables.accounts.get(&function.account_id).is_none() {
            return Err(StoreError::NotFound);
        }
        tables.functions.insert(function.id, function.clone());
        Ok(())
    }

    async fn get(&self, account: AccountId, id: FunctionId) -> Result<Function, StoreError> {
        self.db
            .lock()
            .functions
            .get(&id)
            .filter(|f| f.account_id == account)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn list(
        &self,
        account: AccountId,
        page: PageRequest,
    ) -> Result<Page<Function>, StoreError> {
        let tables = self.db.lock();
        let rows = tables
            .functions
            .values()
            .filter(|f| f.account_id == account);
        Ok(Page::in_list_order(rows, &page))
    }

    async fn replace(&self, function: &Function) -> Result<Function, StoreError> {
        let mut tables = self.db.lock();
        match tables.functions.get_mut(&function.id) {
            Some(current) if current.account_id == function.account_id => {
                *current = function.clone();
                Ok(function.clone())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn delete(&self, account: AccountId, id: FunctionId) -> Result<(), StoreError> {
        let mut tables = self.db.lock();
        match tables.functions.get(&id) {
            Some(f) if f.account_id == account => {
                tables.delete_function(&id);
                Ok(())
            }
            _ => Err(StoreError::NotFound),
        }
    }

    async fn insert_execution(
        &self,
        execution: &Execution,
        event: Option<&crate::events::Event>,
        effects: &[Effect],
    ) -> Result<Option<Refused>, StoreError> {
        let mut tables = self.db.lock();
        // The function may have been deleted during the run: as with the foreign key in
        // PostgreSQL, the record goes with it.
        if !tables.functions.contains_key(&execution.function_id) {
            return Err(StoreError::NotFound);
        }
        // Every check before any write: all or nothing, as in one transaction.
        let mut names: Vec<&str> = Vec::new();
        for (index, effect) in effects.iter().enumerate() {
            if let Effect::Job(job) = effect {
                let clash = names.iter().any(|n| n.eq_ignore_ascii_case(&job.name))
                    || tables.jobs.values().any(|j| {
                        j.account_id == job.account_id && j.name.eq_ignore_ascii_case(&job.name)
                    });
                if clash {
                    return Ok(Some(Refused {
                        index,
                        reason: format!("job \"{}\" already exists", job.name),
                    }));
                }
                names.push(&job.name);
            }
        }
        tables.executions.insert(execution.id, execution.clone());
        if let Some(event) = event {
            tables.insert_event(event);
        }
        for effect in effects {
            match effect {
                Effect::Job(job) => {
                    tables.jobs.insert(job.id, job.clone());
                }
                Effect::Trigger(trigger) => {
                    tables.triggers.insert(
                        trigger.id,
                        crate::store::memory::TriggerRow {
                            trigger: trigger.clone(),
                            secret: None,
                        },
                    );
                }
            }
        }
        Ok(None)
    }

    async fn list_executions(
        &self,
        account: AccountId,
        function: FunctionId,
        page: PageRequest,
    ) -> Result<Page<Execution>, StoreError> {
        let tables = self.db.lock();
        let mut rows: Vec<Execution> = tables
            .executions
            .values()
            .filter(|e| e.account_id == account && e.function_id == function)
            .filter(|e| {
                page.after
                    .is_none_or(|k| (e.started_at, *e.id.as_uuid()) < (k.at, k.id))
            })
            .cloned()
            .collect();
        rows.sort_by_key(|e| std::cmp::Reverse((e.started_at, e.id)));
        rows.truncate(page.fetch_limit() as usize);
        Ok(Page::from_overfetch(rows, &page))
    }

    async fn get_execution(
        &self,
        account: AccountId,
        id: ExecutionId,
        function: Option<FunctionId>,
    ) -> Result<Execution, StoreError> {
        self.db
            .lock()
            .executions
            .get(&id)
            .filter(|e| e.account_id == account && function.is_none_or(|f| e.function_id == f))
            .cloned()
            .ok_or(StoreError::NotFound)
    }
}
