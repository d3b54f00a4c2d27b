//! HTTPS: the rustls server configuration from `TLS_CERT_FILE` and `TLS_KEY_FILE` (PEM).
//! A file that cannot be read or holds no usable certificate or key is a configuration
//! error naming the setting (exit 2): serving plain HTTP where HTTPS was asked for would
//! be worse than not starting.

use crate::error::StartupError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn invalid(setting: &str, path: &str, reason: impl std::fmt::Display) -> StartupError {
    StartupError::Config(format!("invalid {setting}: {path:?}: {reason}"))
}

/// The server configuration for the certificate chain at `cert` and the private key
/// (PKCS#8, PKCS#1 or SEC1) at `key` (actix-web adds the ALPN protocols it serves).
pub fn server_config(cert: &str, key: &str) -> Result<rustls::ServerConfig, StartupError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid("TLS_CERT_FILE", cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("TLS_CERT_FILE", cert, e))?;
    if chain.is_empty() {
        return Err(invalid("TLS_CERT_FILE", cert, "no PEM certificate in it"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid("TLS_KEY_FILE", key, e))?;
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            invalid(
                "TLS_KEY_FILE",
                key,
                format!("does not fit the certificate: {e}"),
            )
        })
}
