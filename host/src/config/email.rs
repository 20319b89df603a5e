//! Email (`[channels.email]` in `crabpot.toml`, or `CRABPOT_EMAIL_*`): the IMAP server mail
//! is read from and the SMTP server replies are sent through, the account on both, the
//! mailbox watched, and how mail maps to chats. Email is on when the bot's address is set.
//!
//! [`EmailConfig`] is the validated form; [`RawEmail`] the table and the variables before
//! validation. The password is an [`ApiKey`]: it never prints.

use super::{ApiKey, ConfigError, invalid};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// How a connection to a mail server is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
    /// A plain connection upgraded with STARTTLS before anything else is said (IMAP 143,
    /// submission 587). A server that does not offer it is refused.
    Starttls,
}

impl Security {
    fn parse(key: &'static str, text: &str) -> Result<Security, ConfigError> {
        match text.trim() {
            "tls" => Ok(Security::Tls),
            "starttls" => Ok(Security::Starttls),
            other => Err(invalid(
                key,
                format!("{other:?} is not one of: tls, starttls"),
            )),
        }
    }
}

/// Which chat a message belongs to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatMode {
    /// A direct chat per sender address (`email/<sender>`).
    #[default]
    Sender,
    /// One group chat for the whole mailbox (`email/<bot address>`), each sender a member.
    Mailbox,
}

/// One mail server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailServer {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailConfig {
    /// The bot's own address, lower-case (`crabpot@example.org`): the `From` of replies.
    pub address: String,
    pub imap: MailServer,
    pub smtp: MailServer,
    /// The login on both servers; the address when not set.
    pub username: String,
    pub password: ApiKey,
    /// The IMAP mailbox watched (`INBOX`).
    pub mailbox: String,
    /// A PEM file of CA certificates trusted besides the public roots (a private mail server).
    pub ca_file: Option<PathBuf>,
    pub chat_mode: ChatMode,
    /// How often the mailbox is polled where the server has no IDLE, and how long one IDLE
    /// lasts at most before it is renewed.
    pub poll_interval: Duration,
}

/// `[channels.email]` before validation.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    pub address: Option<String>,
    pub imap_host: Option<String>,
    pub imap_port: Option<u16>,
    pub imap_security: Option<Security>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub smtp_security: Option<Security>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub mailbox: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub chat_mode: Option<ChatMode>,
    pub poll_seconds: Option<u64>,
}

impl RawEmail {
    /// Fields set in `over` replace those in `self`.
    pub fn merge(self, over: RawEmail) -> RawEmail {
        RawEmail {
            address: over.address.or(self.address),
            imap_host: over.imap_host.or(self.imap_host),
            imap_port: over.imap_port.or(self.imap_port),
            imap_security: over.imap_security.or(self.imap_security),
            smtp_host: over.smtp_host.or(self.smtp_host),
            smtp_port: over.smtp_port.or(self.smtp_port),
            smtp_security: over.smtp_security.or(self.smtp_security),
            username: over.username.or(self.username),
            password: over.password.or(self.password),
            mailbox: over.mailbox.or(self.mailbox),
            ca_file: over.ca_file.or(self.ca_file),
            chat_mode: over.chat_mode.or(self.chat_mode),
            poll_seconds: over.poll_seconds.or(self.poll_seconds),
        }
    }

    /// The `CRABPOT_EMAIL_*` variables.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<RawEmail, ConfigError> {
        let text = |key: &str| get(key).filter(|v| !v.trim().is_empty());
        let number = |key: &'static str| -> Result<Option<u64>, ConfigError> {
            text(key)
                .map(|value| {
                    value
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| invalid(key, format!("{value:?} is not a whole number")))
                })
                .transpose()
        };
        let port = |key: &'static str| -> Result<Option<u16>, ConfigError> {
            number(key)?
                .map(|value| {
                    u16::try_from(value)
                        .map_err(|_| invalid(key, format!("{value} is not a port (1-65535)")))
                })
                .transpose()
        };
        let security = |key: &'static str| -> Result<Option<Security>, ConfigError> {
            text(key)
                .map(|value| Security::parse(key, &value))
                .transpose()
        };
        let chat_mode = match text("CRABPOT_EMAIL_CHAT_MODE").as_deref().map(str::trim) {
            None => None,
            Some("sender") => Some(ChatMode::Sender),
            Some("mailbox") => Some(ChatMode::Mailbox),
            Some(other) => {
                return Err(invalid(
                    "CRABPOT_EMAIL_CHAT_MODE",
                    format!("{other:?} is not one of: sender, mailbox"),
                ));
            }
        };
        Ok(RawEmail {
            address: text("CRABPOT_EMAIL_ADDRESS"),
            imap_host: text("CRABPOT_EMAIL_IMAP_HOST"),
            imap_port: port("CRABPOT_EMAIL_IMAP_PORT")?,
            imap_security: security("CRABPOT_EMAIL_IMAP_SECURITY")?,
            smtp_host: text("CRABPOT_EMAIL_SMTP_HOST"),
            smtp_port: port("CRABPOT_EMAIL_SMTP_PORT")?,
            smtp_security: security("CRABPOT_EMAIL_SMTP_SECURITY")?,
            username: text("CRABPOT_EMAIL_USERNAME"),
            password: get("CRABPOT_EMAIL_PASSWORD").filter(|v| !v.is_empty()),
            mailbox: text("CRABPOT_EMAIL_MAILBOX"),
            ca_file: text("CRABPOT_EMAIL_CA_FILE").map(PathBuf::from),
            chat_mode,
            poll_seconds: number("CRABPOT_EMAIL_POLL_SECONDS")?,
        })
    }
}

/// An address of the plain `local@domain` shape, lower-cased.
pub fn plain_address(text: &str) -> Option<String> {
    let text = text.trim();
    let (local, domain) = text.rsplit_once('@')?;
    let fine = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_graphic() && !"<>()[]\\,;:\"@".contains(c))
    };
    (fine(local) && fine(domain)).then(|| text.to_ascii_lowercase())
}

/// A host name or IP address as given (no scheme, no port, no spaces).
fn host(key: &'static str, value: Option<&str>) -> Result<String, ConfigError> {
    let Some(text) = value.map(str::trim).filter(|text| !text.is_empty()) else {
        return Err(invalid(key, "is needed when email is on".into()));
    };
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "/:@".contains(c))
    {
        return Err(invalid(
            key,
            format!("{text:?} must be a host name or address, without scheme or port"),
        ));
    }
    Ok(text.to_owned())
}

fn server(
    keys: [&'static str; 2],
    host_value: Option<&str>,
    port: Option<u16>,
    security: Security,
    default_ports: (u16, u16),
) -> Result<MailServer, ConfigError> {
    let host = host(keys[0], host_value)?;
    let port = match port {
        Some(0) => return Err(invalid(keys[1], "0 is not a port".into())),
        Some(port) => port,
        None => match security {
            Security::Tls => default_ports.0,
            Security::Starttls => default_ports.1,
        },
    };
    Ok(MailServer {
        host,
        port,
        security,
    })
}

/// The longest poll interval taken: an hour.
const MAX_POLL_SECONDS: u64 = 3600;

/// Validates `[channels.email]`; `None` when email is off. Errors name the key.
pub fn email(raw: &RawEmail) -> Result<Option<EmailConfig>, ConfigError> {
    let Some(address_text) = raw
        .address
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    else {
        return Ok(None);
    };
    let Some(address) = plain_address(address_text) else {
        return Err(invalid(
            "channels.email.address",
            format!("{address_text:?} is not an address of the form name@domain"),
        ));
    };
    let imap = server(
        ["channels.email.imap_host", "channels.email.imap_port"],
        raw.imap_host.as_deref(),
        raw.imap_port,
        raw.imap_security.unwrap_or(Security::Tls),
        (993, 143),
    )?;
    let smtp = server(
        ["channels.email.smtp_host", "channels.email.smtp_port"],
        raw.smtp_host.as_deref(),
        raw.smtp_port,
        raw.smtp_security.unwrap_or(Security::Starttls),
        (465, 587),
    )?;
    let Some(password) = raw.password.as_deref().filter(|p| !p.is_empty()) else {
        return Err(invalid(
            "channels.email.password",
            "is needed when email is on (CRABPOT_EMAIL_PASSWORD)".into(),
        ));
    };
    if password
        .chars()
        .any(|c| c == '\r' || c == '\n' || c == '\0')
    {
        return Err(invalid(
            "channels.email.password",
            "contains a line break or NUL; paste it exactly".into(),
        ));
    }
    let username = match raw.username.as_deref().map(str::trim) {
        None | Some("") => address.clone(),
        Some(name) if name.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            return Err(invalid(
                "channels.email.username",
                "contains whitespace or control characters".into(),
            ));
        }
        Some(name) => name.to_owned(),
    };
    let mailbox = match raw.mailbox.as_deref().map(str::trim) {
        None | Some("") => "INBOX".to_owned(),
        Some(name)
            if name
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\') =>
        {
            return Err(invalid(
                "channels.email.mailbox",
                format!("{name:?} has a control character, a quote or a backslash"),
            ));
        }
        Some(name) => name.to_owned(),
    };
    let poll_seconds = raw.poll_seconds.unwrap_or(60);
    if poll_seconds == 0 || poll_seconds > MAX_POLL_SECONDS {
        return Err(invalid(
            "channels.email.poll_seconds",
            format!("{poll_seconds} is not between 1 and {MAX_POLL_SECONDS}"),
        ));
    }
    let ca_file = match &raw.ca_file {
        None => None,
        Some(path) if path.as_os_str().is_empty() => None,
        Some(path) if !path.is_file() => {
            return Err(invalid(
                "channels.email.ca_file",
                format!("{} is not a readable file", path.display()),
            ));
        }
        Some(path) => Some(path.clone()),
    };
    Ok(Some(EmailConfig {
        address,
        imap,
        smtp,
        username,
        password: ApiKey::new(password),
        mailbox,
        ca_file,
        chat_mode: raw.chat_mode.unwrap_or_default(),
        poll_interval: Duration::from_secs(poll_seconds),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Option<EmailConfig>, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let raw = RawEmail::from_env(&|key| map.get(key).cloned())?;
        email(&raw)
    }

    const BASE: [(&str, &str); 4] = [
        ("CRABPOT_EMAIL_ADDRESS", "Bot@Example.org"),
        ("CRABPOT_EMAIL_IMAP_HOST", "imap.example.org"),
        ("CRABPOT_EMAIL_SMTP_HOST", "smtp.example.org"),
        ("CRABPOT_EMAIL_PASSWORD", "s3cret pass"),
    ];

    #[test]
    fn email_is_off_without_an_address_and_has_defaults() {
        assert_eq!(from(&[]).unwrap_or_else(|e| panic!("{e}")), None);
        let config = from(&BASE)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("email is off"));
        assert_eq!(config.address, "bot@example.org");
        assert_eq!(config.username, "bot@example.org");
        assert_eq!(
            config.imap,
            MailServer {
                host: "imap.example.org".into(),
                port: 993,
                security: Security::Tls
            }
        );
        assert_eq!(config.smtp.port, 587);
        assert_eq!(config.smtp.security, Security::Starttls);
        assert_eq!(config.mailbox, "INBOX");
        assert_eq!(config.chat_mode, ChatMode::Sender);
        assert_eq!(config.poll_interval, Duration::from_secs(60));
        assert_eq!(format!("{:?}", config.password), "***");
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn bad_settings_name_their_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("CRABPOT_EMAIL_ADDRESS", "nobody")],
                "channels.email.address",
            ),
            (
                &[("CRABPOT_EMAIL_IMAP_HOST", "")],
                "channels.email.imap_host",
            ),
            (
                &[("CRABPOT_EMAIL_IMAP_HOST", "imaps://x.org")],
                "channels.email.imap_host",
            ),
            (
                &[("CRABPOT_EMAIL_SMTP_PORT", "99999")],
                "CRABPOT_EMAIL_SMTP_PORT",
            ),
            (
                &[("CRABPOT_EMAIL_SMTP_PORT", "0")],
                "channels.email.smtp_port",
            ),
            (
                &[("CRABPOT_EMAIL_IMAP_SECURITY", "plain")],
                "CRABPOT_EMAIL_IMAP_SECURITY",
            ),
            (
                &[("CRABPOT_EMAIL_CHAT_MODE", "room")],
                "CRABPOT_EMAIL_CHAT_MODE",
            ),
            (&[("CRABPOT_EMAIL_PASSWORD", "")], "channels.email.password"),
            (
                &[("CRABPOT_EMAIL_POLL_SECONDS", "0")],
                "channels.email.poll_seconds",
            ),
            (
                &[("CRABPOT_EMAIL_CA_FILE", "/nonexistent/ca.pem")],
                "channels.email.ca_file",
            ),
        ];
        for (overrides, key) in cases {
            let mut vars: HashMap<&str, &str> = BASE.iter().copied().collect();
            for (k, v) in *overrides {
                vars.insert(k, v);
            }
            let vars: Vec<(&str, &str)> = vars.into_iter().collect();
            match from(&vars) {
                Err(ConfigError::Invalid {
                    key: named,
                    message,
                }) => {
                    assert_eq!(named, *key, "{overrides:?}: {message}");
                    assert!(!message.contains("s3cret"), "{message}");
                }
                other => panic!("{overrides:?} gave {other:?}, not an error naming {key}"),
            }
        }
    }

    #[test]
    fn the_table_and_the_variables_merge() {
        let file: RawEmail = toml::from_str(
            "address = \"bot@example.org\"\nimap_host = \"imap\"\nsmtp_host = \"smtp\"\n\
             password = \"p\"\nsmtp_security = \"tls\"\nchat_mode = \"mailbox\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let env = RawEmail {
            imap_port: Some(1143),
            ..RawEmail::default()
        };
        let config = email(&file.merge(env))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("email is off"));
        assert_eq!(config.imap.port, 1143);
        assert_eq!(config.smtp.port, 465);
        assert_eq!(config.chat_mode, ChatMode::Mailbox);
    }
}
