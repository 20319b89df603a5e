//! An agent group's egress allowlist: [`EgressRule`] (one `host[:ports]` entry) and
//! [`EgressRules`] (the group's allow and deny entries, deny first; empty denies all).
//!
//! A rule's host is an exact name (`github.com`), a wildcard over subdomains
//! (`*.github.com`, which does not match `github.com` itself), an IP address (`127.0.0.1`,
//! `[::1]`) or a network (`10.0.0.0/8`). Its ports are one port, a list (`80,443`), a range
//! (`8000-8100`) or `*`; left out, they are 443. Names are matched case-insensitively and
//! without a trailing dot.
//!
//! Only a rule that names an address or network can let a connection reach a private,
//! loopback or link-local address ([`EgressRule::names_address`]): a name that resolves there
//! is refused whatever the rule says, which is what defeats DNS rebinding.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The port a rule without one allows.
pub const DEFAULT_PORT: u16 = 443;

/// Why a rule could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress rule {rule:?}: {reason}")]
pub struct RuleError {
    pub rule: String,
    pub reason: String,
}

/// Which hosts a rule covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name (lower case, no trailing dot).
    Name(String),
    /// Any name ending in `.<suffix>` (lower case).
    Subdomains(String),
    /// Exactly this address.
    Address(IpAddr),
    /// Any address in this network.
    Network(ipnet::IpNet),
}

/// Which ports a rule covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortPattern {
    Any,
    /// Inclusive ranges; a single port is a range of one.
    Ranges(Vec<(u16, u16)>),
}

/// One allowlist entry, `host[:ports]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRule {
    pub host: HostPattern,
    pub ports: PortPattern,
}

impl EgressRule {
    /// Whether the rule covers `host` (a name or an address literal as the client gave it)
    /// and `port`. Address rules also match a resolved address through
    /// [`EgressRule::covers_address`].
    pub fn covers(&self, host: &str, port: u16) -> bool {
        self.ports.covers(port) && self.host.covers_name(&normalise_name(host))
    }

    /// Whether the rule covers a connection to `address` and `port`.
    pub fn covers_address(&self, address: IpAddr, port: u16) -> bool {
        self.ports.covers(port)
            && match &self.host {
                HostPattern::Address(own) => *own == address,
                HostPattern::Network(network) => network.contains(&address),
                HostPattern::Name(_) | HostPattern::Subdomains(_) => false,
            }
    }

    /// Whether the rule names an address or a network, which is what it takes to reach a
    /// private, loopback or link-local address.
    pub fn names_address(&self) -> bool {
        match self.host {
            HostPattern::Address(_) | HostPattern::Network(_) => true,
            HostPattern::Name(_) | HostPattern::Subdomains(_) => false,
        }
    }
}

impl HostPattern {
    fn covers_name(&self, name: &str) -> bool {
        match self {
            HostPattern::Name(own) => own == name,
            HostPattern::Subdomains(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            HostPattern::Address(own) => parse_address(name) == Some(*own),
            HostPattern::Network(network) => {
                parse_address(name).is_some_and(|address| network.contains(&address))
            }
        }
    }
}

impl PortPattern {
    pub fn covers(&self, port: u16) -> bool {
        match self {
            PortPattern::Any => true,
            PortPattern::Ranges(ranges) => ranges
                .iter()
                .any(|(low, high)| (*low..=*high).contains(&port)),
        }
    }
}

/// An address literal as a client writes it: `127.0.0.1`, `::1` or `[::1]`.
pub fn parse_address(text: &str) -> Option<IpAddr> {
    let inner = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(text);
    inner.parse().ok()
}

fn normalise_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl FromStr for EgressRule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, RuleError> {
        let error = |reason: &str| RuleError {
            rule: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.len() > 300 {
            return Err(error("must be host[:ports], at most 300 characters"));
        }
        if trimmed.contains("://") || trimmed.contains('/') && !looks_like_network(trimmed) {
            return Err(error(
                "give a host and ports, like github.com:443, not a URL or a path",
            ));
        }
        let (host_text, port_text) = split_host_ports(trimmed).map_err(|reason| error(&reason))?;
        let host = parse_host(host_text).map_err(|reason| error(&reason))?;
        let ports = match port_text {
            None => PortPattern::Ranges(vec![(DEFAULT_PORT, DEFAULT_PORT)]),
            Some(ports) => parse_ports(ports).map_err(|reason| error(&reason))?,
        };
        Ok(EgressRule { host, ports })
    }
}

fn looks_like_network(text: &str) -> bool {
    let host = split_host_ports(text).map(|(host, _)| host).unwrap_or(text);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<ipnet::IpNet>()
        .is_ok()
}

/// Splits `host[:ports]`, where an IPv6 host is in brackets (`[::1]:443`, `[fd00::/8]:*`).
fn split_host_ports(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err("an IPv6 address needs its closing `]`".into());
        };
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(ports) => Ok((host, Some(ports))),
                None => Err("expected `:ports` after `]`".into()),
            },
        };
    }
    if text.matches(':').count() > 1 {
        return Err("an IPv6 address must be written in brackets, like [::1]:443".into());
    }
    Ok(match text.split_once(':') {
        Some((host, ports)) => (host, Some(ports)),
        None => (text, None),
    })
}

fn parse_host(text: &str) -> Result<HostPattern, String> {
    if let Ok(network) = text.parse::<ipnet::IpNet>() {
        return Ok(HostPattern::Network(network.trunc()));
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(HostPattern::Address(address));
    }
    let name = normalise_name(text);
    let (wildcard, name) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest.to_owned()),
        None => (false, name),
    };
    if name.is_empty() || name.len() > 253 {
        return Err("the host name is empty or longer than 253 characters".into());
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !name.split('.').all(valid_label) {
        return Err(format!(
            "{name:?} is not a host name (letters, digits, `-` and dots; `*.` only at the start)"
        ));
    }
    Ok(if wildcard {
        HostPattern::Subdomains(name)
    } else {
        HostPattern::Name(name)
    })
}

fn parse_ports(text: &str) -> Result<PortPattern, String> {
    if text == "*" {
        return Ok(PortPattern::Any);
    }
    let port = |part: &str| {
        part.parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| format!("{part:?} is not a port (1-65535)"))
    };
    let mut ranges = Vec::new();
    for part in text.split(',') {
        let range = match part.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (port(low)?, port(high)?);
                if low > high {
                    return Err(format!("port range {part:?} runs backwards"));
                }
                (low, high)
            }
            None => {
                let one = port(part)?;
                (one, one)
            }
        };
        ranges.push(range);
    }
    Ok(PortPattern::Ranges(ranges))
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Name(name) => write!(f, "{name}")?,
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}")?,
            HostPattern::Address(IpAddr::V6(address)) => write!(f, "[{address}]")?,
            HostPattern::Address(address) => write!(f, "{address}")?,
            HostPattern::Network(network @ ipnet::IpNet::V6(_)) => write!(f, "[{network}]")?,
            HostPattern::Network(network) => write!(f, "{network}")?,
        }
        match &self.ports {
            PortPattern::Any => write!(f, ":*"),
            PortPattern::Ranges(ranges) => {
                let parts: Vec<String> = ranges
                    .iter()
                    .map(|(low, high)| {
                        if low == high {
                            low.to_string()
                        } else {
                            format!("{low}-{high}")
                        }
                    })
                    .collect();
                write!(f, ":{}", parts.join(","))
            }
        }
    }
}

/// A group's egress rules as stored: canonical rule texts. Deny entries win over allow
/// entries; with no allow entry everything is denied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressRules {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// What the rules say about one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by this rule (canonical text).
    Allowed { rule: String, names_address: bool },
    /// Refused by this deny rule.
    Denied { rule: String },
    /// No allow rule covers it.
    NotListed,
}

impl EgressRules {
    /// Parses every stored rule; a stored rule that no longer parses is an error naming it.
    pub fn parsed(&self) -> Result<(Vec<EgressRule>, Vec<EgressRule>), RuleError> {
        let parse = |texts: &[String]| -> Result<Vec<EgressRule>, RuleError> {
            texts.iter().map(|text| text.parse()).collect()
        };
        Ok((parse(&self.allow)?, parse(&self.deny)?))
    }

    /// Adds `rule` to the allow list (and takes the same rule off the deny list).
    pub fn allow(&mut self, rule: &EgressRule) {
        let text = rule.to_string();
        self.deny.retain(|own| *own != text);
        if !self.allow.contains(&text) {
            self.allow.push(text);
        }
    }

    /// Takes `rule` off the allow list; when another allow rule still covers what it names
    /// (a wildcard over a denied name, say), it goes on the deny list too.
    pub fn deny(&mut self, rule: &EgressRule) {
        let text = rule.to_string();
        self.allow.retain(|own| *own != text);
        let still_allowed = self
            .allow
            .iter()
            .filter_map(|own| own.parse::<EgressRule>().ok())
            .any(|own| overlaps(&own, rule));
        if still_allowed && !self.deny.contains(&text) {
            self.deny.push(text);
        }
    }

    /// The verdict for `host` (as the client named it) and `port`, before resolution.
    pub fn check(&self, host: &str, port: u16) -> Verdict {
        let Ok((allow, deny)) = self.parsed() else {
            return Verdict::NotListed;
        };
        if let Some(rule) = deny.iter().find(|rule| rule.covers(host, port)) {
            return Verdict::Denied {
                rule: rule.to_string(),
            };
        }
        match allow.iter().find(|rule| rule.covers(host, port)) {
            Some(rule) => Verdict::Allowed {
                rule: rule.to_string(),
                names_address: rule.names_address(),
            },
            None => Verdict::NotListed,
        }
    }
}

/// Whether `broad` covers some of what `narrow` names (used to decide whether a deny must be
/// kept explicitly). Conservative: true when in doubt.
fn overlaps(broad: &EgressRule, narrow: &EgressRule) -> bool {
    let ports_overlap = match (&broad.ports, &narrow.ports) {
        (PortPattern::Any, _) | (_, PortPattern::Any) => true,
        (PortPattern::Ranges(a), PortPattern::Ranges(b)) => a
            .iter()
            .any(|(low, high)| b.iter().any(|(l, h)| low <= h && l <= high)),
    };
    let hosts_overlap = match (&broad.host, &narrow.host) {
        (HostPattern::Subdomains(suffix), HostPattern::Name(name)) => {
            HostPattern::Subdomains(suffix.clone()).covers_name(name)
        }
        (HostPattern::Subdomains(a), HostPattern::Subdomains(b)) => {
            a == b || b.ends_with(&format!(".{a}")) || a.ends_with(&format!(".{b}"))
        }
        (HostPattern::Name(name), HostPattern::Subdomains(suffix)) => {
            HostPattern::Subdomains(suffix.clone()).covers_name(name)
        }
        (HostPattern::Name(a), HostPattern::Name(b)) => a == b,
        (HostPattern::Network(network), HostPattern::Address(address)) => network.contains(address),
        (HostPattern::Network(a), HostPattern::Network(b)) => a.contains(b) || b.contains(a),
        (HostPattern::Address(address), HostPattern::Network(network)) => network.contains(address),
        (HostPattern::Address(a), HostPattern::Address(b)) => a == b,
        (HostPattern::Name(_) | HostPattern::Subdomains(_), _)
        | (HostPattern::Address(_) | HostPattern::Network(_), _) => false,
    };
    ports_overlap && hosts_overlap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_print_canonically() {
        let check =
            |text: &str, expected: Result<&str, &str>| match (text.parse::<EgressRule>(), expected)
            {
                (Ok(rule), Ok(want)) => assert_eq!(rule.to_string(), want, "{text}"),
                (Err(error), Err(fragment)) => {
                    assert!(error.to_string().contains(fragment), "{text}: {error}")
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            };
        check("github.com:443", Ok("github.com:443"));
        check("GitHub.com.", Ok("github.com:443"));
        check("*.github.com:80,443", Ok("*.github.com:80,443"));
        check("pypi.org:*", Ok("pypi.org:*"));
        check("example.com:8000-8100", Ok("example.com:8000-8100"));
        check("127.0.0.1:8443", Ok("127.0.0.1:8443"));
        check("[::1]:443", Ok("[::1]:443"));
        check("10.1.2.3/8:22", Ok("10.0.0.0/8:22"));
        check("[fd00::/8]:*", Ok("[fd00::/8]:*"));
        check("https://github.com", Err("not a URL"));
        check("github.com/path", Err("not a URL"));
        check("::1:443", Err("in brackets"));
        check("github.com:0", Err("not a port"));
        check("github.com:99999", Err("not a port"));
        check("github.com:90-80", Err("backwards"));
        check("git hub.com", Err("not a host name"));
        check("*.*.com", Err("not a host name"));
        check("", Err("host[:ports]"));
    }

    #[test]
    fn rules_cover_what_they_name() {
        let rule = |text: &str| text.parse::<EgressRule>().unwrap();
        assert!(rule("github.com").covers("GITHUB.COM.", 443));
        assert!(!rule("github.com").covers("github.com", 80));
        assert!(!rule("github.com").covers("api.github.com", 443));
        assert!(rule("*.github.com").covers("api.github.com", 443));
        assert!(!rule("*.github.com").covers("github.com", 443));
        assert!(!rule("*.github.com").covers("evilgithub.com", 443));
        assert!(rule("127.0.0.1:*").covers("127.0.0.1", 1));
        assert!(rule("[::1]:443").covers("[::1]", 443));
        assert!(rule("10.0.0.0/8:22").covers_address("10.9.9.9".parse().unwrap(), 22));
        assert!(!rule("github.com").covers_address("140.82.112.3".parse().unwrap(), 443));
        assert!(rule("10.0.0.0/8").names_address());
        assert!(!rule("localhost:443").names_address());
    }

    #[test]
    fn deny_wins_and_allow_undoes_it() {
        let rule = |text: &str| text.parse::<EgressRule>().unwrap();
        let mut rules = EgressRules::default();
        assert_eq!(rules.check("github.com", 443), Verdict::NotListed);
        rules.allow(&rule("*.github.com"));
        assert!(matches!(
            rules.check("gist.github.com", 443),
            Verdict::Allowed { .. }
        ));
        rules.deny(&rule("gist.github.com"));
        assert_eq!(rules.deny, vec!["gist.github.com:443"]);
        assert!(matches!(
            rules.check("gist.github.com", 443),
            Verdict::Denied { .. }
        ));
        assert!(matches!(
            rules.check("api.github.com", 443),
            Verdict::Allowed { .. }
        ));
        rules.allow(&rule("gist.github.com"));
        assert!(rules.deny.is_empty());
        // Denying an entry nothing else covers just removes it.
        rules.allow(&rule("pypi.org"));
        rules.deny(&rule("pypi.org"));
        assert!(!rules.allow.contains(&"pypi.org:443".to_owned()));
        assert!(!rules.deny.contains(&"pypi.org:443".to_owned()));
    }
}
