//! PostgreSQL over TLS as libpq does it (CONTRACT.md §5): `sslmode` `disable`, `prefer`
//! (the default: TLS when the server offers it, unverified), `require` (TLS, unverified;
//! verified like `verify-ca` when `sslrootcert` is given, as libpq does), `verify-ca`
//! (the chain, not the name) and `verify-full` (chain and host name); `sslrootcert` is a
//! PEM file of trusted roots, or `system` (the default) for the operating system's.
//!
//! `tokio-postgres` knows only `disable`, `prefer` and `require` and rejects
//! `sslrootcert`, so [`Dsn::parse`] takes both out of the DSN (URL or key=value form)
//! before handing the rest to it. That splitting is written here: no crate parses libpq
//! DSNs while leaving the TLS choice to the caller.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode {other:?}: expected disable, prefer, require, verify-ca or verify-full"
                ))
            }
        })
    }

    /// What `tokio-postgres` is told: whether to ask for TLS and insist on it.
    pub fn wire(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Wire;
        match self {
            Self::Disable => Wire::Disable,
            Self::Prefer => Wire::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => Wire::Require,
        }
    }
}

/// A DSN with its TLS settings taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// The rest, for `tokio_postgres::Config`.
    pub rest: String,
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file, or `None` for the system's roots.
    pub root: Option<String>,
}

impl Dsn {
    pub fn parse(dsn: &str) -> Result<Self, String> {
        let (rest, mode, root) =
            if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
                split_url(dsn)?
            } else {
                split_pairs(dsn)?
            };
        let mut mode = mode
            .as_deref()
            .map_or(Ok(SslMode::Prefer), SslMode::parse)?;
        let root = root.filter(|r| r != "system");
        // libpq: `require` with a root certificate verifies the chain.
        if mode == SslMode::Require && root.is_some() {
            mode = SslMode::VerifyCa;
        }
        Ok(Self { rest, mode, root })
    }

    /// The TLS side of connections for this DSN.
    pub fn connector(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let chain = match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => None,
            SslMode::VerifyCa | SslMode::VerifyFull => Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(self.roots()?),
                    provider.clone(),
                )
                .build()
                .map_err(|e| e.to_string())?,
            ),
        };
        let config = match chain {
            Some(webpki) if self.mode == SslMode::VerifyFull => {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            }
            chain => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Relaxed { chain, provider }))
                .with_no_client_auth(),
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }

    fn roots(&self) -> Result<rustls::RootCertStore, String> {
        let mut store = rustls::RootCertStore::empty();
        match &self.root {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert {path:?}: {e}"))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("sslrootcert {path:?}: {e}"))?;
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("sslrootcert {path:?}: no usable certificate in it"));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
                if store.is_empty() {
                    return Err("sslmode verify-ca/verify-full: no system root certificates found; set sslrootcert".to_owned());
                }
            }
        }
        Ok(store)
    }
}

/// The connection settings and the TLS connector of a DSN, as every connection of the
/// process (the pool's and the `LISTEN` ones) makes them.
pub fn config(
    dsn: &str,
) -> Result<
    (
        tokio_postgres::Config,
        tokio_postgres_rustls::MakeRustlsConnect,
    ),
    String,
> {
    let dsn = Dsn::parse(dsn)?;
    let mut config: tokio_postgres::Config = dsn.rest.parse().map_err(|e| format!("{e}"))?;
    config.ssl_mode(dsn.mode.wire());
    Ok((config, dsn.connector()?))
}

/// `postgres://…?sslmode=…&sslrootcert=…`: the query pairs taken out, the rest kept.
type Split = (String, Option<String>, Option<String>);

fn split_url(dsn: &str) -> Result<Split, String> {
    let mut url = url::Url::parse(dsn).map_err(|e| format!("not a URL: {e}"))?;
    let (mut mode, mut root) = (None, None);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| match k.as_ref() {
            "sslmode" => {
                mode = Some(v.into_owned());
                None
            }
            "sslrootcert" => {
                root = Some(v.into_owned());
                None
            }
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((url.to_string(), mode, root))
}

/// `host=… sslmode=… sslrootcert='…'` (libpq's key=value form: values bare or in single
/// quotes with backslash escapes): the two pairs taken out, the rest written back quoted.
fn split_pairs(dsn: &str) -> Result<Split, String> {
    let (mut mode, mut root, mut rest) = (None, None, Vec::new());
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("expected '=' after {key:?}"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or("unterminated quoted value")?),
                    Some(c) => value.push(c),
                    None => return Err("unterminated quoted value".to_owned()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or("dangling backslash")?);
                } else {
                    value.push(c);
                }
            }
        }
        match key.as_str() {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => rest.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )),
        }
    }
    Ok((rest.join(" "), mode, root))
}

/// The certificate checks of `prefer`, `require` and `verify-ca`, which rustls does not
/// offer: with no `chain` verifier nothing is checked (libpq's `prefer` and `require`:
/// encrypted, unauthenticated); with one, the chain must lead to a trusted root but the
/// name is not checked (`verify-ca`). Handshake signatures are always verified.
#[derive(Debug)]
struct Relaxed {
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_come_out_of_both_dsn_forms() {
        let d = Dsn::parse("postgres://u:p@db:5432/app?sslmode=verify-full&sslrootcert=%2Fca.pem&application_name=x").unwrap();
        assert_eq!(d.mode, SslMode::VerifyFull);
        assert_eq!(d.root.as_deref(), Some("/ca.pem"));
        assert_eq!(d.rest, "postgres://u:p@db:5432/app?application_name=x");
        let d = Dsn::parse("postgres://db/app").unwrap();
        assert_eq!(
            (d.mode, d.root, d.rest.as_str()),
            (SslMode::Prefer, None, "postgres://db/app")
        );
        let d = Dsn::parse("host=db  user = 'o\\'neil' sslmode=require sslrootcert='/etc/ca dir/ca.pem' dbname=app").unwrap();
        assert_eq!(
            d.mode,
            SslMode::VerifyCa,
            "require with a root verifies the chain"
        );
        assert_eq!(d.root.as_deref(), Some("/etc/ca dir/ca.pem"));
        assert_eq!(d.rest, "host='db' user='o\\'neil' dbname='app'");
        let parsed: tokio_postgres::Config = d.rest.parse().unwrap();
        assert_eq!(parsed.get_user(), Some("o'neil"));
        let d = Dsn::parse("host=db sslmode=disable sslrootcert=system").unwrap();
        assert_eq!((d.mode, d.root), (SslMode::Disable, None));
        assert!(Dsn::parse("host=db sslmode=maybe")
            .unwrap_err()
            .contains("sslmode \"maybe\""));
        assert!(Dsn::parse("host='db").is_err());
        assert!(Dsn::parse("host").is_err());
    }
}
