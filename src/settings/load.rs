//! The layered loader: clap for flags (built from the settings table), the `config` crate
//! for defaults, the file and the overrides, then typed parsing with errors that name the
//! setting.

use super::table::{def, Def, Kind, TABLE};
use super::values;
use super::*;
use actors::automation::MAX_ATTEMPTS;
use clap::{Arg, ArgAction, ArgMatches};
use config::{Config, ConfigBuilder, FileFormat, ValueKind};
use std::collections::BTreeSet;
use std::ops::RangeInclusive;

/// What the process was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Serve,
    /// Apply migrations and exit (`--migrate-only`).
    MigrateOnly,
    /// Re-encrypt every stored secret under the current key and exit (`--rewrap-secrets`).
    RewrapSecrets,
}

#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: Command,
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `--help` or `--version`: print and exit 0.
    #[error("{0}")]
    Info(String),
    /// Bad flags or bad values: print and exit 2.
    #[error("{0}")]
    Invalid(String),
}

impl SettingsError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Info(_) => 0,
            Self::Invalid(_) => 2,
        }
    }
}

/// Encryption keys are 16, 24 or 32 bytes (AES-128-GCM, AES-192-GCM, XChaCha20-Poly1305).
const ENCRYPTION_KEY_SIZES: &[usize] = &[16, 24, 32];

fn invalid(def: &Def, reason: impl std::fmt::Display) -> SettingsError {
    SettingsError::Invalid(format!("invalid {}: {reason}", def.describe()))
}

fn cli() -> clap::Command {
    let mut cmd = clap::Command::new("appserver")
        .version(env!("CARGO_PKG_VERSION"))
        .about("service-layer: off-chain services for blockchain applications behind one HTTP API")
        .after_help(
            "Every setting can also come from its environment variable or a config file; \
             flags win over the environment, which wins over the file. \
             Key material (*_KEY settings) has no flag because process lists are visible. \
             See docs/configuration.md.",
        )
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("Config file (.toml, .yaml, .yml or .json) [env: CONFIG_FILE]"),
        )
        .arg(
            Arg::new("migrate-only")
                .long("migrate-only")
                .action(ArgAction::SetTrue)
                .help("Apply database migrations and exit (needs no API token)"),
        )
        .arg(
            Arg::new("rewrap-secrets")
                .long("rewrap-secrets")
                .action(ArgAction::SetTrue)
                .conflicts_with("migrate-only")
                .help(
                    "Re-encrypt every stored secret under SECRET_ENCRYPTION_KEY and exit; safe while \
                     servers run (PostgreSQL only, needs no API token)",
                ),
        );
    for d in TABLE {
        let Some(flag) = d.flag else { continue };
        let mut help = format!("{} [env: {}", d.help, d.env);
        for alias in d.env_aliases {
            help.push_str(&format!(", {alias}"));
        }
        help.push(']');
        if let Some(default) = d.default {
            help.push_str(&format!(" [default: {default}]"));
        }
        let mut arg = Arg::new(d.env).long(flag).help(help);
        arg = match d.kind {
            Kind::Bool => arg
                .value_name("BOOL")
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true"),
            Kind::Duration => arg.value_name("DURATION"),
            Kind::Size => arg.value_name("SIZE"),
            Kind::Int => arg.value_name("N"),
            Kind::List => arg.value_name("LIST"),
            Kind::Text | Kind::Secret | Kind::SecretList => arg.value_name("VALUE"),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Parses the command line and the environment into settings.
pub fn load<I, T>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, SettingsError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = cli()
        .try_get_matches_from(args)
        .map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                SettingsError::Info(e.render().to_string())
            }
            _ => SettingsError::Invalid(e.render().to_string()),
        })?;
    // An empty environment variable counts as unset (compose files often carry `X=`).
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let from_files = read_file_settings(&set)?;
    let env = |name: &str| from_files.get(name).cloned().or_else(|| set(name));
    let command = if matches.get_flag("migrate-only") {
        Command::MigrateOnly
    } else if matches.get_flag("rewrap-secrets") {
        Command::RewrapSecrets
    } else {
        Command::Serve
    };
    let file = matches
        .get_one::<String>("config")
        .cloned()
        .or_else(|| env("CONFIG_FILE"));
    let layers = Layers::build(&matches, &env, file.as_deref())?;
    let settings = layers.settings(command)?;
    Ok(Invocation { command, settings })
}

/// The settings that may also be given as `<NAME>_FILE` (CONTRACT.md §5): key material,
/// admin tokens and the DSN, for Kubernetes secret volumes and compose secrets; each with
/// whether it is a list.
fn file_settings() -> impl Iterator<Item = (&'static str, bool)> {
    TABLE
        .iter()
        .filter(|d| matches!(d.kind, Kind::Secret | Kind::SecretList) || d.env == "API_TOKENS")
        .flat_map(|d| {
            let list = matches!(d.kind, Kind::SecretList | Kind::List);
            std::iter::once(d.env)
                .chain(d.env_aliases.iter().copied())
                .map(move |name| (name, list))
        })
}

/// `<NAME>` → the trimmed content of the file `<NAME>_FILE` names. Both set, an
/// unreadable file or an empty one is a configuration error naming the variable.
fn read_file_settings(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<std::collections::HashMap<&'static str, String>, SettingsError> {
    let mut values = std::collections::HashMap::new();
    for (name, list) in file_settings() {
        let file_var = format!("{name}_FILE");
        let Some(path) = env(&file_var) else {
            continue;
        };
        if env(name).is_some() {
            return Err(SettingsError::Invalid(format!(
                "invalid {name}: set {name} or {file_var}, not both"
            )));
        }
        let text = std::fs::read_to_string(path.trim()).map_err(|e| {
            SettingsError::Invalid(format!("invalid {file_var}: cannot read {path:?}: {e}"))
        })?;
        let text = text.trim();
        if text.is_empty() {
            return Err(SettingsError::Invalid(format!(
                "invalid {file_var}: {path:?} is empty"
            )));
        }
        // A list in a file may also be one item per line (a token per line is how
        // secret stores write them); commas still work.
        let value = if list {
            text.lines().map(str::trim).collect::<Vec<_>>().join(",")
        } else {
            text.to_owned()
        };
        values.insert(name, value);
    }
    Ok(values)
}

/// The merged configuration plus what cannot be expressed as plain overrides.
struct Layers {
    cfg: Config,
    /// Admin tokens are the union of every source, not an override.
    api_tokens: Vec<String>,
}

fn file_format(path: &str) -> Result<FileFormat, SettingsError> {
    let ext = std::path::Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    match ext {
        "toml" => Ok(FileFormat::Toml),
        "yaml" | "yml" => Ok(FileFormat::Yaml),
        "json" => Ok(FileFormat::Json),
        _ => Err(SettingsError::Invalid(format!(
            "invalid CONFIG_FILE (--config): {path:?} must end in .toml, .yaml, .yml or .json"
        ))),
    }
}

fn config_error(e: config::ConfigError) -> SettingsError {
    SettingsError::Invalid(format!("invalid CONFIG_FILE (--config): {e}"))
}

/// Text of a config value: scalars as text, arrays as their items.
fn value_texts(def: &Def, value: config::Value) -> Result<Option<Vec<String>>, SettingsError> {
    match value.kind {
        ValueKind::Nil => Ok(None),
        ValueKind::Array(items) => {
            if !matches!(def.kind, Kind::List | Kind::SecretList) {
                return Err(invalid(def, "expected a single value, got a list"));
            }
            items
                .into_iter()
                .map(|v| v.into_string().map_err(|e| invalid(def, e)))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
        ValueKind::Table(_) => Err(invalid(def, "expected a value, got a table")),
        _ => value
            .into_string()
            .map(|s| Some(vec![s]))
            .map_err(|e| invalid(def, e)),
    }
}

impl Layers {
    fn build(
        matches: &ArgMatches,
        env: &dyn Fn(&str) -> Option<String>,
        file: Option<&str>,
    ) -> Result<Self, SettingsError> {
        let mut builder: ConfigBuilder<config::builder::DefaultState> = Config::builder();
        for d in TABLE {
            if let Some(default) = d.default {
                builder = builder
                    .set_default(d.path(), default)
                    .map_err(config_error)?;
            }
        }
        let tokens_def = def("API_TOKENS");
        let mut api_tokens = Vec::new();
        if let Some(path) = file {
            let format = file_format(path)?;
            let file_only = Config::builder()
                .add_source(config::File::new(path, format))
                .build()
                .map_err(config_error)?;
            reject_unknown_keys(&file_only)?;
            if let Ok(v) = file_only.get::<config::Value>(&tokens_def.path()) {
                for text in value_texts(tokens_def, v)?.unwrap_or_default() {
                    api_tokens.extend(values::list(&text));
                }
            }
            builder = builder.add_source(config::File::new(path, format));
        }
        for d in TABLE {
            if let Some(v) = env(d.env) {
                builder = builder.set_override(d.path(), v).map_err(config_error)?;
            }
        }
        for d in TABLE.iter().filter(|d| d.flag.is_some()) {
            if let Some(v) = matches
                .get_one::<String>(d.env)
                .filter(|v| !v.trim().is_empty())
            {
                builder = builder
                    .set_override(d.path(), v.clone())
                    .map_err(config_error)?;
            }
        }
        for name in std::iter::once(tokens_def.env).chain(tokens_def.env_aliases.iter().copied()) {
            api_tokens.extend(env(name).map(|v| values::list(&v)).unwrap_or_default());
        }
        if let Some(v) = matches.get_one::<String>(tokens_def.env) {
            api_tokens.extend(values::list(v));
        }
        let mut seen = BTreeSet::new();
        api_tokens.retain(|t| seen.insert(t.clone()));
        let cfg = builder.build().map_err(config_error)?;
        Ok(Self { cfg, api_tokens })
    }

    fn texts(&self, d: &Def) -> Result<Option<Vec<String>>, SettingsError> {
        match self.cfg.get::<config::Value>(&d.path()) {
            Ok(v) => value_texts(d, v),
            Err(config::ConfigError::NotFound(_)) => Ok(None),
            Err(e) => Err(invalid(d, e)),
        }
    }

    fn text(&self, env: &str) -> Result<Option<String>, SettingsError> {
        let d = def(env);
        Ok(self
            .texts(d)?
            .map(|v| v.join(","))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()))
    }

    fn parsed<T>(
        &self,
        env: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, SettingsError> {
        match self.text(env)? {
            Some(text) => parse(&text).map(Some).map_err(|e| invalid(def(env), e)),
            None => Ok(None),
        }
    }

    /// A setting that has a built-in default, so it is always present.
    fn with_default<T>(
        &self,
        env: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, SettingsError> {
        self.parsed(env, parse)?
            .ok_or_else(|| invalid(def(env), "must not be empty"))
    }

    fn bool(&self, env: &str) -> Result<bool, SettingsError> {
        self.with_default(env, values::boolean)
    }

    /// A duration that must be positive.
    fn interval(&self, env: &str) -> Result<Duration, SettingsError> {
        let d = self.with_default(env, values::duration)?;
        if d.is_zero() {
            return Err(invalid(def(env), "must be greater than 0"));
        }
        Ok(d)
    }

    /// A per-account (or per-trigger) quota; `0` means unlimited.
    fn quota(&self, env: &'static str) -> Result<actors::quota::Quota, SettingsError> {
        let n: u32 = self.int(env, 0)?;
        Ok(actors::quota::Quota::new(env, n))
    }

    /// A duration where `0` means "none".
    fn optional_duration(&self, env: &str) -> Result<Option<Duration>, SettingsError> {
        Ok(self.parsed(env, values::duration)?.filter(|d| !d.is_zero()))
    }

    fn int<T: TryFrom<u64>>(&self, env: &str, min: u64) -> Result<T, SettingsError> {
        let n = self.with_default(env, values::integer)?;
        self.bounded(env, n, min)
    }

    /// An integer that must lie in `range` (exit 2 outside it: nothing is clamped).
    fn int_in(&self, env: &str, range: RangeInclusive<i32>) -> Result<i32, SettingsError> {
        let n = self.with_default(env, values::integer)?;
        match i32::try_from(n) {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(invalid(
                def(env),
                format!("must be {}-{}", range.start(), range.end()),
            )),
        }
    }

    fn bounded<T: TryFrom<u64>>(&self, env: &str, n: u64, min: u64) -> Result<T, SettingsError> {
        if n < min {
            return Err(invalid(def(env), format!("must be at least {min}")));
        }
        T::try_from(n).map_err(|_| invalid(def(env), "too large"))
    }

    fn size(&self, env: &str) -> Result<u64, SettingsError> {
        let n = self.with_default(env, values::size)?;
        self.bounded(env, n, 1)
    }

    fn secret(&self, env: &str) -> Result<Option<SecretString>, SettingsError> {
        Ok(self.text(env)?.map(SecretString::from))
    }

    /// Key text decoded to bytes of one of `sizes` (§3.9).
    fn key(&self, env: &str, sizes: &[usize]) -> Result<Option<SecretSlice<u8>>, SettingsError> {
        Ok(self
            .parsed(env, |text| actors::crypto::parse_key_text(text, sizes))?
            .map(SecretSlice::from))
    }

    /// A comma-separated list of keys.
    fn keys(&self, env: &str, sizes: &[usize]) -> Result<Vec<SecretSlice<u8>>, SettingsError> {
        let Some(text) = self.text(env)? else {
            return Ok(Vec::new());
        };
        values::list(&text)
            .iter()
            .enumerate()
            .map(|(i, item)| {
                actors::crypto::parse_key_text(item, sizes)
                    .map(SecretSlice::from)
                    .map_err(|e| invalid(def(env), format!("key {}: {e}", i + 1)))
            })
            .collect()
    }

    fn url(&self, env: &str) -> Result<Option<String>, SettingsError> {
        self.parsed(env, values::http_url)
    }

    fn settings(&self, command: Command) -> Result<Settings, SettingsError> {
        let server = self.server()?;
        let auth = AuthSettings {
            api_tokens: self
                .api_tokens
                .iter()
                .cloned()
                .map(SecretString::from)
                .collect(),
            disabled: self.bool("AUTH_DISABLED")?,
            metrics_require_token: self.bool("METRICS_REQUIRE_TOKEN")?,
            failure_rps: self.int("AUTH_FAILURE_RPS", 1)?,
            failure_burst: self.int("AUTH_FAILURE_BURST", 1)?,
            negative_cache: self.interval("AUTH_NEGATIVE_CACHE")?,
        };
        if command == Command::Serve && auth.api_tokens.is_empty() && !auth.disabled {
            return Err(SettingsError::Invalid(
                "no API token configured: pass --api-tokens <t1,t2> or set API_TOKENS \
                 (--auth-disabled is for local development only)"
                    .to_owned(),
            ));
        }
        let dsn = self.secret("DATABASE_URL")?;
        let secrets = SecretsSettings {
            encryption_key: self.key("SECRET_ENCRYPTION_KEY", ENCRYPTION_KEY_SIZES)?,
            previous_keys: self.keys("SECRET_ENCRYPTION_KEY_PREVIOUS", ENCRYPTION_KEY_SIZES)?,
        };
        if command == Command::RewrapSecrets && dsn.is_none() {
            return Err(SettingsError::Invalid(
                "--rewrap-secrets needs PostgreSQL: set DATABASE_URL (memory mode keeps nothing to rewrap)".to_owned(),
            ));
        }
        if dsn.is_some() && command != Command::MigrateOnly && secrets.encryption_key.is_none() {
            return Err(SettingsError::Invalid(
                "SECRET_ENCRYPTION_KEY must be set when using PostgreSQL".to_owned(),
            ));
        }
        Ok(Settings {
            server,
            database: DatabaseSettings {
                dsn,
                max_connections: self.int("DATABASE_MAX_CONNECTIONS", 1)?,
                connect_timeout: self.interval("DATABASE_CONNECT_TIMEOUT")?,
                migrate: self.bool("MIGRATE")?,
            },
            auth,
            log: self.log()?,
            secrets,
            executor: self.executor()?,
            automation: AutomationSettings {
                tick: self.interval("AUTOMATION_TICK")?,
                max_attempts: self.int_in("AUTOMATION_MAX_ATTEMPTS", MAX_ATTEMPTS)?,
                retry_base: self.interval("AUTOMATION_RETRY_BASE")?,
                retry_max_delay: self.interval("AUTOMATION_RETRY_MAX_DELAY")?,
            },
            work: WorkSettings {
                lease: self.interval("WORK_LEASE")?,
                poll_interval: self.interval("WORK_POLL_INTERVAL")?,
            },
            pricefeed: PricefeedSettings {
                fetch_url: self.url("PRICEFEED_FETCH_URL")?,
                fetch_key: self.secret("PRICEFEED_FETCH_KEY")?,
                tick: self.interval("PRICEFEED_TICK")?,
                fetch_timeout: self.interval("PRICEFEED_FETCH_TIMEOUT")?,
                allow_private_sources: self.bool("PRICEFEED_ALLOW_PRIVATE_SOURCES")?,
            },
            oracle: ResolverSettings {
                resolver_url: self.url("ORACLE_RESOLVER_URL")?,
                resolver_key: self.secret("ORACLE_RESOLVER_KEY")?,
                poll_interval: self.interval("ORACLE_POLL_INTERVAL")?,
                max_attempts: self.int("ORACLE_MAX_ATTEMPTS", 1)?,
                ttl: self.optional_duration("ORACLE_TTL")?,
            },
            gasbank: ResolverSettings {
                resolver_url: self.url("GASBANK_RESOLVER_URL")?,
                resolver_key: self.secret("GASBANK_RESOLVER_KEY")?,
                poll_interval: self.interval("GASBANK_POLL_INTERVAL")?,
                max_attempts: self.int("GASBANK_MAX_ATTEMPTS", 1)?,
                ttl: self.optional_duration("GASBANK_TTL")?,
            },
            http_client: HttpClientSettings {
                timeout: self.interval("RESOLVER_TIMEOUT")?,
            },
            random: RandomSettings {
                signing_key: self.key("RANDOM_SIGNING_KEY", &[32])?,
            },
            supervisor: SupervisorSettings {
                max_restarts: self.int("SUPERVISOR_MAX_RESTARTS", 0)?,
                restart_window: self.interval("SUPERVISOR_RESTART_WINDOW")?,
            },
            quotas: actors::quota::Quotas {
                functions: self.quota("MAX_FUNCTIONS_PER_ACCOUNT")?,
                secrets: self.quota("MAX_SECRETS_PER_ACCOUNT")?,
                jobs: self.quota("MAX_JOBS_PER_ACCOUNT")?,
                triggers: self.quota("MAX_TRIGGERS_PER_ACCOUNT")?,
                feeds: self.quota("MAX_FEEDS_PER_ACCOUNT")?,
                oracle_sources: self.quota("MAX_ORACLE_SOURCES_PER_ACCOUNT")?,
                open_oracle_requests: self.quota("MAX_OPEN_ORACLE_REQUESTS_PER_ACCOUNT")?,
                pending_withdrawals: self.quota("MAX_PENDING_WITHDRAWALS_PER_ACCOUNT")?,
                pending_firings_per_trigger: self.quota("MAX_PENDING_FIRINGS_PER_TRIGGER")?,
            },
            retention: RetentionSettings {
                executions: self.optional_duration("EXECUTION_RETENTION")?,
                runs: self.optional_duration("RUN_RETENTION")?,
                snapshots: self.optional_duration("SNAPSHOT_RETENTION")?,
                oracle_requests: self.optional_duration("ORACLE_REQUEST_RETENTION")?,
                memory_max_executions: self.int("MEMORY_MAX_EXECUTIONS", 1)?,
            },
        })
    }

    fn server(&self) -> Result<ServerSettings, SettingsError> {
        let tls_cert = self.text("TLS_CERT_FILE")?;
        let tls_key = self.text("TLS_KEY_FILE")?;
        match (&tls_cert, &tls_key) {
            (Some(_), None) => {
                return Err(invalid(
                    def("TLS_KEY_FILE"),
                    "TLS_CERT_FILE is set; set both or neither",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    def("TLS_CERT_FILE"),
                    "TLS_KEY_FILE is set; set both or neither",
                ))
            }
            (Some(_), Some(_)) | (None, None) => {}
        }
        let rate_limit_rps: u32 = self.int("RATE_LIMIT_RPS", 0)?;
        let rate_limit_burst = match self.parsed("RATE_LIMIT_BURST", values::integer)? {
            Some(n) => self.bounded("RATE_LIMIT_BURST", n, 1)?,
            None => rate_limit_rps.saturating_mul(2),
        };
        Ok(ServerSettings {
            addr: self.with_default("LISTEN_ADDR", values::listen_addr)?,
            tls_cert,
            tls_key,
            body_limit: {
                let n = self.size("HTTP_BODY_LIMIT")?;
                self.bounded("HTTP_BODY_LIMIT", n, 1)?
            },
            shutdown_timeout: self.with_default("SHUTDOWN_TIMEOUT", values::duration)?,
            rate_limit_rps,
            rate_limit_burst,
        })
    }

    fn log(&self) -> Result<LogSettings, SettingsError> {
        let level = self.with_default("LOG_LEVEL", |text| {
            tracing_subscriber::EnvFilter::try_new(text)
                .map(|_| text.to_owned())
                .map_err(|e| format!("{e}"))
        })?;
        let format = self.with_default("LOG_FORMAT", |text| match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected text or json, got {other:?}")),
        })?;
        Ok(LogSettings { level, format })
    }

    fn executor(&self) -> Result<ExecutorSettings, SettingsError> {
        let mode = self.with_default("TEE_MODE", |text| {
            match text.to_ascii_lowercase().as_str() {
                "js" | "tee" => Ok(TeeMode::Js),
                "mock" | "disabled" | "off" => Ok(TeeMode::Mock),
                other => Err(format!(
                    "expected js, tee, mock, disabled or off, got {other:?}"
                )),
            }
        })?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool_size = match self.parsed("EXEC_POOL_SIZE", values::integer)? {
            Some(n) => self.bounded("EXEC_POOL_SIZE", n, 1)?,
            None => cpus,
        };
        let queue_size: usize = self.int("EXEC_QUEUE_SIZE", 0)?;
        let max_memory = self.size("EXEC_MAX_MEMORY")?;
        let worker_memory =
            match self.parsed("EXEC_WORKER_MEMORY", values::size)? {
                Some(n) if n <= max_memory => return Err(invalid(
                    def("EXEC_WORKER_MEMORY"),
                    "must be larger than EXEC_MAX_MEMORY (the worker needs room besides the heap)",
                )),
                Some(n) => n,
                None => max_memory.saturating_add(64 << 20),
            };
        let max_per_account = match self.parsed("EXEC_MAX_PER_ACCOUNT", values::integer)? {
            Some(n) => self.bounded("EXEC_MAX_PER_ACCOUNT", n, 1)?,
            None => ((pool_size + queue_size) / 2).max(1),
        };
        let settings = ExecutorSettings {
            mode,
            pool_size,
            queue_size,
            timeout: self.interval("EXEC_TIMEOUT")?,
            max_timeout: self.interval("EXEC_MAX_TIMEOUT")?,
            memory: self.size("EXEC_MEMORY")?,
            max_memory,
            output_limit: self.size("EXEC_OUTPUT_LIMIT")?,
            max_output_limit: self.size("EXEC_MAX_OUTPUT_LIMIT")?,
            log_lines: self.int("EXEC_LOG_LINES", 0)?,
            log_line_bytes: self.size("EXEC_LOG_LINE_BYTES")?,
            max_actions: self.int("EXEC_MAX_ACTIONS", 0)?,
            kill_grace: self.interval("EXEC_KILL_GRACE")?,
            worker_memory,
            max_per_account,
            worker_program: None,
        };
        let pairs = [
            ("EXEC_TIMEOUT", settings.timeout > settings.max_timeout),
            ("EXEC_MEMORY", settings.memory > settings.max_memory),
            (
                "EXEC_OUTPUT_LIMIT",
                settings.output_limit > settings.max_output_limit,
            ),
        ];
        for (env, too_big) in pairs {
            if too_big {
                return Err(invalid(
                    def(env),
                    format!("must not exceed {}", env.replace("EXEC_", "EXEC_MAX_")),
                ));
            }
        }
        Ok(settings)
    }
}

/// Unknown sections or keys in a config file are mistakes (a typo would otherwise be
/// silently ignored), so they stop start-up.
fn reject_unknown_keys(file: &Config) -> Result<(), SettingsError> {
    let tree = file
        .clone()
        .try_deserialize::<std::collections::BTreeMap<String, config::Value>>()
        .map_err(config_error)?;
    for (section, value) in tree {
        let known: Vec<&Def> = TABLE.iter().filter(|d| d.section == section).collect();
        if known.is_empty() {
            return Err(SettingsError::Invalid(format!(
                "invalid CONFIG_FILE (--config): unknown section {section:?}"
            )));
        }
        let table = value.into_table().map_err(|_| {
            SettingsError::Invalid(format!(
                "invalid CONFIG_FILE (--config): {section:?} must be a table"
            ))
        })?;
        for key in table.keys() {
            if !known.iter().any(|d| d.key == key) {
                return Err(SettingsError::Invalid(format!(
                    "invalid CONFIG_FILE (--config): unknown key \"{section}.{key}\""
                )));
            }
        }
    }
    Ok(())
}
