//! Every setting of the contract (§5) in one table. The table drives the built-in defaults,
//! the environment names, the command-line flags and their `--help` text, the config-file
//! keys (and the rejection of unknown ones), and the wording of every error, so those can
//! never drift apart.

/// How a setting's text is read; also decides how its flag takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// Key material or credentials: redacted everywhere, and never a flag.
    Secret,
    Bool,
    Duration,
    Size,
    Int,
    /// Comma-separated in text; an array in config files.
    List,
    /// A list of secrets (previous encryption keys): a list, and never a flag.
    SecretList,
}

#[derive(Debug)]
pub struct Def {
    /// Environment variable, also the name errors use.
    pub env: &'static str,
    /// Extra environment variables read into the same setting (their values are merged).
    pub env_aliases: &'static [&'static str],
    pub section: &'static str,
    pub key: &'static str,
    /// Long flag without dashes; `None` for key material (process lists are visible).
    pub flag: Option<&'static str>,
    /// Built-in default as text; `None` means unset.
    pub default: Option<&'static str>,
    pub kind: Kind,
    pub help: &'static str,
}

impl Def {
    /// `server.addr`: the key in the config tree.
    pub fn path(&self) -> String {
        format!("{}.{}", self.section, self.key)
    }

    /// `LOG_FORMAT (--log-format, log.format)`: how errors name the setting. Key material
    /// has no flag and is named by its variable alone (`invalid SECRET_ENCRYPTION_KEY: …`).
    pub fn describe(&self) -> String {
        match self.flag {
            Some(flag) => format!("{} (--{flag}, {})", self.env, self.path()),
            None => self.env.to_owned(),
        }
    }
}

macro_rules! def {
    ($env:literal, $section:literal . $key:literal, $flag:expr, $default:expr, $kind:ident, $help:literal) => {
        def!($env, [], $section.$key, $flag, $default, $kind, $help)
    };
    ($env:literal, [$($alias:literal),*], $section:literal . $key:literal, $flag:expr, $default:expr, $kind:ident, $help:literal) => {
        Def {
            env: $env,
            env_aliases: &[$($alias),*],
            section: $section,
            key: $key,
            flag: $flag,
            default: $default,
            kind: Kind::$kind,
            help: $help,
        }
    };
}

/// The settings, grouped by config-file section.
pub static TABLE: &[Def] = &[
    // server
    def!("LISTEN_ADDR", "server"."addr", Some("addr"), Some("0.0.0.0:8080"), Text, "Address and port the HTTP server listens on"),
    def!("TLS_CERT_FILE", "server"."tls_cert", Some("tls-cert"), None, Text, "PEM certificate chain: HTTPS is served when it and TLS_KEY_FILE are set"),
    def!("TLS_KEY_FILE", "server"."tls_key", Some("tls-key"), None, Text, "PEM private key (PKCS#8, PKCS#1 or SEC1) for HTTPS, with TLS_CERT_FILE"),
    def!("HTTP_BODY_LIMIT", "server"."body_limit", Some("http-body-limit"), Some("1MiB"), Size, "Largest request body accepted (bytes, KiB or MiB)"),
    def!("SHUTDOWN_TIMEOUT", "server"."shutdown_timeout", Some("shutdown-timeout"), Some("10s"), Duration, "How long in-flight requests may run after SIGTERM/SIGINT"),
    def!("RATE_LIMIT_RPS", "server"."rate_limit_rps", Some("rate-limit-rps"), Some("0"), Int, "Requests per second allowed per credential (0 = no limit)"),
    def!("RATE_LIMIT_BURST", "server"."rate_limit_burst", Some("rate-limit-burst"), None, Int, "Burst size per credential (default: twice the rate)"),
    // database
    def!("DATABASE_URL", "database"."dsn", Some("dsn"), None, Secret, "PostgreSQL DSN; unset = in-memory mode (nothing survives a restart)"),
    def!("DATABASE_MAX_CONNECTIONS", "database"."max_connections", Some("database-max-connections"), Some("10"), Int, "Connection pool size"),
    def!("DATABASE_CONNECT_TIMEOUT", "database"."connect_timeout", Some("database-connect-timeout"), Some("10s"), Duration, "How long start-up waits for the database before exiting with status 1"),
    def!("MIGRATE", "database"."migrate", Some("migrate"), Some("true"), Bool, "Apply pending migrations at start-up (--migrate=false to skip)"),
    // auth
    def!("API_TOKENS", ["API_TOKEN"], "auth"."api_tokens", Some("api-tokens"), None, List, "Admin bearer tokens, comma-separated (merged with API_TOKEN)"),
    def!("AUTH_DISABLED", "auth"."disabled", Some("auth-disabled"), Some("false"), Bool, "Treat every request as admin: local development only"),
    def!("METRICS_REQUIRE_TOKEN", "auth"."metrics_require_token", Some("metrics-require-token"), Some("false"), Bool, "Require an admin token for /metrics"),
    def!("AUTH_FAILURE_RPS", "auth"."failure_rps", Some("auth-failure-rps"), Some("5"), Int, "Failed authentications per second allowed per client address after the burst"),
    def!("AUTH_FAILURE_BURST", "auth"."failure_burst", Some("auth-failure-burst"), Some("20"), Int, "Failed authentications per client address before throttling (429)"),
    def!("AUTH_NEGATIVE_CACHE", "auth"."negative_cache", Some("auth-negative-cache"), Some("5s"), Duration, "How long an unknown token is remembered as unknown (no database lookup)"),
    // log
    def!("LOG_LEVEL", "log"."level", Some("log-level"), Some("info"), Text, "Log level or filter, e.g. info or info,actors=debug"),
    def!("LOG_FORMAT", "log"."format", Some("log-format"), Some("text"), Text, "Log format: text or json"),
    // secrets
    def!("SECRET_ENCRYPTION_KEY", "secrets"."encryption_key", None, None, Secret, "Key that encrypts secrets (required with PostgreSQL)"),
    def!("SECRET_ENCRYPTION_KEY_PREVIOUS", "secrets"."previous_keys", None, None, SecretList, "Earlier keys, comma-separated, still accepted for decryption"),
    // executor
    def!("TEE_MODE", "executor"."mode", Some("tee-mode"), Some("js"), Text, "js (or tee) runs JavaScript; mock, disabled or off use the mock executor"),
    def!("EXEC_POOL_SIZE", "executor"."pool_size", Some("exec-pool-size"), None, Int, "JavaScript workers (default: number of CPUs)"),
    def!("EXEC_QUEUE_SIZE", "executor"."queue_size", Some("exec-queue-size"), Some("64"), Int, "Executions waiting for a worker before 503 executor_busy"),
    def!("EXEC_TIMEOUT", "executor"."timeout", Some("exec-timeout"), Some("5s"), Duration, "Default execution deadline"),
    def!("EXEC_MAX_TIMEOUT", "executor"."max_timeout", Some("exec-max-timeout"), Some("60s"), Duration, "Largest per-function deadline"),
    def!("EXEC_MEMORY", "executor"."memory", Some("exec-memory"), Some("64MiB"), Size, "Default JavaScript heap limit"),
    def!("EXEC_MAX_MEMORY", "executor"."max_memory", Some("exec-max-memory"), Some("256MiB"), Size, "Largest per-function heap limit"),
    def!("EXEC_OUTPUT_LIMIT", "executor"."output_limit", Some("exec-output-limit"), Some("256KiB"), Size, "Default output size limit"),
    def!("EXEC_MAX_OUTPUT_LIMIT", "executor"."max_output_limit", Some("exec-max-output-limit"), Some("1MiB"), Size, "Largest per-function output limit"),
    def!("EXEC_LOG_LINES", "executor"."log_lines", Some("exec-log-lines"), Some("100"), Int, "Log entries kept per execution"),
    def!("EXEC_LOG_LINE_BYTES", "executor"."log_line_bytes", Some("exec-log-line-bytes"), Some("8KiB"), Size, "Longest log entry kept"),
    def!("EXEC_MAX_ACTIONS", "executor"."max_actions", Some("exec-max-actions"), Some("32"), Int, "Devpack actions allowed per execution"),
    def!("EXEC_KILL_GRACE", "executor"."kill_grace", Some("exec-kill-grace"), Some("500ms"), Duration, "How long past its deadline a run may take before its worker process is killed"),
    def!("EXEC_WORKER_MEMORY", "executor"."worker_memory", Some("exec-worker-memory"), None, Size, "Address-space limit of a worker process (default: EXEC_MAX_MEMORY + 64MiB)"),
    def!("EXEC_MAX_PER_ACCOUNT", "executor"."max_per_account", Some("exec-max-per-account"), None, Int, "Runs one account may have running or queued (default: half of pool + queue)"),
    // automation
    def!("AUTOMATION_TICK", "automation"."tick", Some("automation-tick"), Some("1s"), Duration, "How often the scheduler looks for due jobs"),
    def!("AUTOMATION_MAX_ATTEMPTS", "automation"."max_attempts", Some("automation-max-attempts"), Some("5"), Int, "Default attempts per job run (1-20)"),
    def!("AUTOMATION_RETRY_BASE", "automation"."retry_base", Some("automation-retry-base"), Some("1s"), Duration, "First retry delay (doubles per attempt)"),
    def!("AUTOMATION_RETRY_MAX_DELAY", "automation"."retry_max_delay", Some("automation-retry-max-delay"), Some("60s"), Duration, "Longest retry delay"),
    // work
    def!("WORK_LEASE", "work"."lease", Some("work-lease"), Some("30s"), Duration, "Lease on claimed work; a dead replica's work returns after it"),
    def!("WORK_POLL_INTERVAL", "work"."poll_interval", Some("work-poll-interval"), Some("1s"), Duration, "How often events and trigger firings are polled"),
    // pricefeed
    def!("PRICEFEED_FETCH_URL", "pricefeed"."fetch_url", Some("pricefeed-fetch-url"), None, Text, "Default price source for feeds without their own"),
    def!("PRICEFEED_FETCH_KEY", "pricefeed"."fetch_key", None, None, Secret, "Bearer token sent only to PRICEFEED_FETCH_URL"),
    def!("PRICEFEED_TICK", "pricefeed"."tick", Some("pricefeed-tick"), Some("1s"), Duration, "How often due feeds are checked"),
    def!("PRICEFEED_FETCH_TIMEOUT", "pricefeed"."fetch_timeout", Some("pricefeed-fetch-timeout"), Some("5s"), Duration, "Timeout of one price fetch"),
    def!("PRICEFEED_ALLOW_PRIVATE_SOURCES", "pricefeed"."allow_private_sources", Some("pricefeed-allow-private-sources"), Some("false"), Bool, "Allow feed sources on loopback or private networks"),
    // oracle
    def!("ORACLE_RESOLVER_URL", "oracle"."resolver_url", Some("oracle-resolver-url"), None, Text, "Oracle resolver; unset = dispatcher disabled"),
    def!("ORACLE_RESOLVER_KEY", "oracle"."resolver_key", None, None, Secret, "Bearer token for the oracle resolver"),
    def!("ORACLE_POLL_INTERVAL", "oracle"."poll_interval", Some("oracle-poll-interval"), Some("2s"), Duration, "How often due oracle requests are claimed"),
    def!("ORACLE_MAX_ATTEMPTS", "oracle"."max_attempts", Some("oracle-max-attempts"), Some("10"), Int, "Resolver calls before a request gives up"),
    def!("ORACLE_TTL", "oracle"."ttl", Some("oracle-ttl"), Some("10m"), Duration, "Age at which an unanswered request fails (0 = never)"),
    // gasbank
    def!("GASBANK_RESOLVER_URL", "gasbank"."resolver_url", Some("gasbank-resolver-url"), None, Text, "Withdrawal resolver; unset = settler disabled"),
    def!("GASBANK_RESOLVER_KEY", "gasbank"."resolver_key", None, None, Secret, "Bearer token for the gas bank resolver"),
    def!("GASBANK_POLL_INTERVAL", "gasbank"."poll_interval", Some("gasbank-poll-interval"), Some("5s"), Duration, "How often pending withdrawals are claimed"),
    def!("GASBANK_MAX_ATTEMPTS", "gasbank"."max_attempts", Some("gasbank-max-attempts"), Some("30"), Int, "Resolver calls before a withdrawal fails"),
    def!("GASBANK_TTL", "gasbank"."ttl", Some("gasbank-ttl"), Some("1h"), Duration, "Age at which an unsettled withdrawal fails (0 = never)"),
    // http_client
    def!("RESOLVER_TIMEOUT", "http_client"."timeout", Some("resolver-timeout"), Some("10s"), Duration, "Timeout of outbound resolver calls"),
    // random
    def!("RANDOM_SIGNING_KEY", "random"."signing_key", None, None, Secret, "Ed25519 seed signing random numbers (default: generated)"),
    // quotas
    def!("MAX_FUNCTIONS_PER_ACCOUNT", "quotas"."functions", Some("max-functions-per-account"), Some("1000"), Int, "Functions per account (0 = unlimited)"),
    def!("MAX_SECRETS_PER_ACCOUNT", "quotas"."secrets", Some("max-secrets-per-account"), Some("1000"), Int, "Secrets per account (0 = unlimited)"),
    def!("MAX_JOBS_PER_ACCOUNT", "quotas"."jobs", Some("max-jobs-per-account"), Some("1000"), Int, "Automation jobs per account (0 = unlimited)"),
    def!("MAX_TRIGGERS_PER_ACCOUNT", "quotas"."triggers", Some("max-triggers-per-account"), Some("1000"), Int, "Triggers per account (0 = unlimited)"),
    def!("MAX_FEEDS_PER_ACCOUNT", "quotas"."feeds", Some("max-feeds-per-account"), Some("1000"), Int, "Price feeds per account (0 = unlimited)"),
    def!("MAX_ORACLE_SOURCES_PER_ACCOUNT", "quotas"."oracle_sources", Some("max-oracle-sources-per-account"), Some("1000"), Int, "Oracle data sources per account (0 = unlimited)"),
    def!("MAX_OPEN_ORACLE_REQUESTS_PER_ACCOUNT", "quotas"."open_oracle_requests", Some("max-open-oracle-requests-per-account"), Some("1000"), Int, "Pending or running oracle requests per account (0 = unlimited)"),
    def!("MAX_PENDING_WITHDRAWALS_PER_ACCOUNT", "quotas"."pending_withdrawals", Some("max-pending-withdrawals-per-account"), Some("1000"), Int, "Pending withdrawals per account (0 = unlimited)"),
    def!("MAX_PENDING_FIRINGS_PER_TRIGGER", "quotas"."pending_firings_per_trigger", Some("max-pending-firings-per-trigger"), Some("1000"), Int, "Firings waiting to run per trigger; webhooks beyond it get 429 (0 = unlimited)"),
    // retention
    def!("EXECUTION_RETENTION", "retention"."executions", Some("execution-retention"), Some("30d"), Duration, "Finished executions older than this are deleted (0 = kept forever)"),
    def!("RUN_RETENTION", "retention"."runs", Some("run-retention"), Some("30d"), Duration, "Finished job runs older than this are deleted (0 = kept forever)"),
    def!("SNAPSHOT_RETENTION", "retention"."snapshots", Some("snapshot-retention"), Some("30d"), Duration, "Price feed snapshots collected longer ago than this are deleted, each feed's latest kept (0 = kept forever)"),
    def!("ORACLE_REQUEST_RETENTION", "retention"."oracle_requests", Some("oracle-request-retention"), Some("30d"), Duration, "Oracle requests finished longer ago than this are deleted (0 = kept forever)"),
    def!("MEMORY_MAX_EXECUTIONS", "retention"."memory_max_executions", Some("memory-max-executions"), Some("100000"), Int, "Memory mode: most executions kept, oldest deleted first"),
    // supervisor
    def!("SUPERVISOR_MAX_RESTARTS", "supervisor"."max_restarts", Some("supervisor-max-restarts"), Some("5"), Int, "Restarts within the window before an actor is marked failed"),
    def!("SUPERVISOR_RESTART_WINDOW", "supervisor"."restart_window", Some("supervisor-restart-window"), Some("60s"), Duration, "Window for counting restarts"),
];

/// Looks a setting up by its environment name.
pub fn def(env: &str) -> &'static Def {
    TABLE
        .iter()
        .find(|d| d.env == env)
        .unwrap_or_else(|| unreachable_setting(env))
}

#[cold]
fn unreachable_setting(env: &str) -> ! {
    // Only reachable through a typo in this crate's own code; the tests cover every name.
    panic!("setting {env} is not in the settings table")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_flags_and_keys_are_unique() {
        let mut seen = HashSet::new();
        for d in TABLE {
            assert!(seen.insert(d.env), "duplicate env {}", d.env);
            assert!(
                seen.insert(Box::leak(d.path().into_boxed_str())),
                "duplicate key {}",
                d.path()
            );
            if let Some(flag) = d.flag {
                assert!(seen.insert(flag), "duplicate flag {flag}");
            }
            let secret = matches!(d.kind, Kind::Secret | Kind::SecretList);
            assert!(!secret || d.flag.is_none() || d.env == "DATABASE_URL");
        }
    }
}
