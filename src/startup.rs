//! Wiring: stores (memory or PostgreSQL with migrations), the supervisor (its actors are
//! registered by `subsystems.rs`), metrics, and the HTTP server. [`Application::build`] binds the listener (port 0 in
//! tests) and [`Application::run_until_stopped`] serves until SIGTERM/SIGINT (or the
//! test trigger), then shuts down in order: readiness 503 → listener closed and
//! in-flight requests drained (up to `SHUTDOWN_TIMEOUT`) → actors stopped in reverse
//! start order.

use crate::error::StartupError;
use crate::http::{self, auth::Auth, extract::BodyLimit, request::Inflight, state::AppState};
use crate::settings::{Command, ExposeSecret, Invocation, Settings};
use crate::subsystems;
use actix::{Actor, Addr, Arbiter};
use actix_web::middleware::from_fn;
use actix_web::middleware::ErrorHandlers;
use actix_web::{web, App, HttpServer};
use actix_web_prom::{ActixMetricsConfiguration, LabelsConfiguration, PrometheusMetricsBuilder};
use actors::accounts::AccountsActor;
use actors::crypto::{Key, KeyRing};
use actors::health::{Health, Phase};
use actors::metrics::ActorMetrics;
use actors::secrets::{SecretsActor, SecretsService};
use actors::store::postgres::ConnectError;
use actors::store::{migrations, PgOptions};
use actors::stores::Stores;
use actors::supervisor::{ActorHandle, RestartPolicy, Shutdown, Supervisor, WaitStarted};
use actors::triggers::TriggersService;
use actors::SystemClock;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Runs what the command line asked for and returns the exit status.
pub async fn run(invocation: Invocation) -> u8 {
    let result = match invocation.command {
        Command::Serve => match Application::build(invocation.settings).await {
            Ok(app) => app.run_until_stopped().await,
            Err(e) => Err(e),
        },
        Command::MigrateOnly => migrate_only(&invocation.settings).await,
        Command::RewrapSecrets => rewrap_secrets(&invocation.settings).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "appserver stopped with an error");
            eprintln!("appserver: {e:#}");
            e.exit_code()
        }
    }
}

async fn connect(settings: &Settings, dsn: &str) -> Result<actors::store::PgPool, StartupError> {
    let options = PgOptions {
        max_connections: settings.database.max_connections,
        connect_timeout: settings.database.connect_timeout,
    };
    actors::store::connect(dsn, &options)
        .await
        .map_err(|e| match e {
            ConnectError::InvalidDsn(_) => StartupError::Config(e.to_string()),
            ConnectError::Unreachable { .. } => StartupError::Runtime(anyhow::Error::new(e)),
        })
}

async fn migrate(pool: &actors::store::PgPool) -> Result<Vec<String>, StartupError> {
    let report = migrations::run(pool).await?;
    for name in &report.applied {
        tracing::info!(migration = %name, "migration applied");
    }
    Ok(report.applied)
}

/// `--migrate-only`: apply migrations and exit.
async fn migrate_only(settings: &Settings) -> Result<(), StartupError> {
    let Some(dsn) = &settings.database.dsn else {
        println!("nothing to migrate: memory mode (DATABASE_URL is not set)");
        return Ok(());
    };
    let pool = connect(settings, dsn.expose_secret()).await?;
    let applied = migrate(&pool).await?;
    println!(
        "applied {} migration(s){}; the database is up to date ({} known)",
        applied.len(),
        if applied.is_empty() {
            String::new()
        } else {
            format!(": {}", applied.join(", "))
        },
        migrations::embedded().len()
    );
    Ok(())
}

/// The key ring from the settings; in memory mode without a key, a random per-process key.
fn key_ring(settings: &Settings) -> Result<KeyRing, StartupError> {
    let previous = settings
        .secrets
        .previous_keys
        .iter()
        .map(|k| Key::from_bytes(k.expose_secret()).map_err(StartupError::Config))
        .collect::<Result<Vec<_>, _>>()?;
    let current = match &settings.secrets.encryption_key {
        Some(key) => Key::from_bytes(key.expose_secret()).map_err(StartupError::Config)?,
        None => {
            tracing::warn!("SECRET_ENCRYPTION_KEY is not set: secrets are encrypted with a random key that lives only as long as this process");
            Key::generate()
        }
    };
    Ok(KeyRing::new(current, previous))
}

/// `--rewrap-secrets`: re-encrypt every secret version, webhook secret and the random
/// signing key under the current key.
async fn rewrap_secrets(settings: &Settings) -> Result<(), StartupError> {
    let Some(dsn) = &settings.database.dsn else {
        return Err(StartupError::Config(
            "--rewrap-secrets needs PostgreSQL (DATABASE_URL)".to_owned(),
        ));
    };
    let keys = Arc::new(key_ring(settings)?);
    let pool = connect(settings, dsn.expose_secret()).await?;
    let stores = Stores::postgres(pool);
    let (key_rewrapped, key_current, key_failed) =
        actors::random::rewrap_key(stores.random.as_ref(), &keys)
            .await
            .map_err(|e| anyhow::Error::new(e).context("rewrap the random signing key"))?;
    let service = SecretsService::new(stores.secrets, keys.clone(), Arc::new(SystemClock));
    let report = service
        .rewrap()
        .await
        .map_err(|e| anyhow::Error::new(e).context("rewrap secrets"))?;
    let webhooks = TriggersService::new(
        stores.triggers,
        stores.functions,
        keys,
        Arc::new(SystemClock),
    );
    let (rewrapped, current, failed) = webhooks
        .rewrap()
        .await
        .map_err(|e| anyhow::Error::new(e).context("rewrap webhook secrets"))?;
    let failed = report.failed + failed + key_failed;
    println!(
        "rewrapped {}, already current {}, failed {failed}",
        report.rewrapped + rewrapped + key_rewrapped,
        report.already_current + current + key_current,
    );
    if failed > 0 {
        return Err(
            anyhow::anyhow!("{failed} ciphertext(s) could not be rewrapped (see the log)").into(),
        );
    }
    Ok(())
}

async fn open_stores(settings: &Settings) -> Result<Stores, StartupError> {
    let Some(dsn) = &settings.database.dsn else {
        tracing::warn!("memory mode: data lives in this process only and is lost when it stops (set DATABASE_URL for PostgreSQL)");
        return Ok(Stores::memory(settings.retention.memory_max_executions));
    };
    let pool = connect(settings, dsn.expose_secret()).await?;
    if settings.database.migrate {
        migrate(&pool).await?;
    } else {
        tracing::info!("migrations skipped (MIGRATE=false)");
    }
    Ok(Stores::postgres(pool))
}

fn warn_about_settings(settings: &Settings) {
    let short = settings
        .auth
        .api_tokens
        .iter()
        .filter(|t| t.expose_secret().chars().count() < Settings::SHORT_TOKEN)
        .count();
    if short > 0 {
        tracing::warn!(
            tokens = short,
            "{short} admin token(s) shorter than {} characters: use long random tokens in production",
            Settings::SHORT_TOKEN
        );
    }
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    health: Arc<Health>,
    /// The root supervisor; stopping it stops every subsystem actor in reverse order.
    supervisor: Addr<Supervisor>,
    /// The arbiters (OS threads) the subsystem actors run on; stopped last.
    arbiters: Vec<Arbiter>,
    shutdown: Arc<Notify>,
    auth_disabled: bool,
    accounts: ActorHandle<AccountsActor>,
    secrets: ActorHandle<SecretsActor>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        warn_about_settings(&settings);
        let keys = Arc::new(key_ring(&settings)?);
        // Read before anything starts: a bad certificate or key is exit 2 at once.
        let tls = match (&settings.server.tls_cert, &settings.server.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            _ => None,
        };
        let stores = open_stores(&settings).await?;
        let registry = prometheus::Registry::new();
        let health = Arc::new(Health::default());

        let actor_metrics = ActorMetrics::register(&registry).map_err(anyhow::Error::new)?;
        let policy = RestartPolicy::new(
            settings.supervisor.max_restarts,
            settings.supervisor.restart_window,
        );
        let mut supervisor = Supervisor::new(health.clone(), actor_metrics, policy);
        let subsystems = subsystems::register(
            &mut supervisor,
            &stores,
            &settings,
            keys,
            &registry,
            &health,
        )
        .await?;
        let supervisor = supervisor.start();
        supervisor
            .send(WaitStarted)
            .await
            .map_err(|e| anyhow::anyhow!("supervisor did not start: {e}"))?;

        let prometheus = PrometheusMetricsBuilder::new("service_layer")
            .registry(registry.clone())
            .exclude("/metrics")
            .mask_unmatched_patterns("unmatched")
            .metrics_configuration(
                ActixMetricsConfiguration::default()
                    .labels(LabelsConfiguration::default().endpoint("path"))
                    .http_requests_duration_seconds_name("http_request_duration_seconds"),
            )
            .build()
            .map_err(|e| anyhow::anyhow!("metrics set-up: {e}"))?;
        let inflight = prometheus::IntGauge::with_opts(
            prometheus::Opts::new("http_inflight_requests", "HTTP requests being served")
                .namespace("service_layer"),
        )
        .map_err(anyhow::Error::new)?;
        registry
            .register(Box::new(inflight.clone()))
            .map_err(anyhow::Error::new)?;

        let auth = Auth::new(
            settings.auth.api_tokens.iter().map(|t| t.expose_secret()),
            settings.auth.disabled,
            settings.auth.metrics_require_token,
        )
        .with_account_tokens(Arc::new(subsystems.accounts.clone()))
        .with_rate_limit(
            settings.server.rate_limit_rps,
            settings.server.rate_limit_burst,
        )
        .with_failure_limits(
            settings.auth.failure_rps,
            settings.auth.failure_burst,
            settings.auth.negative_cache,
        );
        let state = web::Data::new(AppState {
            accounts: Arc::new(subsystems.accounts.clone()),
            secrets: Arc::new(subsystems.secrets.clone()),
            functions: Arc::new(subsystems.functions),
            automation: Arc::new(subsystems.automation),
            triggers: Arc::new(subsystems.triggers),
            pricefeeds: Arc::new(subsystems.pricefeeds),
            oracle: Arc::new(subsystems.oracle),
            gasbank: Arc::new(subsystems.gasbank),
            random: Arc::new(subsystems.random),
            default_max_attempts: settings.automation.max_attempts,
            limit_maxima: subsystems::exec_defaults(&settings).maxima,
            metrics_require_token: settings.auth.metrics_require_token,
            health: health.clone(),
            registry,
            auth: auth.clone(),
            pool: stores.pool.clone(),
        });
        let body_limit = BodyLimit(settings.server.body_limit);

        let listener = TcpListener::bind(&settings.server.addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.addr))?;
        let port = listener.local_addr().map_err(anyhow::Error::new)?.port();
        let shutdown_secs = settings.server.shutdown_timeout.as_secs_f64().ceil() as u64;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(auth.clone())
                .app_data(body_limit)
                .app_data(Inflight(inflight.clone()))
                // Last wrapped runs first: request id/span → metrics → auth → routes.
                .wrap(ErrorHandlers::new().default_handler(http::error::json_error_body))
                .wrap(from_fn(http::auth::authenticate))
                .wrap(prometheus.clone())
                .wrap(from_fn(http::request::bound_method))
                .wrap(from_fn(http::request::trace_request))
                .configure(http::routes)
                .default_service(web::to(http::no_route))
        });
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config),
            None => server.listen(listener),
        }
        .map_err(|e| anyhow::anyhow!("cannot serve: {e}"))?
        .disable_signals()
        .shutdown_timeout(shutdown_secs)
        .run();
        let https = settings.server.tls_cert.is_some();
        tracing::info!(addr = %settings.server.addr, port, https, memory_mode = settings.is_memory_mode(), "listening");
        Ok(Self {
            port,
            server,
            health,
            supervisor,
            arbiters: subsystems.arbiters,
            shutdown: Arc::new(Notify::new()),
            auth_disabled: settings.auth.disabled,
            accounts: subsystems.accounts,
            secrets: subsystems.secrets,
        })
    }

    /// The bound port (useful with `--addr 127.0.0.1:0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The supervised accounts actor (tests use it to make the actor exit).
    pub fn accounts(&self) -> ActorHandle<AccountsActor> {
        self.accounts.clone()
    }

    /// The supervised secrets actor; also what the secret resolver talks to.
    pub fn secrets(&self) -> ActorHandle<SecretsActor> {
        self.secrets.clone()
    }

    /// The arbiters running the subsystem actors. Stopping them drops the actors (their
    /// database pools, their worker processes) at once; tests use it to clean up an app
    /// they never stopped.
    pub fn arbiters(&self) -> Vec<actix::ArbiterHandle> {
        self.arbiters.iter().map(Arbiter::handle).collect()
    }

    /// Triggers the same orderly shutdown as SIGTERM (used by tests).
    pub fn shutdown_trigger(&self) -> Arc<Notify> {
        self.shutdown.clone()
    }

    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let handle = self.server.handle();
        let mut server = actix_rt::spawn(self.server);
        self.health.set_phase(Phase::Ready);
        if self.auth_disabled {
            actix_rt::spawn(async {
                loop {
                    tracing::warn!(
                        "authentication is DISABLED (--auth-disabled): every request acts as admin"
                    );
                    actix_rt::time::sleep(Duration::from_secs(600)).await;
                }
            });
        }
        tokio::select! {
            () = shutdown_signal() => {}
            () = self.shutdown.notified() => {}
            result = &mut server => {
                self.supervisor.do_send(Shutdown);
                return match result {
                    Ok(Ok(())) => Err(anyhow::anyhow!("HTTP server stopped unexpectedly").into()),
                    Ok(Err(e)) => Err(anyhow::anyhow!("HTTP server failed: {e}").into()),
                    Err(e) => Err(anyhow::anyhow!("HTTP server task failed: {e}").into()),
                };
            }
        }
        tracing::info!("shutting down: readiness is 503, draining in-flight requests");
        self.health.set_phase(Phase::ShuttingDown);
        handle.stop(true).await;
        tracing::info!("HTTP server stopped; stopping actors");
        if self.supervisor.send(Shutdown).await.is_err() {
            tracing::warn!("supervisor already stopped");
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use actix_rt::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let terminate = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = actix_rt::signal::ctrl_c() => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
