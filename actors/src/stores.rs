//! The composition of every subsystem's store for one storage mode: built once at
//! start-up and handed to the subsystems. The only module that names every store.

use crate::accounts::tokens::{MemoryTokenStore, PgTokenStore, TokenStore};
use crate::accounts::{AccountStore, MemoryAccountStore, PgAccountStore};
use crate::automation::{JobStore, MemoryJobStore, PgJobStore, SchedulerStore};
use crate::events::{EventStore, MemoryEventStore, PgEventStore};
use crate::functions::{FunctionStore, MemoryFunctionStore, PgFunctionStore};
use crate::gasbank::{GasStore, MemoryGasStore, PgGasStore};
use crate::oracle::{MemoryOracleStore, OracleStore, PgOracleStore};
use crate::pricefeeds::{FeedStore, MemoryFeedStore, PgFeedStore};
use crate::random::{MemoryRandomStore, PgRandomStore, RandomStore};
use crate::secrets::{MemorySecretStore, PgSecretStore, SecretStore};
use crate::store::MemoryDb;
use crate::triggers::{FiringStore, MemoryTriggerStore, PgTriggerStore, TriggerStore};
use std::sync::Arc;

/// Every subsystem store, behind its trait.
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
    /// Trigger firings, seen by the background worker.
    pub firings: Arc<dyn FiringStore>,
    /// The event outbox.
    pub events: Arc<dyn EventStore>,
    pub feeds: Arc<dyn FeedStore>,
    pub oracle: Arc<dyn OracleStore>,
    pub gasbank: Arc<dyn GasStore>,
    /// The random counter and signing key.
    pub random: Arc<dyn RandomStore>,
    /// The pool in PostgreSQL mode, for readiness pings; `None` in memory mode.
    pub pool: Option<deadpool_postgres::Pool>,
}

impl Stores {
    /// `max_executions`: `MEMORY_MAX_EXECUTIONS`, the executions memory mode keeps.
    pub fn memory(max_executions: usize) -> Self {
        let db = Arc::new(MemoryDb::default());
        Self {
            accounts: Arc::new(MemoryAccountStore::new(db.clone())),
            secrets: Arc::new(MemorySecretStore::new(db.clone())),
            tokens: Arc::new(MemoryTokenStore::new(db.clone())),
            functions: Arc::new(
                MemoryFunctionStore::new(db.clone()).with_max_executions(max_executions),
            ),
            jobs: Arc::new(MemoryJobStore::new(db.clone())),
            scheduler: Arc::new(MemoryJobStore::new(db.clone())),
            triggers: Arc::new(MemoryTriggerStore::new(db.clone())),
            firings: Arc::new(MemoryTriggerStore::new(db.clone())),
            events: Arc::new(MemoryEventStore::new(db.clone())),
            feeds: Arc::new(MemoryFeedStore::new(db.clone())),
            oracle: Arc::new(MemoryOracleStore::new(db.clone())),
            gasbank: Arc::new(MemoryGasStore::new(db)),
            random: Arc::new(MemoryRandomStore::default()),
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
            events: Arc::new(PgEventStore::new(pool.clone())),
            feeds: Arc::new(PgFeedStore::new(pool.clone())),
            oracle: Arc::new(PgOracleStore::new(pool.clone())),
            gasbank: Arc::new(PgGasStore::new(pool.clone())),
            random: Arc::new(PgRandomStore::new(pool.clone())),
            pool: Some(pool),
        }
    }
}
