//! The real binary: exit codes, migrations, unreachable database, graceful shutdown.

use crate::helpers::*;
use std::io::{Read as _, Write as _};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[actix_web::test]
async fn bad_settings_exit_2_naming_the_setting() {
    let child = appserver()
        .args(["--api-tokens", "t", "--log-format", "xml"])
        .spawn()
        .unwrap();
    let (code, _, stderr) = wait_with_limit(child, LIMIT).await;
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("invalid LOG_FORMAT (--log-format, log.format)"),
        "{stderr}"
    );

    let child = appserver().spawn().unwrap();
    let (code, _, stderr) = wait_with_limit(child, LIMIT).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("no API token configured"), "{stderr}");

    let child = appserver().args(["-dsn", "postgres://x"]).spawn().unwrap();
    let (code, _, _) = wait_with_limit(child, LIMIT).await;
    assert_eq!(code, Some(2), "Go-style single-dash flags are not accepted");

    let child = appserver().arg("--help").spawn().unwrap();
    let (code, stdout, _) = wait_with_limit(child, LIMIT).await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--migrate-only"));
}

#[actix_web::test]
async fn migrate_only_in_memory_mode_has_nothing_to_do() {
    let child = appserver().arg("--migrate-only").spawn().unwrap();
    let (code, stdout, _) = wait_with_limit(child, LIMIT).await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("nothing to migrate"), "{stdout}");
}

/// `(version, applied_on)` of every recorded migration.
async fn history(client: &tokio_postgres::Client) -> Vec<(i32, String)> {
    client
        .query(
            "SELECT version, applied_on FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[actix_web::test]
async fn migrations_apply_once_and_never_rerun() {
    let db = TestDb::empty().await;
    let migrate = || {
        appserver()
            .args(["--migrate-only", "--dsn", &db.url])
            .spawn()
            .unwrap()
    };
    let (code, stdout, stderr) = wait_with_limit(migrate(), LIMIT).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let known = actors::store::migrations::embedded();
    assert!(
        stdout.contains(&format!(
            "applied {} migration(s): {}",
            known.len(),
            known.join(", ")
        )),
        "{stdout}"
    );
    let client = db.client().await;
    let before = history(&client).await;
    assert_eq!(before.len(), known.len());

    // A second --migrate-only and a full server start apply nothing.
    let (code, stdout, _) = wait_with_limit(migrate(), LIMIT).await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("applied 0 migration(s)"), "{stdout}");
    let app = spawn_app_with(Backend::Postgres, AppOptions::default().db(db.clone())).await;
    assert_eq!(
        app.create_account("after-migrations").await["owner"],
        "after-migrations"
    );
    app.stop().await;
    let after = history(&client).await;
    assert_eq!(before, after, "history unchanged: nothing re-ran");
}

#[actix_web::test]
async fn a_changed_applied_migration_aborts_start_up() {
    let db = TestDb::migrated().await;
    db.client()
        .await
        .batch_execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1")
        .await
        .unwrap();
    let child = appserver()
        .args([
            "--api-tokens",
            "t",
            "--addr",
            "127.0.0.1:0",
            "--dsn",
            &db.url,
        ])
        .spawn()
        .unwrap();
    let (code, stdout, stderr) = wait_with_limit(child, LIMIT).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("apply migrations"), "{stderr}");
}

#[actix_web::test]
async fn unreachable_database_fails_fast_with_exit_1() {
    // Port 1 on loopback: nothing listens, connections are refused at once.
    let child = appserver()
        .args(["--api-tokens", "t", "--addr", "127.0.0.1:0"])
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")
        .env("DATABASE_CONNECT_TIMEOUT", "1s")
        .spawn()
        .unwrap();
    let (code, stdout, stderr) = wait_with_limit(child, LIMIT).await;
    assert_eq!(code, Some(1), "must exit, not hang: {stdout}{stderr}");
    assert!(stderr.contains("database unreachable after"), "{stderr}");

    let child = appserver()
        .args(["--api-tokens", "t", "--dsn", "postgres://host:notaport/x"])
        .spawn()
        .unwrap();
    let (code, _, stderr) = wait_with_limit(child, LIMIT).await;
    assert_eq!(
        code,
        Some(2),
        "an unparsable DSN is a configuration error: {stderr}"
    );
    assert!(stderr.contains("invalid DATABASE_URL"), "{stderr}");
}

/// Reads from a raw connection until the peer closes it.
fn read_all(stream: &mut std::net::TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[actix_web::test]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let port = free_port();
    let child = appserver()
        .args([
            "--api-tokens",
            "test-token-for-shutdown",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .env("SHUTDOWN_TIMEOUT", "20s")
        .spawn()
        .unwrap();
    let pid = child.id();
    let client = awc::Client::default();
    let mut up = false;
    for _ in 0..400 {
        if let Ok(res) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            up = res.status() == 200;
            if up {
                break;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "server did not come up");

    // Start a request and leave its body half-sent: it is in flight.
    let body = br#"{"owner": "in-flight"}"#;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /accounts HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer test-token-for-shutdown\r\n\
         Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..5]).unwrap();
    actix_rt::time::sleep(Duration::from_millis(300)).await;

    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    // Intake has stopped: new connections are refused.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener still open after SIGTERM"
    );
    // The in-flight request still completes.
    stream.write_all(&body[5..]).unwrap();
    let response = read_all(&mut stream);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("\"owner\":\"in-flight\""), "{response}");

    let (code, stdout, stderr) = wait_with_limit(child, LIMIT).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("shutdown complete"), "{stdout}");
}
