//! Registers every subsystem actor with the root supervisor, in start order (stopped in
//! reverse): accounts (and tokens), secrets, executor, functions, triggers, pricefeeds,
//! oracle, oracle_dispatcher, gasbank, settler, random, automation, events, scheduler. Each subsystem has its own arbiter (OS thread); `events` runs on the
//! triggers thread and `scheduler` on the automation thread, beside the actors whose
//! tables they work. Each factory starts its actor on that arbiter, and the supervisor
//! calls it again after a crash.

use crate::error::StartupError;
use crate::settings::{ExposeSecret as _, ResolverSettings, Settings, TeeMode};
use actix::{Actor, Arbiter};
use actors::accounts::tokens::TokensService;
use actors::accounts::{AccountsActor, AccountsService};
use actors::automation::{
    AutomationActor, AutomationMetrics, AutomationService, SchedulerActor, SchedulerConfig,
    SchedulerService,
};
use actors::crypto::KeyRing;
use actors::devpack::Devpack;
use actors::executor::{
    Backend, ExecutorActor, ExecutorMetrics, MockEngine, PoolConfig, WorkerSpec,
};
use actors::functions::{
    ExecDefaults, FunctionsActor, FunctionsDeps, FunctionsService, LimitMaxima,
};
use actors::gasbank::{
    settler_metrics, GasBankActor, GasBankService, GasWork, Settler, SettlerActor,
};
use actors::health::{ActorStatus, Health, Sandbox};
use actors::oracle::{
    oracle_metrics, Dispatcher, DispatcherActor, OracleActor, OracleService, OracleWork,
};
use actors::pricefeeds::{
    PriceFeedsActor, PriceFeedsService, PricefeedMetrics, Refresher, RefresherActor,
    RefresherConfig,
};
use actors::random::{KeySource, LoadError, RandomActor, RandomService};
use actors::resolver::ResolverConfig;
use actors::secrets::{SecretResolver, SecretsActor, SecretsService};
use actors::stores::Stores;
use actors::supervisor::{ActorHandle, Supervisor};
use actors::triggers::{
    EventsActor, TriggerMetrics, TriggerWorker, TriggersActor, TriggersService, WorkerConfig,
};
use actors::SystemClock;
use std::sync::Arc;

/// Handles to the actors the HTTP layer talks to.
pub struct Subsystems {
    pub accounts: ActorHandle<AccountsActor>,
    pub secrets: ActorHandle<SecretsActor>,
    pub functions: ActorHandle<FunctionsActor>,
    pub automation: ActorHandle<AutomationActor>,
    pub triggers: ActorHandle<TriggersActor>,
    pub pricefeeds: ActorHandle<PriceFeedsActor>,
    pub oracle: ActorHandle<OracleActor>,
    pub gasbank: ActorHandle<GasBankActor>,
    pub random: ActorHandle<RandomActor>,
    /// One arbiter (OS thread) per subsystem; stopped with the application.
    pub arbiters: Vec<Arbiter>,
}

/// A subsystem's own thread: its actors' messages and database futures are handled
/// there, so a slow subsystem does not delay another's.
fn thread(arbiters: &mut Vec<Arbiter>) -> actix::ArbiterHandle {
    let arbiter = Arbiter::new();
    let handle = arbiter.handle();
    arbiters.push(arbiter);
    handle
}

pub async fn register(
    supervisor: &mut Supervisor,
    stores: &Stores,
    settings: &Settings,
    keys: Arc<KeyRing>,
    registry: &prometheus::Registry,
    health: &Arc<Health>,
) -> Result<Subsystems, StartupError> {
    let mut arbiters = Vec::new();
    let accounts_service = AccountsService::new(
        stores.accounts.clone(),
        Arc::new(SystemClock) as Arc<dyn actors::Clock>,
    );
    let tokens_service = TokensService::new(
        stores.tokens.clone(),
        Arc::new(SystemClock) as Arc<dyn actors::Clock>,
    );
    let arbiter = thread(&mut arbiters);
    let accounts = supervisor.add("accounts", move |exit| {
        let (service, tokens) = (accounts_service.clone(), tokens_service.clone());
        AccountsActor::start_in_arbiter(&arbiter, move |_| {
            AccountsActor::new(service, tokens, exit)
        })
    });
    let secrets_service =
        SecretsService::new(stores.secrets.clone(), keys.clone(), Arc::new(SystemClock))
            .with_quota(settings.quotas.secrets);
    report_unknown_keys(&secrets_service).await;
    let arbiter = thread(&mut arbiters);
    let secrets = supervisor.add("secrets", move |exit| {
        let service = secrets_service.clone();
        SecretsActor::start_in_arbiter(&arbiter, move |_| SecretsActor::new(service, exit))
    });
    let executor_metrics = ExecutorMetrics::register(registry).map_err(anyhow::Error::new)?;
    let executor_config = executor_config(settings, health)?;
    health.set_sandbox(check_sandbox(&executor_config.backend).await?);
    // Every run's pipe I/O and deadline is handled on the executor's thread.
    let arbiter = thread(&mut arbiters);
    let pool_metrics = executor_metrics.clone();
    let executor = supervisor.add("executor", move |exit| {
        let (config, metrics) = (executor_config.clone(), pool_metrics.clone());
        ExecutorActor::start_in_arbiter(&arbiter, move |_| {
            ExecutorActor::new(config, metrics, exit)
        })
    });
    let functions_service = FunctionsService::new(
        FunctionsDeps {
            store: stores.functions.clone(),
            secret_store: stores.secrets.clone(),
            resolver: SecretResolver::Actor(Arc::new(secrets.clone())),
            executor,
            actions: Arc::new(Devpack {
                job_max_attempts: settings.automation.max_attempts,
                quotas: settings.quotas,
            }),
            clock: Arc::new(SystemClock),
        },
        exec_defaults(settings),
        executor_metrics,
    )
    .with_quota(settings.quotas.functions)
    .with_retention(settings.retention.executions);
    let arbiter = thread(&mut arbiters);
    let functions = supervisor.add("functions", move |exit| {
        let service = functions_service.clone();
        FunctionsActor::start_in_arbiter(&arbiter, move |_| FunctionsActor::new(service, exit))
    });
    let replica = replica_id();
    let worker = TriggerWorker::new(
        stores.firings.clone(),
        stores.events.clone(),
        Arc::new(functions.clone()),
        Arc::new(SystemClock),
        replica.clone(),
        WorkerConfig {
            poll: settings.work.poll_interval,
            tick: settings.automation.tick,
            lease: settings.work.lease,
            drain: settings.server.shutdown_timeout,
            pending_firings: settings.quotas.pending_firings_per_trigger,
        },
        TriggerMetrics::register(registry).map_err(anyhow::Error::new)?,
    );
    let triggers_service = TriggersService::new(
        stores.triggers.clone(),
        stores.functions.clone(),
        keys.clone(),
        Arc::new(SystemClock),
    )
    .with_quotas(settings.quotas)
    .waking(worker.waker());
    // The triggers subsystem's thread: its CRUD actor and its `events` worker.
    let arbiter = thread(&mut arbiters);
    let triggers_arbiter = arbiter.clone();
    let triggers = supervisor.add("triggers", move |exit| {
        let service = triggers_service.clone();
        TriggersActor::start_in_arbiter(&arbiter, move |_| TriggersActor::new(service, exit))
    });
    // The price feeds subsystem's thread: its CRUD actor and its `refresher`.
    let refresher_wake = Arc::new(tokio::sync::Notify::new());
    let pricefeeds_service = PriceFeedsService::new(
        stores.feeds.clone(),
        Arc::new(SystemClock),
        settings.quotas.feeds,
    )
    .waking(worker.waker(), refresher_wake.clone());
    let arbiter = thread(&mut arbiters);
    let pricefeeds_arbiter = arbiter.clone();
    let pricefeeds = supervisor.add("pricefeeds", move |exit| {
        let service = pricefeeds_service.clone();
        PriceFeedsActor::start_in_arbiter(&arbiter, move |_| PriceFeedsActor::new(service, exit))
    });
    let refresher = Refresher::new(
        stores.feeds.clone(),
        Arc::new(SystemClock),
        refresher_config(settings)?,
        PricefeedMetrics::register(registry).map_err(anyhow::Error::new)?,
        worker.waker(),
    )
    .waking(refresher_wake.clone());
    supervisor.add("refresher", move |exit| {
        let (refresher, wake) = (refresher.clone(), refresher_wake.clone());
        RefresherActor::start_in_arbiter(&pricefeeds_arbiter, move |_| {
            RefresherActor::new(refresher, wake, exit)
        })
    });
    // The oracle subsystem's thread: its CRUD actor and, with a resolver, its dispatcher.
    let dispatcher_wake = Arc::new(tokio::sync::Notify::new());
    let oracle_service = OracleService::new(
        stores.oracle.clone(),
        Arc::new(SystemClock),
        settings.quotas,
    )
    .with_retention(settings.retention.oracle_requests)
    .waking(worker.waker(), dispatcher_wake.clone());
    let arbiter = thread(&mut arbiters);
    let oracle_arbiter = arbiter.clone();
    let oracle = supervisor.add("oracle", move |exit| {
        let service = oracle_service.clone();
        OracleActor::start_in_arbiter(&arbiter, move |_| OracleActor::new(service, exit))
    });
    let oracle_metrics = oracle_metrics(registry).map_err(anyhow::Error::new)?;
    match resolver_config(settings, &settings.oracle)? {
        Some(config) => {
            let dispatcher = Dispatcher::new(
                Arc::new(OracleWork(stores.oracle.clone())),
                Arc::new(SystemClock),
                replica.clone(),
                config,
                oracle_metrics,
                worker.waker(),
            )
            .waking(dispatcher_wake.clone());
            supervisor.add("oracle_dispatcher", move |exit| {
                let (dispatcher, wake) = (dispatcher.clone(), dispatcher_wake.clone());
                DispatcherActor::start_in_arbiter(&oracle_arbiter, move |_| {
                    DispatcherActor::new(dispatcher, wake, exit)
                })
            });
        }
        None => {
            tracing::warn!("ORACLE_RESOLVER_URL is not set: the oracle dispatcher is disabled and oracle requests wait for PATCH");
            health.set_actor("oracle_dispatcher", ActorStatus::Disabled);
        }
    }
    // The gas bank's thread: its actor and, with a resolver, its settler.
    let settler_wake = Arc::new(tokio::sync::Notify::new());
    let gas_service = GasBankService::new(
        stores.gasbank.clone(),
        Arc::new(SystemClock),
        settings.quotas,
    )
    .waking(settler_wake.clone());
    let arbiter = thread(&mut arbiters);
    let gas_arbiter = arbiter.clone();
    let gas_arbiter_for_random = arbiter.clone();
    let gasbank = supervisor.add("gasbank", move |exit| {
        let service = gas_service.clone();
        GasBankActor::start_in_arbiter(&arbiter, move |_| GasBankActor::new(service, exit))
    });
    let gas_metrics = settler_metrics(registry).map_err(anyhow::Error::new)?;
    match resolver_config(settings, &settings.gasbank)? {
        Some(config) => {
            let settler = Settler::new(
                Arc::new(GasWork(stores.gasbank.clone())),
                Arc::new(SystemClock),
                replica.clone(),
                config,
                gas_metrics,
                worker.waker(),
            )
            .waking(settler_wake.clone());
            supervisor.add("settler", move |exit| {
                let (settler, wake) = (settler.clone(), settler_wake.clone());
                SettlerActor::start_in_arbiter(&gas_arbiter, move |_| {
                    SettlerActor::new(settler, wake, exit)
                })
            });
        }
        None => {
            tracing::warn!("GASBANK_RESOLVER_URL is not set: the settler is disabled and withdrawals stay pending");
            health.set_actor("settler", ActorStatus::Disabled);
        }
    }
    // Signed random, on the gas bank's thread (it signs in microseconds).
    let configured = settings
        .random
        .signing_key
        .as_ref()
        .map(|k| k.expose_secret());
    let loaded = actors::random::load_signer(configured, stores.random.as_ref(), &keys).await;
    let signer = match loaded {
        Ok((signer, KeySource::Ephemeral)) => {
            tracing::warn!("RANDOM_SIGNING_KEY is not set: random results are signed with a key that lives only as long as this process");
            Some(signer)
        }
        Ok((signer, source)) => {
            tracing::info!(key_id = %signer.key_id(), ?source, "random signing key loaded");
            Some(signer)
        }
        // The server starts (CONTRACT.md §3.9); random answers 503 until the key's
        // encryption key is back in SECRET_ENCRYPTION_KEY_PREVIOUS.
        Err(e @ LoadError::Sealed { .. }) => {
            tracing::error!(error = %e, "signed random is unavailable");
            None
        }
        Err(LoadError::Store(e)) => {
            return Err(anyhow::Error::new(e)
                .context("load the random signing key")
                .into())
        }
    };
    let random_service = RandomService::new(
        signer.map(Arc::new),
        stores.random.clone(),
        Arc::new(SystemClock),
    );
    let arbiter = gas_arbiter_for_random;
    let random = supervisor.add("random", move |exit| {
        let service = random_service.clone();
        RandomActor::start_in_arbiter(&arbiter, move |_| RandomActor::new(service, exit))
    });
    // Wakes the `events` actor when a firing or event is stored, or a trigger changes,
    // on any replica (PostgreSQL); in memory mode the triggers service wakes it itself.
    listen(settings, actors::events::WORK_CHANNEL, worker.waker())?;
    // Wakes the scheduler: job changes made here, and (PostgreSQL) on any replica.
    let job_wake = Arc::new(tokio::sync::Notify::new());
    listen(settings, actors::automation::JOBS_CHANNEL, job_wake.clone())?;
    let automation_service = AutomationService::new(
        stores.jobs.clone(),
        stores.functions.clone(),
        Arc::new(SystemClock),
        settings.quotas.jobs,
    )
    .waking(job_wake.clone());
    // The automation subsystem's thread: its CRUD actor and its `scheduler`.
    let arbiter = thread(&mut arbiters);
    let automation_arbiter = arbiter.clone();
    let automation = supervisor.add("automation", move |exit| {
        let service = automation_service.clone();
        AutomationActor::start_in_arbiter(&arbiter, move |_| AutomationActor::new(service, exit))
    });
    supervisor.add("events", move |exit| {
        let worker = worker.clone();
        EventsActor::start_in_arbiter(&triggers_arbiter, move |_| EventsActor::new(worker, exit))
    });
    let scheduler_service = SchedulerService::new(
        stores.scheduler.clone(),
        Arc::new(functions.clone()),
        Arc::new(SystemClock),
        replica,
        SchedulerConfig {
            tick: settings.automation.tick,
            drain: settings.server.shutdown_timeout,
            lease: settings.work.lease,
            retry_base: settings.automation.retry_base,
            retry_max_delay: settings.automation.retry_max_delay,
            run_retention: settings.retention.runs,
        },
        AutomationMetrics::register(registry).map_err(anyhow::Error::new)?,
    );
    supervisor.add("scheduler", move |exit| {
        let service = scheduler_service.clone();
        let wake = job_wake.clone();
        SchedulerActor::start_in_arbiter(&automation_arbiter, move |_| {
            SchedulerActor::new(service, wake, exit)
        })
    });
    Ok(Subsystems {
        accounts,
        secrets,
        functions,
        automation,
        triggers,
        pricefeeds,
        oracle,
        gasbank,
        random,
        arbiters,
    })
}

fn refresher_config(settings: &Settings) -> Result<RefresherConfig, StartupError> {
    let p = &settings.pricefeed;
    let default_url = match &p.fetch_url {
        // Checked as an http(s) URL when the settings were loaded.
        Some(text) => Some(url::Url::parse(text).map_err(anyhow::Error::new)?),
        None => None,
    };
    Ok(RefresherConfig {
        tick: p.tick,
        fetch_timeout: p.fetch_timeout,
        default_url,
        default_key: p
            .fetch_key
            .as_ref()
            .map(|k| Arc::new(zeroize::Zeroizing::new(k.expose_secret().to_owned()))),
        allow_private: p.allow_private_sources,
        drain: settings.server.shutdown_timeout,
        retention: settings.retention.snapshots,
    })
}

/// A resolver loop's settings (the oracle dispatcher's, the settler's); `None`
/// (disabled) without a resolver URL.
fn resolver_config(
    settings: &Settings,
    r: &ResolverSettings,
) -> Result<Option<ResolverConfig>, StartupError> {
    let Some(text) = &r.resolver_url else {
        return Ok(None);
    };
    Ok(Some(ResolverConfig {
        // Checked as an http(s) URL when the settings were loaded.
        resolver_url: url::Url::parse(text).map_err(anyhow::Error::new)?,
        resolver_key: r
            .resolver_key
            .as_ref()
            .map(|k| Arc::new(zeroize::Zeroizing::new(k.expose_secret().to_owned()))),
        poll: r.poll_interval,
        max_attempts: i32::try_from(r.max_attempts).unwrap_or(i32::MAX),
        ttl: r.ttl,
        timeout: settings.http_client.timeout,
        lease: settings.work.lease,
        drain: settings.server.shutdown_timeout,
    }))
}

/// This process's lease owner id: unique per process, readable in the database.
fn replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "appserver".to_owned());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn executor_config(settings: &Settings, health: &Arc<Health>) -> Result<PoolConfig, StartupError> {
    let e = &settings.executor;
    let backend = match e.mode {
        TeeMode::Js => Backend::Workers(WorkerSpec {
            // The running binary even if its file was replaced by an upgrade meanwhile.
            program: e
                .worker_program
                .clone()
                .unwrap_or_else(|| "/proc/self/exe".into()),
            engine: "quickjs",
            address_space: e.worker_memory,
        }),
        TeeMode::Mock => Backend::InProcess(Arc::new(MockEngine)),
    };
    Ok(PoolConfig {
        backend,
        size: e.pool_size,
        queue: e.queue_size,
        max_per_account: e.max_per_account,
        kill_grace: e.kill_grace,
        health: health.clone(),
    })
}

/// Starts one worker and checks its confinement before anything runs: a worker that
/// cannot start at all stops start-up (exit 1); one that cannot be fully confined is
/// used with a WARN and `/readyz` says `degraded`.
async fn check_sandbox(backend: &Backend) -> Result<Sandbox, StartupError> {
    let Backend::Workers(spec) = backend else {
        return Ok(Sandbox::Mock);
    };
    let check = actors::executor::check_sandbox(spec)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start an executor worker: {e}"))?;
    if check.confined {
        tracing::info!(
            "executor workers are confined (seccomp, no new privileges, address-space limit)"
        );
        return Ok(Sandbox::Confined);
    }
    tracing::warn!(
        problems = %check.problems.join("; "),
        "executor workers are NOT fully confined on this host: JavaScript still runs in separate processes with deadlines and limits, but without the missing protections"
    );
    Ok(Sandbox::Degraded)
}

pub fn exec_defaults(settings: &Settings) -> ExecDefaults {
    let e = &settings.executor;
    ExecDefaults {
        timeout: e.timeout,
        memory_bytes: e.memory,
        output_bytes: e.output_limit,
        log_lines: e.log_lines as usize,
        log_line_bytes: e.log_line_bytes as usize,
        max_actions: e.max_actions as usize,
        maxima: LimitMaxima {
            timeout_ms: e.max_timeout.as_millis() as u64,
            memory_mib: e.max_memory >> 20,
            output_limit_bytes: e.max_output_limit,
        },
    }
}

/// Logs an error for every stored key id the ring cannot open (the server still starts:
/// only those secrets are unreadable until the key is restored).
async fn report_unknown_keys(secrets: &SecretsService) {
    match secrets.unknown_key_ids().await {
        Ok(ids) => {
            for id in ids {
                tracing::error!(key_id = %id, "stored secrets are sealed with a key that is not configured; add it to SECRET_ENCRYPTION_KEY_PREVIOUS");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not check stored key ids"),
    }
}

/// With PostgreSQL, `wake` is notified whenever `channel` is (a change on any replica);
/// memory mode has no other replica to hear from.
fn listen(
    settings: &Settings,
    channel: &'static str,
    wake: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    if let Some(dsn) = &settings.database.dsn {
        actors::store::notify::listen(dsn.expose_secret(), channel, wake)
            .map_err(|e| anyhow::anyhow!("LISTEN set-up: {e}"))?;
    }
    Ok(())
}
