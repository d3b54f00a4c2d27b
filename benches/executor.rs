//! Executions per second (BRIEF §6, issues 4 and 9), three ways in one run so the ratios
//! compare like with like on a noisy machine:
//!
//!   workers     the production path: the worker pool, one confined `appserver
//!               --executor-worker` process per CPU, each run sent over a pipe
//!   in_process  the previous design, for comparison: one QuickJS runtime per thread in
//!               this process (what the pool did before runs moved to processes)
//!   (Node.js)   `node benches/node/vm_baseline.mjs`, run back to back with this bench
//!
//! Each iteration submits a batch and waits for all of it, so the rate includes
//! admission, the hop to the worker, a fresh context per run, parameter/secret
//! conversion and output serialisation.
//!
//!   sum          (p) => ({sum: p.a + p.b})
//!   sum_secrets  the same, receiving 4 secrets
//!   fib25        a CPU-heavy recursive fib(25)
//!
//! Run: `cargo bench --bench executor`; figures go in docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actors::executor::{
    Backend, Engine, ExecutorMetrics, Pool, PoolConfig, QuickJs, RunContext, RunLimits, RunOutput,
    RunRequest, WorkerSpec,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

const BATCH: usize = 256;

fn request(source: &str, secrets: usize) -> RunRequest {
    RunRequest {
        source: source.into(),
        params: serde_json::value::to_raw_value(&serde_json::json!({"a": 20, "b": 22})).unwrap(),
        secrets: (0..secrets)
            .map(|i| (format!("SECRET_{i}"), format!("value-{i}-0123456789")))
            .collect::<BTreeMap<_, _>>(),
        context: RunContext {
            function_id: "f".into(),
            function_name: "bench".into(),
            account_id: "a".into(),
            execution_id: "e".into(),
        },
        limits: RunLimits {
            timeout: Duration::from_secs(10),
            memory_bytes: 64 << 20,
            output_bytes: 256 << 10,
            log_lines: 100,
            log_line_bytes: 8 << 10,
            max_actions: 32,
        },
    }
}

fn cases() -> [(&'static str, RunRequest, usize); 3] {
    [
        ("sum", request("(p) => ({sum: p.a + p.b})", 0), BATCH),
        (
            "sum_secrets",
            request("(p, s) => ({sum: p.a + p.b, n: Object.keys(s).length})", 4),
            BATCH,
        ),
        (
            "fib25",
            request(
                "(p) => { const fib = (n) => n < 2 ? n : fib(n - 1) + fib(n - 2); return {fib: fib(25)} }",
                0,
            ),
            8,
        ),
    ]
}

/// The in-process design this replaced: `n` threads, each with one runtime, one queue.
struct ThreadPool {
    jobs: mpsc::Sender<(RunRequest, mpsc::Sender<RunOutput>)>,
}

impl ThreadPool {
    fn start(n: usize) -> Self {
        let (jobs, receiver) = mpsc::channel::<(RunRequest, mpsc::Sender<RunOutput>)>();
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        for _ in 0..n {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .stack_size(8 << 20)
                .spawn(move || {
                    let mut runtime = QuickJs.new_runtime().unwrap();
                    loop {
                        let job = receiver.lock().unwrap().recv();
                        let Ok((request, reply)) = job else { return };
                        let _ = reply.send(runtime.run(&request));
                    }
                })
                .unwrap();
        }
        Self { jobs }
    }
}

fn throughput(c: &mut Criterion) {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sys = actix_rt::System::new();
    let pool = sys.block_on(async {
        let metrics = ExecutorMetrics::register(&prometheus::Registry::new()).unwrap();
        Pool::start(
            PoolConfig {
                backend: Backend::Workers(WorkerSpec {
                    program: env!("CARGO_BIN_EXE_appserver").into(),
                    engine: "quickjs",
                    address_space: 320 << 20,
                }),
                size: workers,
                queue: BATCH,
                max_per_account: workers + BATCH,
                kill_grace: Duration::from_millis(500),
                health: Default::default(),
            },
            metrics,
        )
    });
    let threads = ThreadPool::start(workers);
    let mut group = c.benchmark_group(format!("executor_{workers}_workers"));
    for (name, req, batch) in cases() {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("{name}/workers"), |b| {
            b.iter(|| {
                sys.block_on(async {
                    let receivers: Vec<_> = (0..batch)
                        .map(|_| pool.try_submit(req.clone()).unwrap())
                        .collect();
                    for r in receivers {
                        let out = r.await.unwrap();
                        assert!(out.result.is_ok(), "{:?}", out.result);
                    }
                })
            });
        });
        group.bench_function(format!("{name}/in_process"), |b| {
            b.iter(|| {
                let receivers: Vec<_> = (0..batch)
                    .map(|_| {
                        let (reply, receiver) = mpsc::channel();
                        threads.jobs.send((req.clone(), reply)).unwrap();
                        receiver
                    })
                    .collect();
                for r in receivers {
                    assert!(r.recv().unwrap().result.is_ok());
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
