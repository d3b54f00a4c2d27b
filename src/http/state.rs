//! What every handler can reach: actor handles, health, metrics registry, auth.
//! Built once in `startup.rs` and shared by all HTTP workers.

use super::auth::Auth;
use actors::accounts::AccountsActor;
use actors::automation::AutomationActor;
use actors::functions::{FunctionsActor, LimitMaxima};
use actors::health::Health;
use actors::secrets::SecretsActor;
use actors::supervisor::ActorHandle;
use actors::triggers::TriggersActor;
use std::sync::Arc;

pub struct AppState {
    /// Accounts and their API tokens.
    pub accounts: ActorHandle<AccountsActor>,
    pub secrets: ActorHandle<SecretsActor>,
    pub functions: ActorHandle<FunctionsActor>,
    pub automation: ActorHandle<AutomationActor>,
    pub triggers: ActorHandle<TriggersActor>,
    /// `AUTOMATION_MAX_ATTEMPTS`: a job's `max_attempts` when the body names none.
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
