//! Oracle data sources and requests over HTTP, without a resolver (requests wait for
//! PATCH): CRUD and validation, the transition table, final events emitted once, the
//! open-request quota, and `Devpack.oracle.createRequest`.

use crate::both_stores;
use crate::helpers::*;
use crate::triggers::executions_until;
use awc::http::Method;
use serde_json::{json, Value};

both_stores!(
    sources_crud_and_validation,
    requests_follow_the_transition_table,
    a_final_change_emits_one_event,
    open_requests_obey_the_quota,
    devpack_creates_requests_all_or_nothing,
    concurrent_patches_end_a_request_once,
    concurrent_source_patches_all_stick,
    the_store_fences_leases_and_keeps_retention,
);

/// Creates a data source; its id.
pub(crate) async fn source(app: &TestApp, account: &str, body: Value) -> String {
    let res = app
        .post(&format!("/accounts/{account}/oracle/sources"), &body)
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    res.json()["id"].as_str().unwrap().to_owned()
}

/// Creates a request on `source`; the response body.
pub(crate) async fn request(app: &TestApp, account: &str, source: &str, payload: &str) -> Value {
    let res = app
        .post(
            &format!("/accounts/{account}/oracle/requests"),
            &json!({"data_source_id": source, "payload": payload}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    res.json()
}

async fn sources_crud_and_validation(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let base = format!("/accounts/{account}/oracle/sources");
    let res = app
        .post(
            &base,
            &json!({"name": " Prices ", "url": "https://api.example.com/v1"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    let created = res.json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "Prices");
    assert_eq!(created["method"], "GET");
    assert_eq!(created["headers"], json!({}));
    assert_eq!(
        (&created["body"], &created["description"]),
        (&json!(""), &json!(""))
    );
    assert_eq!(created["enabled"], true);
    assert_eq!(created["account_id"], account.as_str());
    // Names are unique per account, case-insensitively.
    app.post(
        &base,
        &json!({"name": "PRICES", "url": "https://x.example"}),
    )
    .await
    .assert_error(
        409,
        "conflict",
        "oracle data source \"PRICES\" already exists",
    );
    for (body, message) in [
        (json!({"url": "https://x.example"}), "name: is required"),
        (json!({"name": "n"}), "url: is required"),
        (
            json!({"name": "n", "url": "mailto:a@b"}),
            "url: must be an http or https URL",
        ),
        (
            json!({"name": "n", "url": "https://x", "method": "HEAD"}),
            "method: must be one of GET, POST, PUT, PATCH, DELETE",
        ),
        (
            json!({"name": "n", "url": "https://x", "body": "x".repeat(65537)}),
            "body: must be at most 65536 bytes",
        ),
        (
            json!({"name": "n", "url": "https://x", "headers": (0..33).map(|i| (format!("h{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            "headers: at most 32 entries allowed",
        ),
    ] {
        app.post(&base, &body)
            .await
            .assert_error(400, "validation_failed", message);
    }
    let wrong = app
        .post(
            &base,
            &json!({"name": "n", "url": "https://x", "headers": {"a": 1}}),
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.json()["code"].clone()),
        (400, json!("invalid_request"))
    );
    let other = source(
        &app,
        &account,
        json!({"name": "other", "url": "http://o.example", "method": "post", "headers": {"X-Key": "k"}, "body": "{}"}),
    )
    .await;
    let list = app.get(&format!("{base}?limit=1")).await.json();
    assert_eq!(list["items"][0]["id"], id.as_str());
    let next = list["next_cursor"].as_str().unwrap();
    let list = app
        .get(&format!("{base}?limit=1&cursor={next}"))
        .await
        .json();
    assert_eq!(list["items"][0]["id"], other.as_str());
    assert_eq!(list["items"][0]["method"], "POST");
    assert_eq!(list["next_cursor"], Value::Null);
    // PATCH: headers replace, null clears, a taken name is refused.
    let path = format!("{base}/{other}");
    let res = app
        .patch(
            &path,
            &json!({"headers": {"Y": "1"}, "description": "d", "body": null, "enabled": false}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let patched = res.json();
    assert_eq!(patched["headers"], json!({"Y": "1"}));
    assert_eq!(
        (
            &patched["description"],
            &patched["body"],
            &patched["enabled"]
        ),
        (&json!("d"), &json!(""), &json!(false))
    );
    app.patch(&path, &json!({"name": "prices"}))
        .await
        .assert_error(
            409,
            "conflict",
            "oracle data source \"prices\" already exists",
        );
    app.patch(&path, &json!({"url": null})).await.assert_error(
        400,
        "validation_failed",
        "url: must not be null",
    );
    assert_eq!(
        app.patch(&path, &json!({"name": "Other"})).await.json()["name"],
        "Other"
    );
    assert_eq!(app.get(&path).await.json()["description"], "d");
    // Another account sees none of it.
    let bob = app.create_account_id("bob").await;
    app.get(&format!("/accounts/{bob}/oracle/sources/{id}"))
        .await
        .assert_error(404, "not_found", "oracle data source not found");
    // Deleting a source deletes its requests.
    let r = request(&app, &account, &id, "p").await;
    let r_path = format!(
        "/accounts/{account}/oracle/requests/{}",
        r["id"].as_str().unwrap()
    );
    assert_eq!(app.get(&r_path).await.status, 200);
    assert_eq!(app.delete(&format!("{base}/{id}")).await.status, 204);
    app.get(&format!("{base}/{id}")).await.assert_error(
        404,
        "not_found",
        "oracle data source not found",
    );
    app.get(&r_path)
        .await
        .assert_error(404, "not_found", "oracle request not found");
    assert_eq!(app.delete(&format!("{base}/{id}")).await.status, 404);
    app.get(&format!("{base}/not-a-uuid")).await.assert_error(
        404,
        "not_found",
        "oracle data source not found",
    );
    app.stop().await;
}

async fn requests_follow_the_transition_table(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let id = source(
        &app,
        &account,
        json!({"name": "s", "url": "https://s.example"}),
    )
    .await;
    let base = format!("/accounts/{account}/oracle/requests");
    let created = request(&app, &account, &id, "{\"q\":1}").await;
    assert_eq!(created["status"], "pending");
    assert_eq!(created["payload"], "{\"q\":1}");
    assert_eq!(created["attempts"], 0);
    assert_eq!(
        (
            &created["result"],
            &created["error"],
            &created["completed_at"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(
        created["next_attempt_at"], created["created_at"],
        "due at once"
    );
    let defaulted = app.post(&base, &json!({"data_source_id": id})).await.json();
    assert_eq!(defaulted["payload"], "");
    // The data source must be an enabled one of this account.
    let unusable = "data_source_id: no enabled data source with this id in this account";
    let bob = app.create_account_id("bob").await;
    let bobs = source(&app, &bob, json!({"name": "b", "url": "https://b.example"})).await;
    let off = source(
        &app,
        &account,
        json!({"name": "off", "url": "https://o.example", "enabled": false}),
    )
    .await;
    for body in [
        json!({"data_source_id": bobs}),
        json!({"data_source_id": off}),
        json!({"data_source_id": "nope"}),
        json!({"data_source_id": uuid::Uuid::new_v4().to_string()}),
    ] {
        app.post(&base, &body)
            .await
            .assert_error(400, "validation_failed", unusable);
    }
    app.post(&base, &json!({})).await.assert_error(
        400,
        "validation_failed",
        "data_source_id: is required",
    );
    // A source is checked before the quota (CONTRACT.md §1.5: 400 before 409).
    let tight = spawn_app_with(
        backend,
        AppOptions::default().env("MAX_OPEN_ORACLE_REQUESTS_PER_ACCOUNT", "1"),
    )
    .await;
    let carol = tight.create_account_id("carol").await;
    let hers = source(
        &tight,
        &carol,
        json!({"name": "c", "url": "https://c.example"}),
    )
    .await;
    request(&tight, &carol, &hers, "").await;
    let full = format!("/accounts/{carol}/oracle/requests");
    tight
        .post(
            &full,
            &json!({"data_source_id": uuid::Uuid::new_v4().to_string()}),
        )
        .await
        .assert_error(400, "validation_failed", unusable);
    assert_eq!(
        tight
            .post(&full, &json!({"data_source_id": hers}))
            .await
            .json()["code"],
        "limit_exceeded"
    );
    tight.stop().await;
    app.post(
        &base,
        &json!({"data_source_id": id, "payload": "x".repeat(65537)}),
    )
    .await
    .assert_error(
        400,
        "validation_failed",
        "payload: must be at most 65536 bytes",
    );
    let wrong = app
        .post(&base, &json!({"data_source_id": id, "payload": {"a": 1}}))
        .await;
    assert_eq!(
        (wrong.status, wrong.json()["code"].clone()),
        (400, json!("invalid_request"))
    );

    let path = format!("{base}/{}", created["id"].as_str().unwrap());
    let patch = |body: Value| {
        let (app, path) = (&app, path.clone());
        async move { app.patch(&path, &body).await }
    };
    patch(json!({"status": "succeeded", "result": "x"}))
        .await
        .assert_error(
            409,
            "invalid_state",
            "oracle request is pending; it cannot become succeeded",
        );
    patch(json!({"status": "pending"})).await.assert_error(
        409,
        "invalid_state",
        "oracle request is pending; it cannot become pending",
    );
    patch(json!({}))
        .await
        .assert_error(400, "validation_failed", "status: is required");
    patch(json!({"status": "done"})).await.assert_error(
        400,
        "validation_failed",
        "status: must be one of pending, running, succeeded (or completed), failed",
    );
    let running = patch(json!({"status": " Running "})).await;
    assert_eq!(running.status, 200, "{}", running.text());
    assert_eq!(running.json()["status"], "running");
    patch(json!({"status": "running"})).await.assert_error(
        409,
        "invalid_state",
        "oracle request is running; it cannot become running",
    );
    patch(json!({"status": "completed"})).await.assert_error(
        400,
        "validation_failed",
        "result: is required when status is succeeded",
    );
    patch(json!({"status": "failed", "result": "r"}))
        .await
        .assert_error(
            400,
            "validation_failed",
            "result: only allowed when status is succeeded",
        );
    let done = patch(json!({"status": "completed", "result": "42"}))
        .await
        .json();
    assert_eq!(
        (&done["status"], &done["result"], &done["error"]),
        (&json!("succeeded"), &json!("42"), &Value::Null)
    );
    assert!(done["completed_at"].is_string());
    assert_eq!(done["next_attempt_at"], Value::Null);
    // A final request never changes again.
    for body in [
        json!({"status": "failed"}),
        json!({"status": "running"}),
        json!({"status": "succeeded", "result": "43"}),
    ] {
        assert_eq!(patch(body).await.json()["code"], "invalid_state");
    }
    assert_eq!(app.get(&path).await.json(), done, "nothing changed");
    // Failing with the default error.
    let other = request(&app, &account, &id, "").await;
    let other_path = format!("{base}/{}", other["id"].as_str().unwrap());
    app.patch(&other_path, &json!({"status": "running"})).await;
    let failed = app
        .patch(&other_path, &json!({"status": "failed"}))
        .await
        .json();
    assert_eq!(
        (&failed["status"], &failed["error"]),
        (&json!("failed"), &json!("failed"))
    );
    // Bob cannot see or change Alice's requests.
    app.patch(
        &format!(
            "/accounts/{bob}/oracle/requests/{}",
            other["id"].as_str().unwrap()
        ),
        &json!({"status": "running"}),
    )
    .await
    .assert_error(404, "not_found", "oracle request not found");
    let list = app.get(&format!("{base}?limit=500")).await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    assert_eq!(list["items"][0]["id"], created["id"]);
    app.stop().await;
}

/// An event trigger on `rule` running a function that returns its event; the function id.
pub(crate) async fn listen(app: &TestApp, account: &str, rule: &str) -> String {
    let function = app
        .post(
            &format!("/accounts/{account}/functions"),
            &json!({"name": format!("on-{rule}"), "source": "(params) => params.event"}),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .post(
            &format!("/accounts/{account}/triggers"),
            &json!({"function_id": function, "type": "event", "rule": rule}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    function
}

async fn a_final_change_emits_one_event(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default().env("WORK_POLL_INTERVAL", "100ms"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    let completed = listen(&app, &account, "oracle.request.completed").await;
    let failed = listen(&app, &account, "oracle.request.failed").await;
    let id = source(
        &app,
        &account,
        json!({"name": "s", "url": "https://s.example"}),
    )
    .await;
    let base = format!("/accounts/{account}/oracle/requests");
    let ok = request(&app, &account, &id, "").await;
    let bad = request(&app, &account, &id, "").await;
    for (r, end) in [
        (&ok, json!({"status": "succeeded", "result": "7"})),
        (&bad, json!({"status": "failed", "error": "no data"})),
    ] {
        let path = format!("{base}/{}", r["id"].as_str().unwrap());
        app.patch(&path, &json!({"status": "running"})).await;
        assert_eq!(app.patch(&path, &end).await.status, 200);
    }
    let runs = executions_until(&app, &account, &completed, |e| !e.is_empty()).await;
    assert_eq!(runs[0]["output"]["name"], "oracle.request.completed");
    assert_eq!(
        runs[0]["output"]["data"],
        json!({"request_id": ok["id"], "data_source_id": id, "result": "7"})
    );
    let runs = executions_until(&app, &account, &failed, |e| !e.is_empty()).await;
    assert_eq!(
        runs[0]["output"]["data"],
        json!({"request_id": bad["id"], "data_source_id": id, "error": "no data"})
    );
    // Refused changes emit nothing: still one event each after a further delivery pass.
    let path = format!("{base}/{}", ok["id"].as_str().unwrap());
    assert_eq!(
        app.patch(&path, &json!({"status": "failed"})).await.status,
        409
    );
    actix_rt::time::sleep(std::time::Duration::from_millis(500)).await;
    for function in [&completed, &failed] {
        assert_eq!(
            executions_until(&app, &account, function, |_| true)
                .await
                .len(),
            1
        );
    }
    app.stop().await;
}

async fn open_requests_obey_the_quota(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default()
            .env("MAX_OPEN_ORACLE_REQUESTS_PER_ACCOUNT", "2")
            .env("MAX_ORACLE_SOURCES_PER_ACCOUNT", "1"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    let id = source(
        &app,
        &account,
        json!({"name": "s", "url": "https://s.example"}),
    )
    .await;
    app.post(
        &format!("/accounts/{account}/oracle/sources"),
        &json!({"name": "t", "url": "https://t.example"}),
    )
    .await
    .assert_error(
        409,
        "limit_exceeded",
        "oracle data sources: at most 1 per account (MAX_ORACLE_SOURCES_PER_ACCOUNT)",
    );
    let base = format!("/accounts/{account}/oracle/requests");
    // Concurrent creates cannot race past the quota.
    let body = json!({"data_source_id": id});
    let creates = (0..6).map(|_| app.post(&base, &body));
    let statuses: Vec<u16> = futures_util::future::join_all(creates)
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    let refused = app.post(&base, &json!({"data_source_id": id})).await;
    refused.assert_error(409, "limit_exceeded", "pending or running oracle requests: at most 2 per account (MAX_OPEN_ORACLE_REQUESTS_PER_ACCOUNT)");
    // A finished request no longer counts.
    let first = app.get(&base).await.json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("{base}/{first}");
    app.patch(&path, &json!({"status": "running"})).await;
    app.patch(&path, &json!({"status": "failed"})).await;
    assert_eq!(
        app.post(&base, &json!({"data_source_id": id})).await.status,
        201
    );
    // Another account has its own room.
    let bob = app.create_account_id("bob").await;
    let bobs = source(&app, &bob, json!({"name": "s", "url": "https://s.example"})).await;
    request(&app, &bob, &bobs, "").await;
    app.stop().await;
}

async fn devpack_creates_requests_all_or_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let id = source(
        &app,
        &account,
        json!({"name": "s", "url": "https://s.example"}),
    )
    .await;
    let functions = format!("/accounts/{account}/functions");
    let run = |source: String| {
        let (app, functions) = (&app, functions.clone());
        async move {
            let f = app
                .post(
                    &functions,
                    &json!({"name": uuid::Uuid::new_v4().to_string(), "source": source}),
                )
                .await
                .json();
            app.post(
                &format!("{functions}/{}/execute", f["id"].as_str().unwrap()),
                &json!({}),
            )
            .await
            .json()
        }
    };
    let out = run(format!(
        "() => {{ Devpack.oracle.createRequest({{dataSourceId: '{id}', payload: {{pair: 'NEO/USD'}}}}); \
                  Devpack.oracle.createRequest({{dataSourceId: '{id}', payload: 'plain'}}); return 1 }}"
    ))
    .await;
    assert_eq!(out["status"], "succeeded", "{out}");
    let created: Vec<Value> = app
        .get(&format!("/accounts/{account}/oracle/requests"))
        .await
        .json()["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(created.len(), 2);
    let payloads: Vec<&str> = created
        .iter()
        .map(|r| r["payload"].as_str().unwrap())
        .collect();
    assert!(
        payloads.contains(&"{\"pair\":\"NEO/USD\"}") && payloads.contains(&"plain"),
        "{payloads:?}"
    );
    assert!(created.iter().all(|r| r["status"] == "pending"));
    let ids: Vec<&Value> = out["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["result"]["request_id"])
        .collect();
    assert!(
        created.iter().all(|r| ids.contains(&&r["id"])),
        "the actions' results name the requests"
    );
    // A refused request applies none of the run's actions.
    let out = run(format!(
        "() => {{ Devpack.automation.schedule({{name: 'kept?', schedule: '@every 1h'}}); \
                  Devpack.oracle.createRequest({{dataSourceId: '{}'}}); return 1 }}",
        uuid::Uuid::new_v4()
    ))
    .await;
    assert_eq!(out["error_code"], "action_failed");
    assert_eq!(
        out["error"],
        "devpack action action_2 (oracle.createRequest) failed: data_source_id: no enabled data source with this id in this account"
    );
    assert_eq!(out["actions"][0]["status"], "aborted");
    let jobs = app
        .get(&format!("/accounts/{account}/automation/jobs"))
        .await
        .json();
    assert_eq!(jobs["items"], json!([]), "the job was not created");
    assert_eq!(
        app.get(&format!("/accounts/{account}/oracle/requests"))
            .await
            .json()["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let out =
        run("() => { Devpack.oracle.createRequest({payload: 'x'}); return 1 }".to_owned()).await;
    assert_eq!(
        out["error"],
        "devpack action action_1 (oracle.createRequest) failed: data_source_id: is required"
    );
    // A disabled source is refused as over HTTP.
    let off = source(
        &app,
        &account,
        json!({"name": "off", "url": "https://o.example", "enabled": false}),
    )
    .await;
    let out = run(format!(
        "() => {{ Devpack.oracle.createRequest({{dataSourceId: '{off}'}}); return 1 }}"
    ))
    .await;
    assert_eq!(
        out["error"],
        "devpack action action_1 (oracle.createRequest) failed: data_source_id: no enabled data source with this id in this account"
    );
    app.stop().await;
}

async fn concurrent_patches_end_a_request_once(backend: Backend) {
    let app = spawn_app_with(
        backend,
        AppOptions::default().env("WORK_POLL_INTERVAL", "100ms"),
    )
    .await;
    let account = app.create_account_id("alice").await;
    let completed = listen(&app, &account, "oracle.request.completed").await;
    let failed = listen(&app, &account, "oracle.request.failed").await;
    let id = source(
        &app,
        &account,
        json!({"name": "s", "url": "https://s.example"}),
    )
    .await;
    let r = request(&app, &account, &id, "").await;
    let path = format!(
        "/accounts/{account}/oracle/requests/{}",
        r["id"].as_str().unwrap()
    );
    assert_eq!(
        app.patch(&path, &json!({"status": "running"})).await.status,
        200
    );
    // Twenty callers race to finish it, half each way: exactly one wins.
    let patches = (0..20).map(|i| {
        let body = if i % 2 == 0 {
            json!({"status": "succeeded", "result": format!("r{i}")})
        } else {
            json!({"status": "failed", "error": format!("e{i}")})
        };
        let (app, path) = (&app, path.clone());
        async move { app.send(Method::PATCH, &path, Some(&body)).await }
    });
    let results = futures_util::future::join_all(patches).await;
    let won: Vec<&Resp> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(results
        .iter()
        .filter(|r| r.status != 200)
        .all(|r| r.json()["code"] == "invalid_state"));
    let winner = won[0].json();
    assert_eq!(app.get(&path).await.json(), winner);
    let function = if winner["status"] == "succeeded" {
        &completed
    } else {
        &failed
    };
    executions_until(&app, &account, function, |e| !e.is_empty()).await;
    actix_rt::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        executions_until(&app, &account, &completed, |_| true)
            .await
            .len()
            + executions_until(&app, &account, &failed, |_| true)
                .await
                .len(),
        1,
        "one event"
    );
    app.stop().await;
}

async fn concurrent_source_patches_all_stick(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account_id("alice").await;
    let mut paths = Vec::new();
    for i in 0..10 {
        let id = source(
            &app,
            &account,
            json!({"name": format!("s{i}"), "url": "https://s.example"}),
        )
        .await;
        paths.push(format!("/accounts/{account}/oracle/sources/{id}"));
    }
    // Two PATCHes of different fields race on each source: both must stick (a PATCH
    // written from a stale read would undo the other).
    let disable = json!({"enabled": false});
    let describe = json!({"description": "described"});
    race_patches(&app, &paths, &disable, &describe).await;
    for path in &paths {
        let now = app.get(path).await.json();
        assert_eq!(
            (&now["enabled"], &now["description"]),
            (&json!(false), &json!("described")),
            "{path}"
        );
    }
    app.stop().await;
}

/// The store itself: a claim's lease fences its holder (after the lease ends another
/// claim takes the request over and the first holder can neither renew nor record),
/// attempts count claims, and retention deletes only finished requests past it.
async fn the_store_fences_leases_and_keeps_retention(backend: Backend) {
    use actors::oracle::{Finish, Holder, NewRequest, NewSource, SourceInput};
    let (stores, account, now) = stores_with_account(backend).await;
    let source = NewSource::parse(SourceInput {
        name: Some("s".into()),
        url: Some("https://s.example".into()),
        ..Default::default()
    })
    .unwrap()
    .into_source(account.id, now);
    let oracle = stores.oracle.clone();
    let unlimited = actors::quota::Quota::unlimited("t");
    oracle.create_source(&source, unlimited).await.unwrap();
    let new = |payload: &str| {
        NewRequest {
            data_source_id: source.id,
            payload: payload.into(),
        }
        .into_request(account.id, now)
    };
    let (a, b) = (new("a"), new("b"));
    oracle.create_request(&a, unlimited).await.unwrap();
    oracle.create_request(&b, unlimited).await.unwrap();
    let s = chrono::TimeDelta::seconds;
    let claimed = oracle.claim(now, "A", now + s(30), 1).await.unwrap();
    assert_eq!(claimed.len(), 1, "the limit holds");
    // Both are due at `now`; whichever came first, the other is `second`.
    let (first, second) = if claimed[0].id == a.id {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        (
            claimed[0].id,
            claimed[0].attempts,
            claimed[0].next_attempt_at
        ),
        (first.id, 1, Some(now + s(30)))
    );
    // While A holds it, nobody else gets it; the other request is still due.
    let other = oracle
        .claim(now + s(1), "B", now + s(31), 10)
        .await
        .unwrap();
    assert_eq!(other.iter().map(|r| r.id).collect::<Vec<_>>(), [second.id]);
    assert!(oracle.renew(first.id, "A", now + s(40)).await.unwrap());
    // At +35 A's renewed lease holds; B's claim of the other ran out at +31.
    let again: Vec<_> = oracle
        .claim(now + s(35), "B", now + s(65), 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(again, [second.id], "renewed");
    // The lease ends: B takes it over; A is fenced off.
    let taken = oracle
        .claim(now + s(41), "B", now + s(71), 10)
        .await
        .unwrap();
    let taken: Vec<_> = taken.iter().filter(|r| r.id == first.id).collect();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].attempts, 2, "the lost call still counts");
    assert!(!oracle.renew(first.id, "A", now + s(80)).await.unwrap());
    let finish = |at| {
        move |current: &actors::oracle::Request| {
            Ok(current.finish(Finish::Succeeded("x".into()), at))
        }
    };
    let refused = oracle
        .change(first.id, Holder::Lease("A"), &finish(now + s(42)))
        .await;
    assert!(
        matches!(refused, Err(actors::StoreError::InvalidState(_))),
        "{refused:?}"
    );
    let done = oracle
        .change(first.id, Holder::Lease("B"), &finish(now + s(42)))
        .await
        .unwrap();
    assert_eq!(
        (
            done.status.as_str(),
            done.lease.clone(),
            done.next_attempt_at
        ),
        ("succeeded", None, None)
    );
    assert_eq!(
        oracle.next_due().await.unwrap(),
        Some(now + s(65)),
        "only the other request is open"
    );
    // Retention: only finished requests past it go.
    assert_eq!(oracle.purge(now + s(42), 10).await.unwrap(), 0, "not yet");
    assert_eq!(oracle.purge(now + s(43), 10).await.unwrap(), 1);
    assert!(oracle.get_request(account.id, first.id).await.is_err());
    assert!(
        oracle.get_request(account.id, second.id).await.is_ok(),
        "open requests are kept"
    );
}
