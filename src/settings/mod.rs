//! Typed settings. Layers, later wins: built-in defaults < config file (`--config` or
//! `CONFIG_FILE`) < environment < command-line flags. [`load`] is pure (arguments and an
//! environment lookup in, settings or an error out) so precedence is unit-testable.
//!
//! Every invalid value is an error naming the setting (`invalid LOG_FORMAT (--log-format,
//! log.format): …`) and the process exits with status 2. Credentials are wrapped in
//! [`SecretString`] or [`SecretSlice`], so `Debug` output, and therefore logs, never show
//! them.

mod load;
mod secret;
pub mod table;
pub mod values;

pub use load::{load, Command, Invocation, SettingsError};
pub use secret::{ExposeSecret, SecretSlice, SecretString};

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub secrets: SecretsSettings,
    pub executor: ExecutorSettings,
    pub automation: AutomationSettings,
    pub work: WorkSettings,
    pub pricefeed: PricefeedSettings,
    pub oracle: ResolverSettings,
    pub gasbank: ResolverSettings,
    pub http_client: HttpClientSettings,
    pub random: RandomSettings,
    pub supervisor: SupervisorSettings,
    pub quotas: actors::quota::Quotas,
    pub retention: RetentionSettings,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub addr: String,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub body_limit: usize,
    pub shutdown_timeout: Duration,
    pub rate_limit_rps: u32,
    pub rate_limit_burst: u32,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `None` selects memory mode.
    pub dsn: Option<SecretString>,
    pub max_connections: usize,
    pub connect_timeout: Duration,
    pub migrate: bool,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub api_tokens: Vec<SecretString>,
    pub disabled: bool,
    pub metrics_require_token: bool,
    /// Failed authentications per client address: steady rate and burst.
    pub failure_rps: u32,
    pub failure_burst: u32,
    /// How long an unknown account token is remembered as unknown.
    pub negative_cache: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A level or an `EnvFilter` directive list (validated at load).
    pub level: String,
    pub format: LogFormat,
}

/// Decoded key bytes (16, 24 or 32), validated at load.
#[derive(Debug, Clone)]
pub struct SecretsSettings {
    pub encryption_key: Option<SecretSlice<u8>>,
    pub previous_keys: Vec<SecretSlice<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeMode {
    /// Run JavaScript in the isolate pool.
    Js,
    /// No JavaScript: the mock executor echoes params.
    Mock,
}

#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    pub mode: TeeMode,
    pub pool_size: usize,
    pub queue_size: usize,
    pub timeout: Duration,
    pub max_timeout: Duration,
    pub memory: u64,
    pub max_memory: u64,
    pub output_limit: u64,
    pub max_output_limit: u64,
    pub log_lines: u32,
    pub log_line_bytes: u64,
    pub max_actions: u32,
    pub kill_grace: Duration,
    /// Address-space limit of a worker process, bytes.
    pub worker_memory: u64,
    pub max_per_account: usize,
    /// The binary started in worker mode. Not a setting: `None` is this process's own
    /// executable; the in-process tests, whose executable is the test harness, point it
    /// at the built `appserver`.
    pub worker_program: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AutomationSettings {
    pub tick: Duration,
    /// 1–20, checked at load.
    pub max_attempts: i32,
    pub retry_base: Duration,
    pub retry_max_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct WorkSettings {
    pub lease: Duration,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct PricefeedSettings {
    pub fetch_url: Option<String>,
    pub fetch_key: Option<SecretString>,
    pub tick: Duration,
    pub fetch_timeout: Duration,
    pub allow_private_sources: bool,
}

/// The oracle and gas bank resolvers share one shape.
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    /// `None` disables the background dispatcher/settler.
    pub resolver_url: Option<String>,
    pub resolver_key: Option<SecretString>,
    pub poll_interval: Duration,
    pub max_attempts: u32,
    /// `None` = requests never expire (`0` in the settings).
    pub ttl: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct HttpClientSettings {
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RandomSettings {
    /// A 32-byte Ed25519 seed, validated at load.
    pub signing_key: Option<SecretSlice<u8>>,
}

#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// `None`: kept forever.
    pub executions: Option<Duration>,
    pub runs: Option<Duration>,
    pub snapshots: Option<Duration>,
    pub oracle_requests: Option<Duration>,
    pub memory_max_executions: usize,
}

#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    pub max_restarts: u32,
    pub restart_window: Duration,
}

impl Settings {
    /// Admin tokens shorter than this draw a start-up warning.
    pub const SHORT_TOKEN: usize = 16;

    pub fn is_memory_mode(&self) -> bool {
        self.database.dsn.is_none()
    }
}
