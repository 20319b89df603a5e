//! [`Imap`]: one logged-in IMAP connection (over implicit TLS or STARTTLS, never in the
//! clear) and the few commands the adapter uses: select, search for UIDs after the last one
//! taken, fetch one message (size first, so a huge one is never downloaded), IDLE.
//!
//! Failures are [`ImapError`]s: a refused login is not retryable (the account is wrong),
//! everything else is (the server or the network will come back). No error carries the
//! password: the login is the only command that holds it, and its error is replaced.

use crate::config::email::{EmailConfig, Security};
use async_imap::Session;
use async_imap::extensions::idle::IdleResponse;
use async_imap::types::UnsolicitedResponse;
use futures_util::TryStreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

/// How long connecting, the TLS handshake and one command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

type Stream = TlsStream<TcpStream>;

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The server refused the login. Not retryable: fix the account.
    #[error(
        "the IMAP server refused the login of {username}; check CRABPOT_EMAIL_USERNAME and CRABPOT_EMAIL_PASSWORD"
    )]
    Login { username: String },
    /// The mailbox cannot be selected. Not retryable.
    #[error("the mailbox {0:?} cannot be opened: {1}")]
    Mailbox(String, String),
    /// Network, TLS, timeouts, protocol trouble. Retryable.
    #[error("imap: {0}")]
    Connection(String),
}

impl ImapError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ImapError::Connection(_) => true,
            ImapError::Login { .. } | ImapError::Mailbox(..) => false,
        }
    }
}

fn connection(what: &str, error: impl std::fmt::Display) -> ImapError {
    ImapError::Connection(format!("{what}: {error}"))
}

async fn timed<T, E: std::fmt::Display>(
    what: &str,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(connection(what, e)),
        Err(_) => Err(connection(what, "timed out")),
    }
}

/// A selected mailbox, as the server describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selected {
    pub uid_validity: u32,
    /// The UID the next message will get (`None` when the server did not say).
    pub uid_next: Option<u32>,
}

/// One fetched message.
pub enum Fetched {
    /// The whole message.
    Whole(Vec<u8>),
    /// Only its header: the message is larger than the cap.
    HeaderOnly { header: Vec<u8>, size: u32 },
    /// It is gone (expunged meanwhile).
    Gone,
}

pub struct Imap {
    session: Session<Stream>,
    pub idle: bool,
}

impl Imap {
    /// Connects, secures the connection and logs in.
    pub async fn connect(config: &EmailConfig, tls: Arc<ClientConfig>) -> Result<Imap, ImapError> {
        let server = &config.imap;
        let tcp = timed(
            "connecting",
            TcpStream::connect((server.host.as_str(), server.port)),
        )
        .await?;
        let name = ServerName::try_from(server.host.clone())
            .map_err(|e| connection("the host name", e))?;
        let connector = TlsConnector::from(tls);
        let client = match server.security {
            Security::Tls => {
                let stream = timed("the TLS handshake", connector.connect(name, tcp)).await?;
                let mut client = async_imap::Client::new(stream);
                greeting(&mut client).await?;
                client
            }
            Security::Starttls => {
                let mut plain = async_imap::Client::new(tcp);
                greeting(&mut plain).await?;
                timed("STARTTLS", plain.run_command_and_check_ok("STARTTLS", None)).await?;
                let tcp = plain.into_inner();
                let stream = timed("the TLS handshake", connector.connect(name, tcp)).await?;
                async_imap::Client::new(stream)
            }
        };
        let password = config.password.expose_secret().to_owned();
        let login = tokio::time::timeout(
            COMMAND_TIMEOUT,
            client.login(config.username.as_str(), password),
        )
        .await;
        let mut session = match login {
            Ok(Ok(session)) => session,
            // RFC 5530: the server cannot check the login now; that is not a wrong password.
            Ok(Err((async_imap::error::Error::No(why), _))) if why.contains("[UNAVAILABLE]") => {
                return Err(connection(
                    "logging in",
                    "the server cannot check logins now",
                ));
            }
            Ok(Err((async_imap::error::Error::No(_), _))) => {
                return Err(ImapError::Login {
                    username: config.username.clone(),
                });
            }
            // Any other failure may echo the command; say only what kind it was.
            Ok(Err((async_imap::error::Error::Io(e), _))) => {
                return Err(connection("logging in", e));
            }
            Ok(Err(_)) => {
                return Err(connection(
                    "logging in",
                    "the server's answer was unreadable",
                ));
            }
            Err(_) => return Err(connection("logging in", "timed out")),
        };
        let capabilities = timed("CAPABILITY", session.capabilities()).await?;
        let idle = capabilities.has_str("IDLE");
        Ok(Imap { session, idle })
    }

    pub async fn select(&mut self, mailbox: &str) -> Result<Selected, ImapError> {
        let selected = tokio::time::timeout(COMMAND_TIMEOUT, self.session.select(mailbox)).await;
        let selected = match selected {
            Ok(Ok(selected)) => selected,
            Ok(Err(async_imap::error::Error::No(why))) => {
                return Err(ImapError::Mailbox(mailbox.to_owned(), why));
            }
            Ok(Err(e)) => return Err(connection("SELECT", e)),
            Err(_) => return Err(connection("SELECT", "timed out")),
        };
        Ok(Selected {
            uid_validity: selected.uid_validity.unwrap_or(0),
            uid_next: selected.uid_next,
        })
    }

    /// The UIDs after `last_uid`, in order.
    pub async fn uids_after(&mut self, last_uid: u32) -> Result<Vec<u32>, ImapError> {
        let query = format!("UID {}:*", last_uid.saturating_add(1));
        let found = timed("UID SEARCH", self.session.uid_search(query)).await?;
        // `n:*` always matches the highest UID, even one below `n`.
        let mut uids: Vec<u32> = found.into_iter().filter(|uid| *uid > last_uid).collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The highest UID in the mailbox (0 when it is empty).
    pub async fn highest_uid(&mut self) -> Result<u32, ImapError> {
        let found = timed("UID SEARCH", self.session.uid_search("ALL")).await?;
        Ok(found.into_iter().max().unwrap_or(0))
    }

    /// Fetches message `uid`, whole when it is at most `max_bytes`, else only its header.
    pub async fn fetch(&mut self, uid: u32, max_bytes: u64) -> Result<Fetched, ImapError> {
        let size = {
            let stream = timed(
                "UID FETCH",
                self.session.uid_fetch(uid.to_string(), "(UID RFC822.SIZE)"),
            )
            .await?;
            let fetched: Vec<_> = timed("UID FETCH", stream.try_collect()).await?;
            let Some(size) = fetched
                .iter()
                .find(|f| f.uid == Some(uid))
                .and_then(|f| f.size)
            else {
                return Ok(Fetched::Gone);
            };
            size
        };
        let query = if u64::from(size) > max_bytes {
            "(UID BODY.PEEK[HEADER])"
        } else {
            "(UID BODY.PEEK[])"
        };
        let stream = timed("UID FETCH", self.session.uid_fetch(uid.to_string(), query)).await?;
        let fetched: Vec<_> = timed("UID FETCH", stream.try_collect()).await?;
        let Some(fetch) = fetched.iter().find(|f| f.uid == Some(uid)) else {
            return Ok(Fetched::Gone);
        };
        if u64::from(size) > max_bytes {
            let header = fetch.header().map(<[u8]>::to_vec).unwrap_or_default();
            Ok(Fetched::HeaderOnly { header, size })
        } else {
            Ok(fetch
                .body()
                .map_or(Fetched::Gone, |body| Fetched::Whole(body.to_vec())))
        }
    }

    /// Waits in IDLE until the server reports a change or `at_most` passed; then leaves IDLE.
    ///
    /// A message that arrived while other commands ran was announced then (`EXISTS`, kept in
    /// the session's unsolicited responses), or while IDLE began: IDLE is then skipped or
    /// left at once, so no message waits for the next renewal.
    pub async fn idle(self, at_most: Duration) -> Result<Imap, ImapError> {
        let news = self.session.unsolicited_responses.clone();
        if has_news(|| news.try_recv().ok()) {
            return Ok(self);
        }
        let mut handle = self.session.idle();
        timed("IDLE", handle.init()).await?;
        if !has_news(|| news.try_recv().ok()) {
            let (wait, _stop) = handle.wait_with_timeout(at_most);
            let _: IdleResponse = wait.await.map_err(|e| connection("IDLE", e))?;
        }
        let session = timed("DONE", handle.done()).await?;
        Ok(Imap {
            session,
            idle: true,
        })
    }

    /// A NOOP: where there is no IDLE, it lets the server report new mail.
    pub async fn noop(&mut self) -> Result<(), ImapError> {
        timed("NOOP", self.session.noop()).await
    }
}

/// Whether the server announced new messages since the last look (drains what it said).
fn has_news(mut next: impl FnMut() -> Option<UnsolicitedResponse>) -> bool {
    let mut news = false;
    while let Some(response) = next() {
        news |= matches!(
            response,
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
        );
    }
    news
}

/// Reads the server's greeting.
async fn greeting<T>(client: &mut async_imap::Client<T>) -> Result<(), ImapError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    match timed("the greeting", client.read_response()).await? {
        Some(_) => Ok(()),
        None => Err(connection(
            "the greeting",
            "the server closed the connection",
        )),
    }
}
