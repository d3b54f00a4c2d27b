//! Executions per second through the isolate pool (BRIEF §6, issue 4). Each iteration
//! submits a batch of runs to a pool with one worker per CPU and waits for all of them,
//! so the measured rate includes admission, the cross-thread hop, a fresh context per
//! run, parameter/secret conversion and output serialisation.
//!
//!   sum          (p) => ({sum: p.a + p.b})
//!   sum_secrets  the same, receiving 4 secrets
//!   fib25        a CPU-heavy recursive fib(25)
//!
//! Run: `cargo bench --bench executor`. The Node.js `vm` baseline is
//! `node benches/node/vm_baseline.mjs`; both go in docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actors::executor::{ExecutorMetrics, Pool, QuickJs, RunContext, RunLimits, RunRequest};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 64;

fn request(source: &str, secrets: usize) -> RunRequest {
    RunRequest {
        source: source.into(),
        params: json!({"a": 20, "b": 22}),
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

fn throughput(c: &mut Criterion) {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let metrics = ExecutorMetrics::register(&prometheus::Registry::new()).unwrap();
    let pool = Pool::start(Arc::new(QuickJs), workers, BATCH, metrics).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cases = [
        ("sum", request("(p) => ({sum: p.a + p.b})", 0)),
        ("sum_secrets", request("(p, s) => ({sum: p.a + p.b, n: Object.keys(s).length})", 4)),
        (
            "fib25",
            request("(p) => { const fib = (n) => n < 2 ? n : fib(n - 1) + fib(n - 2); return {fib: fib(25)} }", 0),
        ),
    ];
    let mut group = c.benchmark_group(format!("executor_{workers}_workers"));
    for (name, req) in cases {
        let batch = if name == "fib25" { 8 } else { BATCH };
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let receivers: Vec<_> = (0..batch)
                        .map(|_| pool.try_submit(req.clone()).unwrap())
                        .collect();
                    for r in receivers {
                        assert!(r.await.unwrap().result.is_ok());
                    }
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
