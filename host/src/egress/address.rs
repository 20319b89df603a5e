//! Where an egress connection may land: [`is_internal`] tells the addresses a container must
//! not reach through a name (private, loopback, link-local, and the other special ranges),
//! and [`resolve`] turns an allowed `host:port` into the socket addresses the host will
//! connect to, resolving names itself so that DNS rebinding cannot point an allowed name at
//! the host's own network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a destination cannot be connected to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name did not resolve. Retryable (DNS may recover).
    #[error("{host} did not resolve: {reason}")]
    Lookup { host: String, reason: String },
    /// Every address the name resolved to is internal, and the rule that allowed the name
    /// does not name an address. Not retryable.
    #[error(
        "{host} resolves to {address}, a private, loopback or link-local address; only a rule naming the address (like {address}:{port}) allows that"
    )]
    Internal {
        host: String,
        address: IpAddr,
        port: u16,
    },
}

/// Whether `address` belongs to the host's or a private network: loopback, RFC 1918 and
/// carrier-grade NAT ranges, link-local, unique-local, unspecified, multicast, broadcast,
/// documentation and benchmarking ranges, and IPv4 reached through IPv6 (mapped, NAT64,
/// 6to4) when the IPv4 address is one of these.
pub fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    address.is_private()
        || address.is_loopback()
        || address.is_link_local()
        || address.is_unspecified()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_documentation()
        || a == 0
        // Carrier-grade NAT, 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments, 192.0.0.0/24.
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking, 198.18.0.0/15.
        || (a == 198 && (b == 18 || b == 19))
        // Reserved, 240.0.0.0/4.
        || a >= 240
}

fn is_internal_v6(address: Ipv6Addr) -> bool {
    if let Some(v4) = address.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    let segments = address.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [_, _, _, _, _, _, high, low] = segments;
        return is_internal_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    if segments[0] == 0x2002 {
        return is_internal_v4(Ipv4Addr::from(
            (u32::from(segments[1]) << 16) | u32::from(segments[2]),
        ));
    }
    address.is_loopback()
        || address.is_unspecified()
        || address.is_multicast()
        // Unique local fc00::/7 and link-local fe80::/10.
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        // Site-local (deprecated) fec0::/10.
        || (segments[0] & 0xffc0) == 0xfec0
        // Documentation 2001:db8::/32.
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        // IPv4-compatible ::/96 (deprecated).
        || segments[..6] == [0; 6]
}

/// The addresses to connect to for `host:port`. An address literal is used as it is; a name
/// is resolved by the host. `names_address` says whether the allowing rule named an address
/// or network: only then may the result be internal. Internal addresses a name resolved to
/// are dropped; if none is left the connection is refused.
pub async fn resolve(
    host: &str,
    port: u16,
    names_address: bool,
) -> Result<Vec<SocketAddr>, ResolveError> {
    if let Some(address) = super::rules::parse_address(host) {
        if is_internal(address) && !names_address {
            return Err(ResolveError::Internal {
                host: host.to_owned(),
                address,
                port,
            });
        }
        return Ok(vec![SocketAddr::new(address, port)]);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| ResolveError::Lookup {
            host: host.to_owned(),
            reason: error.to_string(),
        })?
        .collect();
    let Some(first) = found.first().copied() else {
        return Err(ResolveError::Lookup {
            host: host.to_owned(),
            reason: "no addresses".into(),
        });
    };
    // A name never reaches an internal address, whatever rule allowed it: the rule must
    // name the address itself.
    let public: Vec<SocketAddr> = found
        .into_iter()
        .filter(|address| !is_internal(address.ip()))
        .collect();
    if public.is_empty() {
        return Err(ResolveError::Internal {
            host: host.to_owned(),
            address: first.ip(),
            port,
        });
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        let check = |text: &str, internal: bool| {
            let address: IpAddr = text.parse().unwrap();
            assert_eq!(is_internal(address), internal, "{text}");
        };
        for text in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            check(text, true);
        }
        for text in [
            "140.82.112.3",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            check(text, false);
        }
    }

    #[tokio::test]
    async fn names_never_reach_internal_addresses() {
        // `localhost` resolves to loopback: refused even though a rule allowed the name.
        let refused = resolve("localhost", 443, false).await.unwrap_err();
        assert!(
            matches!(refused, ResolveError::Internal { .. }),
            "{refused}"
        );
        assert!(
            refused
                .to_string()
                .contains("only a rule naming the address")
        );
        // Even a rule naming an address does not let a *name* through.
        assert!(resolve("localhost", 443, true).await.is_err());
        // An address literal needs a rule naming it.
        assert!(resolve("127.0.0.1", 443, false).await.is_err());
        let allowed = resolve("127.0.0.1", 443, true).await.unwrap();
        assert_eq!(allowed, vec!["127.0.0.1:443".parse().unwrap()]);
        let allowed = resolve("[::1]", 80, true).await.unwrap();
        assert_eq!(allowed, vec!["[::1]:80".parse().unwrap()]);
    }
}
