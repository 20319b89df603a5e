//! The HTTP side of remote MCP servers: [`client`] builds the reqwest client rmcp's
//! streamable-HTTP transport runs on — always through the egress proxy the runner serves on
//! `127.0.0.1:3128` (set explicitly, not read from the environment), except for `localhost`,
//! which is the container itself — with rustls on ring and the webpki roots (no OpenSSL, no
//! aws-lc, no system certificate store: the small image has none).
//!
//! When a connection fails, [`egress_refusal`] asks the proxy directly with a `CONNECT` for the
//! same host and port: the host answers `403` with the reason (and the rule to add), which
//! reqwest does not show for a refused tunnel. So the log and the agent see "egress to X is
//! not allowed ... --allow-egress X" instead of "tunnel error". The probe is one more attempt
//! in the egress log.

use reqwest_mcp::Url;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The runner's egress forwarder inside the container.
pub const PROXY_ADDRESS: &str = "127.0.0.1:3128";
/// How long to wait for a TCP connection (through the proxy).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of the proxy's refusal read.
const MAX_REFUSAL_BYTES: usize = 4096;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest_mcp::Error),
}

/// The client for remote MCP servers.
pub fn client() -> Result<reqwest_mcp::Client, HttpSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let proxy = reqwest_mcp::Proxy::all(format!("http://{PROXY_ADDRESS}"))?
        .no_proxy(reqwest_mcp::NoProxy::from_string("localhost"));
    Ok(reqwest_mcp::Client::builder()
        .proxy(proxy)
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()?)
}

/// The host and port a URL connects to (the default port of its scheme when it names none).
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let url = Url::parse(url).ok()?;
    // `host_str` keeps the brackets of an IPv6 literal, as CONNECT wants them.
    let host = url.host_str()?.to_owned();
    Some((host, url.port_or_known_default()?))
}

/// Asks the egress proxy whether `host:port` may be reached. `Some(reason)` when the proxy
/// refuses (or is not there); `None` when it lets the tunnel through (so the failure is the
/// server's) or the URL is `localhost` (no proxy).
pub async fn egress_refusal(url: &str) -> Option<String> {
    refusal_from(PROXY_ADDRESS, url).await
}

async fn refusal_from(proxy: &str, url: &str) -> Option<String> {
    let (host, port) = host_port(url)?;
    if host == "localhost" {
        return None;
    }
    let probe = async {
        let mut stream = match tokio::net::TcpStream::connect(proxy).await {
            Ok(stream) => stream,
            Err(error) => {
                return Some(format!(
                    "the egress proxy on {proxy} is not reachable: {error}"
                ));
            }
        };
        let request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        // Read until the head and some body have come, the proxy closes, or the cap.
        while answer.len() < MAX_REFUSAL_BYTES {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
            if let Some(parsed) = parse_answer(&answer)
                && (parsed.0 / 100 == 2 || parsed.1)
            {
                break;
            }
        }
        let (status, _) = parse_answer(&answer)?;
        if status / 100 == 2 {
            return None;
        }
        let body = answer
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .map(|end| {
                String::from_utf8_lossy(&answer[end + 4..])
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default();
        Some(if body.is_empty() {
            format!("the egress proxy refused {host}:{port} with status {status}")
        } else {
            format!("the egress proxy refused {host}:{port}: {body}")
        })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, probe)
        .await
        .unwrap_or(None)
}

/// The status of an HTTP answer's head, and whether its body (by `Content-Length`) is all
/// there; `None` until the head is complete.
fn parse_answer(answer: &[u8]) -> Option<(u16, bool)> {
    let end = answer.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&answer[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok());
    let complete = length.is_some_and(|length| answer.len() >= end + 4 + length);
    Some((status, complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports() {
        assert_eq!(
            host_port("http://127.0.0.1:8931/mcp"),
            Some(("127.0.0.1".into(), 8931))
        );
        assert_eq!(
            host_port("https://Example.com/x"),
            Some(("example.com".into(), 443))
        );
        assert_eq!(
            host_port("http://example.com"),
            Some(("example.com".into(), 80))
        );
        assert_eq!(host_port("http://[::1]:9/"), Some(("[::1]".into(), 9)));
        assert_eq!(host_port("nope"), None);
    }

    #[test]
    fn answers() {
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 Connection established\r\n"),
            None
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some((200, false))
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 3\r\n\r\nno"),
            Some((403, false))
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!"),
            Some((403, true))
        );
        assert_eq!(parse_answer(b"garbage\r\n\r\n"), None);
    }

    /// A refusing proxy's reason reaches the caller; a tunnel let through is no refusal.
    #[tokio::test]
    async fn refusals_are_read_from_the_proxy() {
        async fn proxy_answering(answer: &'static [u8]) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap().to_string();
            tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 256];
                let n = stream.read(&mut request).await.unwrap();
                assert!(request[..n].starts_with(b"CONNECT 127.0.0.1:9999 HTTP/1.1\r\n"));
                stream.write_all(answer).await.unwrap();
            });
            address
        }
        let reason = "egress to 127.0.0.1:9999 is not allowed for agent group main";
        let refusing = proxy_answering(
            b"HTTP/1.1 403 Forbidden\r\ncontent-length: 61\r\n\r\negress to 127.0.0.1:9999 is not allowed for agent group main\n",
        )
        .await;
        let got = refusal_from(&refusing, "http://127.0.0.1:9999/mcp")
            .await
            .unwrap();
        assert!(got.contains(reason), "{got}");
        let allowing = proxy_answering(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
        assert_eq!(
            refusal_from(&allowing, "http://127.0.0.1:9999/mcp").await,
            None
        );
        assert_eq!(
            refusal_from(&allowing, "http://localhost:9999/mcp").await,
            None
        );
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let got = refusal_from(&closed, "http://127.0.0.1:9999/mcp")
            .await
            .unwrap();
        assert!(got.contains("not reachable"), "{got}");
    }

    #[test]
    fn the_client_builds() {
        client().unwrap();
    }
}
