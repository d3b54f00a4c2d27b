//! Automation jobs API on both stores: CRUD, validation, `next_run` rules, cascades.

use crate::both_stores;
use crate::helpers::*;
use serde_json::{json, Value};

both_stores!(
    jobs_crud_and_next_run,
    job_validation_changes_nothing,
    jobs_go_with_their_function,
    jobs_run_on_time_not_on_the_tick,
    a_refused_action_settles_the_attempt_as_failed,
    concurrent_patches_of_different_fields_all_stick,
);

/// An account with one function: (jobs base path, function id).
async fn setup(app: &TestApp) -> (String, String, String) {
    let account = app.create_account_id("alice").await;
    let f = app
        .post(
            &format!("/accounts/{account}/functions"),
            &json!({"name": "f", "source": "() => 1"}),
        )
        .await
        .json();
    let function = f["id"].as_str().unwrap().to_owned();
    (
        format!("/accounts/{account}/automation/jobs"),
        function,
        account,
    )
}

fn ts(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .into()
}

async fn jobs_crud_and_next_run(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, function, _) = setup(&app).await;
    let before = chrono::Utc::now();
    let res = app
        .post(
            &base,
            &json!({"function_id": function, "name": "nightly", "schedule": "0 3 * * *"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let job = res.json();
    let keys: Vec<_> = job.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "account_id",
            "created_at",
            "description",
            "enabled",
            "function_id",
            "id",
            "last_run",
            "max_attempts",
            "name",
            "next_run",
            "overlap_policy",
            "schedule",
            "updated_at"
        ]
    );
    assert_eq!(
        (
            job["enabled"].clone(),
            job["overlap_policy"].clone(),
            job["max_attempts"].clone()
        ),
        (json!(true), json!("skip"), json!(5))
    );
    assert_eq!(job["last_run"], Value::Null);
    let next = ts(&job["next_run"]);
    assert!(next > before && next - before <= chrono::Duration::days(1));
    assert_eq!(
        next.format("%H:%M:%S").to_string(),
        "03:00:00",
        "the real schedule, not now + 1 minute"
    );
    let path = format!("{base}/{}", job["id"].as_str().unwrap());
    assert_eq!(app.get(&path).await.json(), job);
    assert_eq!(app.get(&base).await.json()["items"], json!([job]));

    // Disabling clears next_run; re-enabling recomputes it from now.
    let off = app.patch(&path, &json!({"enabled": false})).await.json();
    assert_eq!(off["next_run"], Value::Null);
    let on = app
        .patch(&path, &json!({"enabled": true, "schedule": "@every 1h"}))
        .await
        .json();
    let every = ts(&on["next_run"]) - chrono::Utc::now();
    assert!(
        every > chrono::Duration::minutes(59) && every <= chrono::Duration::hours(1),
        "{every}"
    );
    // A timestamp sets the next dispatch once; null recomputes.
    let set = app
        .patch(&path, &json!({"next_run": "2031-01-01T12:00:00+01:00"}))
        .await
        .json();
    assert_eq!(set["next_run"], "2031-01-01T11:00:00.000000Z");
    let back = app
        .patch(
            &path,
            &json!({"next_run": null, "overlap_policy": "ALLOW", "max_attempts": 3}),
        )
        .await
        .json();
    assert!(ts(&back["next_run"]) < ts(&set["next_run"]));
    assert_eq!(
        (back["overlap_policy"].clone(), back["max_attempts"].clone()),
        (json!("allow"), json!(3))
    );

    let runs = app.get(&format!("{path}/runs")).await.json();
    assert_eq!(runs, json!({"items": [], "next_cursor": null}));
    assert_eq!(app.delete(&path).await.status, 204);
    app.get(&path)
        .await
        .assert_error(404, "not_found", "job not found");
    app.get(&format!("{path}/runs"))
        .await
        .assert_error(404, "not_found", "job not found");
}

async fn job_validation_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, function, _) = setup(&app).await;
    let ok = json!({"function_id": function, "name": "j", "schedule": "@hourly"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (
            with("schedule", json!("61 * * * *")),
            "schedule: minute 61 out of range 0-59",
        ),
        (
            with("schedule", json!("0 0 30 2 *")),
            "schedule: schedule never fires",
        ),
        (
            with("schedule", json!("* * * * * *")),
            "schedule: expected 5 cron fields (minute hour day-of-month month day-of-week), got 6",
        ),
        (
            with("schedule", json!("@every 0s")),
            "schedule: @every: the interval must be between 1s and 366 days",
        ),
        (with("schedule", json!("")), "schedule: is required"),
        (
            with("function_id", json!(uuid::Uuid::new_v4().to_string())),
            "function_id: function not found in this account",
        ),
        (
            with("overlap_policy", json!("queue")),
            "overlap_policy: must be skip or allow",
        ),
        (
            with("max_attempts", json!(21)),
            "max_attempts: must be 1-20",
        ),
        (with("name", json!(" ")), "name: is required"),
    ];
    for (body, message) in cases {
        app.post(&base, &body)
            .await
            .assert_error(400, "validation_failed", message);
    }
    let job = app.post(&base, &ok).await.json();
    app.post(&base, &with("name", json!("J")))
        .await
        .assert_error(409, "conflict", "job \"J\" already exists");
    let path = format!("{base}/{}", job["id"].as_str().unwrap());
    app.patch(&path, &json!({"enabled": null}))
        .await
        .assert_error(400, "validation_failed", "enabled: must not be null");
    app.patch(&path, &json!({"schedule": "bad"}))
        .await
        .assert_error(
            400,
            "validation_failed",
            "schedule: expected 5 cron fields (minute hour day-of-month month day-of-week), got 1",
        );
    // In a PATCH an empty schedule is a bad schedule, not a missing one.
    app.patch(&path, &json!({"schedule": " "}))
        .await
        .assert_error(
            400,
            "validation_failed",
            "schedule: expected 5 cron fields (minute hour day-of-month month day-of-week), got 0",
        );
    assert_eq!(
        app.get(&path).await.json(),
        job,
        "rejected changes changed nothing"
    );
    assert_eq!(
        app.get(&base).await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn jobs_go_with_their_function(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, function, account) = setup(&app).await;
    let job = app
        .post(
            &base,
            &json!({"function_id": function, "name": "j", "schedule": "@daily"}),
        )
        .await
        .json();
    assert_eq!(
        app.delete(&format!("/accounts/{account}/functions/{function}"))
            .await
            .status,
        204
    );
    app.get(&format!("{base}/{}", job["id"].as_str().unwrap()))
        .await
        .assert_error(404, "not_found", "job not found");
}

both_stores!(
    every_second_job_runs_once_per_tick,
    failing_runs_retry_then_fail,
    overlap_skip_records_skipped_runs,
    an_overdue_job_runs_once,
);

fn fast_scheduler() -> AppOptions {
    AppOptions::default()
        .env("AUTOMATION_TICK", "100ms")
        .env("AUTOMATION_RETRY_BASE", "100ms")
}

/// A job on a new function; returns the job's path.
async fn job_with(app: &TestApp, source: &str, job: Value) -> String {
    let (base, function, account) = setup(app).await;
    let f = app
        .post(
            &format!("/accounts/{account}/functions"),
            &json!({"name": "g", "source": source}),
        )
        .await
        .json();
    let _ = function;
    let mut body = job;
    body["function_id"] = f["id"].clone();
    let res = app.post(&base, &body).await;
    assert_eq!(res.status, 201, "{}", res.text());
    format!("{base}/{}", res.json()["id"].as_str().unwrap())
}

/// Polls the job's runs until `done` holds (a hang guard, not a timing assertion).
async fn runs_until(app: &TestApp, job: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..300 {
        let runs = app.get(&format!("{job}/runs?limit=500")).await.json()["items"]
            .as_array()
            .unwrap()
            .clone();
        if done(&runs) {
            return runs;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "runs never reached the expected state: {}",
        app.get(&format!("{job}/runs")).await.text()
    );
}

fn with_status<'a>(runs: &'a [Value], status: &str) -> Vec<&'a Value> {
    runs.iter().filter(|r| r["status"] == status).collect()
}

async fn every_second_job_runs_once_per_tick(backend: Backend) {
    let app = spawn_app_with(backend, fast_scheduler()).await;
    let job = job_with(
        &app,
        "(p) => ({job: p.automation_job, at: p.scheduled_for})",
        json!({"name": "tick", "schedule": "@every 1s"}),
    )
    .await;
    let runs = runs_until(&app, &job, |r| with_status(r, "succeeded").len() >= 3).await;
    let ok = with_status(&runs, "succeeded");
    // Newest first, one per second, no duplicates or gaps between consecutive runs.
    let times: Vec<_> = ok.iter().map(|r| ts(&r["scheduled_for"])).collect();
    for pair in times.windows(2) {
        assert_eq!(pair[0] - pair[1], chrono::Duration::seconds(1), "{times:?}");
    }
    let run = ok.last().unwrap();
    assert_eq!(run["attempt"], 1);
    assert_eq!(run["error"], Value::Null);
    let account_functions = job.split("/automation").next().unwrap().to_owned() + "/functions";
    let execution = app
        .get(&format!(
            "{account_functions}/executions/{}",
            run["execution_id"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(execution["output"]["job"], job.rsplit('/').next().unwrap());
    assert_eq!(execution["output"]["at"], run["scheduled_for"]);
    let current = app.get(&job).await.json();
    assert!(ts(&current["last_run"]) >= times[0]);
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains("service_layer_automation_job_runs_total{status=\"succeeded\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains(job.rsplit('/').next().unwrap()),
        "no job ids in labels"
    );
}

async fn failing_runs_retry_then_fail(backend: Backend) {
    let app = spawn_app_with(backend, fast_scheduler()).await;
    let job = job_with(
        &app,
        "() => { throw new Error('nope') }",
        json!({"name": "bad", "schedule": "@hourly", "max_attempts": 3}),
    )
    .await;
    let before = app.get(&job).await.json()["next_run"].clone();
    // Due at once: one run for this occurrence.
    app.patch(&job, &json!({"next_run": "2001-01-01T00:00:00Z"}))
        .await;
    let runs = runs_until(&app, &job, |r| !with_status(r, "failed").is_empty()).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["attempt"], 3, "three attempts, then failed");
    assert_eq!(runs[0]["error"], "Uncaught Error: nope");
    assert_eq!(runs[0]["scheduled_for"], "2001-01-01T00:00:00.000000Z");
    assert!(runs[0]["completed_at"].is_string());
    assert_eq!(
        app.get(&job).await.json()["next_run"],
        before,
        "retries never move the schedule"
    );
}

async fn overlap_skip_records_skipped_runs(backend: Backend) {
    let app = spawn_app_with(backend, fast_scheduler()).await;
    let job = job_with(
        &app,
        "() => { const end = Date.now() + 2500; while (Date.now() < end) {} return 1 }",
        json!({"name": "slow", "schedule": "@every 1s"}),
    )
    .await;
    let runs = runs_until(&app, &job, |r| !with_status(r, "skipped").is_empty()).await;
    let skipped = with_status(&runs, "skipped");
    assert_eq!(skipped[0]["error"], "previous run still in progress");
    assert_eq!(skipped[0]["attempt"], 0);
    assert!(
        with_status(&runs, "running").len() <= 1,
        "never two at once: {runs:?}"
    );
}

async fn an_overdue_job_runs_once(backend: Backend) {
    let app = spawn_app_with(backend, fast_scheduler()).await;
    let job = job_with(
        &app,
        "() => 1",
        json!({"name": "late", "schedule": "*/5 * * * *"}),
    )
    .await;
    app.patch(&job, &json!({"next_run": "2020-06-01T00:00:00Z"}))
        .await;
    let runs = runs_until(&app, &job, |r| !with_status(r, "succeeded").is_empty()).await;
    actix_rt::time::sleep(std::time::Duration::from_millis(500)).await;
    let runs_after = app.get(&format!("{job}/runs")).await.json()["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        runs_after.len(),
        1,
        "once, not once per missed occurrence: {runs:?}"
    );
    assert!(ts(&app.get(&job).await.json()["next_run"]) > chrono::Utc::now());
}

#[actix_web::test]
async fn shutdown_lets_an_attempt_in_flight_finish_and_clears_its_lease() {
    let app = spawn_app_with(Backend::Postgres, fast_scheduler()).await;
    let db = app.db.clone().unwrap();
    let job = job_with(
        &app,
        "() => { const end = Date.now() + 1200; while (Date.now() < end) {} return 1 }",
        json!({"name": "slow", "schedule": "@hourly"}),
    )
    .await;
    app.patch(&job, &json!({"next_run": "2001-01-01T00:00:00Z"}))
        .await;
    runs_until(&app, &job, |r| r.iter().any(|run| run["attempt"] == 1)).await;
    // A run shows its first attempt from its insert, before the function reaches a
    // worker; a shutdown then gives the claim back (asking a stopping actor fails). Wait
    // until the function is running, so the shutdown is the one this test is about.
    for _ in 0..200 {
        let metrics = app.get("/metrics").await.text();
        if metrics
            .lines()
            .any(|l| l == "service_layer_executor_busy 1")
        {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    app.stop().await; // orderly shutdown while the function runs
    let row = db
        .client()
        .await
        .query_one("SELECT status, lease_owner FROM app_automation_runs", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, &str>(0),
        "succeeded",
        "the attempt finished and was recorded"
    );
    assert_eq!(
        row.get::<_, Option<String>>(1),
        None,
        "its lease was cleared"
    );
}

/// The scheduler sleeps until the next due time, not for a fixed tick: with
/// `AUTOMATION_TICK` at 60 s, an `@every 1s` job still runs every second, and a job
/// created over the API runs at once.
async fn jobs_run_on_time_not_on_the_tick(backend: Backend) {
    let app = spawn_app_with(backend, AppOptions::default().env("AUTOMATION_TICK", "60s")).await;
    let (base, function, _) = setup(&app).await;
    let job = app
        .post(
            &base,
            &json!({"function_id": function, "name": "j", "schedule": "@every 1s"}),
        )
        .await
        .json();
    let path = format!("{base}/{}", job["id"].as_str().unwrap());
    // (`runs_until` gives up after 15 s, far below the 60 s tick.)
    let runs = runs_until(&app, &path, |r| r.len() >= 3).await;
    assert!(runs.iter().all(|r| r["status"] != "skipped"), "{runs:?}");
}

/// A job committed by another replica (here: by SQL, with the `NOTIFY` every store
/// write sends) wakes this replica's scheduler through `LISTEN`, though its
/// `AUTOMATION_TICK` is 60 s and it had nothing scheduled.
#[actix_web::test]
async fn a_job_written_elsewhere_wakes_the_scheduler() {
    let app = spawn_app_with(
        Backend::Postgres,
        AppOptions::default().env("AUTOMATION_TICK", "60s"),
    )
    .await;
    let (base, function, account) = setup(&app).await;
    // Let the scheduler go to sleep with nothing scheduled.
    actix_rt::time::sleep(std::time::Duration::from_millis(300)).await;
    let client = app.db.as_ref().unwrap().client().await;
    let id = uuid::Uuid::new_v4();
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO app_automation_jobs (id, account_id, function_id, name, description,
                 schedule, enabled, overlap_policy, max_attempts, next_run, created_at, updated_at)
             VALUES ('{id}', '{account}', '{function}', 'elsewhere', '', '@every 1h', true,
                 'skip', 1, now(), now(), now());
             SELECT pg_notify('{}', '');
             COMMIT;",
            actors::automation::JOBS_CHANNEL
        ))
        .await
        .unwrap();
    // (`runs_until` gives up after 15 s, far below the 60 s tick.)
    let runs = runs_until(&app, &format!("{base}/{id}"), |r| !r.is_empty()).await;
    assert_eq!(runs.len(), 1);
}

/// An attempt is settled in its execution's transaction; when a Devpack action of the
/// run is refused, that transaction is rolled back, run update included, and the
/// refusal is recorded (and settled) on its own: the retry, then the failure, happen
/// as for any failed attempt, and no effect of the refused runs exists.
async fn a_refused_action_settles_the_attempt_as_failed(backend: Backend) {
    let app = spawn_app_with(backend, fast_scheduler()).await;
    let job = job_with(
        &app,
        "() => { Devpack.automation.schedule({name: 'twin', schedule: '@yearly'}); Devpack.automation.schedule({name: 'twin', schedule: '@yearly'}); return 1 }",
        json!({"name": "j", "schedule": "@every 1h", "max_attempts": 2}),
    )
    .await;
    let base = job.rsplit_once('/').unwrap().0.to_owned();
    app.patch(&job, &json!({"next_run": "2020-01-01T00:00:00Z"}))
        .await;
    let runs = runs_until(&app, &job, |r| {
        r.first().is_some_and(|run| run["status"] == "failed")
    })
    .await;
    let run = &runs[0];
    assert_eq!(run["attempt"], 2, "{run}");
    assert_eq!(
        run["error"],
        "devpack action action_2 (automation.schedule) failed: job \"twin\" already exists"
    );
    let jobs = app.get(&base).await.json();
    assert_eq!(
        jobs["items"].as_array().unwrap().len(),
        1,
        "no twin was created: {jobs}"
    );
}

async fn concurrent_patches_of_different_fields_all_stick(backend: Backend) {
    let app = spawn_app(backend).await;
    let (base, function, _) = setup(&app).await;
    let mut paths = Vec::new();
    for i in 0..10 {
        let res = app
            .post(
                &base,
                &json!({"function_id": function, "name": format!("j{i}"), "schedule": "@yearly"}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.text());
        paths.push(format!("{base}/{}", res.json()["id"].as_str().unwrap()));
    }
    // Two PATCHes of different fields race on each job: both must stick (one written from
    // a stale read would undo the other, e.g. re-enable a disabled job).
    let disable = json!({"enabled": false});
    let describe = json!({"description": "described"});
    race_patches(&app, &paths, &disable, &describe).await;
    for path in &paths {
        let job = app.get(path).await.json();
        assert_eq!(
            (&job["enabled"], &job["description"], &job["next_run"]),
            (&json!(false), &json!("described"), &Value::Null),
            "{path}"
        );
    }
    app.stop().await;
}
