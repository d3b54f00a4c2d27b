//! Every request costs bounded work (issue 11): quotas on HTTP and Devpack, pending
//! firings, NUL, failed-authentication throttling, fenced leases, bounded metric labels,
//! redaction, retention, framework errors as JSON, and a hostile sweep of every route.

use crate::both_stores;
use crate::helpers::*;
use crate::triggers::{post_webhook, webhook_trigger};
use actix_web::http::Method;
use actors::triggers::webhook_signature;
use serde_json::{json, Value};
use std::time::Duration;

both_stores!(
    quotas_hold_on_http_and_devpack,
    quotas_hold_under_parallel_creates,
    pending_firings_per_trigger_are_bounded,
    nul_is_refused_in_input_and_replaced_in_output,
    failed_authentication_is_throttled_per_address,
    rate_limit_comes_after_route_and_scope,
    secrets_are_redacted_from_errors_and_events,
    memory_keeps_at_most_the_configured_executions,
    far_past_next_run_keeps_the_schedule,
    hostile_values_never_get_a_server_error,
    oversized_lists_are_refused_before_work,
);

async fn function_in(app: &TestApp, account: &str, name: &str, source: &str) -> String {
    let res = app
        .post(
            &format!("/accounts/{account}/functions"),
            &json!({"name": name, "source": source}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    res.json()["id"].as_str().unwrap().to_owned()
}

/// A fresh account token of `account`.
async fn account_token(app: &TestApp, account: &str) -> String {
    app.post(
        &format!("/accounts/{account}/tokens"),
        &json!({"name": "t"}),
    )
    .await
    .json()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn quotas_hold_on_http_and_devpack(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default()
            .env("MAX_FUNCTIONS_PER_ACCOUNT", "2")
            .env("MAX_SECRETS_PER_ACCOUNT", "1")
            .env("MAX_JOBS_PER_ACCOUNT", "1")
            .env("MAX_TRIGGERS_PER_ACCOUNT", "2"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    let other = app.create_account_id("bob").await;
    let base = format!("/accounts/{account}");
    let f1 = function_in(&app, &account, "f1", "() => 1").await;
    // The attack of the issue: a function that registers three triggers per run.
    let grower = function_in(
        &app,
        &account,
        "grower",
        "() => { for (let i = 0; i < 3; i++) Devpack.triggers.register({rule: '@yearly'}); return 1 }",
    )
    .await;
    app.post(
        &format!("{base}/functions"),
        &json!({"name": "f3", "source": "() => 1"}),
    )
    .await
    .assert_error(
        409,
        "limit_exceeded",
        "functions: at most 2 per account (MAX_FUNCTIONS_PER_ACCOUNT)",
    );
    // Quotas are per account.
    function_in(&app, &other, "f1", "() => 1").await;
    function_in(&app, &other, "f2", "() => 1").await;

    let secret = json!({"name": "S1", "value": "v"});
    assert_eq!(
        app.post(&format!("{base}/secrets"), &secret).await.status,
        201
    );
    app.post(
        &format!("{base}/secrets"),
        &json!({"name": "S2", "value": "v"}),
    )
    .await
    .assert_error(
        409,
        "limit_exceeded",
        "secrets: at most 1 per account (MAX_SECRETS_PER_ACCOUNT)",
    );

    let job = |name: &str| json!({"function_id": f1, "name": name, "schedule": "@yearly"});
    assert_eq!(
        app.post(&format!("{base}/automation/jobs"), &job("j1"))
            .await
            .status,
        201
    );
    app.post(&format!("{base}/automation/jobs"), &job("j2"))
        .await
        .assert_error(
            409,
            "limit_exceeded",
            "jobs: at most 1 per account (MAX_JOBS_PER_ACCOUNT)",
        );

    // Devpack: three registrations against a quota of two refuse the whole run.
    let out = app
        .post(&format!("{base}/functions/{grower}/execute"), &json!({}))
        .await
        .json();
    assert_eq!(out["status"], "failed", "{out}");
    assert_eq!(out["error_code"], "action_failed");
    assert_eq!(
        out["error"],
        "devpack action action_3 (triggers.register) failed: triggers: at most 2 per account (MAX_TRIGGERS_PER_ACCOUNT)"
    );
    let triggers = app.get(&format!("{base}/triggers")).await.json();
    assert_eq!(triggers["items"], json!([]), "all or nothing");
    // Over HTTP the same quota: two fit, the third does not.
    for _ in 0..2 {
        let t = json!({"function_id": f1, "rule": "@yearly"});
        assert_eq!(app.post(&format!("{base}/triggers"), &t).await.status, 201);
    }
    app.post(
        &format!("{base}/triggers"),
        &json!({"function_id": f1, "rule": "@yearly"}),
    )
    .await
    .assert_error(
        409,
        "limit_exceeded",
        "triggers: at most 2 per account (MAX_TRIGGERS_PER_ACCOUNT)",
    );
    // Deleting makes room again.
    app.delete(&format!("{base}/functions/{grower}")).await;
    function_in(&app, &account, "f3", "() => 1").await;
}

async fn quotas_hold_under_parallel_creates(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default().env("MAX_FUNCTIONS_PER_ACCOUNT", "3"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    let path = format!("/accounts/{account}/functions");
    let creates = (0..12).map(|i| {
        let body = json!({"name": format!("f{i}"), "source": "() => 1"});
        let path = path.clone();
        let app = &app;
        async move { app.post(&path, &body).await.status }
    });
    let mut statuses = futures_util::future::join_all(creates).await;
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [201, 201, 201, 409, 409, 409, 409, 409, 409, 409, 409, 409]
    );
    let listed = app.get(&format!("{path}?limit=50")).await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 3);
}

async fn pending_firings_per_trigger_are_bounded(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default()
            .env("MAX_PENDING_FIRINGS_PER_TRIGGER", "2")
            .env("EXEC_POOL_SIZE", "1"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    // Busy for about three seconds: the first firings stay open while the test posts.
    let slow = function_in(
        &app,
        &account,
        "slow",
        "() => { const end = Date.now() + 3000; while (Date.now() < end) {} return 1 }",
    )
    .await;
    let hook = webhook_trigger(&app, &account, &slow).await;
    let id = hook["id"].as_str().unwrap();
    let secret = hook["webhook_secret"].as_str().unwrap();
    let body = br#"{"n": 1}"#;
    let signature = webhook_signature(secret, body);
    for _ in 0..2 {
        let res = post_webhook(&app, id, body, Some(&signature)).await;
        assert_eq!(res.status, 202, "{}", res.text());
    }
    let refused = post_webhook(&app, id, body, Some(&signature)).await;
    refused.assert_error(
        429,
        "rate_limited",
        "pending firings: at most 2 per trigger (MAX_PENDING_FIRINGS_PER_TRIGGER); retry later",
    );
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
}

async fn nul_is_refused_in_input_and_replaced_in_output(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post("/accounts", &json!({"owner": "\u{0}"}))
        .await
        .assert_error(
            400,
            "validation_failed",
            "owner: must not contain NUL characters",
        );
    app.post(
        "/accounts",
        &json!({"owner": "o", "metadata": {"k": "a\u{0}b"}}),
    )
    .await
    .assert_error(
        400,
        "validation_failed",
        "metadata: must not contain NUL characters",
    );
    app.post(
        "/accounts",
        &json!({"owner": "o", "metadata": {"k\u{0}": "v"}}),
    )
    .await
    .assert_error(
        400,
        "validation_failed",
        "metadata: must not contain NUL characters",
    );
    // JSON errors come first; a literal backslash-u in text is not a NUL.
    let ok = app.post("/accounts", &json!({"owner": "\\u0000"})).await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    let listed = app.get("/accounts?limit=500").await.json();
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "nothing else stored"
    );

    let account = ok.json()["id"].as_str().unwrap().to_owned();
    let echo = function_in(
        &app,
        &account,
        "echo",
        r#"(p) => { console.log("n\0l"); if (p.fail) throw new Error("x\0y"); return {s: "a\0b"} }"#,
    )
    .await;
    let execute = format!("/accounts/{account}/functions/{echo}/execute");
    app.post(&execute, &json!({"deep": [{"x": "\u{0}"}]}))
        .await
        .assert_error(
            400,
            "validation_failed",
            "params: must not contain NUL characters",
        );
    // What a function produces is stored, with U+FFFD for U+0000 (PostgreSQL included).
    let out = app.post(&execute, &json!({})).await.json();
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["output"], json!({"s": "a\u{FFFD}b"}));
    assert_eq!(out["logs"], json!(["n\u{FFFD}l"]));
    let failed = app.post(&execute, &json!({"fail": true})).await.json();
    assert_eq!(failed["error"], "Uncaught Error: x\u{FFFD}y");
    let id = failed["id"].as_str().unwrap();
    let stored = app
        .get(&format!(
            "/accounts/{account}/functions/{echo}/executions/{id}"
        ))
        .await
        .json();
    assert_eq!(stored["error"], failed["error"], "the record was kept");

    let hook = webhook_trigger(&app, &account, &echo).await;
    let body = br#"{"a": "\u0000"}"#;
    let signature = webhook_signature(hook["webhook_secret"].as_str().unwrap(), body);
    post_webhook(&app, hook["id"].as_str().unwrap(), body, Some(&signature))
        .await
        .assert_error(
            400,
            "validation_failed",
            "body: must not contain NUL characters",
        );
}

async fn failed_authentication_is_throttled_per_address(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default()
            .env("AUTH_FAILURE_BURST", "3")
            .env("AUTH_FAILURE_RPS", "1"),
    )
    .await;
    let alice = app.create_account_id("alice").await;
    let token = account_token(&app, &alice).await;
    let honest = format!("Bearer {token}");
    let own = format!("/accounts/{alice}");
    assert_eq!(app.get_as(Some(&honest), &own).await.status, 200);
    for i in 0..3 {
        let res = app
            .get_as(Some(&format!("Bearer slt_made-up-{i}")), "/accounts")
            .await;
        res.assert_error(401, "unauthorized", "missing or invalid bearer token");
    }
    // Past the burst: refused within a few more (the budget refills at 1/s).
    let mut over = app.get_as(Some("Bearer slt_made-up-4"), "/accounts").await;
    for i in 5..15 {
        if over.status == 429 {
            break;
        }
        over = app
            .get_as(Some(&format!("Bearer slt_made-up-{i}")), "/accounts")
            .await;
    }
    assert_eq!(over.status, 429, "{}", over.text());
    assert_eq!(over.json()["code"], "rate_limited");
    assert!(over.header("retry-after").is_some());
    // Refused before the token is looked at, valid or not; admin tokens still work.
    let refused = app.get_as(Some("Bearer slt_another"), "/accounts").await;
    assert_eq!(refused.status, 429);
    assert_eq!(app.get("/accounts").await.status, 200);
    // A token that authenticated recently is not locked out by its neighbours.
    assert_eq!(app.get_as(Some(&honest), &own).await.status, 200);
    // Public paths are not affected.
    assert_eq!(app.get_as(None, "/healthz").await.status, 200);

    // Bad webhook signatures and unknown triggers count too.
    let app = spawn_app_with(
        backend,
        AppOptions::default()
            .env("AUTH_FAILURE_BURST", "2")
            .env("AUTH_FAILURE_RPS", "1"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    let f = function_in(&app, &account, "f", "() => 1").await;
    let hook = webhook_trigger(&app, &account, &f).await;
    let id = hook["id"].as_str().unwrap();
    let body = b"{}";
    assert_eq!(
        post_webhook(&app, id, body, Some("sha256=00")).await.status,
        401
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(post_webhook(&app, &unknown, body, None).await.status, 404);
    let over = post_webhook(&app, id, body, Some("sha256=00")).await;
    assert_eq!(over.status, 429, "{}", over.text());
    // Even the right signature waits: the address is refused before the trigger is read.
    let good = webhook_signature(hook["webhook_secret"].as_str().unwrap(), body);
    assert_eq!(post_webhook(&app, id, body, Some(&good)).await.status, 429);
    drop(account);
}

async fn rate_limit_comes_after_route_and_scope(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default()
            .env("RATE_LIMIT_RPS", "1")
            .env("RATE_LIMIT_BURST", "3"),
    )
    .await;
    let alice = app.create_account_id("alice").await;
    let bob = app.create_account_id("bob").await;
    let token = account_token(&app, &alice).await;
    let bearer = format!("Bearer {token}");
    // Spend the token's bucket (burst 3, refilled at 1/s: a few tries at most).
    let mut limited = app
        .get_as(Some(&bearer), &format!("/accounts/{alice}"))
        .await;
    for _ in 0..10 {
        if limited.status == 429 {
            break;
        }
        limited = app
            .get_as(Some(&bearer), &format!("/accounts/{alice}"))
            .await;
    }
    assert_eq!(limited.status, 429, "{}", limited.text());
    // With the bucket empty, route and scope answers still come first.
    app.get_as(Some(&bearer), &format!("/accounts/{bob}"))
        .await
        .assert_error(404, "not_found", "account not found");
    assert_eq!(app.get_as(Some(&bearer), "/nowhere").await.status, 404);
    let res = read(
        app.client
            .delete(app.url("/healthz"))
            .insert_header(("Authorization", bearer.clone()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, 405);
    app.get_as(
        Some(&bearer),
        "/accounts/00000000-0000-0000-0000-000000000000/tokens",
    )
    .await
    .assert_error(403, "forbidden", "this route needs an admin token");
}

async fn secrets_are_redacted_from_errors_and_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let base = format!("/accounts/{account}");
    let put = app
        .post(
            &format!("{base}/secrets"),
            &json!({"name": "API_KEY", "value": "hunter2-very-secret"}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.text());
    let res = app
        .post(
            &format!("{base}/functions"),
            &json!({
                "name": "leaky",
                "secrets": ["API_KEY"],
                "source": "(p, s) => { if (p.action) { Devpack.automation.schedule({name: s.API_KEY, schedule: '@yearly'}); Devpack.automation.schedule({name: s.API_KEY, schedule: '@yearly'}); return 1 } throw new Error('key=' + s.API_KEY) }",
            }),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let f = res.json()["id"].as_str().unwrap().to_owned();
    let out = app
        .post(&format!("{base}/functions/{f}/execute"), &json!({}))
        .await;
    let text = out.text();
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(out.json()["error"], "Uncaught Error: key=***");
    // An action refused for a name made of the secret has it redacted in both errors
    // (the params are what the function chose to pass, and are kept as passed).
    let out = app
        .post(
            &format!("{base}/functions/{f}/execute"),
            &json!({"action": true}),
        )
        .await
        .json();
    assert_eq!(
        out["error"],
        "devpack action action_2 (automation.schedule) failed: job \"***\" already exists"
    );
    assert_eq!(out["actions"][1]["error"], "job \"***\" already exists");
    if let Some(db) = &app.db {
        let client = db.client().await;
        let rows = client
            .query("SELECT data::text FROM app_events", &[])
            .await
            .unwrap();
        assert!(!rows.is_empty(), "failure events were written");
        for row in rows {
            let data: String = row.get(0);
            assert!(!data.contains("hunter2"), "{data}");
        }
    }
}

async fn memory_keeps_at_most_the_configured_executions(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default().env("MEMORY_MAX_EXECUTIONS", "3"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    let f = function_in(&app, &account, "f", "(p) => p.n").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let out = app
            .post(
                &format!("/accounts/{account}/functions/{f}/execute"),
                &json!({"n": n}),
            )
            .await
            .json();
        ids.push(out["id"].as_str().unwrap().to_owned());
    }
    let listed = app
        .get(&format!("/accounts/{account}/functions/{f}/executions"))
        .await
        .json();
    let kept: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    match backend {
        // Memory mode keeps the newest three, newest first.
        Backend::Memory => assert_eq!(kept, [&*ids[4], &*ids[3], &*ids[2]]),
        // The cap is memory mode's; PostgreSQL keeps what retention keeps.
        Backend::Postgres => assert_eq!(kept.len(), 5),
    }
}

async fn far_past_next_run_keeps_the_schedule(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default().env("AUTOMATION_TICK", "100ms"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    let f = function_in(&app, &account, "f", "() => 1").await;
    let job = app
        .post(
            &format!("/accounts/{account}/automation/jobs"),
            &json!({"function_id": f, "name": "j", "schedule": "@every 1h"}),
        )
        .await
        .json();
    let path = format!(
        "/accounts/{account}/automation/jobs/{}",
        job["id"].as_str().unwrap()
    );
    let patched = app
        .patch(&path, &json!({"next_run": "0001-01-01T00:00:00Z"}))
        .await
        .json();
    assert_eq!(patched["next_run"], "0001-01-01T00:00:00.000000Z");
    // Dispatched once; the next run is one step ahead, not gone.
    let mut after = Value::Null;
    for _ in 0..200 {
        after = app.get(&path).await.json();
        if after["next_run"] != patched["next_run"] {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(after["enabled"], true);
    let next = after["next_run"]
        .as_str()
        .unwrap_or_else(|| panic!("{after}"));
    assert!(next > "2020", "{next}");
}

/// The attack of the issue: a function listing 40,000 secret names (400 KB) used to
/// hold a worker for 27 s in a quadratic duplicate check; now the cap comes first.
/// Every other list and map is capped likewise.
async fn oversized_lists_are_refused_before_work(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let names: Vec<String> = (0..40_000).map(|i| format!("S{i}")).collect();
    app.post(
        &format!("/accounts/{account}/functions"),
        &json!({"name": "f", "source": "() => 1", "secrets": names}),
    )
    .await
    .assert_error(
        400,
        "validation_failed",
        "secrets: at most 64 names allowed",
    );
    let metadata: serde_json::Map<String, Value> =
        (0..5000).map(|i| (format!("k{i}"), json!("v"))).collect();
    let res = app
        .post("/accounts", &json!({"owner": "o", "metadata": metadata}))
        .await;
    assert_eq!(res.status, 400, "{}", res.text());
    let f = function_in(&app, &account, "f", "() => 1").await;
    let config: serde_json::Map<String, Value> =
        (0..5000).map(|i| (format!("k{i}"), json!("v"))).collect();
    app.post(
        &format!("/accounts/{account}/triggers"),
        &json!({"function_id": f, "rule": "@yearly", "config": config}),
    )
    .await
    .assert_error(
        400,
        "validation_failed",
        "config: at most 32 entries allowed",
    );
    // The health check answers throughout.
    assert_eq!(app.get("/healthz").await.status, 200);
}

/// Values a hostile client sends: wrong types, huge and deep values, NUL, bad ids.
fn hostile_values() -> Vec<Value> {
    let deep = (0..200).fold(json!(1), |v, _| json!([v]));
    vec![
        json!(null),
        json!(-1),
        json!(1e308),
        json!(u64::MAX),
        json!(true),
        json!("\u{0}"),
        json!("x".repeat(70_000)),
        json!(vec!["a"; 5000]),
        json!({"": "\u{0}"}),
        deep,
    ]
}

async fn hostile_values_never_get_a_server_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let f = function_in(&app, &account, "f", "() => 1").await;
    let hook = webhook_trigger(&app, &account, &f).await;
    let trigger = hook["id"].as_str().unwrap().to_owned();
    let job = app
        .post(
            &format!("/accounts/{account}/automation/jobs"),
            &json!({"function_id": f, "name": "j", "schedule": "@yearly"}),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let feed = app
        .post(
            &format!("/accounts/{account}/pricefeeds"),
            &json!({"base_asset": "NEO", "quote_asset": "USD", "deviation_percent": 1}),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let source = crate::oracle::source(
        &app,
        &account,
        json!({"name": "s", "url": "https://s.example"}),
    )
    .await;
    let request = crate::oracle::request(&app, &account, &source, "").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = "S";
    app.post(
        &format!("/accounts/{account}/secrets"),
        &json!({"name": secret, "value": "v"}),
    )
    .await;
    let a = format!("/accounts/{account}");
    let bad = "%00%FF..%2F";
    // Every route of the router, with real and hostile path ids.
    let routes: Vec<(Method, String, &[&str])> = vec![
        (Method::POST, "/accounts".into(), &["owner", "metadata"]),
        (Method::GET, "/accounts".into(), &[]),
        (Method::GET, a.clone(), &[]),
        (Method::PATCH, a.clone(), &["owner", "metadata"]),
        (Method::POST, format!("{a}/secrets"), &["name", "value"]),
        (Method::GET, format!("{a}/secrets"), &[]),
        (Method::GET, format!("{a}/secrets/{secret}"), &[]),
        (Method::PUT, format!("{a}/secrets/{secret}"), &["value"]),
        (
            Method::POST,
            format!("{a}/functions"),
            &["name", "source", "secrets", "limits", "description"],
        ),
        (Method::GET, format!("{a}/functions"), &[]),
        (Method::GET, format!("{a}/functions/{f}"), &[]),
        (
            Method::PUT,
            format!("{a}/functions/{f}"),
            &["name", "source", "secrets", "limits"],
        ),
        (Method::POST, format!("{a}/functions/{f}/execute"), &["x"]),
        (Method::GET, format!("{a}/functions/{f}/executions"), &[]),
        (
            Method::GET,
            format!("{a}/functions/{f}/executions/{bad}"),
            &[],
        ),
        (Method::GET, format!("{a}/functions/executions/{bad}"), &[]),
        (
            Method::POST,
            format!("{a}/automation/jobs"),
            &[
                "function_id",
                "name",
                "schedule",
                "max_attempts",
                "overlap_policy",
                "enabled",
            ],
        ),
        (Method::GET, format!("{a}/automation/jobs"), &[]),
        (Method::GET, format!("{a}/automation/jobs/{job}"), &[]),
        (
            Method::PATCH,
            format!("{a}/automation/jobs/{job}"),
            &[
                "schedule",
                "next_run",
                "max_attempts",
                "enabled",
                "function_id",
            ],
        ),
        (Method::GET, format!("{a}/automation/jobs/{job}/runs"), &[]),
        (
            Method::POST,
            format!("{a}/triggers"),
            &["function_id", "type", "rule", "config", "enabled"],
        ),
        (Method::GET, format!("{a}/triggers"), &[]),
        (Method::GET, format!("{a}/triggers/{trigger}"), &[]),
        (
            Method::PATCH,
            format!("{a}/triggers/{trigger}"),
            &["rule", "config", "enabled", "rotate_webhook_secret"],
        ),
        (
            Method::POST,
            format!("{a}/pricefeeds"),
            &[
                "base_asset",
                "quote_asset",
                "update_interval",
                "heartbeat_interval",
                "deviation_percent",
                "sources",
            ],
        ),
        (Method::GET, format!("{a}/pricefeeds"), &[]),
        (Method::GET, format!("{a}/pricefeeds/{feed}"), &[]),
        (
            Method::PATCH,
            format!("{a}/pricefeeds/{feed}"),
            &[
                "update_interval",
                "heartbeat_interval",
                "deviation_percent",
                "active",
                "sources",
            ],
        ),
        (Method::GET, format!("{a}/pricefeeds/{feed}/snapshots"), &[]),
        (
            Method::POST,
            format!("{a}/pricefeeds/{feed}/snapshots"),
            &["price", "source", "collected_at"],
        ),
        (Method::DELETE, format!("{a}/pricefeeds/{bad}"), &[]),
        (
            Method::POST,
            format!("{a}/oracle/sources"),
            &[
                "name",
                "description",
                "url",
                "method",
                "headers",
                "body",
                "enabled",
            ],
        ),
        (Method::GET, format!("{a}/oracle/sources"), &[]),
        (Method::GET, format!("{a}/oracle/sources/{source}"), &[]),
        (
            Method::PATCH,
            format!("{a}/oracle/sources/{source}"),
            &["name", "url", "method", "headers", "body", "enabled"],
        ),
        (Method::DELETE, format!("{a}/oracle/sources/{bad}"), &[]),
        (
            Method::POST,
            format!("{a}/oracle/requests"),
            &["data_source_id", "payload"],
        ),
        (Method::GET, format!("{a}/oracle/requests"), &[]),
        (Method::GET, format!("{a}/oracle/requests/{request}"), &[]),
        (
            Method::PATCH,
            format!("{a}/oracle/requests/{request}"),
            &["status", "result", "error"],
        ),
        (Method::PATCH, format!("{a}/oracle/requests/{bad}"), &[]),
        (Method::GET, format!("{a}/gasbank"), &[]),
        (Method::POST, format!("{a}/gasbank"), &["wallet_address"]),
        (
            Method::POST,
            format!("{a}/gasbank/deposit"),
            &[
                "gas_account_id",
                "amount",
                "tx_id",
                "from_address",
                "to_address",
            ],
        ),
        (
            Method::POST,
            format!("{a}/gasbank/withdraw"),
            &["gas_account_id", "amount", "to_address"],
        ),
        (Method::GET, format!("{a}/gasbank/transactions"), &[]),
        (
            Method::POST,
            format!("{a}/random"),
            &["length", "request_id"],
        ),
        (Method::GET, "/random/public-key".into(), &[]),
        (
            Method::POST,
            "/random/verify".into(),
            &[
                "account_id",
                "request_id",
                "counter",
                "length",
                "value",
                "signature",
                "public_key",
                "created_at",
            ],
        ),
        (Method::POST, format!("{a}/tokens"), &["name", "expires_at"]),
        (Method::GET, format!("{a}/tokens"), &[]),
        (Method::GET, format!("{a}/tokens/{bad}"), &[]),
        (Method::POST, format!("/webhooks/{bad}"), &[]),
        (Method::GET, format!("/accounts/{bad}"), &[]),
        (Method::GET, format!("{a}/secrets/{bad}"), &[]),
        (Method::DELETE, format!("{a}/triggers/{bad}"), &[]),
        (Method::GET, "/healthz".into(), &[]),
        (Method::GET, "/readyz".into(), &[]),
    ];
    let queries = [
        "",
        "?limit=0",
        "?limit=abc",
        "?cursor=%00",
        "?cursor=AAAA",
        "?x=1",
        "?limit=99999999999999999999",
    ];
    let mut checked = 0;
    for (method, path, fields) in &routes {
        for query in queries {
            let url = format!("{path}{query}");
            let res = app.send(method.clone(), &url, None).await;
            assert_sane(&res, method, &url);
            checked += 1;
        }
        for field in *fields {
            for value in hostile_values() {
                let body = json!({*field: value});
                let res = app.send(method.clone(), path, Some(&body)).await;
                assert_sane(&res, method, path);
                checked += 1;
            }
        }
        for raw in [&b"["[..], b"{\"a\":", b"\"x\"", b"{}{}", b"\xff\xfe"] {
            let res = read(
                app.req(method.clone(), path)
                    .insert_header(("Content-Type", "application/json"))
                    .send_body(raw.to_vec())
                    .await
                    .unwrap(),
            )
            .await;
            assert_sane(&res, method, path);
            checked += 1;
        }
    }
    assert!(checked > 700, "{checked} requests");
    assert_eq!(
        app.get("/healthz").await.status,
        200,
        "the server is still up"
    );
}

fn assert_sane(res: &Resp, method: &Method, path: &str) {
    let short: String = path.chars().take(120).collect();
    assert!(
        res.status < 500,
        "{method} {short}: {} {}",
        res.status,
        res.text()
    );
    if res.status >= 400 {
        let body = res.json();
        assert!(
            body["error"].is_string() && body["code"].is_string(),
            "{method} {short}: {body}"
        );
    }
}

/// Framework errors (a path segment that is not UTF-8) are JSON like every other error.
#[actix_web::test]
async fn framework_errors_are_json() {
    let app = spawn_app(Backend::Memory).await;
    let res = read(
        app.client
            .post(app.url("/webhooks/%FF"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, 404, "{}", res.text());
    assert_eq!(res.json()["code"], "not_found");
}

/// Invented methods share one metrics series (`other`), however many are sent.
#[actix_web::test]
async fn invented_methods_share_one_metrics_label() {
    let app = spawn_app(Backend::Memory).await;
    for i in 0..5 {
        let method = Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        let res = read(
            app.client
                .request(method, app.url("/healthz"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        res.assert_error(
            405,
            "method_not_allowed",
            "method not allowed; allowed: GET",
        );
    }
    let metrics = app.get("/metrics").await.text();
    assert!(!metrics.contains("FOO"), "{metrics}");
    assert!(
        metrics.contains(r#"method="other",path="/healthz",status="405"} 5"#),
        "{metrics}"
    );
}

/// A job attempt whose lease was taken over while it ran commits nothing: stalled past
/// its lease (the test takes the lease away, as a failed renewal and a takeover by a
/// replica would), it finishes after the replica that took over, and exactly one
/// attempt's execution and Devpack effects exist.
#[actix_web::test]
async fn a_stalled_lease_holder_commits_nothing() {
    stalled_lease_holder("Devpack.triggers.register({rule: '@yearly'});", 1).await;
}

/// The same without Devpack actions: such a record goes through the group commit of
/// execution records, which must refuse it too (its lease was lost).
#[actix_web::test]
async fn a_stalled_lease_holder_without_actions_commits_nothing() {
    stalled_lease_holder("", 0).await;
}

async fn stalled_lease_holder(action: &str, triggers_expected: usize) {
    let first = spawn_app_with(
        Backend::Postgres,
        AppOptions::default()
            .env("AUTOMATION_TICK", "100ms")
            .env("WORK_LEASE", "30s"),
    )
    .await;
    let db = first.db.as_ref().unwrap();
    let account = first.create_account_id("alice").await;
    let base = format!("/accounts/{account}");
    // Long enough to take its lease away while it runs; it registers one trigger.
    let f = function_in(
        &first,
        &account,
        "slow",
        &format!("() => {{ const end = Date.now() + 2500; while (Date.now() < end) {{}} {action} return 1 }}"),
    )
    .await;
    let job = first
        .post(
            &format!("{base}/automation/jobs"),
            &json!({"function_id": f, "name": "j", "schedule": "@yearly"}),
        )
        .await
        .json();
    let job_id = job["id"].as_str().unwrap().to_owned();
    let client = db.client().await;
    client
        .execute(
            "UPDATE app_automation_jobs SET next_run = now() WHERE id = $1::text::uuid",
            &[&job_id],
        )
        .await
        .unwrap();
    // Wait for the first replica to hold the attempt, then take its lease away.
    let mut taken = false;
    for _ in 0..100 {
        let n = client
            .execute(
                "UPDATE app_automation_runs SET lease_owner = 'ghost', lease_until = now() - interval '1 second'
                 WHERE job_id = $1::text::uuid AND lease_owner IS NOT NULL AND lease_owner <> 'ghost'",
                &[&job_id],
            )
            .await
            .unwrap();
        if n == 1 {
            taken = true;
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(taken, "the first replica never claimed the run");
    // A second replica on the same database takes the expired run over.
    let second = spawn_app_with(
        Backend::Memory,
        AppOptions::default()
            .env("DATABASE_URL", &db.url)
            .env("SECRET_ENCRYPTION_KEY", KEY)
            .env("AUTOMATION_TICK", "100ms")
            .env("WORK_LEASE", "30s"),
    )
    .await;
    let runs = format!("{base}/automation/jobs/{job_id}/runs");
    let mut run = Value::Null;
    for _ in 0..200 {
        run = first.get(&runs).await.json()["items"][0].clone();
        if run["status"] == "succeeded" {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(run["status"], "succeeded", "{run}");
    // Let the stalled first attempt finish too (it runs 2.5 s from its start).
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    let executions = first
        .get(&format!("{base}/functions/{f}/executions"))
        .await
        .json();
    assert_eq!(
        executions["items"].as_array().unwrap().len(),
        1,
        "one attempt recorded: {executions}"
    );
    assert_eq!(run["execution_id"], executions["items"][0]["id"]);
    let triggers = first.get(&format!("{base}/triggers")).await.json();
    assert_eq!(
        triggers["items"].as_array().unwrap().len(),
        triggers_expected,
        "one attempt's effects: {triggers}"
    );
    drop(second);
}

/// Finished executions and runs past their retention are deleted (at start-up, then
/// every minute), in PostgreSQL as in memory; recent ones stay.
#[actix_web::test]
async fn retention_deletes_old_executions_and_runs() {
    let first = spawn_app(Backend::Postgres).await;
    let account = first.create_account_id("alice").await;
    let f = function_in(&first, &account, "f", "() => 1").await;
    let out = first
        .post(
            &format!("/accounts/{account}/functions/{f}/execute"),
            &json!({}),
        )
        .await
        .json();
    let recent = out["id"].as_str().unwrap().to_owned();
    let job = first
        .post(
            &format!("/accounts/{account}/automation/jobs"),
            &json!({"function_id": f, "name": "j", "schedule": "@yearly"}),
        )
        .await
        .json();
    let job_id = job["id"].as_str().unwrap().to_owned();
    let db = first.db.as_ref().unwrap();
    let client = db.client().await;
    // An execution and a run from 40 days ago.
    client
        .execute(
            "INSERT INTO app_function_executions
                 (id, account_id, function_id, status, input, output, logs, error, error_code,
                  actions, started_at, completed_at, duration_ms, created_at)
                 SELECT gen_random_uuid(), account_id, function_id, status, input, output, logs,
                        error, error_code, actions, started_at - interval '40 days',
                        completed_at - interval '40 days', duration_ms, created_at
                 FROM app_function_executions WHERE id = $1::text::uuid",
            &[&recent],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO app_automation_runs (id, job_id, scheduled_for, status, attempt, completed_at, created_at)
             VALUES (gen_random_uuid(), $1::text::uuid, now() - interval '40 days', 'succeeded', 1,
                     now() - interval '40 days', now() - interval '40 days')",
            &[&job_id],
        )
        .await
        .unwrap();
    let count = |sql: &'static str| {
        let client = &client;
        async move { client.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT count(*) FROM app_function_executions").await,
        2
    );
    // A replica starting up purges at once (default retention: 30 days).
    let second = spawn_app_with(
        Backend::Memory,
        AppOptions::default()
            .env("DATABASE_URL", &db.url)
            .env("SECRET_ENCRYPTION_KEY", KEY),
    )
    .await;
    let mut left = (0, 0);
    for _ in 0..100 {
        left = (
            count("SELECT count(*) FROM app_function_executions").await,
            count("SELECT count(*) FROM app_automation_runs").await,
        );
        if left == (1, 0) {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, (1, 0), "old rows purged, the recent execution kept");
    let kept: String = client
        .query_one("SELECT id::text FROM app_function_executions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, recent);
    drop(second);
}
