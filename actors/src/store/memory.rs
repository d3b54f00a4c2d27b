//! The in-memory database: one lock around every domain's tables, so multi-table changes
//! (cascading deletes, later transactional claims) are atomic exactly as in PostgreSQL.
//! Critical sections never await, so a std mutex is the right tool.

use crate::accounts::Account;
use crate::automation::{Job, Run};
use crate::events::Event;
use crate::functions::{Execution, Function};
use crate::ids::{
    AccountId, EventId, ExecutionId, FiringId, FunctionId, JobId, RunId, SecretId, TokenId,
    TriggerId,
};
use crate::secrets::{SealedVersion, SecretMetadata};
use crate::tokens::ApiToken;
use crate::triggers::{Firing, Trigger};
use chrono::{DateTime, Utc};
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

/// A secret with every version, oldest first.
#[derive(Debug, Clone)]
pub struct SecretRow {
    pub meta: SecretMetadata,
    pub versions: Vec<SealedVersion>,
}

type ListKey = (AccountId, chrono::DateTime<chrono::Utc>, SecretId);

/// Secrets indexed by id, by `(account, lower(name))` and in list order per account.
#[derive(Debug, Default)]
pub struct SecretTable {
    by_id: HashMap<SecretId, SecretRow>,
    by_name: HashMap<(AccountId, String), SecretId>,
    order: BTreeMap<ListKey, ()>,
}

impl SecretTable {
    pub fn insert(&mut self, row: SecretRow) {
        let meta = &row.meta;
        self.by_name
            .insert((meta.account_id, meta.name.to_ascii_lowercase()), meta.id);
        self.order
            .insert((meta.account_id, meta.created_at, meta.id), ());
        self.by_id.insert(meta.id, row);
    }

    pub fn by_name(&self, account: AccountId, name_key: &str) -> Option<&SecretRow> {
        let id = self.by_name.get(&(account, name_key.to_owned()))?;
        self.by_id.get(id)
    }

    pub fn get_mut(&mut self, id: &SecretId) -> Option<&mut SecretRow> {
        self.by_id.get_mut(id)
    }

    pub fn remove(&mut self, id: &SecretId) -> Option<SecretRow> {
        let row = self.by_id.remove(id)?;
        let meta = &row.meta;
        self.by_name
            .remove(&(meta.account_id, meta.name.to_ascii_lowercase()));
        self.order
            .remove(&(meta.account_id, meta.created_at, meta.id));
        Some(row)
    }

    /// One account's secrets in list order, strictly after `after`.
    pub fn iter_account(
        &self,
        account: AccountId,
        after: Option<(chrono::DateTime<chrono::Utc>, SecretId)>,
    ) -> impl Iterator<Item = &SecretRow> + '_ {
        use std::ops::Bound;
        let lower = match after {
            Some((at, id)) => Bound::Excluded((account, at, id)),
            None => Bound::Included((
                account,
                chrono::DateTime::<chrono::Utc>::MIN_UTC,
                SecretId::from(uuid::Uuid::nil()),
            )),
        };
        self.order
            .range((lower, Bound::Unbounded))
            .take_while(move |((a, _, _), ())| *a == account)
            .filter_map(|((_, _, id), ())| self.by_id.get(id))
    }

    pub fn all(&self) -> impl Iterator<Item = &SecretRow> + '_ {
        self.by_id.values()
    }

    fn remove_account(&mut self, account: &AccountId) {
        let ids: Vec<SecretId> = self
            .by_id
            .values()
            .filter(|r| r.meta.account_id == *account)
            .map(|r| r.meta.id)
            .collect();
        for id in ids {
            self.remove(&id);
        }
    }
}

/// Account tokens by id, with the hash index that authentication uses.
#[derive(Debug, Default)]
pub struct TokenTable {
    by_id: HashMap<TokenId, (ApiToken, [u8; 32])>,
    by_hash: HashMap<[u8; 32], TokenId>,
}

impl TokenTable {
    pub fn insert(&mut self, token: ApiToken, hash: [u8; 32]) {
        self.by_hash.insert(hash, token.id);
        self.by_id.insert(token.id, (token, hash));
    }

    pub fn get(&self, id: &TokenId) -> Option<&ApiToken> {
        self.by_id.get(id).map(|(t, _)| t)
    }

    pub fn by_hash(&self, hash: &[u8; 32]) -> Option<&ApiToken> {
        self.by_hash.get(hash).and_then(|id| self.get(id))
    }

    pub fn of_account(&self, account: AccountId) -> impl Iterator<Item = &ApiToken> + '_ {
        self.by_id
            .values()
            .map(|(t, _)| t)
            .filter(move |t| t.account_id == account)
    }

    pub fn remove(&mut self, id: &TokenId) {
        if let Some((_, hash)) = self.by_id.remove(id) {
            self.by_hash.remove(&hash);
        }
    }

    fn remove_account(&mut self, account: &AccountId) {
        let ids: Vec<TokenId> = self.of_account(*account).map(|t| t.id).collect();
        for id in ids {
            self.remove(&id);
        }
    }
}

/// All tables of memory mode.
#[derive(Debug, Default)]
pub struct Tables {
    pub accounts: AccountTable,
    pub secrets: SecretTable,
    pub tokens: TokenTable,
    pub functions: HashMap<FunctionId, Function>,
    pub executions: HashMap<ExecutionId, Execution>,
    pub jobs: HashMap<JobId, Job>,
    pub runs: HashMap<RunId, Run>,
    /// Scheduler bookkeeping of each run (not part of the API shape).
    pub run_state: HashMap<RunId, RunState>,
    pub triggers: HashMap<TriggerId, TriggerRow>,
    pub firings: HashMap<FiringId, FiringRow>,
    /// The event outbox.
    pub events: HashMap<EventId, EventRow>,
}

/// A trigger with its sealed webhook secret.
#[derive(Debug, Clone)]
pub struct TriggerRow {
    pub trigger: Trigger,
    pub secret: Option<String>,
}

/// A firing with its lease.
#[derive(Debug, Clone)]
pub struct FiringRow {
    pub firing: Firing,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    /// Last change (retention of finished firings).
    pub updated_at: DateTime<Utc>,
}

/// An outbox event with its delivery state and lease.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub event: Event,
    pub delivered_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
}

/// A run's retry time and lease.
#[derive(Debug, Clone, Default)]
pub struct RunState {
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl Tables {
    /// Removes an account and, as `ON DELETE CASCADE` would, every row under it. Each
    /// domain that adds a table adds its cascade here.
    pub fn delete_account(&mut self, id: &AccountId) -> Option<Account> {
        let account = self.accounts.remove(id)?;
        self.secrets.remove_account(id);
        self.tokens.remove_account(id);
        self.events.retain(|_, e| e.event.account_id != *id);
        let functions: Vec<FunctionId> = self
            .functions
            .values()
            .filter(|f| f.account_id == *id)
            .map(|f| f.id)
            .collect();
        for function in functions {
            self.delete_function(&function);
        }
        Some(account)
    }

    /// Removes a function with its executions, jobs, runs, triggers and firings.
    pub fn delete_function(&mut self, id: &FunctionId) {
        self.functions.remove(id);
        self.executions.retain(|_, e| e.function_id != *id);
        let triggers: Vec<TriggerId> = self
            .triggers
            .values()
            .filter(|t| t.trigger.function_id == *id)
            .map(|t| t.trigger.id)
            .collect();
        for trigger in triggers {
            self.delete_trigger(&trigger);
        }
        let jobs: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.function_id == *id)
            .map(|j| j.id)
            .collect();
        for job in jobs {
            self.delete_job(&job);
        }
    }

    /// Adds an event to the outbox (undelivered).
    pub fn insert_event(&mut self, event: &Event) {
        self.events.insert(
            event.id,
            EventRow {
                event: event.clone(),
                delivered_at: None,
                lease_owner: None,
                lease_until: None,
            },
        );
    }

    /// Removes a trigger and its firings.
    pub fn delete_trigger(&mut self, id: &TriggerId) {
        self.triggers.remove(id);
        self.firings.retain(|_, f| f.firing.trigger_id != *id);
    }

    /// Removes a job and its runs.
    pub fn delete_job(&mut self, id: &JobId) {
        self.jobs.remove(id);
        let gone: Vec<RunId> = self
            .runs
            .values()
            .filter(|r| r.job_id == *id)
            .map(|r| r.id)
            .collect();
        for run in gone {
            self.runs.remove(&run);
            self.run_state.remove(&run);
        }
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
