//! Account-scoped tokens: issuing, scoping, revocation, expiry. Both stores.

use crate::both_stores;
use crate::helpers::*;
use actix_web::http::Method;
use serde_json::{json, Value};

both_stores!(
    token_lifecycle,
    scoped_tokens_are_isolated_across_accounts,
    token_input_rules_and_expiry,
    deleting_the_account_revokes_its_tokens,
);

async fn issue(app: &TestApp, account: &str, body: Value) -> Value {
    let res = app
        .post(&format!("/accounts/{account}/tokens"), &body)
        .await;
    assert_eq!(res.status, 201, "{}", res.text());
    res.json()
}

/// Issues a token and returns its value.
async fn issue_value(app: &TestApp, account: &str, name: &str) -> String {
    issue(app, account, json!({"name": name})).await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A request with an arbitrary bearer token.
async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> Resp {
    let req = app
        .client
        .request(method, app.url(path))
        .insert_header(("Authorization", format!("Bearer {token}")));
    let res = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    };
    read(res.unwrap()).await
}

async fn token_lifecycle(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.create_account("alice").await;
    let id = account["id"].as_str().unwrap();
    let created = issue(&app, id, json!({"name": "ci"})).await;
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("slt_") && token.len() == 47, "{token}");
    assert_eq!(created["token_prefix"], &token[..12]);
    assert_eq!(created["expires_at"], Value::Null);
    assert_eq!(created["account_id"], id);

    // Listed and fetched without the value.
    let list = app.get(&format!("/accounts/{id}/tokens")).await.json();
    let listed = &list["items"][0];
    assert_eq!(listed["id"], created["id"]);
    assert!(listed.get("token").is_none());
    let token_path = format!("/accounts/{id}/tokens/{}", created["id"].as_str().unwrap());
    let fetched = app.get(&token_path).await.json();
    assert!(fetched.get("token").is_none());
    assert!(!app
        .get(&format!("/accounts/{id}/tokens"))
        .await
        .text()
        .contains(&token[12..]));

    // The token works on its account.
    assert_eq!(
        call(&app, &token, Method::GET, &format!("/accounts/{id}"), None)
            .await
            .status,
        200
    );
    let own_list = call(&app, &token, Method::GET, "/accounts", None)
        .await
        .json();
    assert_eq!(
        own_list["items"],
        json!([account]),
        "GET /accounts lists only its account"
    );
    let secret = call(
        &app,
        &token,
        Method::POST,
        &format!("/accounts/{id}/secrets"),
        Some(json!({"name": "k", "value": "v"})),
    )
    .await;
    assert_eq!(secret.status, 201);

    // Admin-only routes are forbidden to it.
    for (method, path, body) in [
        (
            Method::POST,
            "/accounts".to_owned(),
            Some(json!({"owner": "x"})),
        ),
        (Method::DELETE, format!("/accounts/{id}"), None),
        (Method::GET, format!("/accounts/{id}/tokens"), None),
        (
            Method::POST,
            format!("/accounts/{id}/tokens"),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, token_path.clone(), None),
    ] {
        call(&app, &token, method, &path, body).await.assert_error(
            403,
            "forbidden",
            "this route needs an admin token",
        );
    }

    // Revoked: 401 from then on.
    assert_eq!(app.delete(&token_path).await.status, 204);
    call(&app, &token, Method::GET, &format!("/accounts/{id}"), None)
        .await
        .assert_error(401, "unauthorized", "missing or invalid bearer token");
    app.get(&token_path)
        .await
        .assert_error(404, "not_found", "token not found");
}

async fn scoped_tokens_are_isolated_across_accounts(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_account_id("alice").await;
    let b = app.create_account_id("bob").await;
    let token_a = issue_value(&app, &a, "a").await;
    let token_b = issue_value(&app, &b, "b").await;
    app.post(
        &format!("/accounts/{b}/secrets"),
        &json!({"name": "shared", "value": "bob"}),
    )
    .await;

    for (token, own, other) in [(&token_a, &a, &b), (&token_b, &b, &a)] {
        for path in [
            format!("/accounts/{other}"),
            format!("/accounts/{other}/secrets"),
            format!("/accounts/{other}/secrets/shared"),
        ] {
            call(&app, token, Method::GET, &path, None)
                .await
                .assert_error(404, "not_found", "account not found");
        }
        call(
            &app,
            token,
            Method::PATCH,
            &format!("/accounts/{other}"),
            Some(json!({"owner": "x"})),
        )
        .await
        .assert_error(404, "not_found", "account not found");
        call(
            &app,
            token,
            Method::PUT,
            &format!("/accounts/{other}/secrets/shared"),
            Some(json!({"value": "overwritten"})),
        )
        .await
        .assert_error(404, "not_found", "account not found");
        // Scope is checked before the body: a malformed body for another account is 404.
        let res = read(
            app.client
                .post(app.url(&format!("/accounts/{other}/secrets")))
                .insert_header(("Authorization", format!("Bearer {token}")))
                .insert_header(("Content-Type", "application/json"))
                .send_body("{not json")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(res.status, 404);
        assert_eq!(
            call(
                &app,
                token,
                Method::GET,
                &format!("/accounts/{own}/secrets"),
                None
            )
            .await
            .status,
            200
        );
    }
    // Bob's secret is untouched.
    assert_eq!(
        app.get(&format!("/accounts/{b}/secrets/shared"))
            .await
            .json()["version"],
        1
    );
}

async fn token_input_rules_and_expiry(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_account_id("alice").await;
    let base = format!("/accounts/{id}/tokens");
    app.post(&base, &json!({}))
        .await
        .assert_error(400, "validation_failed", "name: is required");
    app.post(
        &base,
        &json!({"name": "t", "expires_at": "2001-01-01T00:00:00Z"}),
    )
    .await
    .assert_error(
        400,
        "validation_failed",
        "expires_at: must be in the future",
    );
    app.post(&base, &json!({"name": "t", "expires_at": "tomorrow"}))
        .await
        .assert_error(
            400,
            "validation_failed",
            "expires_at: expected an RFC 3339 timestamp, got \"tomorrow\"",
        );
    let ghost = uuid::Uuid::new_v4();
    app.post(&format!("/accounts/{ghost}/tokens"), &json!({"name": "t"}))
        .await
        .assert_error(404, "not_found", "account not found");

    // Any offset is accepted and returned in UTC with microseconds.
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let soon_text = soon
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339();
    let created = issue(&app, &id, json!({"name": "short", "expires_at": soon_text})).await;
    let expires = created["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z') && expires.len() == 27, "{expires}");
    let token = created["token"].as_str().unwrap();
    assert_eq!(
        call(&app, token, Method::GET, &format!("/accounts/{id}"), None)
            .await
            .status,
        200
    );
    actix_rt::time::sleep(std::time::Duration::from_millis(1800)).await;
    call(&app, token, Method::GET, &format!("/accounts/{id}"), None)
        .await
        .assert_error(401, "unauthorized", "missing or invalid bearer token");
}

async fn deleting_the_account_revokes_its_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_account_id("alice").await;
    let token = issue_value(&app, &id, "t").await;
    assert_eq!(app.delete(&format!("/accounts/{id}")).await.status, 204);
    call(&app, &token, Method::GET, "/accounts", None)
        .await
        .assert_error(401, "unauthorized", "missing or invalid bearer token");
}

#[actix_web::test]
async fn metrics_behind_a_token_are_admin_only() {
    let app = spawn_app_with(
        Backend::Memory,
        AppOptions::default().arg("--metrics-require-token"),
    )
    .await;
    let id = app.create_account_id("alice").await;
    let token = issue_value(&app, &id, "t").await;
    call(&app, &token, Method::GET, "/metrics", None)
        .await
        .assert_error(403, "forbidden", "this route needs an admin token");
}
