//! Cross-cutting HTTP behaviour: authentication, the error table, request ids, health,
//! readiness and metrics.

use crate::helpers::*;
use actix_web::http::Method;
use actix_web::web::Bytes;
use serde_json::json;

#[actix_web::test]
async fn auth_missing_wrong_and_right_tokens() {
    let app = spawn_app(Backend::Memory).await;
    let missing = app.get_as(None, "/accounts").await;
    missing.assert_error(401, "unauthorized", "missing or invalid bearer token");
    assert_eq!(
        missing.header("www-authenticate").as_deref(),
        Some("Bearer")
    );

    for header in [
        "Bearer wrong-token",
        "Basic dGVzdA==",
        "Bearer",
        &format!("Bearer {TOKEN}x"),
        TOKEN,
    ] {
        let res = app.get_as(Some(header), "/accounts").await;
        res.assert_error(401, "unauthorized", "missing or invalid bearer token");
    }
    // The scheme is case-insensitive.
    let res = app
        .get_as(Some(&format!("bearer {TOKEN}")), "/accounts")
        .await;
    assert_eq!(res.status, 200);
    // Auth comes before routing: an unknown path without a token is 401, not 404.
    let res = app.get_as(None, "/nope").await;
    assert_eq!(res.status, 401);
}

#[actix_web::test]
async fn every_configured_token_works() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default()
            .env(
                "API_TOKENS",
                "env-token-aaaaaaaaaaaa, ,env-token-bbbbbbbbbbbb",
            )
            .env("API_TOKEN", "single-token-cccccccccc"),
    )
    .await;
    for token in [
        TOKEN,
        "env-token-aaaaaaaaaaaa",
        "env-token-bbbbbbbbbbbb",
        "single-token-cccccccccc",
    ] {
        let res = app
            .get_as(Some(&format!("Bearer {token}")), "/accounts")
            .await;
        assert_eq!(res.status, 200, "token {token}");
    }
}

#[actix_web::test]
async fn public_paths_need_no_token_and_still_get_405() {
    let app = spawn_app(Backend::Memory).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let res = app.get_as(None, path).await;
        assert_eq!(res.status, 200, "{path}");
        let res = read(app.client.post(app.url(path)).send().await.unwrap()).await;
        res.assert_error(
            405,
            "method_not_allowed",
            "method not allowed; allowed: GET",
        );
        assert_eq!(res.header("allow").as_deref(), Some("GET"));
    }
    assert_eq!(app.get("/healthz").await.json(), json!({"status": "ok"}));
}

#[actix_web::test]
async fn metrics_can_require_a_token() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().arg("--metrics-require-token"),
    )
    .await;
    let res = app.get_as(None, "/metrics").await;
    assert_eq!(res.status, 401);
    assert_eq!(app.get("/metrics").await.status, 200);
}

#[actix_web::test]
async fn auth_disabled_treats_everyone_as_admin_and_says_so() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions {
            no_token: true,
            ..AppOptions::default()
        }
        .arg("--auth-disabled"),
    )
    .await;
    let res = app.get_as(None, "/accounts").await;
    assert_eq!(res.status, 200);
    let ready = app.get("/readyz").await.json();
    assert_eq!(ready["checks"]["auth"], "disabled");
}

#[actix_web::test]
async fn error_statuses_and_bodies() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().env("HTTP_BODY_LIMIT", "1KiB"),
    )
    .await;
    let send = |method: Method, path: &str, content_type: Option<&str>, body: &'static [u8]| {
        let mut req = app.req(method, path);
        if let Some(ct) = content_type {
            req = req.insert_header(("Content-Type", ct));
        }
        async move { read(req.send_body(body).await.unwrap()).await }
    };
    let json = Some("application/json");

    // 400: malformed, empty, not an object, unknown field, wrong type.
    let res = send(Method::POST, "/accounts", json, b"{\"owner\": ").await;
    assert_eq!(
        (res.status, res.json()["code"].clone()),
        (400, json!("invalid_request"))
    );
    assert!(
        res.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{}",
        res.text()
    );
    send(Method::POST, "/accounts", json, b"")
        .await
        .assert_error(400, "invalid_request", "request body must be a JSON object");
    send(Method::POST, "/accounts", json, b"[1, 2]")
        .await
        .assert_error(400, "invalid_request", "request body must be a JSON object");
    send(
        Method::POST,
        "/accounts",
        json,
        b"{\"owner\": \"a\", \"extra\": 1}",
    )
    .await
    .assert_error(
        400,
        "invalid_request",
        "unknown field `extra`, expected `owner` or `metadata`",
    );
    send(
        Method::POST,
        "/accounts",
        json,
        b"{\"owner\": \"a\", \"metadata\": {\"k\": 1}}",
    )
    .await
    .assert_error(
        400,
        "invalid_request",
        "metadata.k: invalid type: integer `1`, expected a string",
    );
    // A missing Content-Type is accepted; parameters are ignored.
    assert_eq!(
        send(Method::POST, "/accounts", None, b"{\"owner\": \"a\"}")
            .await
            .status,
        201
    );
    assert_eq!(
        send(
            Method::POST,
            "/accounts",
            Some("application/json; charset=utf-8"),
            b"{\"owner\": \"b\"}"
        )
        .await
        .status,
        201
    );

    // 404: unknown route and unknown resource; no trailing-slash normalisation.
    send(Method::GET, "/nope", None, b"").await.assert_error(
        404,
        "not_found",
        "no route for GET /nope",
    );
    send(Method::GET, "/accounts/", None, b"")
        .await
        .assert_error(404, "not_found", "no route for GET /accounts/");

    // 405 with Allow.
    let res = send(Method::PUT, "/accounts", json, b"{}").await;
    res.assert_error(
        405,
        "method_not_allowed",
        "method not allowed; allowed: GET, POST",
    );
    assert_eq!(res.header("allow").as_deref(), Some("GET, POST"));
    let res = send(
        Method::POST,
        &format!("/accounts/{}", uuid::Uuid::new_v4()),
        json,
        b"{}",
    )
    .await;
    assert_eq!(res.header("allow").as_deref(), Some("GET, PATCH, DELETE"));

    // 415 before JSON parsing.
    send(
        Method::POST,
        "/accounts",
        Some("text/plain"),
        b"{\"owner\": \"a\"}",
    )
    .await
    .assert_error(
        415,
        "unsupported_media_type",
        "request body must be sent as application/json",
    );

    // 413 by Content-Length, and 413 while reading a chunked body with no length.
    let big = format!("{{\"owner\": \"{}\"}}", "x".repeat(2000));
    let res = read(
        app.req(Method::POST, "/accounts")
            .insert_header(("Content-Type", "application/json"))
            .send_body(big.clone())
            .await
            .unwrap(),
    )
    .await;
    res.assert_error(
        413,
        "payload_too_large",
        "request body exceeds the limit of 1024 bytes",
    );
    let chunks = futures_util::stream::iter(
        big.into_bytes()
            .chunks(100)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let res = read(
        app.req(Method::POST, "/accounts")
            .insert_header(("Content-Type", "application/json"))
            .send_stream(chunks)
            .await
            .unwrap(),
    )
    .await;
    res.assert_error(
        413,
        "payload_too_large",
        "request body exceeds the limit of 1024 bytes",
    );
    // 413 comes before 415 (check order).
    let res = read(
        app.req(Method::POST, "/accounts")
            .insert_header(("Content-Type", "text/plain"))
            .send_body("x".repeat(2000))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, 413);

    let list = app.get("/accounts").await.json();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        2,
        "only the two valid creates landed"
    );
}

#[actix_web::test]
async fn internal_errors_are_opaque() {
    let app = spawn_app(Backend::Postgres).await;
    let db = app.db.clone().unwrap();
    // Break the schema under the running app: the store's query fails unexpectedly.
    db.client()
        .await
        .batch_execute("DROP TABLE app_accounts CASCADE")
        .await
        .unwrap();
    let res = app.get("/accounts").await;
    res.assert_error(500, "internal", "internal error");
    assert!(
        !res.text().contains("app_accounts"),
        "no cause leaks to the client"
    );
}

#[actix_web::test]
async fn request_ids_are_honoured_or_generated() {
    let app = spawn_app(Backend::Memory).await;
    let res = read(
        app.req(Method::GET, "/accounts")
            .insert_header(("X-Request-Id", "trace-abc.123_X"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        res.header("x-request-id").as_deref(),
        Some("trace-abc.123_X")
    );
    for bad in ["has space", "semi;colon", &"a".repeat(129)] {
        let res = read(
            app.req(Method::GET, "/accounts")
                .insert_header(("X-Request-Id", bad))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let id = res.header("x-request-id").unwrap();
        assert_ne!(id, bad);
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    }
    // Errors carry one too.
    let res = app.get_as(None, "/accounts").await;
    assert!(res.header("x-request-id").is_some());
}

#[actix_web::test]
async fn readyz_reports_checks_in_both_modes() {
    let memory = spawn_app(Backend::Memory).await;
    let res = memory.get("/readyz").await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.json(),
        json!({"status": "ready", "checks": {"database": "memory", "auth": "enabled", "sandbox": "confined", "actors": {"accounts": "running", "automation": "running", "events": "running", "executor": "running", "functions": "running", "gasbank": "running", "oracle": "running", "oracle_dispatcher": "disabled", "pricefeeds": "running", "random": "running", "refresher": "running", "scheduler": "running", "secrets": "running", "settler": "disabled", "triggers": "running"}}})
    );

    let mock = spawn_app_with(
        Backend::Memory,
        AppOptions::default().env("TEE_MODE", "mock"),
    )
    .await;
    assert_eq!(
        mock.get("/readyz").await.json()["checks"]["sandbox"],
        "mock",
        "no JavaScript runs in mock mode"
    );

    let pg = spawn_app(Backend::Postgres).await;
    let res = pg.get("/readyz").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["checks"]["database"], "ok");

    // The database goes away: readiness fails (liveness does not).
    pg.db.as_ref().unwrap().drop_now().await;
    let res = pg.get("/readyz").await;
    assert_eq!(res.status, 503, "{}", res.text());
    let body = res.json();
    assert_eq!(body["code"], "not_ready");
    assert_eq!(body["error"], "not ready: database unreachable");
    assert_eq!(body["checks"]["database"], "unreachable");
    assert_eq!(pg.get("/healthz").await.status, 200);
}

#[actix_web::test]
async fn metrics_use_route_templates_and_bounded_labels() {
    let app = spawn_app(Backend::Memory).await;
    let account = app.create_account("alice").await;
    let id = account["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/accounts/{id}")).await.status, 200);
    assert_eq!(
        app.get(&format!("/accounts/{}", uuid::Uuid::new_v4()))
            .await
            .status,
        404
    );
    assert_eq!(app.get("/no/such/route").await.status, 404);
    let text = app.get("/metrics").await.text();
    for expected in [
        r#"service_layer_http_requests_total{method="POST",path="/accounts",status="201"} 1"#,
        r#"service_layer_http_requests_total{method="GET",path="/accounts/{id}",status="200"} 1"#,
        r#"service_layer_http_requests_total{method="GET",path="/accounts/{id}",status="404"} 1"#,
        r#"service_layer_http_requests_total{method="GET",path="unmatched",status="404"} 1"#,
        r#"service_layer_http_request_duration_seconds_count{method="GET",path="/accounts/{id}",status="200"} 1"#,
        r#"service_layer_actor_restarts_total{actor="accounts"} 0"#,
        r#"service_layer_actor_up{actor="accounts"} 1"#,
        "service_layer_http_inflight_requests 1",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(!text.contains(id), "no ids in labels");
    assert!(
        !text.contains("path=\"/metrics\""),
        "/metrics is not itself counted"
    );
}

#[actix_web::test]
async fn a_failed_actor_makes_its_routes_503_and_readiness_fail() {
    // With no restarts allowed, the first exit marks the actor failed; it is restarted
    // only after the maximum back-off (30 s), so the failed state is observable.
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().env("SUPERVISOR_MAX_RESTARTS", "0"),
    )
    .await;
    assert_eq!(app.get("/accounts").await.status, 200);
    app.accounts
        .addr()
        .unwrap()
        .send(actors::supervisor::Stop)
        .await
        .unwrap();

    let mut ready = app.get("/readyz").await;
    for _ in 0..200 {
        if ready.status == 503 {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
        ready = app.get("/readyz").await;
    }
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["error"], "not ready: an actor has failed");
    assert_eq!(ready.json()["checks"]["actors"]["accounts"], "failed");

    let res = app.get("/accounts").await;
    res.assert_error(
        503,
        "service_unavailable",
        "the accounts service is restarting; retry shortly",
    );
    assert_eq!(res.header("retry-after").as_deref(), Some("5"));
    // Liveness and unrelated routes are unaffected.
    assert_eq!(app.get("/healthz").await.status, 200);
    let metrics = app.get("/metrics").await.text();
    assert!(
        metrics.contains(r#"service_layer_actor_up{actor="accounts"} 0"#),
        "{metrics}"
    );
}

#[actix_web::test]
async fn rate_limits_apply_per_credential() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default()
            .env("RATE_LIMIT_RPS", "1")
            .env("RATE_LIMIT_BURST", "2")
            .env("API_TOKENS", "second-admin-token-xyz"),
    )
    .await;
    assert_eq!(app.get("/accounts").await.status, 200);
    assert_eq!(app.get("/accounts").await.status, 200);
    let limited = app.get("/accounts").await;
    limited.assert_error(
        429,
        "rate_limited",
        "too many requests for this credential; retry later",
    );
    assert_eq!(limited.header("retry-after").as_deref(), Some("1"));
    // Another credential has its own bucket; public paths and bad tokens are not counted.
    assert_eq!(
        app.get_as(Some("Bearer second-admin-token-xyz"), "/accounts")
            .await
            .status,
        200
    );
    assert_eq!(app.get_as(None, "/healthz").await.status, 200);
    assert_eq!(
        app.get_as(Some("Bearer wrong"), "/accounts").await.status,
        401
    );
    actix_rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.get("/accounts").await.status,
        200,
        "refilled after a second"
    );
}
