//! Functions API and executions: CRUD on both stores, run semantics end to end, limits,
//! admission under load, isolation between accounts, Devpack all-or-nothing, mock mode.

use crate::both_stores;
use crate::helpers::*;
use actix_web::http::Method;
use serde_json::{json, Value};

both_stores!(
    functions_crud_and_versions,
    function_validation_changes_nothing,
    execute_records_successes_and_failures,
    functions_see_only_their_accounts_secrets,
    devpack_actions_are_all_or_nothing,
    deleting_a_function_removes_its_executions,
    a_hundred_concurrent_executions_are_correct_or_told_busy,
);

/// An account with one function; returns (functions base path, function path).
async fn function(app: &TestApp, source: &str, extra: Value) -> (String, String) {
    let account = app.create_account_id("alice").await;
    let base = format!("/accounts/{account}/functions");
    let mut body = json!({"name": "f", "source": source});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let res = app.post(&base, &body).await;
    assert_eq!(res.status, 201, "{}", res.text());
    let id = res.json()["id"].as_str().unwrap().to_owned();
    (base.clone(), format!("{base}/{id}"))
}

async fn execute(app: &TestApp, path: &str, params: Value) -> Resp {
    app.post(&format!("{path}/execute"), &params).await
}

async fn functions_crud_and_versions(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, path) = function(
        &app,
        "(p) => p",
        json!({"description": " adds ", "limits": {"timeout_ms": 1000}}),
    )
    .await;
    let created = app.get(&path).await.json();
    let keys: Vec<_> = created.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "account_id",
            "created_at",
            "description",
            "id",
            "limits",
            "name",
            "secrets",
            "source",
            "updated_at",
            "version"
        ]
    );
    assert_eq!(created["description"], "adds");
    assert_eq!(
        created["limits"],
        json!({"timeout_ms": 1000, "memory_mib": null, "output_limit_bytes": null})
    );
    assert_eq!(created["version"], 1);
    assert_eq!(created["secrets"], json!([]));

    // PUT replaces: omitted optional fields reset to their defaults.
    let res = app
        .send(
            Method::PUT,
            &path,
            Some(&json!({"name": "g", "source": "() => 2"})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let replaced = res.json();
    assert_eq!(replaced["version"], 2);
    assert_eq!(replaced["name"], "g");
    assert_eq!(replaced["description"], "");
    assert_eq!(replaced["limits"]["timeout_ms"], Value::Null);
    assert_eq!(replaced["created_at"], created["created_at"]);

    let list = app.get(&base).await.json();
    assert_eq!(list["items"], json!([replaced]));
    assert_eq!(app.delete(&path).await.status, 204);
    app.get(&path)
        .await
        .assert_error(404, "not_found", "function not found");
    app.get(&format!("{base}/not-an-id")).await.assert_error(
        404,
        "not_found",
        "function not found",
    );
}

async fn function_validation_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let base = format!("/accounts/{account}/functions");
    let cases = [
        (json!({"source": "1"}), "name: is required"),
        (json!({"name": "f"}), "source: is required"),
        (
            json!({"name": "f", "source": "1", "secrets": ["missing"]}),
            "secrets: secret \"missing\" not found",
        ),
        (
            json!({"name": "f", "source": "1", "limits": {"timeout_ms": 60001}}),
            "limits.timeout_ms: must be 1-60000",
        ),
        (
            json!({"name": "f", "source": "1", "limits": {"memory_mib": 257}}),
            "limits.memory_mib: must be 1-256",
        ),
        (
            json!({"name": "f", "source": "x".repeat(256 * 1024 + 1)}),
            "source: must be at most 262144 bytes",
        ),
    ];
    for (body, message) in cases {
        app.post(&base, &body)
            .await
            .assert_error(400, "validation_failed", message);
    }
    app.post(&base, &json!({"name": "f", "source": "1", "limits": {"cpu": 1}}))
        .await
        .assert_error(400, "invalid_request", "limits: unknown field `cpu`, expected one of `timeout_ms`, `memory_mib`, `output_limit_bytes`");
    assert_eq!(app.get(&base).await.json()["items"], json!([]));
}

async fn execute_records_successes_and_failures(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    app.post(
        &format!("/accounts/{account}/secrets"),
        &json!({"name": "API_KEY", "value": "sk-test-1234"}),
    )
    .await;
    let base = format!("/accounts/{account}/functions");
    let body = json!({"name": "sum", "secrets": ["api_key"],
        "source": "(p, s) => { console.log('using', s.api_key); return {sum: p.a + p.b, key_len: s.api_key.length} }"});
    let f = app.post(&base, &body).await.json();
    let path = format!("{base}/{}", f["id"].as_str().unwrap());

    let res = execute(&app, &path, json!({"a": 2, "b": 40})).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.header("x-execution-status").as_deref(),
        Some("succeeded")
    );
    let ok = res.json();
    let keys: Vec<_> = ok.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "account_id",
            "actions",
            "completed_at",
            "duration_ms",
            "error",
            "error_code",
            "function_id",
            "id",
            "input",
            "logs",
            "output",
            "started_at",
            "status"
        ]
    );
    assert_eq!(ok["status"], "succeeded");
    assert_eq!(ok["output"], json!({"sum": 42, "key_len": 12}));
    assert_eq!(ok["input"], json!({"a": 2, "b": 40}));
    assert_eq!(
        ok["logs"],
        json!(["using ***"]),
        "secret values never reach the logs"
    );
    assert_eq!(
        (ok["error"].clone(), ok["error_code"].clone()),
        (Value::Null, Value::Null)
    );

    // An empty body is `{}`; a failing run is still 200 with the record.
    let res = app
        .req(Method::POST, &format!("{path}/execute"))
        .send()
        .await
        .unwrap();
    let empty = read(res).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json()["output"], json!({"sum": null, "key_len": 12}));
    app.send(
        Method::PUT,
        &path,
        Some(&json!({"name": "boom", "source": "() => { throw new Error('boom') }"})),
    )
    .await;
    let res = execute(&app, &path, json!({})).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-execution-status").as_deref(), Some("failed"));
    let failed = res.json();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], "Uncaught Error: boom");
    assert_eq!(failed["error_code"], "script_error");
    assert_eq!(failed["output"], json!({}));

    // Newest first, paginated; fetchable under the function and directly.
    let list = app.get(&format!("{path}/executions?limit=2")).await.json();
    assert_eq!(list["items"][0]["id"], failed["id"]);
    assert_eq!(list["items"][1]["id"], empty.json()["id"]);
    let cursor = list["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!("{path}/executions?limit=2&cursor={cursor}"))
        .await
        .json();
    assert_eq!(rest["items"][0]["id"], ok["id"]);
    assert_eq!(rest["next_cursor"], Value::Null);
    let exec_id = ok["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("{path}/executions/{exec_id}"))
            .await
            .json(),
        ok
    );
    assert_eq!(
        app.get(&format!("{base}/executions/{exec_id}"))
            .await
            .json(),
        ok
    );
    app.get(&format!("{base}/executions/{}", uuid::Uuid::new_v4()))
        .await
        .assert_error(404, "not_found", "execution not found");

    // A listed secret deleted after saving fails the run (recorded), never the request.
    app.send(
        Method::PUT,
        &path,
        Some(&json!({"name": "s", "source": "(p, s) => s", "secrets": ["API_KEY"]})),
    )
    .await;
    app.delete(&format!("/accounts/{account}/secrets/API_KEY"))
        .await;
    let res = execute(&app, &path, json!({})).await.json();
    assert_eq!(res["error_code"], "secret_unavailable");
    assert_eq!(res["error"], "secret \"API_KEY\" not found");
    // Unknown functions are 404 before anything runs.
    execute(&app, &format!("{base}/{}", uuid::Uuid::new_v4()), json!({}))
        .await
        .assert_error(404, "not_found", "function not found");
}

async fn functions_see_only_their_accounts_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_account_id("alice").await;
    let b = app.create_account_id("bob").await;
    app.post(
        &format!("/accounts/{a}/secrets"),
        &json!({"name": "only_alice", "value": "alice-secret"}),
    )
    .await;
    app.post(
        &format!("/accounts/{a}/secrets"),
        &json!({"name": "KEY", "value": "alice-key"}),
    )
    .await;
    app.post(
        &format!("/accounts/{b}/secrets"),
        &json!({"name": "KEY", "value": "bob-key"}),
    )
    .await;
    // Bob cannot even list Alice's secret name.
    app.post(
        &format!("/accounts/{b}/functions"),
        &json!({"name": "f", "source": "1", "secrets": ["only_alice"]}),
    )
    .await
    .assert_error(
        400,
        "validation_failed",
        "secrets: secret \"only_alice\" not found",
    );
    let f = app
        .post(
            &format!("/accounts/{b}/functions"),
            &json!({"name": "f", "source": "(p, s) => ({s, g: typeof globalThis.only_alice})", "secrets": ["KEY"]}),
        )
        .await
        .json();
    let path = format!("/accounts/{b}/functions/{}", f["id"].as_str().unwrap());
    let out = execute(&app, &path, json!({})).await.json();
    assert_eq!(
        out["output"],
        json!({"s": {"KEY": "bob-key"}, "g": "undefined"})
    );
    // Alice's account cannot address Bob's function.
    execute(
        &app,
        &format!("/accounts/{a}/functions/{}", f["id"].as_str().unwrap()),
        json!({}),
    )
    .await
    .assert_error(404, "not_found", "function not found");
}

async fn devpack_actions_are_all_or_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    // The withdrawal is refused when applied (no such wallet); the trigger registered
    // before it, valid, is not applied either.
    let source = "() => { Devpack.triggers.register({rule: '@daily'});
                          Devpack.gasBank.withdraw({wallet: 'w', amount: '1', to: 'x'}); return {kept: true} }";
    let (base, path) = function(&app, source, json!({})).await;
    let out = execute(&app, &path, json!({})).await.json();
    assert_eq!(out["status"], "failed");
    assert_eq!(out["error_code"], "action_failed");
    let triggers = app
        .get(&base.replace("/functions", "/triggers"))
        .await
        .json();
    assert_eq!(triggers["items"], json!([]), "nothing applied");
    assert_eq!(
        out["error"],
        "devpack action action_2 (gasbank.withdraw) failed: wallet: no gas account of this account has this wallet"
    );
    assert_eq!(
        out["output"],
        json!({"kept": true}),
        "the script's output is kept"
    );
    assert_eq!(out["actions"][1]["status"], "failed");
    assert_eq!(out["actions"][1]["type"], "gasbank.withdraw");
    assert_eq!(
        out["actions"][1]["params"],
        json!({"wallet": "w", "amount": "1", "to": "x"})
    );
    assert_eq!(out["actions"][0]["status"], "aborted");
    // A failed script's actions are all aborted.
    app.send(Method::PUT, &path, Some(&json!({"name": "f", "source": "() => { Devpack.oracle.createRequest({}); throw new Error('x') }"}))).await;
    let out = execute(&app, &path, json!({})).await.json();
    assert_eq!(out["error_code"], "script_error");
    assert_eq!(out["actions"][0]["status"], "aborted");
}

async fn deleting_a_function_removes_its_executions(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, path) = function(&app, "() => 1", json!({})).await;
    let exec = execute(&app, &path, json!({})).await.json();
    assert_eq!(app.delete(&path).await.status, 204);
    app.get(&format!(
        "{base}/executions/{}",
        exec["id"].as_str().unwrap()
    ))
    .await
    .assert_error(404, "not_found", "execution not found");
}

#[actix_web::test]
async fn limits_fail_only_that_execution() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().env("EXEC_POOL_SIZE", "2"),
    )
    .await;
    let (base, spin) = function(
        &app,
        "() => { while (true) {} }",
        json!({"limits": {"timeout_ms": 500}}),
    )
    .await;
    let ok = app
        .post(&base, &json!({"name": "ok", "source": "(p) => ({v: p.v})"}))
        .await
        .json();
    let ok_path = format!("{base}/{}", ok["id"].as_str().unwrap());

    // The runaway loop and a normal call at the same time: the normal one is unaffected.
    let (looped, normal) = futures_util::future::join(
        execute(&app, &spin, json!({})),
        execute(&app, &ok_path, json!({"v": 1})),
    )
    .await;
    let looped = looped.json();
    assert_eq!(looped["error_code"], "timeout");
    assert_eq!(looped["error"], "execution exceeded its 500 ms timeout");
    let took = looped["duration_ms"].as_i64().unwrap();
    assert!(
        (500..1500).contains(&took),
        "stopped within the timeout plus 1 s, took {took} ms"
    );
    assert_eq!(normal.json()["output"], json!({"v": 1}));

    let bomb = app
        .post(
            &base,
            &json!({"name": "bomb", "limits": {"memory_mib": 16, "timeout_ms": 30000},
            "source": "() => { const a = []; while (true) a.push('x'.repeat(4096) + a.length); }"}),
        )
        .await
        .json();
    let out = execute(
        &app,
        &format!("{base}/{}", bomb["id"].as_str().unwrap()),
        json!({}),
    )
    .await
    .json();
    assert_eq!(out["error_code"], "memory_limit");
    let big = app
        .post(
            &base,
            &json!({"name": "big", "source": "() => ({big: 'x'.repeat(10 * 1024 * 1024)})"}),
        )
        .await
        .json();
    let out = execute(
        &app,
        &format!("{base}/{}", big["id"].as_str().unwrap()),
        json!({}),
    )
    .await
    .json();
    assert_eq!(out["error_code"], "output_too_large");

    // The process and the pool carry on; replaced runtimes were counted.
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(
        execute(&app, &ok_path, json!({"v": 2})).await.json()["output"],
        json!({"v": 2})
    );
    let metrics = app.get("/metrics").await.text();
    for line in [
        r#"service_layer_executor_terminations_total{reason="timeout"} 1"#,
        r#"service_layer_executor_terminations_total{reason="memory_limit"} 1"#,
        r#"service_layer_functions_executions_total{error_code="none",status="succeeded"} 2"#,
        r#"service_layer_functions_executions_total{error_code="output_too_large",status="failed"} 1"#,
        "service_layer_executor_busy 0",
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }
}

#[actix_web::test]
async fn no_state_leaks_between_executions() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().env("EXEC_POOL_SIZE", "1"),
    )
    .await;
    let (base, set) = function(
        &app,
        "() => { globalThis.leaked = 'yes'; Array.prototype.evil = 1; return 1 }",
        json!({}),
    )
    .await;
    let check = app
        .post(
            &base,
            &json!({"name": "check", "source": "() => [typeof leaked, [].evil === undefined]"}),
        )
        .await
        .json();
    execute(&app, &set, json!({})).await;
    let out = execute(
        &app,
        &format!("{base}/{}", check["id"].as_str().unwrap()),
        json!({}),
    )
    .await
    .json();
    assert_eq!(out["output"], json!({"result": ["undefined", true]}));
}

async fn a_hundred_concurrent_executions_are_correct_or_told_busy(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default()
            .env("EXEC_POOL_SIZE", "2")
            .env("EXEC_QUEUE_SIZE", "8")
            // One account here: its share is the whole pool and queue.
            .env("EXEC_MAX_PER_ACCOUNT", "10"),
    )
    .await;
    let (_, path) = function(
        &app,
        "(p) => { let x = 0; for (let i = 0; i < 200000; i++) x += i; return {n: p.n, x} }",
        json!({}),
    )
    .await;
    let bodies: Vec<Value> = (0..100).map(|n| json!({"n": n})).collect();
    let results =
        futures_util::future::join_all(bodies.iter().map(|b| execute(&app, &path, b.clone())))
            .await;
    let mut ok = 0;
    let mut busy = 0;
    for (n, res) in results.iter().enumerate() {
        match res.status {
            200 => {
                assert_eq!(
                    res.json()["output"]["n"],
                    n,
                    "each caller gets its own result"
                );
                ok += 1;
            }
            503 => {
                res.assert_error(
                    503,
                    "executor_busy",
                    "all executors are busy and the queue is full; retry shortly",
                );
                assert_eq!(res.header("retry-after").as_deref(), Some("1"));
                busy += 1;
            }
            other => panic!("unexpected status {other}: {}", res.text()),
        }
    }
    assert_eq!(ok + busy, 100);
    assert!(
        ok >= 10,
        "at least the pool and the queue were served, got {ok}"
    );
    let recorded = app
        .get(&format!("{path}/executions?limit=500"))
        .await
        .json();
    assert_eq!(
        recorded["items"].as_array().unwrap().len(),
        ok,
        "refused runs are not recorded"
    );
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains(&format!("service_layer_executor_rejections_total {busy}")),
        "{metrics}"
    );
}

#[actix_web::test]
async fn mock_mode_echoes_without_javascript() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().env("TEE_MODE", "disabled"),
    )
    .await;
    let (_, path) = function(&app, "() => { throw new Error('never runs') }", json!({})).await;
    let out = execute(&app, &path, json!({"x": 1})).await.json();
    assert_eq!(out["status"], "succeeded");
    assert_eq!(
        out["output"],
        json!({"x": 1, "function_name": "f", "message": "mock execution (TEE disabled)"})
    );
    assert_eq!(out["logs"], json!([]));
}

/// A lease that holds or not, as the test says.
#[derive(Debug)]
struct FixedLease(bool);

#[async_trait::async_trait]
impl actors::functions::Fence for FixedLease {
    async fn holds(
        &self,
        _: &mut actors::store::Tx<'_>,
    ) -> Result<bool, actors::error::StoreError> {
        Ok(self.0)
    }
}

/// Execution records written together (group commit) each get their own outcome: a record
/// whose lease was lost is refused and not written, one whose function is gone is
/// `NotFound` (its batch then falls back to one transaction per record), and every other
/// record is written exactly once.
#[actix_web::test]
async fn grouped_execution_records_each_get_their_own_outcome() {
    use actors::error::StoreError;
    use actors::functions::{Execution, ExecutionStatus, Fence, FunctionStore, PgFunctionStore};
    use actors::ids::{AccountId, ExecutionId, FunctionId};
    use std::sync::Arc;
    type Case = (Execution, Option<Arc<dyn Fence>>, &'static str);

    let app = spawn_app(Backend::Postgres).await;
    let (base, path) = function(&app, "() => 1", json!({})).await;
    let account = base.split('/').nth(2).unwrap();
    let function = path.rsplit('/').next().unwrap();
    let db = app.db.as_ref().unwrap();
    let pool = actors::store::connect(
        &db.url,
        &actors::store::PgOptions {
            max_connections: 4,
            connect_timeout: std::time::Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let store = PgFunctionStore::new(pool);
    let account = AccountId::parse(account).unwrap();
    let function = FunctionId::parse(function).unwrap();
    let record = |function: FunctionId, n: usize| Execution {
        id: ExecutionId::generate(),
        account_id: account,
        function_id: function,
        status: ExecutionStatus::Succeeded,
        input: json!({"n": n}),
        output: json!(n),
        logs: vec![format!("line {n}")],
        error: None,
        error_code: None,
        started_at: chrono::Utc::now(),
        completed_at: chrono::Utc::now(),
        duration_ms: 1,
        actions: Vec::new(),
    };
    // Round 1 holds a record of a missing function (the whole batch fails, then each
    // record is written alone); round 2 does not (one transaction for the batch).
    for (round, missing) in [(1, 3), (2, 0)] {
        // (record, its lease, what must come of it: written, refused, missing)
        let mut cases: Vec<Case> = Vec::new();
        for n in 0..40 {
            cases.push(match n % 8 {
                0 => (
                    record(function, n),
                    Some(Arc::new(FixedLease(false))),
                    "refused",
                ),
                1 => (
                    record(function, n),
                    Some(Arc::new(FixedLease(true))),
                    "written",
                ),
                _ => (record(function, n), None, "written"),
            });
        }
        for n in 0..missing {
            cases.push((record(FunctionId::generate(), 100 + n), None, "missing"));
        }
        let outcomes = futures_util::future::join_all(
            cases
                .iter()
                .map(|(e, fence, _)| store.insert_execution(e, None, fence.as_ref(), &[])),
        )
        .await;
        let client = db.client().await;
        for ((execution, _, expected), outcome) in cases.iter().zip(outcomes) {
            let stored: i64 = client
                .query_one(
                    "SELECT count(*) FROM app_function_executions WHERE id = $1 AND output = $2",
                    &[execution.id.as_uuid(), &execution.output],
                )
                .await
                .unwrap()
                .get(0);
            match (*expected, outcome) {
                ("written", Ok(None)) => assert_eq!(stored, 1, "round {round}: {execution:?}"),
                ("refused", Err(StoreError::InvalidState(_)))
                | ("missing", Err(StoreError::NotFound)) => {
                    assert_eq!(
                        stored, 0,
                        "round {round}: {expected} but written: {execution:?}"
                    )
                }
                (expected, other) => {
                    panic!("round {round}: {expected} expected, got {other:?} for {execution:?}")
                }
            }
        }
    }
}
