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
