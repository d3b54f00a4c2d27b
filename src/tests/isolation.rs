//! Executor isolation (CONTRACT.md §3.1, Isolation and Fairness): hostile functions
//! against the worker pool. Each attack asserts its outcome, how long it took where time
//! is the point, and that another account's calls made during and after it succeed.

use crate::helpers::*;
use actors::executor::WorkerSpec;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A function of a new account; returns its path.
async fn function(api: &Api, owner: &str, source: &str, limits: Value) -> String {
    let account = api.create_account_id(owner).await;
    let base = format!("/accounts/{account}/functions");
    let res = api
        .post(
            &base,
            &json!({"name": owner, "source": source, "limits": limits}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    format!("{base}/{}", res.json()["id"].as_str().unwrap())
}

async fn execute(api: &Api, path: &str, params: Value) -> Resp {
    api.post(&format!("{path}/execute"), &params).await
}

/// Executes and returns the record with how long the call took.
async fn timed(api: &Api, path: &str) -> (Value, Duration) {
    let started = Instant::now();
    let res = execute(api, path, json!({})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    (res.json(), started.elapsed())
}

/// The victim: another account's ordinary function, which must keep working.
async fn victim_succeeds(api: &Api, path: &str, v: i64) {
    let res = execute(api, path, json!({"v": v})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let record = res.json();
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["output"], json!({"v": v}));
}

fn metric(metrics: &str, line: &str) -> bool {
    metrics.lines().any(|l| l == line)
}

#[actix_web::test]
async fn c_loops_that_never_check_the_deadline_are_killed() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().env("EXEC_POOL_SIZE", "2"),
    )
    .await;
    let limits = json!({"timeout_ms": 500});
    // Both loop inside QuickJS's C code and never reach the interrupt handler.
    let join = function(
        &app,
        "mallory",
        r#"() => Array.prototype.join.call({length: 2 ** 53 - 1}, "")"#,
        limits.clone(),
    )
    .await;
    let reverse = function(
        &app,
        "eve",
        "() => Array.prototype.reverse.call({length: 2 ** 32 - 1})",
        limits,
    )
    .await;
    let victim = function(&app, "alice", "(p) => ({v: p.v})", json!({})).await;

    // Both workers taken by the attacks; the victim's call waits for a replaced worker.
    let ((joined, join_took), (reversed, reverse_took), ()) =
        tokio::join!(timed(&app, &join), timed(&app, &reverse), async {
            actix_rt::time::sleep(Duration::from_millis(100)).await;
            victim_succeeds(&app, &victim, 1).await;
        });
    for (record, took) in [(joined, join_took), (reversed, reverse_took)] {
        assert_eq!(record["status"], "failed");
        assert_eq!(record["error_code"], "timeout", "{record}");
        assert_eq!(record["error"], "execution exceeded its 500 ms timeout");
        assert!(
            took < Duration::from_millis(500 + 1500),
            "stopped within the deadline plus 1.5 s, took {took:?}"
        );
    }
    victim_succeeds(&app, &victim, 2).await;
    let metrics = app.get("/metrics").await.text();
    assert!(
        metric(
            &metrics,
            r#"service_layer_executor_terminations_total{reason="killed"} 2"#
        ),
        "{metrics}"
    );
    assert_eq!(app.get("/readyz").await.status, 200);
}

#[actix_web::test]
async fn console_and_action_floods_stay_within_the_limits() {
    let server = ServerProcess::start(&[("EXEC_POOL_SIZE", "2")]).await;
    let victim = function(&server, "alice", "(p) => ({v: p.v})", json!({})).await;
    // 1000 arguments of 1 MiB each in one call, in an 8 MiB heap.
    let one_call = function(
        &server,
        "mallory",
        r#"() => { console.log.apply(null, Array(1000).fill("x".repeat(1 << 20))); return 1 }"#,
        json!({"memory_mib": 8}),
    )
    .await;
    // 10,000 calls of 64 KiB each.
    let many_calls = function(
        &server,
        "mallory",
        r#"() => { const line = "y".repeat(1 << 16); for (let i = 0; i < 10000; i++) console.log(line); return 1 }"#,
        json!({"timeout_ms": 30000}),
    )
    .await;
    // 32 actions of 1 MiB params each against a 1 KiB output limit.
    let actions = function(
        &server,
        "mallory",
        r#"() => { const p = "z".repeat(1 << 20); for (let i = 0; i < 32; i++) Devpack.oracle.createRequest({dataSourceId: "d", payload: p}); return 1 }"#,
        json!({"output_limit_bytes": 1024, "timeout_ms": 30000}),
    )
    .await;

    let (record, ()) = tokio::join!(timed(&server, &one_call), async {
        victim_succeeds(&server, &victim, 1).await
    });
    let record = record.0;
    assert_eq!(record["status"], "succeeded", "{record}");
    let logs = record["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1);
    let line = logs[0].as_str().unwrap();
    assert_eq!(line.len(), 8192 + "…[truncated]".len());
    assert!(line.starts_with("xxxx") && line.ends_with("…[truncated]"));

    let record = timed(&server, &many_calls).await.0;
    assert_eq!(record["status"], "succeeded", "{record}");
    let logs = record["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 101);
    assert_eq!(logs[100], "[9900 log lines dropped]");
    assert!(logs[0].as_str().unwrap().ends_with("…[truncated]"));

    let (record, ()) = tokio::join!(timed(&server, &actions), async {
        victim_succeeds(&server, &victim, 2).await
    });
    let record = record.0;
    assert_eq!(record["error_code"], "too_many_actions", "{record}");
    assert_eq!(
        record["error"],
        "Devpack action params exceed the output limit of 1024 bytes together"
    );
    assert_eq!(record["actions"], json!([]));
    let stored = server
        .get(&format!(
            "{actions}/executions/{}",
            record["id"].as_str().unwrap()
        ))
        .await;
    assert!(stored.body.len() < 4096, "{} bytes", stored.body.len());

    victim_succeeds(&server, &victim, 3).await;
    let peak = server.peak_rss();
    assert!(peak < 256 << 20, "the server peaked at {} MiB", peak >> 20);
}

#[actix_web::test]
async fn microtasks_left_by_one_run_never_run_in_another() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().env("EXEC_POOL_SIZE", "1"),
    )
    .await;
    // Returns at once, leaving 50 microtasks of 200 ms each queued on the worker's runtime.
    let attacker = function(
        &app,
        "mallory",
        "() => { for (let i = 0; i < 50; i++) Promise.resolve().then(() => { const end = Date.now() + 200; while (Date.now() < end) {} }); return 1 }",
        json!({}),
    )
    .await;
    // Awaits once: on a runtime that kept the attacker's jobs, that drains 10 s of them.
    let victim = function(
        &app,
        "alice",
        "async (p) => { await null; return {v: p.v, finalizers: typeof FinalizationRegistry} }",
        json!({"timeout_ms": 1000}),
    )
    .await;
    let record = timed(&app, &attacker).await.0;
    assert_eq!(record["status"], "succeeded", "{record}");
    let res = execute(&app, &victim, json!({"v": 1})).await;
    let record = res.json();
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(
        record["output"],
        json!({"v": 1, "finalizers": "undefined"}),
        "no finaliser callbacks, which the collector would run in a later run"
    );
    assert!(
        record["duration_ms"].as_i64().unwrap() < 1000,
        "the victim ran in its own time: {record}"
    );
    let metrics = app.get("/metrics").await.text();
    assert!(
        metric(
            &metrics,
            r#"service_layer_executor_terminations_total{reason="pending_jobs"} 1"#
        ),
        "{metrics}"
    );
}

#[actix_web::test]
async fn a_worker_killed_from_outside_fails_only_its_run() {
    let server = ServerProcess::start(&[("EXEC_POOL_SIZE", "1")]).await;
    let spin = function(
        &server,
        "mallory",
        "() => { while (true) {} }",
        json!({"timeout_ms": 30000}),
    )
    .await;
    let victim = function(&server, "alice", "(p) => ({v: p.v})", json!({})).await;
    victim_succeeds(&server, &victim, 1).await;
    let (record, ()) = tokio::join!(timed(&server, &spin), async {
        // Once the run is on the worker, kill the worker as an operator (or the OOM
        // killer) would.
        for _ in 0..200 {
            let metrics = server.get("/metrics").await.text();
            if metric(&metrics, "service_layer_executor_busy 1") {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(25)).await;
        }
        let workers = server.children();
        assert_eq!(workers.len(), 1, "one worker: {workers:?}");
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &workers[0].to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    });
    let (record, took) = record;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error_code"], "internal", "{record}");
    assert_eq!(record["error"], "executor worker died: SIGKILL");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    for v in 2..5 {
        victim_succeeds(&server, &victim, v).await;
    }
    let metrics = server.get("/metrics").await.text();
    assert!(
        metric(
            &metrics,
            r#"service_layer_executor_terminations_total{reason="died"} 1"#
        ),
        "{metrics}"
    );
}

#[actix_web::test]
async fn the_worker_filter_refuses_files_sockets_and_processes() {
    let check = actors::executor::check_sandbox(&WorkerSpec {
        program: env!("CARGO_BIN_EXE_appserver").into(),
        engine: "quickjs",
        address_space: 320 << 20,
    })
    .await
    .unwrap();
    assert!(check.confined, "{:?}", check.problems);
    for what in ["open", "socket", "spawn"] {
        assert_eq!(
            check.probe[what], "refused: Operation not permitted (os error 1)",
            "{what}"
        );
    }
}

#[actix_web::test]
async fn one_account_flooding_the_executor_leaves_room_for_others() {
    // Pool 2 + queue 8: each account may hold 5.
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default()
            .env("EXEC_POOL_SIZE", "2")
            .env("EXEC_QUEUE_SIZE", "8"),
    )
    .await;
    let flood = function(
        &app,
        "mallory",
        "() => { const end = Date.now() + 100; while (Date.now() < end) {} return 1 }",
        json!({}),
    )
    .await;
    let victim = function(&app, "alice", "(p) => ({v: p.v})", json!({})).await;
    let flooding =
        futures_util::future::join_all((0..90).map(|_| execute(&app, &flood, json!({}))));
    let others = async {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        for wave in 0..2 {
            futures_util::future::join_all(
                (0..5).map(|n| victim_succeeds(&app, &victim, wave * 5 + n)),
            )
            .await;
        }
    };
    let (flooded, ()) = tokio::join!(flooding, others);
    let busy = flooded.iter().filter(|r| r.status == 503).count();
    let ok = flooded.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok + busy, 90);
    assert!(busy > 0, "the flood went past its share");
    for res in flooded.iter().filter(|r| r.status == 503) {
        res.assert_error(
            503,
            "executor_busy",
            "all executors are busy and the queue is full; retry shortly",
        );
    }
}

#[actix_web::test]
async fn hostile_text_and_nesting_fail_only_their_run() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default()
            .env("EXEC_POOL_SIZE", "1")
            .env("EXEC_LOG_LINES", "10"),
    )
    .await;
    let run = |source: &'static str| {
        let app = &app;
        async move {
            let path = function(app, "mallory", source, json!({})).await;
            execute(app, &path, json!({})).await.json()
        }
    };
    // Lone surrogates have no UTF-8 form: they become U+FFFD, in logs and in errors.
    let record = run(r#"() => { console.log("a\ud800b"); throw new Error("\udc00x") }"#).await;
    assert_eq!(record["logs"], json!(["a\u{FFFD}b"]));
    assert_eq!(record["error"], "Uncaught Error: \u{FFFD}x");
    assert_eq!(record["error_code"], "script_error");
    // The same in the output, and U+0000, which PostgreSQL cannot store, likewise.
    let record = run(r#"() => { console.log("n\0l"); return {s: "a\ud800b", n: "\0"} }"#).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(
        record["output"],
        json!({"s": "a\u{FFFD}b", "n": "\u{FFFD}"})
    );
    assert_eq!(record["logs"], json!(["n\u{FFFD}l"]));
    // Nesting the server could not parse back is refused in the worker.
    let record =
        run("() => { let o = {}; for (let i = 0; i < 126; i++) o = {a: o}; return o }").await;
    assert_eq!(record["error"], "output nests deeper than 100 levels");
    let record = run("() => { let o = {}; for (let i = 0; i < 126; i++) o = {a: o}; Devpack.oracle.createRequest(o); return 1 }").await;
    assert_eq!(
        record["error"],
        "Devpack action params nest deeper than 100 levels"
    );
    // A `toJSON` that logs does not get past the line limit.
    let record = run(
        r#"() => { const o = {toJSON() { console.log(o); return "x" }}; console.log(o); return 1 }"#,
    )
    .await;
    assert_eq!(record["status"], "succeeded", "{record}");
    let logs = record["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 11, "{logs:?}");
    assert!(logs[10].as_str().unwrap().ends_with("log lines dropped]"));
    // Deep params from the caller are passed through untouched.
    let mut params = json!({"leaf": 1});
    for _ in 0..110 {
        params = json!({ "a": params });
    }
    let path = function(&app, "alice", "(p) => ({ok: typeof p.a})", json!({})).await;
    let record = execute(&app, &path, params).await.json();
    assert_eq!(record["output"], json!({"ok": "object"}), "{record}");
    // None of it cost a worker.
    let metrics = app.get("/metrics").await.text();
    assert!(!metrics.contains(r#"executor_terminations_total{reason="died"}"#));
    assert!(!metrics.contains(r#"executor_terminations_total{reason="protocol"}"#));
}

#[actix_web::test]
async fn accounts_take_turns_for_a_free_worker() {
    // One worker; each account may hold 4 runs.
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default()
            .env("EXEC_POOL_SIZE", "1")
            .env("EXEC_QUEUE_SIZE", "8"),
    )
    .await;
    let busy = "() => { const end = Date.now() + 200; while (Date.now() < end) {} return 1 }";
    let flood = function(&app, "mallory", busy, json!({})).await;
    let victim = function(&app, "alice", "(p) => ({v: p.v})", json!({})).await;
    let flooding = futures_util::future::join_all((0..4).map(|_| execute(&app, &flood, json!({}))));
    let late = async {
        // Once the flood holds the worker and has three runs queued behind it.
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        execute(&app, &victim, json!({"v": 1})).await
    };
    let (flooded, victim) = tokio::join!(flooding, late);
    let victim = victim.json();
    assert_eq!(victim["status"], "succeeded", "{victim}");
    let mut finished: Vec<String> = flooded
        .iter()
        .map(|r| r.json()["completed_at"].as_str().unwrap().to_owned())
        .collect();
    finished.sort();
    let victim_done = victim["completed_at"].as_str().unwrap();
    // First in first out would put the victim last; in turn it runs after the flood's
    // second run at the latest.
    assert!(
        victim_done < finished[2].as_str(),
        "the victim finished at {victim_done}, the flood at {finished:?}"
    );
}

#[actix_web::test]
async fn background_runs_wait_for_a_worker_instead_of_failing_busy() {
    // One worker, no queue: an HTTP execute holding it leaves no room at all.
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default()
            .env("EXEC_POOL_SIZE", "1")
            .env("EXEC_QUEUE_SIZE", "0")
            .env("WORK_POLL_INTERVAL", "100ms"),
    )
    .await;
    let slow = function(
        &app,
        "mallory",
        "() => { const end = Date.now() + 1000; while (Date.now() < end) {} return 1 }",
        json!({}),
    )
    .await;
    let account = app.create_account_id("alice").await;
    let res = app
        .post(
            &format!("/accounts/{account}/functions"),
            &json!({"name": "hook", "source": "(p) => ({got: p.n})"}),
        )
        .await;
    let hook_fn = res.json()["id"].as_str().unwrap().to_owned();
    let trigger = crate::triggers::webhook_trigger(&app, &account, &hook_fn).await;
    let (trigger_id, secret) = (
        trigger["id"].as_str().unwrap().to_owned(),
        trigger["webhook_secret"].as_str().unwrap().to_owned(),
    );
    let body = br#"{"n": 7}"#;
    let (held, accepted) = tokio::join!(execute(&app, &slow, json!({})), async {
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        let signature = actors::triggers::webhook_signature(&secret, body);
        crate::triggers::post_webhook(&app, &trigger_id, body, Some(&signature)).await
    });
    assert_eq!(held.json()["status"], "succeeded");
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let execution = accepted.json()["execution_id"].as_str().unwrap().to_owned();
    let path = format!("/accounts/{account}/functions/executions/{execution}");
    let mut record = app.get(&path).await;
    for _ in 0..100 {
        if record.status == 200 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        record = app.get(&path).await;
    }
    assert_eq!(record.json()["output"], json!({"got": 7}));
    let metrics = app.get("/metrics").await.text();
    assert!(
        metric(&metrics, "service_layer_executor_rejections_total 0"),
        "the firing waited instead of being refused: {metrics}"
    );
}

#[actix_web::test]
async fn what_a_long_run_leaves_in_the_heap_is_not_charged_to_the_next() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().env("EXEC_POOL_SIZE", "1"),
    )
    .await;
    // A million property names grow the runtime's atom table, which QuickJS never
    // shrinks: on the same runtime, a 4 MiB run could no longer even create its context.
    let attacker = function(
        &app,
        "mallory",
        r#"() => { const o = {}; for (let i = 0; i < 1000000; i++) o["k" + i] = 1; return 1 }"#,
        json!({"timeout_ms": 60000, "memory_mib": 200}),
    )
    .await;
    let victim = function(&app, "alice", "(p) => ({v: p.v})", json!({"memory_mib": 4})).await;
    let record = execute(&app, &attacker, json!({})).await.json();
    assert_eq!(record["status"], "succeeded", "{record}");
    victim_succeeds(&app, &victim, 1).await;
}
