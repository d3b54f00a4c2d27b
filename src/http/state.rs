//! What every handler can reach: a narrow handle per subsystem, health, metrics registry,
//! auth. Built once in `startup.rs` and shared by all HTTP workers.
//!
//! Each handle is a `dyn` bundle of the messages the edge may send that subsystem (see
//! `actors::supervisor::Ask`), so handlers name no actor type and a test can put any
//! implementation behind one.

use super::auth::Auth;
use actors::accounts::AccountsHandle;
use actors::automation::AutomationHandle;
use actors::functions::{FunctionsHandle, LimitMaxima};
use actors::gasbank::GasBankHandle;
use actors::health::Health;
use actors::oracle::OracleHandle;
use actors::pricefeeds::PriceFeedsHandle;
use actors::random::RandomHandle;
use actors::secrets::SecretsHandle;
use actors::triggers::TriggersHandle;
use std::sync::Arc;

pub struct AppState {
    /// Accounts and their API tokens.
    pub accounts: Arc<dyn AccountsHandle>,
    pub secrets: Arc<dyn SecretsHandle>,
    pub functions: Arc<dyn FunctionsHandle>,
    pub automation: Arc<dyn AutomationHandle>,
    pub triggers: Arc<dyn TriggersHandle>,
    pub pricefeeds: Arc<dyn PriceFeedsHandle>,
    pub oracle: Arc<dyn OracleHandle>,
    pub gasbank: Arc<dyn GasBankHandle>,
    pub random: Arc<dyn RandomHandle>,
    /// `AUTOMATION_MAX_ATTEMPTS` (1–20, checked at load): a job's `max_attempts` when the
    /// body names none.
    pub default_max_attempts: i32,
    /// Largest per-function limits (validation of function bodies).
    pub limit_maxima: LimitMaxima,
    pub health: Arc<Health>,
    pub registry: prometheus::Registry,
    pub auth: Auth,
    pub metrics_require_token: bool,
    /// For the readiness ping; `None` in memory mode.
    pub pool: Option<actors::store::PgPool>,
}
