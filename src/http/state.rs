//! What every handler can reach: actor handles, health, metrics registry, auth.
//! Built once in `startup.rs` and shared by all HTTP workers.

use super::auth::Auth;
use actors::accounts::AccountsActor;
use actors::health::Health;
use actors::supervisor::ActorHandle;
use std::sync::Arc;

pub struct AppState {
    pub accounts: ActorHandle<AccountsActor>,
    pub health: Arc<Health>,
    pub registry: prometheus::Registry,
    pub auth: Auth,
    /// For the readiness ping; `None` in memory mode.
    pub pool: Option<actors::store::PgPool>,
}
