//! Settings layering and validation through the public loader (pure: no process state).

use service_layer::settings::{
    load, Command, ExposeSecret, Invocation, LogFormat, SettingsError, TeeMode,
};
use std::collections::HashMap;
use std::time::Duration;

fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, SettingsError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut argv = vec!["appserver"];
    argv.extend_from_slice(args);
    load(argv, &|k| env.get(k).cloned())
}

fn err(args: &[&str], env: &[(&str, &str)]) -> String {
    match run(args, env) {
        Err(SettingsError::Invalid(msg)) => msg,
        other => panic!("expected an invalid-settings error, got {other:?}"),
    }
}

/// A config file in the temp dir, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(ext: &str, content: &str) -> Self {
        let path = std::env::temp_dir().join(format!("sl-settings-{}.{ext}", uuid::Uuid::new_v4()));
        std::fs::write(&path, content).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn defaults_match_the_contract() {
    let s = run(&["--api-tokens", "t"], &[]).unwrap();
    assert_eq!(s.command, Command::Serve);
    let s = s.settings;
    assert_eq!(s.server.addr, "0.0.0.0:8080");
    assert_eq!(s.server.body_limit, 1 << 20);
    assert_eq!(s.server.shutdown_timeout, Duration::from_secs(10));
    assert_eq!((s.server.rate_limit_rps, s.server.rate_limit_burst), (0, 0));
    assert!(s.database.dsn.is_none() && s.database.migrate);
    assert_eq!(s.database.max_connections, 10);
    assert_eq!(s.log.level, "info");
    assert_eq!(s.log.format, LogFormat::Text);
    assert_eq!(s.executor.mode, TeeMode::Js);
    assert_eq!(s.executor.queue_size, 64);
    assert_eq!(s.executor.memory, 64 << 20);
    assert_eq!(s.executor.max_output_limit, 1 << 20);
    assert_eq!(s.executor.log_line_bytes, 8 << 10);
    assert_eq!(s.automation.retry_max_delay, Duration::from_secs(60));
    assert_eq!(s.work.lease, Duration::from_secs(30));
    assert_eq!(s.oracle.ttl, Some(Duration::from_secs(600)));
    assert_eq!(s.gasbank.ttl, Some(Duration::from_secs(3600)));
    assert_eq!(s.supervisor.max_restarts, 5);
    assert!(s.executor.pool_size >= 1);
    assert_eq!(s.executor.kill_grace, Duration::from_millis(500));
    assert_eq!(s.executor.worker_memory, (256 + 64) << 20);
    assert_eq!(
        s.executor.max_per_account,
        (s.executor.pool_size + 64) / 2,
        "half of pool plus queue"
    );
    let s = run(
        &[
            "--api-tokens",
            "t",
            "--exec-pool-size",
            "2",
            "--exec-queue-size",
            "0",
        ],
        &[("EXEC_MAX_MEMORY", "100MiB")],
    )
    .unwrap()
    .settings;
    assert_eq!(s.executor.max_per_account, 1);
    assert_eq!(s.executor.worker_memory, 164 << 20);
}

#[test]
fn precedence_defaults_file_env_flags() {
    let file = TempFile::new(
        "toml",
        r#"
        [server]
        shutdown_timeout = "20s"
        body_limit = "2MiB"
        rate_limit_rps = 5

        [log]
        level = "warn"
        format = "json"

        [auth]
        api_tokens = ["file-token"]
        "#,
    );
    // File over defaults.
    let s = run(&["--config", file.path()], &[]).unwrap().settings;
    assert_eq!(s.server.shutdown_timeout, Duration::from_secs(20));
    assert_eq!(s.server.body_limit, 2 << 20);
    assert_eq!(
        (s.server.rate_limit_rps, s.server.rate_limit_burst),
        (5, 10)
    );
    assert_eq!(s.log.level, "warn");
    assert_eq!(s.log.format, LogFormat::Json);
    // Environment over the file (and CONFIG_FILE names the file).
    let s = run(
        &[],
        &[
            ("CONFIG_FILE", file.path()),
            ("LOG_LEVEL", "debug"),
            ("SHUTDOWN_TIMEOUT", "3s"),
        ],
    )
    .unwrap()
    .settings;
    assert_eq!(s.log.level, "debug");
    assert_eq!(s.server.shutdown_timeout, Duration::from_secs(3));
    assert_eq!(s.log.format, LogFormat::Json, "still from the file");
    // Flags over the environment.
    let s = run(
        &[
            "--config",
            file.path(),
            "--log-level",
            "error",
            "--log-format",
            "text",
        ],
        &[("LOG_LEVEL", "debug")],
    )
    .unwrap()
    .settings;
    assert_eq!(s.log.level, "error");
    assert_eq!(s.log.format, LogFormat::Text);
    // Admin tokens are the union of every source.
    let s = run(
        &["--config", file.path(), "--api-tokens", "flag-a,flag-b"],
        &[("API_TOKENS", "env-a"), ("API_TOKEN", "env-b")],
    )
    .unwrap()
    .settings;
    let tokens: Vec<&str> = s
        .auth
        .api_tokens
        .iter()
        .map(|t| t.expose_secret())
        .collect();
    assert_eq!(tokens, ["file-token", "env-a", "env-b", "flag-a", "flag-b"]);
}

#[test]
fn yaml_and_json_files() {
    let yaml = TempFile::new(
        "yaml",
        "executor:\n  mode: mock\n  pool_size: 3\nauth:\n  api_tokens: a,b\n",
    );
    let s = run(&["--config", yaml.path()], &[]).unwrap().settings;
    assert_eq!(s.executor.mode, TeeMode::Mock);
    assert_eq!(s.executor.pool_size, 3);
    assert_eq!(s.auth.api_tokens.len(), 2);
    let json = TempFile::new(
        "json",
        r#"{"database": {"migrate": false}, "auth": {"disabled": true}}"#,
    );
    let s = run(&["--config", json.path()], &[]).unwrap().settings;
    assert!(!s.database.migrate);
    assert!(s.auth.disabled);
}

#[test]
fn file_mistakes_are_rejected() {
    let typo = TempFile::new("toml", "[server]\nadress = \"0.0.0.0:1\"\n");
    assert_eq!(
        err(&["--config", typo.path(), "--api-tokens", "t"], &[]),
        "invalid CONFIG_FILE (--config): unknown key \"server.adress\""
    );
    let section = TempFile::new("toml", "[servers]\naddr = \"0.0.0.0:1\"\n");
    assert_eq!(
        err(&["--config", section.path(), "--api-tokens", "t"], &[]),
        "invalid CONFIG_FILE (--config): unknown section \"servers\""
    );
    let ini = TempFile::new("ini", "x=1");
    assert!(err(&["--config", ini.path(), "--api-tokens", "t"], &[])
        .contains("must end in .toml, .yaml, .yml or .json"));
    assert!(err(
        &[
            "--config",
            "/nonexistent/appserver.toml",
            "--api-tokens",
            "t"
        ],
        &[]
    )
    .starts_with("invalid CONFIG_FILE"));
}

#[test]
fn invalid_values_name_the_setting() {
    let t = ["--api-tokens", "t"];
    let with = |extra: &[&'static str]| {
        let mut args = t.to_vec();
        args.extend_from_slice(extra);
        err(&args, &[])
    };
    assert_eq!(
        with(&["--log-format", "xml"]),
        "invalid LOG_FORMAT (--log-format, log.format): expected text or json, got \"xml\""
    );
    assert_eq!(
        with(&["--http-body-limit", "1MB"]),
        "invalid HTTP_BODY_LIMIT (--http-body-limit, server.body_limit): unknown size unit \"MB\" in \"1MB\" (use bytes, KiB or MiB)"
    );
    assert!(with(&["--shutdown-timeout", "soon"])
        .starts_with("invalid SHUTDOWN_TIMEOUT (--shutdown-timeout, server.shutdown_timeout)"));
    assert!(with(&["--addr", "8080"]).starts_with("invalid LISTEN_ADDR (--addr, server.addr)"));
    assert!(with(&["--migrate=maybe"]).starts_with(
        "invalid MIGRATE (--migrate, database.migrate): expected true, false, 1 or 0"
    ));
    assert!(with(&["--tee-mode", "v8"]).starts_with("invalid TEE_MODE (--tee-mode, executor.mode)"));
    assert!(with(&["--exec-timeout", "90s"]).starts_with(
        "invalid EXEC_TIMEOUT (--exec-timeout, executor.timeout): must not exceed EXEC_MAX_TIMEOUT"
    ));
    assert!(with(&["--oracle-resolver-url", "ftp://x"]).starts_with("invalid ORACLE_RESOLVER_URL"));
    assert_eq!(
        with(&["--exec-worker-memory", "256MiB"]),
        "invalid EXEC_WORKER_MEMORY (--exec-worker-memory, executor.worker_memory): must be larger than EXEC_MAX_MEMORY (the worker needs room besides the heap)"
    );
    assert!(with(&["--exec-max-per-account", "0"]).ends_with("must be at least 1"));
    // The contract's range, enforced at load rather than clamped later.
    for outside in ["0", "21"] {
        assert_eq!(
            with(&["--automation-max-attempts", outside]),
            "invalid AUTOMATION_MAX_ATTEMPTS (--automation-max-attempts, automation.max_attempts): must be 1-20"
        );
    }
    assert_eq!(
        run(
            &["--api-tokens", "t", "--automation-max-attempts", "20"],
            &[]
        )
        .unwrap()
        .settings
        .automation
        .max_attempts,
        20
    );
    assert!(with(&["--exec-kill-grace", "0"]).ends_with("must be greater than 0"));
    assert!(with(&["--work-lease", "0"]).ends_with("must be greater than 0"));
    assert!(with(&["--tls-cert", "/c.pem"])
        .starts_with("invalid TLS_KEY_FILE (--tls-key, server.tls_key)"));
    assert!(with(&["--log-level", "info,[bad"])
        .starts_with("invalid LOG_LEVEL (--log-level, log.level)"));
    assert_eq!(
        err(&[], &[("API_TOKENS", "t"), ("EXEC_MEMORY", "big")]),
        "invalid EXEC_MEMORY (--exec-memory, executor.memory): expected a size such as 1048576, 256KiB or 1MiB, got \"big\""
    );
    // Key material has no flag, so its error names only the variable and file key.
    let file = TempFile::new("toml", "[secrets]\nencryption_key = [\"a\", \"b\"]\n");
    assert_eq!(
        err(&["--config", file.path(), "--api-tokens", "t"], &[]),
        "invalid SECRET_ENCRYPTION_KEY: expected a single value, got a list"
    );
}

#[test]
fn tokens_are_required_unless_auth_is_disabled_or_migrating() {
    assert_eq!(
        err(&[], &[]),
        "no API token configured: pass --api-tokens <t1,t2> or set API_TOKENS (--auth-disabled is for local development only)"
    );
    // Empty values count as unset.
    assert!(err(&[], &[("API_TOKENS", " , ")]).starts_with("no API token configured"));
    assert!(
        run(&["--auth-disabled"], &[])
            .unwrap()
            .settings
            .auth
            .disabled
    );
    assert!(
        run(&[], &[("AUTH_DISABLED", "1")])
            .unwrap()
            .settings
            .auth
            .disabled
    );
    assert_eq!(
        run(&["--migrate-only"], &[]).unwrap().command,
        Command::MigrateOnly
    );
}

#[test]
fn unknown_and_single_dash_flags_are_rejected() {
    assert!(matches!(
        run(&["-dsn", "postgres://x"], &[]),
        Err(SettingsError::Invalid(_))
    ));
    assert!(matches!(
        run(&["--no-such-flag"], &[]),
        Err(SettingsError::Invalid(_))
    ));
    match run(&["--help"], &[]) {
        Err(e @ SettingsError::Info(_)) => {
            assert_eq!(e.exit_code(), 0);
            let help = e.to_string();
            for flag in [
                "--addr",
                "--dsn",
                "--api-tokens",
                "--config",
                "--migrate-only",
                "--log-level",
                "[env: LOG_LEVEL]",
            ] {
                assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
            }
            assert!(
                !help.contains("--secret-encryption-key"),
                "key material has no flag"
            );
        }
        other => panic!("expected help, got {other:?}"),
    }
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let s = run(
        &[
            "--api-tokens",
            "super-secret-admin-token",
            "--dsn",
            "postgres://u:hunter2@db/x",
        ],
        &[
            ("SECRET_ENCRYPTION_KEY", "key-material-123-key-material-12"),
            ("ORACLE_RESOLVER_KEY", "resolver-secret"),
        ],
    )
    .unwrap()
    .settings;
    let debug = format!("{s:?}");
    for secret in [
        "super-secret-admin-token",
        "hunter2",
        "key-material",
        "resolver-secret",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked into Debug output");
    }
    assert!(debug.contains("[REDACTED]"));
    assert_eq!(
        s.database.dsn.unwrap().expose_secret(),
        "postgres://u:hunter2@db/x"
    );
}

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn shipped_config_files_load() {
    let defaults = run(&["--api-tokens", "t"], &[]).unwrap().settings;
    let from_file = run(
        &[
            "--api-tokens",
            "t",
            "--config",
            &format!("{ROOT}/config/default.toml"),
        ],
        &[],
    )
    .unwrap()
    .settings;
    // The defaults file restates the built-in defaults exactly.
    assert_eq!(format!("{defaults:?}"), format!("{from_file:?}"));
    run(
        &[
            "--api-tokens",
            "t",
            "--config",
            &format!("{ROOT}/config/example.toml"),
        ],
        &[],
    )
    .unwrap();
}

#[test]
fn every_setting_is_documented() {
    let docs = std::fs::read_to_string(format!("{ROOT}/docs/configuration.md")).unwrap();
    let example = std::fs::read_to_string(format!("{ROOT}/config/example.toml")).unwrap();
    for def in service_layer::settings::table::TABLE {
        assert!(
            docs.contains(&format!("`{}`", def.env)),
            "docs/configuration.md lacks {}",
            def.env
        );
        assert!(
            example.contains(&format!("# {} = ", def.key)),
            "config/example.toml lacks {}",
            def.path()
        );
    }
}

#[test]
fn key_material_is_parsed_at_load() {
    let t = ("API_TOKENS", "t");
    assert_eq!(
        err(&[], &[t, ("SECRET_ENCRYPTION_KEY", "hex:abcd")]),
        "invalid SECRET_ENCRYPTION_KEY: hex key decodes to 2 bytes; expected 16, 24 or 32"
    );
    assert_eq!(
        err(&[], &[t, ("SECRET_ENCRYPTION_KEY_PREVIOUS", "hex:00112233445566778899aabbccddeeff,short")]),
        "invalid SECRET_ENCRYPTION_KEY_PREVIOUS: key 2: unrecognised key text of 5 characters: use base64:<text>, \
         hex:<text>, 64 hex characters, 44 characters of padded base64, or 32 printable ASCII characters"
    );
    assert!(err(
        &[],
        &[
            t,
            ("RANDOM_SIGNING_KEY", "hex:00112233445566778899aabbccddeeff")
        ]
    )
    .starts_with("invalid RANDOM_SIGNING_KEY: hex key decodes to 16 bytes; expected 32"));
    let s = run(
        &[],
        &[
            t,
            (
                "SECRET_ENCRYPTION_KEY",
                "hex:00112233445566778899AABBCCDDEEFF",
            ),
        ],
    )
    .unwrap()
    .settings;
    assert_eq!(s.secrets.encryption_key.unwrap().expose_secret().len(), 16);
    // PostgreSQL needs a key (except to migrate); memory mode does not.
    assert_eq!(
        err(&["--dsn", "postgres://x@h/db"], &[t]),
        "SECRET_ENCRYPTION_KEY must be set when using PostgreSQL"
    );
    assert!(run(&["--dsn", "postgres://x@h/db", "--migrate-only"], &[]).is_ok());
    assert!(run(&[], &[t])
        .unwrap()
        .settings
        .secrets
        .encryption_key
        .is_none());
    // --rewrap-secrets is PostgreSQL-only and needs no API token.
    assert!(err(&["--rewrap-secrets"], &[]).starts_with("--rewrap-secrets needs PostgreSQL"));
    let rewrap = run(
        &["--rewrap-secrets", "--dsn", "postgres://x@h/db"],
        &[("SECRET_ENCRYPTION_KEY", &"k".repeat(32))],
    );
    assert_eq!(rewrap.unwrap().command, Command::RewrapSecrets);
}

/// `<NAME>_FILE` for key material, admin tokens and the DSN (CONTRACT.md §5): the file's
/// trimmed content is the value; both set, an unreadable or an empty file is exit 2.
#[test]
fn file_settings_read_secret_volumes() {
    let dsn = TempFile::new("txt", "  postgres://u@db:5432/app\n");
    // One per line or comma-separated: both are lists.
    let tokens = TempFile::new(
        "txt",
        "file-token-0123456789,second-token-0123456\r\nthird-token-01234567\n",
    );
    let key = TempFile::new("txt", &format!("hex:{}\n", "ab".repeat(32)));
    let s = run(
        &[],
        &[
            ("DATABASE_URL_FILE", dsn.path()),
            ("API_TOKENS_FILE", tokens.path()),
            ("API_TOKEN", "env-token-0123456789"),
            ("SECRET_ENCRYPTION_KEY_FILE", key.path()),
            ("ORACLE_RESOLVER_KEY_FILE", key.path()),
        ],
    )
    .unwrap()
    .settings;
    assert_eq!(
        s.database.dsn.as_ref().unwrap().expose_secret(),
        "postgres://u@db:5432/app"
    );
    let mut tokens_seen: Vec<&str> = s
        .auth
        .api_tokens
        .iter()
        .map(|t| t.expose_secret())
        .collect();
    tokens_seen.sort_unstable();
    assert_eq!(
        tokens_seen,
        [
            "env-token-0123456789",
            "file-token-0123456789",
            "second-token-0123456",
            "third-token-01234567"
        ]
    );
    assert_eq!(
        s.secrets.encryption_key.as_ref().unwrap().expose_secret(),
        [0xab; 32].as_slice()
    );
    assert_eq!(
        s.oracle.resolver_key.as_ref().unwrap().expose_secret(),
        format!("hex:{}", "ab".repeat(32))
    );
    let t = ("API_TOKENS", "token-0123456789abcdef");
    assert_eq!(
        err(
            &[],
            &[
                t,
                ("DATABASE_URL", "postgres://x"),
                ("DATABASE_URL_FILE", dsn.path())
            ]
        ),
        "invalid DATABASE_URL: set DATABASE_URL or DATABASE_URL_FILE, not both"
    );
    assert!(
        err(&[], &[t, ("RANDOM_SIGNING_KEY_FILE", "/nonexistent/key")])
            .starts_with("invalid RANDOM_SIGNING_KEY_FILE: cannot read \"/nonexistent/key\": ")
    );
    let empty = TempFile::new("txt", " \n");
    assert_eq!(
        err(&[], &[t, ("GASBANK_RESOLVER_KEY_FILE", empty.path())]),
        format!(
            "invalid GASBANK_RESOLVER_KEY_FILE: {:?} is empty",
            empty.path()
        )
    );
    // A file's content is checked like the variable's.
    let short = TempFile::new("txt", "hex:0011");
    assert_eq!(
        err(&[], &[t, ("SECRET_ENCRYPTION_KEY_FILE", short.path())]),
        "invalid SECRET_ENCRYPTION_KEY: hex key decodes to 2 bytes; expected 16, 24 or 32"
    );
}
