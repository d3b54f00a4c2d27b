//! Cost of the actor layer on a read (BRIEF §3: "the API must not become slower because
//! of actors"). Three ways to fetch one account from the memory store:
//!   service_direct  the plain service call (the floor)
//!   actor_local     the same call as a message to an accounts actor on the caller's
//!                   thread (the cost of the message alone)
//!   through_actor   the same call as a message to the supervised accounts actor on its
//!                   own thread, through the narrow handle HTTP handlers hold
//!   http_loopback   a full authenticated HTTP GET over loopback to the real application
//! Run: `cargo bench --bench accounts`; numbers and ratios go in docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix::Actor as _;
use actors::accounts::tokens::TokensService;
use actors::accounts::{
    AccountsActor, AccountsHandle, AccountsService, GetAccount, Metadata, NewAccount, Owner,
};
use actors::health::Health;
use actors::metrics::ActorMetrics;
use actors::stores::Stores;
use actors::supervisor::{RestartPolicy, Supervisor};
use actors::SystemClock;
use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "bench-token-0123456789abcdef";

fn get_account(c: &mut Criterion) {
    let sys = actix_rt::System::new();
    let (service, handle, local, id) = sys.block_on(async {
        let stores = Stores::memory(100_000);
        let service = AccountsService::new(stores.accounts.clone(), Arc::new(SystemClock));
        let account = service
            .create(NewAccount {
                owner: Owner::parse("bench").unwrap(),
                metadata: Metadata::default(),
            })
            .await
            .unwrap();
        let health = Arc::new(Health::default());
        let metrics = ActorMetrics::register(&prometheus::Registry::new()).unwrap();
        let mut supervisor = Supervisor::new(
            health,
            metrics,
            RestartPolicy::new(5, Duration::from_secs(60)),
        );
        let actor_service = service.clone();
        let tokens = TokensService::new(stores.tokens.clone(), Arc::new(SystemClock));
        let (local_service, local_tokens) = (service.clone(), tokens.clone());
        let local = supervisor.add("accounts_local", move |exit| {
            AccountsActor::new(local_service.clone(), local_tokens.clone(), exit).start()
        });
        let local: Arc<dyn AccountsHandle> = Arc::new(local);
        // As in the server: the actor on its own thread, reached through the narrow
        // handle the HTTP handlers hold.
        let arbiter = actix::Arbiter::new().handle();
        let handle = supervisor.add("accounts", move |exit| {
            let (service, tokens) = (actor_service.clone(), tokens.clone());
            AccountsActor::start_in_arbiter(&arbiter, move |_| {
                AccountsActor::new(service, tokens, exit)
            })
        });
        let handle: Arc<dyn AccountsHandle> = Arc::new(handle);
        supervisor.start();
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        (service, handle, local, account.id)
    });

    let (client, url) = sys.block_on(async {
        let args = [
            "appserver",
            "--addr",
            "127.0.0.1:0",
            "--api-tokens",
            TOKEN,
            "--log-level",
            "error",
        ];
        let mut settings = service_layer::settings::load(args, &|_| None)
            .unwrap()
            .settings;
        // This process is the bench harness: JavaScript workers are the real binary.
        settings.executor.worker_program = Some(env!("CARGO_BIN_EXE_appserver").into());
        let app = service_layer::startup::Application::build(settings)
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        actix_rt::spawn(app.run_until_stopped());
        let client = awc::Client::default();
        let res = client
            .post(format!("{base}/accounts"))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .send_json(&serde_json::json!({"owner": "bench"}))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        let url = format!("{base}/accounts/{}", res["id"].as_str().unwrap());
        (client, url)
    });

    let mut group = c.benchmark_group("get_account");
    group.bench_function("service_direct", |b| {
        b.iter(|| sys.block_on(service.get(id)).unwrap());
    });
    group.bench_function("actor_local", |b| {
        b.iter(|| sys.block_on(local.ask(GetAccount(id))).unwrap());
    });
    group.bench_function("through_actor", |b| {
        b.iter(|| sys.block_on(handle.ask(GetAccount(id))).unwrap());
    });
    group.bench_function("http_loopback", |b| {
        b.iter(|| {
            sys.block_on(async {
                let mut res = client
                    .get(&url)
                    .insert_header(("Authorization", format!("Bearer {TOKEN}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
                res.body().await.unwrap()
            })
        });
    });
    group.finish();
}

criterion_group!(benches, get_account);
criterion_main!(benches);
