//! Storage back-ends. Memory mode keeps every domain's tables in one [`MemoryDb`] so a
//! delete can cascade across domains the way `ON DELETE CASCADE` does in PostgreSQL.
//! PostgreSQL mode shares one deadpool pool between the domain stores.

pub mod memory;
pub mod migrations;
pub mod postgres;

use crate::accounts::{AccountStore, MemoryAccountStore, PgAccountStore};
use crate::automation::{JobStore, MemoryJobStore, PgJobStore, SchedulerStore};
use crate::functions::{FunctionStore, MemoryFunctionStore, PgFunctionStore};
use crate::secrets::{MemorySecretStore, PgSecretStore, SecretStore};
use crate::tokens::{MemoryTokenStore, PgTokenStore, TokenStore};
use crate::triggers::{FiringStore, MemoryTriggerStore, PgTriggerStore, TriggerStore};
use std::sync::Arc;

pub use deadpool_postgres::Pool as PgPool;
pub use memory::MemoryDb;
pub use postgres::{connect, PgOptions};

/// Every domain store, behind its trait. Built once at start-up and handed to the actors.
#[derive(Clone)]
pub struct Stores {
    pub accounts: Arc<dyn AccountStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub tokens: Arc<dyn TokenStore>,
    pub functions: Arc<dyn FunctionStore>,
    pub jobs: Arc<dyn JobStore>,
    /// The same job tables, seen by the scheduler.
    pub scheduler: Arc<dyn SchedulerStore>,
    pub triggers: Arc<dyn TriggerStore>,
    /// Trigger firings and the event outbox, seen by the background workers.
    pub firings: Arc<dyn FiringStore>,
    /// The pool in PostgreSQL mode, for readiness pings; `None` in memory mode.
    pub pool: Option<deadpool_postgres::Pool>,
}

impl Stores {
    pub fn memory() -> Self {
        let db = Arc::new(MemoryDb::default());
        Self {
            accounts: Arc::new(MemoryAccountStore::new(db.clone())),
            secrets: Arc::new(MemorySecretStore::new(db.clone())),
            tokens: Arc::new(MemoryTokenStore::new(db.clone())),
            functions: Arc::new(MemoryFunctionStore::new(db.clone())),
            jobs: Arc::new(MemoryJobStore::new(db.clone())),
            scheduler: Arc::new(MemoryJobStore::new(db.clone())),
            triggers: Arc::new(MemoryTriggerStore::new(db.clone())),
            firings: Arc::new(MemoryTriggerStore::new(db)),
            pool: None,
        }
    }

    pub fn postgres(pool: deadpool_postgres::Pool) -> Self {
        Self {
            accounts: Arc::new(PgAccountStore::new(pool.clone())),
            secrets: Arc::new(PgSecretStore::new(pool.clone())),
            tokens: Arc::new(PgTokenStore::new(pool.clone())),
            functions: Arc::new(PgFunctionStore::new(pool.clone())),
            jobs: Arc::new(PgJobStore::new(pool.clone())),
            scheduler: Arc::new(PgJobStore::new(pool.clone())),
            triggers: Arc::new(PgTriggerStore::new(pool.clone())),
            firings: Arc::new(PgTriggerStore::new(pool.clone())),
            pool: Some(pool),
        }
    }
}
