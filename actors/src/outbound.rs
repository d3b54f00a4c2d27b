//! Outbound HTTP for the background actors (price sources, resolvers; CONTRACT.md §4):
//! `awc` over rustls, a timeout, no redirects, `User-Agent: service-layer/<version>`, and a
//! connector that refuses destinations on loopback, private, link-local, unspecified and
//! other non-public addresses unless allowed.
//!
//! The check is in the connector, not before the request: the connector resolves the
//! host once, checks every address it got, and connects only to those addresses, so a
//! name cannot resolve to a public address for the check and to a private one for the
//! connection (DNS rebinding). Literal IP hosts go through the same check.
//!
//! An `awc::Client` is not `Send`: each actor builds its own with [`client`] on its
//! arbiter.

use actix_service::Service;
use actix_tls::connect::{
    ConnectError, ConnectInfo, Connection, Connector as TcpConnector, Resolver,
};
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// `User-Agent` of every outbound request.
pub const USER_AGENT: &str = concat!("service-layer/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, Copy)]
pub struct OutboundConfig {
    /// Whole request: connect, send, and the response head (the body read has its own
    /// deadline at the caller, which also bounds its size).
    pub timeout: Duration,
    /// Allow destinations on non-public addresses (tests, private deployments).
    pub allow_private: bool,
}

/// Why a destination was refused: the error the connector returns for it.
#[derive(Debug, thiserror::Error)]
#[error("destination {0} is not a public address")]
pub struct Refused(pub IpAddr);

/// A client for one actor: rustls with the Mozilla roots (`webpki-roots`), no redirects,
/// the timeout, the user agent, and the address check unless `allow_private`.
pub fn client(config: OutboundConfig) -> awc::Client {
    let connector = awc::Connector::new()
        .connector(Checked {
            inner: TcpConnector::new(Resolver::default()).service(),
            allow_private: config.allow_private,
        })
        .rustls_0_23(tls())
        // awc's default pool admits 100 connections across all hosts: a tenant's stalled
        // sources would hold them and every other fetch would queue behind. The callers
        // bound their own concurrency (feeds in flight × sources per feed).
        .limit(0)
        .timeout(config.timeout);
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .timeout(config.timeout)
        .add_default_header((awc::http::header::USER_AGENT, USER_AGENT))
        .finish()
}

/// The TLS configuration: ring's provider, the webpki roots, TLS 1.2 and 1.3.
fn tls() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder,
        // ring supports the safe defaults; this cannot fail with it, but the types say
        // it could: fall back to TLS 1.3 alone rather than panic.
        Err(_) => rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13]),
    };
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Whether `ip` is an address a service on the internet can have. Refused: loopback,
/// private (RFC 1918, IPv6 unique local), link-local, unspecified, and the other ranges
/// that never reach a public host (shared CGNAT space, "this network", broadcast,
/// multicast, documentation, benchmarking, reserved); IPv4 inside IPv6 (mapped or
/// compatible) is judged as the IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped().or_else(|| compatible_v4(v6)) {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let first = s[0];
    let v4_at = |i: usize| {
        Ipv4Addr::new(
            (s[i] >> 8) as u8,
            s[i] as u8,
            (s[i + 1] >> 8) as u8,
            s[i + 1] as u8,
        )
    };
    // Forms that carry an IPv4 address a gateway will reach: judged by it.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return public_v4(v4_at(6)); // NAT64 64:ff9b::/96
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return public_v4(v4_at(6)); // IPv4-translated ::ffff:0:a.b.c.d
    }
    if first == 0x2002 {
        return public_v4(v4_at(1)); // 6to4 2002:a.b.c.d::/48
    }
    !(ip.is_loopback()
        || (first == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 64:ff9b:1::/48
        || (first == 0x2001 && s[1] == 0) // Teredo 2001::/32 (the client address is hidden)
        || (first == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated, still private)
        || first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation 2001:db8::/32
}

/// `::a.b.c.d` (deprecated IPv4-compatible form), but not `::` or `::1`.
fn compatible_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    if s[..6].iter().all(|x| *x == 0) && (s[6] != 0 || s[7] > 1) {
        Some(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
    } else {
        None
    }
}

/// The TCP connector behind the address check: resolves the host itself, refuses it if
/// any address is not public (unless allowed), and hands the checked addresses to the
/// inner connector, which connects to them without resolving again.
#[derive(Clone)]
struct Checked<S> {
    inner: S,
    allow_private: bool,
}

impl<S> Service<ConnectInfo<Uri>> for Checked<S>
where
    S: Service<ConnectInfo<Uri>, Response = Connection<Uri, TcpStream>, Error = ConnectError>
        + Clone
        + 'static,
{
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, ConnectError>>;

    actix_service::forward_ready!(inner);

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let inner = self.inner.clone();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = req.hostname().trim_start_matches('[').trim_end_matches(']');
            let port = req.port();
            let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|e| ConnectError::Resolver(Box::new(e)))?
                    .collect(),
            };
            if addrs.is_empty() {
                return Err(ConnectError::NoRecords);
            }
            if !allow_private {
                if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                    return Err(ConnectError::Resolver(Box::new(Refused(bad.ip()))));
                }
            }
            inner.call(req.set_addrs(addrs)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "2001:db8::1",
            "fec0::1",
            "64:ff9b::a00:5",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "::ffff:0:a00:5",
            "2002:a00:5::1",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "100::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private} passed");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:101:101::1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public} refused");
        }
    }

    /// A one-shot HTTP server on loopback answering `response` to every connection; the
    /// receiver yields each request's head.
    async fn server(
        response: &'static str,
        delay: Duration,
    ) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        actix_rt::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let tx = tx.clone();
                actix_rt::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                    tokio::time::sleep(delay).await;
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        (port, rx)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

    fn config(allow_private: bool) -> OutboundConfig {
        OutboundConfig {
            timeout: Duration::from_millis(500),
            allow_private,
        }
    }

    #[actix_rt::test]
    async fn loopback_is_refused_unless_allowed_by_ip_and_by_name() {
        let (port, mut seen) = server(OK, Duration::ZERO).await;
        for url in [
            format!("http://127.0.0.1:{port}/p"),
            format!("http://localhost:{port}/p"),
            format!("http://[::ffff:127.0.0.1]:{port}/p"),
        ] {
            let err = client(config(false)).get(&url).send().await.unwrap_err();
            assert!(
                err.to_string().contains("is not a public address"),
                "{url}: {err}"
            );
        }
        assert!(
            seen.try_recv().is_err(),
            "no refused request reached the server"
        );
        let res = client(config(true))
            .get(format!("http://localhost:{port}/p?base=NEO"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let head = seen.recv().await.unwrap();
        assert!(head.starts_with("GET /p?base=NEO HTTP/1.1"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("user-agent: {}", USER_AGENT.to_ascii_lowercase())),
            "{head}"
        );
    }

    #[actix_rt::test]
    async fn redirects_are_not_followed_and_slow_answers_time_out() {
        let (port, mut seen) = server(
            "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let res = client(config(true))
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302, "the redirect is the answer");
        seen.recv().await.unwrap();
        let (slow, _) = server(OK, Duration::from_secs(5)).await;
        let err = client(config(true))
            .get(format!("http://127.0.0.1:{slow}/"))
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(err, awc::error::SendRequestError::Timeout),
            "{err}"
        );
    }
}
