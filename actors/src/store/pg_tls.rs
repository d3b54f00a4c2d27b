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
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    /// The rest, for `tokio_postgres::Config` (it may hold a password).
    pub rest: String,
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file, or `None` for the system's roots.
    pub root: Option<String>,
}

/// Never the DSN's text: it may hold a password.
impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dsn")
            .field("mode", &self.mode)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Dsn {
    /// Errors name what is wrong and where, never the DSN's text (it may hold a password).
    pub fn parse(dsn: &str) -> Result<Self, String> {
        let (rest, mode, root) =
            if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
                split_url(dsn)?
            } else {
                split_pairs(dsn)?
            };
        let system = root.as_deref() == Some("system");
        let root = root.filter(|_| !system);
        let mode = match (mode.as_deref().map(SslMode::parse).transpose()?, system) {
            // libpq 16: `sslrootcert=system` means verify-full unless said otherwise, and
            // refuses a mode that would not use it.
            (None, true) => SslMode::VerifyFull,
            (Some(m @ (SslMode::VerifyCa | SslMode::VerifyFull)), true) => m,
            (Some(_), true) => {
                return Err("sslrootcert=system needs sslmode verify-ca or verify-full".to_owned())
            }
            // libpq: `require` with a root certificate verifies the chain.
            (Some(SslMode::Require), false) if root.is_some() => SslMode::VerifyCa,
            (Some(m), false) => m,
            (None, false) => SslMode::Prefer,
        };
        Ok(Self { rest, mode, root })
    }

    /// Whether every host is a Unix-domain socket (a path): no TLS is spoken there, and
    /// the rustls connector cannot name such a host.
    pub fn unix_only(config: &tokio_postgres::Config) -> bool {
        !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)))
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

/// How connections are made: plain (Unix-domain sockets only) or over rustls.
#[derive(Clone)]
pub enum Tls {
    Plain,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// The connection settings and the TLS connector of a DSN, as every connection of the
/// process (the pool's and the `LISTEN` ones) makes them.
pub fn config(dsn: &str) -> Result<(tokio_postgres::Config, Tls), String> {
    let dsn = Dsn::parse(dsn)?;
    let mut config: tokio_postgres::Config = dsn.rest.parse().map_err(|e| format!("{e}"))?;
    config.ssl_mode(dsn.mode.wire());
    let tls = if Dsn::unix_only(&config) {
        Tls::Plain
    } else {
        Tls::Rustls(dsn.connector()?)
    };
    Ok((config, tls))
}

/// `postgres://…?sslmode=…&sslrootcert=…`: the query pairs taken out, the rest kept.
type Split = (String, Option<String>, Option<String>);

fn split_url(dsn: &str) -> Result<Split, String> {
    // Split by hand, not through a URL parser: libpq URLs may name several hosts
    // (`h1:5432,h2:5432`) or none, and every other parameter must reach tokio-postgres
    // byte for byte (a re-encoded query turns `%20` into `+`).
    let Some((base, query)) = dsn.split_once('?') else {
        return Ok((dsn.to_owned(), None, None));
    };
    let (mut mode, mut root, mut kept) = (None, None, Vec::new());
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let parsed = form_urlencoded::parse(piece.as_bytes()).next();
        match parsed.as_ref().map(|(k, v)| (k.as_ref(), v)) {
            Some(("sslmode", v)) => mode = Some(v.to_string()),
            Some(("sslrootcert", v)) => root = Some(v.to_string()),
            _ => kept.push(piece),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, mode, root))
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
            // Not the key: it may be a password or a whole URL of another scheme.
            return Err(format!(
                "expected key=value pairs or a postgres:// URL; parameter {} has no '='",
                rest.len() + 1
            ));
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
        let d = Dsn::parse("host=db sslmode=verify-ca sslrootcert=system").unwrap();
        assert_eq!((d.mode, d.root), (SslMode::VerifyCa, None));
        assert!(Dsn::parse("host=db sslmode=disable sslrootcert=system").is_err());
        assert!(Dsn::parse("host=db sslmode=maybe")
            .unwrap_err()
            .contains("sslmode \"maybe\""));
        // Other parameters pass byte for byte; several hosts are fine.
        let d = Dsn::parse(
            "postgres://u@h1:5432,h2:5433/app?options=-c%20search_path%3Dx&sslmode=require",
        )
        .unwrap();
        assert_eq!(
            d.rest,
            "postgres://u@h1:5432,h2:5433/app?options=-c%20search_path%3Dx"
        );
        assert_eq!(d.mode, SslMode::Require);
        // libpq 16: `sslrootcert=system` means verify-full, and refuses weaker modes.
        let d = Dsn::parse("postgres://db/app?sslrootcert=system").unwrap();
        assert_eq!((d.mode, d.root), (SslMode::VerifyFull, None));
        assert!(Dsn::parse("postgres://db/app?sslrootcert=system&sslmode=require").is_err());
        // Errors never repeat the DSN (it may hold a password).
        let e = Dsn::parse("postgresql+psycopg://u:secret@h/db").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(!format!("{:?}", Dsn::parse("host=h password=secret").unwrap()).contains("secret"));
        assert!(Dsn::parse("host='db").is_err());
        assert!(Dsn::parse("host").is_err());
    }
}
