//! Where a container asks to go: [`Target`] (host and port) read off a proxy request, either
//! the authority of `CONNECT host:port` ([`Target::of_connect`]) or the absolute URI of a plain
//! HTTP request, `GET http://host[:port]/path` ([`Target::of_http`]). Anything else is a
//! [`TargetError`] naming what is wrong, answered `400` without being checked or recorded.

use http::Uri;

/// The longest host name the DNS allows.
const MAX_HOST_BYTES: usize = 253;

/// A destination as the container named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// A name (lower-cased, without a trailing dot) or an address literal (IPv6 in brackets).
    pub host: String,
    pub port: u16,
}

/// Why a request names no usable destination. Not retryable: the request is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("CONNECT needs host:port, like CONNECT example.com:443")]
    ConnectWithoutPort,
    #[error("the request names no host")]
    NoHost,
    #[error("the host name is longer than 253 characters")]
    HostTooLong,
    #[error(
        "only http:// URLs are forwarded as plain requests ({scheme}:// is not); for https, send CONNECT host:443 (any client with HTTPS_PROXY set does)"
    )]
    NotHttp { scheme: String },
    #[error("port 0 is not a port")]
    PortZero,
}

impl Target {
    /// The destination of `CONNECT host:port`: the URI is the authority, and the port is
    /// required.
    pub fn of_connect(uri: &Uri) -> Result<Target, TargetError> {
        let authority = uri.authority().ok_or(TargetError::NoHost)?;
        let port = authority
            .port_u16()
            .ok_or(TargetError::ConnectWithoutPort)?;
        Self::checked(authority.host(), port)
    }

    /// The destination of a plain HTTP request in absolute form; the port defaults to 80.
    pub fn of_http(uri: &Uri) -> Result<Target, TargetError> {
        match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => {}
            Some(scheme) => {
                return Err(TargetError::NotHttp {
                    scheme: scheme.chars().take(20).collect(),
                });
            }
            None => return Err(TargetError::NoHost),
        }
        let authority = uri.authority().ok_or(TargetError::NoHost)?;
        Self::checked(authority.host(), authority.port_u16().unwrap_or(80))
    }

    fn checked(host: &str, port: u16) -> Result<Target, TargetError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() || host == "[]" {
            return Err(TargetError::NoHost);
        }
        if host.len() > MAX_HOST_BYTES {
            return Err(TargetError::HostTooLong);
        }
        if port == 0 {
            return Err(TargetError::PortZero);
        }
        Ok(Target { host, port })
    }

    /// `host:port` as a rule for it is written (and as `--allow-egress` takes it).
    pub fn rule_text(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16) -> Target {
        Target {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn connect_targets() {
        let check = |authority: &str, expected: Result<Target, TargetError>| {
            let uri: Uri = authority.parse().unwrap();
            assert_eq!(Target::of_connect(&uri), expected, "{authority}");
        };
        check("example.com:443", Ok(target("example.com", 443)));
        check("GitHub.COM.:443", Ok(target("github.com", 443)));
        check("127.0.0.1:8443", Ok(target("127.0.0.1", 8443)));
        check("[::1]:443", Ok(target("[::1]", 443)));
        check("example.com", Err(TargetError::ConnectWithoutPort));
        check("example.com:0", Err(TargetError::PortZero));
        let long = format!("{}.com:443", "a".repeat(260));
        check(&long, Err(TargetError::HostTooLong));
    }

    #[test]
    fn http_targets() {
        let check = |text: &str, expected: Result<Target, TargetError>| {
            let uri: Uri = text.parse().unwrap();
            assert_eq!(Target::of_http(&uri), expected, "{text}");
        };
        check("http://example.com/a?b", Ok(target("example.com", 80)));
        check("HTTP://Example.com:8080/", Ok(target("example.com", 8080)));
        check("http://[::1]:81/", Ok(target("[::1]", 81)));
        check(
            "https://example.com/",
            Err(TargetError::NotHttp {
                scheme: "https".into(),
            }),
        );
        check("/v1/messages", Err(TargetError::NoHost));
        assert!(
            TargetError::NotHttp {
                scheme: "https".into()
            }
            .to_string()
            .contains("CONNECT")
        );
    }

    #[test]
    fn rule_text_is_a_rule() {
        for target in [target("example.com", 443), target("[::1]", 8443)] {
            let rule: crate::egress::EgressRule = target.rule_text().parse().unwrap();
            assert!(rule.covers(&target.host, target.port), "{target}");
        }
    }
}
