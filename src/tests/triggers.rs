//! Triggers on both stores: CRUD and validation, signed webhooks, cron triggers through
//! the scheduler, event triggers fed by the outbox.

use crate::both_stores;
use crate::helpers::*;
use actors::triggers::webhook_signature;
use serde_json::{json, Value};
use std::time::Duration;

both_stores!(
    triggers_crud_and_validation,
    concurrent_trigger_patches_all_stick,
    webhook_signatures_are_enforced,
    cron_triggers_fire_through_the_scheduler,
    event_trigger_fires_on_a_failing_function,
    event_trigger_fires_when_a_job_finally_fails,
    devpack_registers_triggers_and_schedules_jobs,
    devpack_actions_apply_all_or_nothing,
    a_refused_action_settles_the_firing_as_failed,
);

fn fast_workers() -> AppOptions {
    AppOptions::default()
        .env("AUTOMATION_TICK", "100ms")
        .env("AUTOMATION_RETRY_BASE", "100ms")
        .env("WORK_POLL_INTERVAL", "100ms")
}

/// An account with a function of `source`: (account id, function id).
async fn function_with(app: &TestApp, source: &str) -> (String, String) {
    let account = app.create_account_id("alice").await;
    let function = add_function(app, &account, source).await;
    (account, function)
}

async fn add_function(app: &TestApp, account: &str, source: &str) -> String {
    let res = app
        .post(
            &format!("/accounts/{account}/functions"),
            &json!({"name": "f", "source": source}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    res.json()["id"].as_str().unwrap().to_owned()
}

/// The function's executions (newest first), polled until `done` holds (a hang guard,
/// not a timing assertion).
pub(crate) async fn executions_until(
    app: &TestApp,
    account: &str,
    function: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let path = format!("/accounts/{account}/functions/{function}/executions?limit=500");
    items_until(app, &path, done).await
}

/// A webhook trigger on `function` (its creation response, with the secret).
pub(crate) async fn webhook_trigger(app: &TestApp, account: &str, function: &str) -> Value {
    let res = app
        .post(
            &format!("/accounts/{account}/triggers"),
            &json!({"function_id": function, "type": "webhook"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    res.json()
}

pub(crate) async fn post_webhook(
    app: &TestApp,
    trigger: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Resp {
    let mut req = app
        .client
        .post(app.url(&format!("/webhooks/{trigger}")))
        .insert_header(("Content-Type", "application/json"));
    if let Some(signature) = signature {
        req = req.insert_header(("X-Webhook-Signature", signature));
    }
    read(req.send_body(body.to_vec()).await.expect("request sent")).await
}

async fn triggers_crud_and_validation(backend: Backend) {
    let app = spawn_app(backend).await;
    let (account, function) = function_with(&app, "() => 1").await;
    let base = format!("/accounts/{account}/triggers");

    // Cron is the default type; a leading `cron:` is stripped; config keys are trimmed
    // and lower-cased, values trimmed.
    let res = app
        .post(
            &base,
            &json!({"function_id": function, "rule": "cron:*/5 * * * *", "config": {" Region ": " eu "}}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let cron = res.json();
    let keys: Vec<_> = cron.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "account_id",
            "config",
            "created_at",
            "enabled",
            "function_id",
            "id",
            "last_fired_at",
            "next_run",
            "rule",
            "type",
            "updated_at",
            "webhook_path"
        ]
    );
    assert_eq!(
        (
            &cron["type"],
            &cron["rule"],
            &cron["config"],
            &cron["webhook_path"]
        ),
        (
            &json!("cron"),
            &json!("*/5 * * * *"),
            &json!({"region": "eu"}),
            &Value::Null
        )
    );
    let next: chrono::DateTime<chrono::Utc> =
        chrono::DateTime::parse_from_rfc3339(cron["next_run"].as_str().unwrap())
            .unwrap()
            .into();
    assert_eq!(
        next.timestamp() % 300,
        0,
        "next run on a 5-minute boundary: {next}"
    );
    let cron_path = format!("{base}/{}", cron["id"].as_str().unwrap());

    // Webhook: path and a 64-hex secret at creation only.
    let res = app
        .post(&base, &json!({"function_id": function, "type": "WEBHOOK"}))
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let hook = res.json();
    let id = hook["id"].as_str().unwrap();
    let secret = hook["webhook_secret"].as_str().unwrap().to_owned();
    assert!(
        secret.len() == 64
            && secret
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(hook["webhook_path"], format!("/webhooks/{id}"));
    assert_eq!(
        (&hook["type"], &hook["rule"], &hook["next_run"]),
        (&json!("webhook"), &json!(""), &Value::Null)
    );
    let hook_path = format!("{base}/{id}");
    let got = app.get(&hook_path).await.json();
    assert!(
        got.get("webhook_secret").is_none(),
        "secret shown only once: {got}"
    );

    let event = app
        .post(
            &base,
            &json!({"function_id": function, "type": "event", "rule": "function.execution.failed", "enabled": false}),
        )
        .await;
    assert_eq!(event.status, 201, "{}", event.text());
    assert_eq!(event.json()["enabled"], false);

    // Invalid input: 400 with the reason, nothing stored.
    let other_account = app.create_account_id("bob").await;
    let foreign = add_function(&app, &other_account, "() => 1").await;
    for (body, code, message) in [
        (json!({"function_id": function, "rule": "61 * * * *"}), "validation_failed", "rule: minute 61 out of range 0-59"),
        (json!({"function_id": function}), "validation_failed", "rule: is required for cron triggers"),
        (json!({"function_id": function, "type": "event", "rule": "nope"}), "validation_failed", "rule: unknown event \"nope\"; expected one of pricefeed.updated, oracle.request.completed, oracle.request.failed, gasbank.withdrawal.settled, function.execution.failed, automation.job.failed"),
        (json!({"function_id": function, "type": "webhook", "rule": "x"}), "validation_failed", "rule: must be empty for webhook triggers"),
        (json!({"function_id": function, "type": "smoke", "rule": "@hourly"}), "validation_failed", "type: must be cron, event or webhook"),
        (json!({"function_id": foreign, "rule": "@hourly"}), "validation_failed", "function_id: function not found in this account"),
        (json!({"rule": "@hourly"}), "validation_failed", "function_id: is required"),
        (json!({"function_id": function, "rule": "@hourly", "config": {"A": "1", "a": "2"}}), "validation_failed", "config: duplicate key \"a\" (keys are case-insensitive)"),
        (json!({"function_id": function, "rule": "@hourly", "extra": 1}), "invalid_request", "unknown field `extra`, expected one of `function_id`, `type`, `rule`, `config`, `enabled`"),
    ] {
        app.post(&base, &body).await.assert_error(400, code, message);
    }
    let too_many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    app.post(
        &base,
        &json!({"function_id": function, "rule": "@hourly", "config": too_many}),
    )
    .await
    .assert_error(
        400,
        "validation_failed",
        "config: at most 32 entries allowed",
    );
    assert_eq!(
        app.get(&base).await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // PATCH: type is immutable, the secret rotates only on webhooks, rule re-validated.
    app.patch(&cron_path, &json!({"type": "event"}))
        .await
        .assert_error(400, "validation_failed", "type: cannot be changed");
    app.patch(&cron_path, &json!({"rotate_webhook_secret": true}))
        .await
        .assert_error(
            400,
            "validation_failed",
            "rotate_webhook_secret: only webhook triggers have a secret",
        );
    app.patch(&cron_path, &json!({"rule": "@every 0s"}))
        .await
        .assert_error(
            400,
            "validation_failed",
            "rule: @every: the interval must be between 1s and 366 days",
        );
    let same_type = app
        .patch(&cron_path, &json!({"type": "Cron", "config": null}))
        .await;
    assert_eq!(same_type.status, 200, "{}", same_type.text());
    assert_eq!(same_type.json()["config"], json!({}));
    let off = app
        .patch(&cron_path, &json!({"enabled": false}))
        .await
        .json();
    assert_eq!(
        (&off["enabled"], &off["next_run"]),
        (&json!(false), &Value::Null)
    );
    let on = app
        .patch(&cron_path, &json!({"enabled": true, "rule": "@daily"}))
        .await
        .json();
    assert_eq!(on["rule"], "@daily");
    assert!(
        on["next_run"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00.000000Z"),
        "{on}"
    );
    let rotated = app
        .patch(&hook_path, &json!({"rotate_webhook_secret": true}))
        .await
        .json();
    let new_secret = rotated["webhook_secret"].as_str().unwrap();
    assert!(new_secret.len() == 64 && new_secret != secret);

    // Everything persists (type and config included) and lists in creation order.
    let listed = app.get(&format!("{base}?limit=2")).await.json();
    assert_eq!(listed["items"][0]["id"], cron["id"]);
    assert_eq!(listed["items"][1]["type"], "webhook");
    let rest = app
        .get(&format!(
            "{base}?cursor={}",
            listed["next_cursor"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(rest["items"][0]["type"], "event");
    assert_eq!(rest["next_cursor"], Value::Null);

    // Another account cannot see it; delete is 204 then 404.
    app.get(&format!("/accounts/{other_account}/triggers/{id}"))
        .await
        .assert_error(404, "not_found", "trigger not found");
    assert_eq!(app.delete(&hook_path).await.status, 204);
    app.get(&hook_path)
        .await
        .assert_error(404, "not_found", "trigger not found");
    // Deleting the function takes its triggers with it.
    assert_eq!(
        app.delete(&format!("/accounts/{account}/functions/{function}"))
            .await
            .status,
        204
    );
    assert_eq!(app.get(&base).await.json()["items"], json!([]));
}

async fn webhook_signatures_are_enforced(backend: Backend) {
    let app = spawn_app_with(backend, fast_workers()).await;
    let (account, function) = function_with(&app, "(params) => ({seen: params})").await;
    let base = format!("/accounts/{account}/triggers");
    let hook = app
        .post(&base, &json!({"function_id": function, "type": "webhook"}))
        .await
        .json();
    let id = hook["id"].as_str().unwrap().to_owned();
    let secret = hook["webhook_secret"].as_str().unwrap().to_owned();
    let body = br#"{"order": 42}"#;

    // Unknown triggers and non-webhook triggers are 404, before any signature check.
    post_webhook(&app, &uuid::Uuid::new_v4().to_string(), body, None)
        .await
        .assert_error(404, "not_found", "trigger not found");
    let cron = app
        .post(&base, &json!({"function_id": function, "rule": "@yearly"}))
        .await
        .json();
    post_webhook(&app, cron["id"].as_str().unwrap(), body, None)
        .await
        .assert_error(404, "not_found", "trigger not found");

    // Missing, wrong, or for another body: 401 and nothing runs.
    let other_body = webhook_signature(&secret, br#"{"order": 43}"#);
    let wrong_key = webhook_signature(&"0".repeat(64), body);
    for signature in [
        None,
        Some("sha256=00"),
        Some(other_body.as_str()),
        Some(wrong_key.as_str()),
    ] {
        post_webhook(&app, &id, body, signature).await.assert_error(
            401,
            "invalid_signature",
            "webhook signature missing or wrong",
        );
    }

    // Signed: 202 with the id the execution will have; the body becomes the params.
    let signed = webhook_signature(&secret, body);
    let res = post_webhook(
        &app,
        &id,
        body,
        Some(&signed.to_uppercase().replace("SHA256=", "sha256=")),
    )
    .await;
    assert_eq!(res.status, 202, "{}", res.text());
    let accepted = res.json();
    assert_eq!(accepted["trigger_id"], id);
    let execution_id = accepted["execution_id"].as_str().unwrap().to_owned();
    let done = executions_until(&app, &account, &function, |e| !e.is_empty()).await;
    assert_eq!(done.len(), 1, "only the signed call ran: {done:?}");
    assert_eq!(done[0]["id"], execution_id);
    assert_eq!(done[0]["input"], json!({"order": 42}));
    assert_eq!(done[0]["output"], json!({"seen": {"order": 42}}));
    let fetched = app
        .get(&format!(
            "/accounts/{account}/functions/executions/{execution_id}"
        ))
        .await;
    assert_eq!(fetched.status, 200);
    // `last_fired_at` is set once the firing runs.
    assert!(app.get(&format!("{base}/{id}")).await.json()["last_fired_at"].is_string());

    // An empty body is `{}`; a non-object body is 400 (after the signature).
    let res = post_webhook(&app, &id, b"", Some(&webhook_signature(&secret, b""))).await;
    assert_eq!(res.status, 202, "{}", res.text());
    post_webhook(&app, &id, b"[1]", Some(&webhook_signature(&secret, b"[1]")))
        .await
        .assert_error(400, "invalid_request", "request body must be a JSON object");

    // After rotation the old secret no longer works; disabled → 409.
    let rotated = app
        .patch(
            &format!("{base}/{id}"),
            &json!({"rotate_webhook_secret": true}),
        )
        .await
        .json();
    post_webhook(&app, &id, body, Some(&signed))
        .await
        .assert_error(
            401,
            "invalid_signature",
            "webhook signature missing or wrong",
        );
    let new_secret = rotated["webhook_secret"].as_str().unwrap();
    app.patch(&format!("{base}/{id}"), &json!({"enabled": false}))
        .await;
    post_webhook(&app, &id, body, Some(&webhook_signature(new_secret, body)))
        .await
        .assert_error(409, "invalid_state", "trigger is disabled");
    let all = executions_until(&app, &account, &function, |e| e.len() >= 2).await;
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    let after = executions_until(&app, &account, &function, |_| true).await;
    assert_eq!(after.len(), all.len(), "refused calls never run");
    assert_eq!(after.len(), 2);
    assert_eq!(
        app.get("/metrics")
            .await
            .text()
            .lines()
            .find(|l| l.starts_with(
                "service_layer_triggers_fired_total{status=\"succeeded\",type=\"webhook\"}"
            )),
        Some("service_layer_triggers_fired_total{status=\"succeeded\",type=\"webhook\"} 2")
    );
}

async fn cron_triggers_fire_through_the_scheduler(backend: Backend) {
    let app = spawn_app_with(backend, fast_workers()).await;
    let (account, function) = function_with(&app, "(params) => params").await;
    let base = format!("/accounts/{account}/triggers");
    let trigger = app
        .post(
            &base,
            &json!({"function_id": function, "rule": "@every 1s"}),
        )
        .await
        .json();
    let id = trigger["id"].as_str().unwrap();
    let runs = executions_until(&app, &account, &function, |e| e.len() >= 2).await;
    // One execution per tick, each with its own tick.
    let mut ticks: Vec<&str> = runs
        .iter()
        .map(|e| e["input"]["scheduled_for"].as_str().unwrap())
        .collect();
    assert!(runs
        .iter()
        .all(|e| e["input"]["trigger_id"] == id && e["status"] == "succeeded"));
    ticks.sort();
    ticks.dedup();
    assert_eq!(ticks.len(), runs.len(), "one execution per tick: {runs:?}");
    let first: chrono::DateTime<chrono::Utc> = chrono::DateTime::parse_from_rfc3339(ticks[0])
        .unwrap()
        .into();
    let second: chrono::DateTime<chrono::Utc> = chrono::DateTime::parse_from_rfc3339(ticks[1])
        .unwrap()
        .into();
    // Whole seconds apart (a tick that found the previous firing still open on a loaded
    // machine is skipped, so the gap may be more than one).
    let gap = second - first;
    assert!(
        gap >= chrono::Duration::seconds(1) && gap.subsec_nanos() == 0,
        "ticks keep the schedule's phase: {gap}"
    );
    assert!(app.get(&format!("{base}/{id}")).await.json()["last_fired_at"].is_string());

    // Disabled: no more firings.
    let off = app
        .patch(&format!("{base}/{id}"), &json!({"enabled": false}))
        .await
        .json();
    assert_eq!(off["next_run"], Value::Null);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let settled = executions_until(&app, &account, &function, |_| true)
        .await
        .len();
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        executions_until(&app, &account, &function, |_| true)
            .await
            .len(),
        settled
    );
}

async fn event_trigger_fires_on_a_failing_function(backend: Backend) {
    let app = spawn_app_with(backend, fast_workers()).await;
    let (account, failing) = function_with(&app, "() => { throw new Error('boom') }").await;
    // The handler fails too: its own failure must not emit another event (no loops).
    let handler = add_function(
        &app,
        &account,
        "(params) => { throw new Error('handler saw ' + params.event.name) }",
    )
    .await;
    let trigger = app
        .post(
            &format!("/accounts/{account}/triggers"),
            &json!({"function_id": handler, "type": "event", "rule": "function.execution.failed"}),
        )
        .await
        .json();
    // Another account's failures never reach this trigger.
    let (other, other_failing) =
        function_with(&app, "() => { throw new Error('elsewhere') }").await;
    let res = app
        .post(
            &format!("/accounts/{other}/functions/{other_failing}/execute"),
            &json!({}),
        )
        .await;
    assert_eq!(res.json()["status"], "failed");

    let failed = app
        .post(
            &format!("/accounts/{account}/functions/{failing}/execute"),
            &json!({}),
        )
        .await
        .json();
    assert_eq!(failed["status"], "failed");
    let handled = executions_until(&app, &account, &handler, |e| !e.is_empty()).await;
    let params = &handled[0]["input"];
    assert_eq!(params["trigger_id"], trigger["id"]);
    assert_eq!(params["event"]["name"], "function.execution.failed");
    assert!(params["event"]["id"].is_string() && params["event"]["occurred_at"].is_string());
    assert_eq!(
        params["event"]["data"],
        json!({
            "execution_id": failed["id"],
            "function_id": failing,
            "error": "Uncaught Error: boom",
            "error_code": "script_error",
        })
    );
    assert_eq!(
        handled[0]["error"],
        "Uncaught Error: handler saw function.execution.failed"
    );
    // Give a loop every chance to show itself: the handler ran exactly once.
    actix_rt::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        executions_until(&app, &account, &handler, |_| true)
            .await
            .len(),
        1
    );
}

async fn event_trigger_fires_when_a_job_finally_fails(backend: Backend) {
    let app = spawn_app_with(backend, fast_workers()).await;
    let (account, failing) = function_with(&app, "() => { throw new Error('nope') }").await;
    let handler = add_function(&app, &account, "(params) => params.event.data").await;
    app.post(
        &format!("/accounts/{account}/triggers"),
        &json!({"function_id": handler, "type": "event", "rule": "automation.job.failed"}),
    )
    .await;
    let job = app
        .post(
            &format!("/accounts/{account}/automation/jobs"),
            &json!({"function_id": failing, "name": "j", "schedule": "@every 1h", "max_attempts": 2, "next_run": null}),
        )
        .await;
    assert_eq!(
        job.status,
        400,
        "next_run is not a create field: {}",
        job.text()
    );
    let job = app
        .post(
            &format!("/accounts/{account}/automation/jobs"),
            &json!({"function_id": failing, "name": "j", "schedule": "@every 1h", "max_attempts": 2}),
        )
        .await
        .json();
    let job_path = format!(
        "/accounts/{account}/automation/jobs/{}",
        job["id"].as_str().unwrap()
    );
    // Due now.
    app.patch(
        &job_path,
        &json!({"next_run": chrono::Utc::now().to_rfc3339()}),
    )
    .await;
    let handled = executions_until(&app, &account, &handler, |e| !e.is_empty()).await;
    let data = &handled[0]["output"];
    let runs = app.get(&format!("{job_path}/runs")).await.json();
    let run = &runs["items"][0];
    assert_eq!(run["status"], "failed");
    assert_eq!(
        data,
        &json!({
            "job_id": job["id"],
            "run_id": run["id"],
            "scheduled_for": run["scheduled_for"],
            "attempt": 2,
            "error": "Uncaught Error: nope",
        })
    );
}

/// The cron pass in PostgreSQL (one batch, set-based): of two triggers due together, the
/// one with a firing still open gets a `skipped` firing for the tick, the other a firing
/// that runs; both move their `next_run`, and a second pass adds nothing for that tick.
#[actix_web::test]
async fn postgres_a_cron_batch_skips_only_the_trigger_with_an_open_firing() {
    let app = spawn_app_with(Backend::Postgres, fast_workers()).await;
    let (account, function) = function_with(&app, "() => 1").await;
    let mut ids = Vec::new();
    // Different schedules: each trigger's `next_run` must be its own.
    for rule in ["@yearly", "@every 1h"] {
        let res = app
            .post(
                &format!("/accounts/{account}/triggers"),
                &json!({"function_id": function, "rule": rule}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.text());
        ids.push(uuid::Uuid::parse_str(res.json()["id"].as_str().unwrap()).unwrap());
    }
    let (busy, free) = (ids[0], ids[1]);
    let db = app.db.clone().unwrap().client().await;
    // An open firing of `busy`, held by a live lease elsewhere.
    db.execute(
        "INSERT INTO app_trigger_firings (id, trigger_id, params, status, execution_id, lease_owner, lease_until, created_at, updated_at)
         VALUES ($1, $2, '{}', 'running', $3, 'elsewhere', now() + interval '1 hour', now(), now())",
        &[&uuid::Uuid::new_v4(), &busy, &uuid::Uuid::new_v4()],
    )
    .await
    .unwrap();
    let tick = "2020-01-01T00:00:00Z";
    db.execute(
        "UPDATE app_triggers SET next_run = $1::text::timestamptz WHERE id = ANY($2)",
        &[&tick, &ids],
    )
    .await
    .unwrap();
    let executions = executions_until(&app, &account, &function, |e| e.len() == 1).await;
    assert_eq!(executions[0]["input"]["trigger_id"], free.to_string());
    let rows = db
        .query(
            "SELECT trigger_id, status, error FROM app_trigger_firings
             WHERE tick_at = $1::text::timestamptz ORDER BY status",
            &[&tick],
        )
        .await
        .unwrap();
    let got: Vec<(uuid::Uuid, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        [
            (
                busy,
                "skipped".to_owned(),
                Some("previous firing still in progress".to_owned())
            ),
            (free, "succeeded".to_owned(), None),
        ]
    );
    // Yearly: more than a day ahead; hourly (in phase with the tick): within the hour.
    let next = |id: uuid::Uuid| {
        let db = &db;
        async move {
            db.query_one(
                "SELECT next_run > now() + interval '1 day',
                        next_run > now() AND next_run <= now() + interval '1 hour'
                 FROM app_triggers WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
        }
    };
    let (yearly, hourly) = (next(busy).await, next(free).await);
    assert!(
        yearly.get::<_, bool>(0),
        "the yearly trigger moved a year on"
    );
    assert!(
        hourly.get::<_, bool>(1),
        "the hourly trigger moved to the next hour"
    );
}

/// A firing left `running` by a replica that died (its lease ran out) fails as
/// `lease expired` on the next claim instead of running a second time.
#[actix_web::test]
async fn postgres_a_dead_replicas_firing_fails_instead_of_running_twice() {
    let app = spawn_app_with(Backend::Postgres, fast_workers()).await;
    let (account, function) = function_with(&app, "() => 1").await;
    let hook = webhook_trigger(&app, &account, &function).await;
    let db = app.db.clone().unwrap().client().await;
    let firing = uuid::Uuid::new_v4();
    let trigger = uuid::Uuid::parse_str(hook["id"].as_str().unwrap()).unwrap();
    db.execute(
        "INSERT INTO app_trigger_firings (id, trigger_id, params, status, execution_id, lease_owner, lease_until, created_at, updated_at)
         VALUES ($1, $2, '{}', 'running', $3, 'dead-replica', now() - interval '1 second', now(), now())",
        &[&firing, &trigger, &uuid::Uuid::new_v4()],
    )
    .await
    .unwrap();
    let mut row = None;
    for _ in 0..200 {
        let r = db
            .query_one(
                "SELECT status, error, execution_id IS NULL FROM app_trigger_firings WHERE id = $1",
                &[&firing],
            )
            .await
            .unwrap();
        let status: String = r.get(0);
        if status != "running" {
            row = Some((status, r.get::<_, Option<String>>(1), r.get::<_, bool>(2)));
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        row,
        Some(("failed".to_owned(), Some("lease expired".to_owned()), true))
    );
    let executions = executions_until(&app, &account, &function, |_| true).await;
    assert!(executions.is_empty(), "nothing ran again: {executions:?}");
}

/// Each webhook trigger is its own rate-limit credential, counted only once the
/// signature proved the caller.
#[actix_web::test]
async fn webhooks_are_rate_limited_per_trigger() {
    let options = AppOptions::default()
        .env("RATE_LIMIT_RPS", "1")
        .env("RATE_LIMIT_BURST", "5");
    let app = spawn_app_with(Backend::Memory, options).await;
    let (account, function) = function_with(&app, "() => 1").await;
    let mut hooks = Vec::new();
    for _ in 0..2 {
        let hook = webhook_trigger(&app, &account, &function).await;
        hooks.push((
            hook["id"].as_str().unwrap().to_owned(),
            hook["webhook_secret"].as_str().unwrap().to_owned(),
        ));
    }
    let body = b"{}";
    let (id, secret) = &hooks[0];
    let signed = webhook_signature(secret, body);
    // The burst of 5 is used up well within the 10 calls (one token per second refills).
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..10 {
        let res = post_webhook(&app, id, body, Some(&signed)).await;
        statuses.push(res.status);
        if res.status == 429 {
            limited = Some(res);
            break;
        }
    }
    assert!(statuses[..5].iter().all(|s| *s == 202), "{statuses:?}");
    let limited = limited.unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    limited.assert_error(
        429,
        "rate_limited",
        "too many requests for this credential; retry later",
    );
    assert!(limited.header("retry-after").is_some());
    // A bad signature is refused as such, whatever the caller's bucket holds.
    post_webhook(&app, id, body, None).await.assert_error(
        401,
        "invalid_signature",
        "webhook signature missing or wrong",
    );
    // Another trigger has its own bucket.
    let (other, other_secret) = &hooks[1];
    let res = post_webhook(
        &app,
        other,
        body,
        Some(&webhook_signature(other_secret, body)),
    )
    .await;
    assert_eq!(res.status, 202, "{}", res.text());
}

/// Retention in PostgreSQL: delivered events and finished firings older than the cut-off
/// go; undelivered events and open firings stay whatever their age. (Rows are inserted
/// leased far ahead so the app's own workers leave them alone.)
#[actix_web::test]
async fn postgres_purge_keeps_open_work() {
    use actors::events::{EventStore, PgEventStore};
    use actors::triggers::{FiringStore, PgTriggerStore};
    let app = spawn_app(Backend::Postgres).await;
    let (account, function) = function_with(&app, "() => 1").await;
    let hook = webhook_trigger(&app, &account, &function).await;
    let test_db = app.db.clone().unwrap();
    let db = test_db.client().await;
    let account = uuid::Uuid::parse_str(&account).unwrap();
    let trigger = uuid::Uuid::parse_str(hook["id"].as_str().unwrap()).unwrap();
    for (delivered, age) in [(true, "2 days"), (true, "1 hour"), (false, "2 days")] {
        db.execute(
            &format!(
                "INSERT INTO app_events (id, account_id, name, data, occurred_at, delivered_at, lease_until, created_at)
                 VALUES ($1, $2, 'automation.job.failed', '{{}}', now() - interval '{age}',
                         CASE WHEN $3 THEN now() - interval '{age}' END, now() + interval '1 hour',
                         now() - interval '{age}')"
            ),
            &[&uuid::Uuid::new_v4(), &account, &delivered],
        )
        .await
        .unwrap();
    }
    for (status, age) in [
        ("succeeded", "8 days"),
        ("failed", "1 day"),
        ("pending", "8 days"),
    ] {
        db.execute(
            &format!(
                "INSERT INTO app_trigger_firings (id, trigger_id, params, status, lease_until, created_at, updated_at)
                 VALUES ($1, $2, '{{}}', $3, now() + interval '1 hour', now() - interval '{age}', now() - interval '{age}')"
            ),
            &[&uuid::Uuid::new_v4(), &trigger, &status],
        )
        .await
        .unwrap();
    }
    let pool = actors::store::connect(
        &test_db.url,
        &actors::store::PgOptions {
            max_connections: 2,
            connect_timeout: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let now = chrono::Utc::now();
    // Delivered events are kept a day, finished firings a week.
    let events = PgEventStore::new(pool.clone())
        .purge(now - chrono::Duration::hours(24))
        .await
        .unwrap();
    let firings = PgTriggerStore::new(pool)
        .purge(now - chrono::Duration::days(7))
        .await
        .unwrap();
    let purged = (events, firings);
    assert_eq!(purged, (1, 1));
    let left: Vec<String> = db
        .query(
            "SELECT status FROM app_trigger_firings ORDER BY status",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["failed", "pending"]);
    let undelivered: i64 = db
        .query_one(
            "SELECT count(*) FROM app_events WHERE delivered_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(undelivered, 1);
}

async fn devpack_registers_triggers_and_schedules_jobs(backend: Backend) {
    let app = spawn_app(backend).await;
    let source = "() => {
        const t = Devpack.triggers.register({type: 'event', rule: 'automation.job.failed', config: {Team: ' ops '}});
        Devpack.automation.schedule({name: 'nightly', schedule: '0 3 * * *', description: 'from devpack'});
        Devpack.triggers.register({rule: 'cron:@hourly', enabled: false});
        return {queued: t.type};
    }";
    let (account, function) = function_with(&app, source).await;
    let out = app
        .post(
            &format!("/accounts/{account}/functions/{function}/execute"),
            &json!({}),
        )
        .await
        .json();
    assert_eq!(out["status"], "succeeded", "{out}");
    assert_eq!(out["output"], json!({"queued": "triggers.register"}));
    let statuses: Vec<_> = out["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [json!("succeeded"), json!("succeeded"), json!("succeeded")]
    );
    let triggers = app
        .get(&format!("/accounts/{account}/triggers"))
        .await
        .json()["items"]
        .clone();
    assert_eq!(triggers.as_array().unwrap().len(), 2);
    let event = triggers
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "event")
        .unwrap();
    assert_eq!(
        out["actions"][0]["result"],
        json!({"trigger_id": event["id"]})
    );
    assert_eq!(
        (
            &event["function_id"],
            &event["rule"],
            &event["config"],
            &event["enabled"]
        ),
        (
            &json!(function),
            &json!("automation.job.failed"),
            &json!({"team": "ops"}),
            &json!(true)
        )
    );
    let cron = triggers
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "cron")
        .unwrap();
    assert_eq!(
        (&cron["rule"], &cron["enabled"], &cron["next_run"]),
        (&json!("@hourly"), &json!(false), &Value::Null)
    );
    let jobs = app
        .get(&format!("/accounts/{account}/automation/jobs"))
        .await
        .json()["items"]
        .clone();
    let job = &jobs[0];
    assert_eq!(out["actions"][1]["result"], json!({"job_id": job["id"]}));
    assert_eq!(
        (
            &job["name"],
            &job["schedule"],
            &job["description"],
            &job["function_id"],
            &job["max_attempts"]
        ),
        (
            &json!("nightly"),
            &json!("0 3 * * *"),
            &json!("from devpack"),
            &json!(function),
            &json!(5)
        )
    );
    assert!(
        job["next_run"]
            .as_str()
            .unwrap()
            .ends_with("T03:00:00.000000Z"),
        "{job}"
    );
}

async fn devpack_actions_apply_all_or_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let execute = |source: &'static str| {
        let app = &app;
        let account = account.clone();
        async move {
            let function = add_function(app, &account, source).await;
            app.post(
                &format!("/accounts/{account}/functions/{function}/execute"),
                &json!({}),
            )
            .await
            .json()
        }
    };
    let counts = || async {
        let n = |v: Value| v["items"].as_array().unwrap().len();
        (
            n(app
                .get(&format!("/accounts/{account}/triggers"))
                .await
                .json()),
            n(app
                .get(&format!("/accounts/{account}/automation/jobs"))
                .await
                .json()),
        )
    };
    // A uniqueness conflict found when applying (here within one run): nothing applied.
    let out = execute(
        "() => { Devpack.triggers.register({rule: '@daily'});
                 Devpack.automation.schedule({name: 'Same', schedule: '@daily'});
                 Devpack.automation.schedule({name: 'same', schedule: '@hourly'});
                 return {kept: 1} }",
    )
    .await;
    assert_eq!(
        (&out["status"], &out["error_code"]),
        (&json!("failed"), &json!("action_failed"))
    );
    assert_eq!(
        out["error"],
        "devpack action action_3 (automation.schedule) failed: job \"same\" already exists"
    );
    assert_eq!(
        out["output"],
        json!({"kept": 1}),
        "the script's output is kept"
    );
    let statuses: Vec<_> = out["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [json!("aborted"), json!("aborted"), json!("failed")]
    );
    assert_eq!(counts().await, (0, 0), "nothing was applied");
    // The recorded execution says the same.
    let recorded = app
        .get(&format!(
            "/accounts/{account}/functions/executions/{}",
            out["id"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(recorded["actions"], out["actions"]);

    // A conflict with an existing job, found by the store inside the transaction.
    let first =
        execute("() => { Devpack.automation.schedule({name: 'daily', schedule: '@daily'}) }").await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let again = execute(
        "() => { Devpack.triggers.register({type: 'event', rule: 'function.execution.failed'});
                 Devpack.automation.schedule({name: 'DAILY', schedule: '@daily'}) }",
    )
    .await;
    assert_eq!(
        again["error"],
        "devpack action action_2 (automation.schedule) failed: job \"DAILY\" already exists"
    );
    assert_eq!(again["actions"][0]["status"], "aborted");
    assert_eq!(
        counts().await,
        (0, 1),
        "the trigger of the refused run was not applied"
    );

    // Validation like the HTTP routes.
    for (source, error) in [
        ("() => { Devpack.automation.schedule({name: 'x', schedule: '61 * * * *'}) }", "devpack action action_1 (automation.schedule) failed: schedule: minute 61 out of range 0-59"),
        ("() => { Devpack.automation.schedule({schedule: '@daily'}) }", "devpack action action_1 (automation.schedule) failed: name: is required"),
        ("() => { Devpack.triggers.register({type: 'webhook'}) }", "devpack action action_1 (triggers.register) failed: type: must be cron or event"),
        ("() => { Devpack.triggers.register({type: 'bogus'}) }", "devpack action action_1 (triggers.register) failed: type: must be cron or event"),
        ("() => { Devpack.triggers.register({type: 'webhook', rule: 'x'}) }", "devpack action action_1 (triggers.register) failed: type: must be cron or event"),
        ("() => { Devpack.triggers.register({rule: '61 * * * *', config: {'': 'x'}}) }", "devpack action action_1 (triggers.register) failed: rule: minute 61 out of range 0-59"),
        ("() => { Devpack.triggers.register({type: 'event', rule: 'nope.never'}) }", "devpack action action_1 (triggers.register) failed: rule: unknown event \"nope.never\"; expected one of pricefeed.updated, oracle.request.completed, oracle.request.failed, gasbank.withdrawal.settled, function.execution.failed, automation.job.failed"),
        ("() => { Devpack.triggers.register({rule: '@daily', extra: 1}) }", "devpack action action_1 (triggers.register) failed: invalid params: unknown field `extra`, expected one of `type`, `rule`, `config`, `enabled`"),
        ("() => { Devpack.triggers.register({rule: '@daily'}); Devpack.gasBank.withdraw({amount: 1, to: 'x'}) }", "devpack action action_2 (gasbank.withdraw) failed: this account has no gas account yet (Devpack.gasBank.ensureAccount creates it)"),
    ] {
        let out = execute(source).await;
        assert_eq!((&out["status"], &out["error"]), (&json!("failed"), &json!(error)), "{source}");
    }
    assert_eq!(counts().await, (0, 1), "refused runs applied nothing");
}

/// A stored webhook firing wakes the worker: it runs long before the next poll.
#[actix_web::test]
async fn webhooks_run_without_waiting_for_the_poll() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().env("WORK_POLL_INTERVAL", "1h"),
    )
    .await;
    let (account, function) = function_with(&app, "(p) => p").await;
    let hook = webhook_trigger(&app, &account, &function).await;
    let secret = hook["webhook_secret"].as_str().unwrap();
    for n in 0..3 {
        let body = format!("{{\"n\": {n}}}");
        let res = post_webhook(
            &app,
            hook["id"].as_str().unwrap(),
            body.as_bytes(),
            Some(&webhook_signature(secret, body.as_bytes())),
        )
        .await;
        assert_eq!(res.status, 202, "{}", res.text());
    }
    let done = executions_until(&app, &account, &function, |e| e.len() == 3).await;
    let mut seen: Vec<i64> = done
        .iter()
        .map(|e| e["input"]["n"].as_i64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, [0, 1, 2]);
}

/// A firing is settled in its execution's transaction: when an action is refused that
/// transaction rolls back (the firing stays held) and the failed execution is recorded,
/// settling the firing as `failed`, with nothing of the refused run applied.
async fn a_refused_action_settles_the_firing_as_failed(backend: Backend) {
    let app = spawn_app_with(backend, fast_workers()).await;
    let (account, function) = function_with(
        &app,
        "() => { Devpack.automation.schedule({name: 'twin', schedule: '@yearly'}); Devpack.automation.schedule({name: 'twin', schedule: '@yearly'}); return 1 }",
    )
    .await;
    let hook = webhook_trigger(&app, &account, &function).await;
    let secret = hook["webhook_secret"].as_str().unwrap();
    let body = b"{}";
    let res = post_webhook(
        &app,
        hook["id"].as_str().unwrap(),
        body,
        Some(&webhook_signature(secret, body)),
    )
    .await;
    assert_eq!(res.status, 202, "{}", res.text());
    let done = executions_until(&app, &account, &function, |e| e.len() == 1).await;
    assert_eq!(done[0]["status"], "failed", "{}", done[0]);
    assert_eq!(
        done[0]["error"],
        "devpack action action_2 (automation.schedule) failed: job \"twin\" already exists"
    );
    let jobs = app
        .get(&format!("/accounts/{account}/automation/jobs"))
        .await
        .json();
    assert_eq!(jobs["items"], json!([]), "no twin was created");
    if let Some(db) = &app.db {
        let row = db
            .client()
            .await
            .query_one(
                "SELECT status, execution_id::text, lease_owner IS NULL FROM app_trigger_firings",
                &[],
            )
            .await
            .unwrap();
        let (status, execution, released): (String, String, bool) =
            (row.get(0), row.get(1), row.get(2));
        assert_eq!((status.as_str(), released), ("failed", true));
        assert_eq!(json!(execution), done[0]["id"]);
    }
}

async fn concurrent_trigger_patches_all_stick(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let function = app
        .post(
            &format!("/accounts/{account}/functions"),
            &json!({"name": "f", "source": "() => 1"}),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut paths = Vec::new();
    for _ in 0..10 {
        let res = app
            .post(
                &format!("/accounts/{account}/triggers"),
                &json!({"function_id": function, "type": "cron", "rule": "@yearly"}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.text());
        paths.push(format!(
            "/accounts/{account}/triggers/{}",
            res.json()["id"].as_str().unwrap()
        ));
    }
    // Two PATCHes of different fields race on each trigger: both must stick.
    let disable = json!({"enabled": false});
    let configure = json!({"config": {"k": "v"}});
    race_patches(&app, &paths, &disable, &configure).await;
    for path in &paths {
        let trigger = app.get(path).await.json();
        assert_eq!(
            (&trigger["enabled"], &trigger["config"]),
            (&json!(false), &json!({"k": "v"})),
            "{path}"
        );
    }
    app.stop().await;
}
