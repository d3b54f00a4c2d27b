//! HTTPS served by the process itself (rustls), with a certificate made here: a client
//! that trusts it gets answers, plain HTTP and untrusting clients do not, and unusable
//! certificate or key files stop start-up with exit 2.

use crate::helpers::*;
use std::sync::Arc;
use std::time::Duration;

/// A self-signed certificate for `localhost` and 127.0.0.1: (certificate DER, cert PEM,
/// key PEM).
fn certificate() -> (rustls::pki_types::CertificateDer<'static>, String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.der().clone(), cert.pem(), key.serialize_pem())
}

fn write(dir: &std::path::Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_owned()
}

fn client_trusting(roots: Vec<rustls::pki_types::CertificateDer<'static>>) -> awc::Client {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(store)
        .with_no_client_auth();
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(config)))
        .timeout(Duration::from_secs(10))
        .finish()
}

#[actix_web::test]
async fn https_is_served_with_the_configured_certificate() {
    let dir = std::env::temp_dir().join(format!("tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (der, cert_pem, key_pem) = certificate();
    let cert = write(&dir, "tls.crt", &cert_pem);
    let key = write(&dir, "tls.key", &key_pem);
    let port = free_port();
    let mut child = appserver()
        .args([
            "--api-tokens",
            TOKEN,
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .env("TLS_CERT_FILE", &cert)
        .env("TLS_KEY_FILE", &key)
        .spawn()
        .unwrap();
    let client = client_trusting(vec![der]);
    let base = format!("https://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..400 {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await {
            ready = res.status() == 200;
            if ready {
                break;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "never ready over HTTPS");
    let mut res = client
        .get(format!("{base}/accounts"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["items"], serde_json::json!([]));
    // Plain HTTP on the HTTPS port gets no answer; a client that does not trust the
    // certificate refuses the handshake.
    let plain = Api::new(format!("http://127.0.0.1:{port}"));
    let refused = plain.client.get(plain.url("/healthz")).send().await;
    assert!(refused.map(|r| r.status() != 200).unwrap_or(true));
    let stranger = client_trusting(vec![certificate().0]);
    assert!(stranger
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());
    let _ = child.kill();
    let _ = child.wait();

    // Unusable files: exit 2, naming the setting.
    let (_, other_cert, other_key) = certificate();
    let garbage = write(&dir, "garbage.pem", "not a pem file\n");
    let foreign_key = write(&dir, "other.key", &other_key);
    let _ = other_cert;
    for (cert_file, key_file, message) in [
        (garbage.as_str(), key.as_str(), "invalid TLS_CERT_FILE: "),
        (cert.as_str(), garbage.as_str(), "invalid TLS_KEY_FILE: "),
        (
            "/nonexistent.crt",
            key.as_str(),
            "invalid TLS_CERT_FILE: \"/nonexistent.crt\"",
        ),
        (
            cert.as_str(),
            foreign_key.as_str(),
            "does not fit the certificate",
        ),
    ] {
        let child = appserver()
            .args(["--api-tokens", TOKEN, "--addr", "127.0.0.1:0"])
            .env("TLS_CERT_FILE", cert_file)
            .env("TLS_KEY_FILE", key_file)
            .spawn()
            .unwrap();
        let (code, stdout, stderr) = wait_with_limit(child, Duration::from_secs(30)).await;
        assert_eq!(code, Some(2), "{cert_file} {key_file}: {stdout}{stderr}");
        assert!(
            stderr.contains(message) || stdout.contains(message),
            "{message}: {stderr}{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether the pool's connection to `dsn` is encrypted (`pg_stat_ssl`), or why it could
/// not connect.
async fn encrypted(dsn: &str) -> Result<bool, String> {
    let options = actors::store::PgOptions {
        max_connections: 1,
        connect_timeout: Duration::from_millis(600),
    };
    let pool = actors::store::connect(dsn, &options)
        .await
        .map_err(|e| e.to_string())?;
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// The local server has TLS on with Debian's snakeoil certificate (CN and SAN
/// `localhost`, self-signed): every `sslmode` behaves as libpq's does.
#[actix_web::test]
async fn postgres_connections_honour_sslmode_and_sslrootcert() {
    let snakeoil = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    let ip = "postgres://postgres@127.0.0.1:5432/postgres";
    let named = "postgres://postgres@localhost:5432/postgres";
    assert_eq!(encrypted(&format!("{ip}?sslmode=disable")).await, Ok(false));
    // A Unix-domain socket speaks no TLS, whatever the default.
    assert_eq!(
        encrypted("host=/var/run/postgresql user=postgres dbname=postgres").await,
        Ok(false)
    );
    assert_eq!(encrypted(ip).await, Ok(true), "prefer by default, as libpq");
    assert_eq!(encrypted(&format!("{ip}?sslmode=prefer")).await, Ok(true));
    assert_eq!(encrypted(&format!("{ip}?sslmode=require")).await, Ok(true));
    // The chain against the given root; the name only with verify-full.
    assert_eq!(
        encrypted(&format!("{ip}?sslmode=verify-ca&sslrootcert={snakeoil}")).await,
        Ok(true)
    );
    assert_eq!(
        encrypted(&format!(
            "{named}?sslmode=verify-full&sslrootcert={snakeoil}"
        ))
        .await,
        Ok(true)
    );
    assert_eq!(
        encrypted(&format!(
            "host=localhost user=postgres dbname=postgres sslmode=verify-full sslrootcert='{snakeoil}'"
        ))
        .await,
        Ok(true)
    );
    let wrong_name = encrypted(&format!("{ip}?sslmode=verify-full&sslrootcert={snakeoil}"))
        .await
        .unwrap_err();
    assert!(
        wrong_name.contains("certificate not valid for name \"127.0.0.1\""),
        "{wrong_name}"
    );
    // Without sslrootcert, the system's roots: Debian's ssl-cert package (a dependency of
    // its PostgreSQL) puts the snakeoil certificate in /etc/ssl/certs, which they include.
    assert_eq!(
        encrypted(&format!("{named}?sslmode=verify-full")).await,
        Ok(true)
    );
    // A root that did not sign the server's certificate.
    let dir = std::env::temp_dir().join(format!("pgtls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = write(&dir, "other.pem", &certificate().1);
    for dsn in [
        format!("{named}?sslmode=verify-ca&sslrootcert={other}"),
        format!("{named}?sslmode=require&sslrootcert={other}"),
        format!("{named}?sslmode=verify-full&sslrootcert={other}"),
    ] {
        let refused = encrypted(&dsn).await.unwrap_err();
        assert!(
            refused.contains("invalid peer certificate: UnknownIssuer"),
            "{dsn}: {refused}"
        );
    }
    let missing = encrypted(&format!(
        "{ip}?sslmode=verify-ca&sslrootcert=/nonexistent.pem"
    ))
    .await
    .unwrap_err();
    assert!(
        missing.starts_with("invalid DATABASE_URL: sslrootcert \"/nonexistent.pem\""),
        "{missing}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
