//! The container's egress proxy address: [`start`] listens on `127.0.0.1:3128` (the
//! container's loopback, which exists even with `NetworkMode: none`) and pipes every accepted
//! connection, byte for byte, into a new connection to the host's proxy socket
//! (`/session/in/proxy.sock`). The host parses, checks, records and connects; this side knows
//! nothing about HTTP, so `HTTP_PROXY`/`HTTPS_PROXY=http://127.0.0.1:3128` make curl, git, pip
//! and npm use the host's allowlist.
//!
//! At most [`MAX_CONNECTIONS`] connections are forwarded at once; more wait in the listen
//! backlog. The cap sits below the host's per-session connection cap, so tunnels can never
//! take every slot of the socket and starve the model calls. A port that is already taken is
//! logged and the runner carries on without egress ([`EgressForwarder::local_address`] is
//! `None`). `CRABPOT_EGRESS_LISTEN=off` turns the forwarder off (runners started outside a
//! container, in tests, should not bind the host's 3128).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Where the forwarder listens unless `CRABPOT_EGRESS_LISTEN` says otherwise.
pub const LISTEN_ADDRESS: &str = "127.0.0.1:3128";

/// The environment variable overriding [`LISTEN_ADDRESS`] (`off` disables the forwarder).
pub const LISTEN_ENV: &str = "CRABPOT_EGRESS_LISTEN";

/// Connections forwarded at once (the host serves 16 per session by default; the rest stay
/// free for model calls and live drafts).
pub const MAX_CONNECTIONS: usize = 8;

/// The running forwarder; dropping it stops accepting (open connections run on).
#[derive(Debug)]
pub struct EgressForwarder {
    task: Option<JoinHandle<()>>,
    local_address: Option<SocketAddr>,
}

impl EgressForwarder {
    /// Where it listens; `None` when it could not bind or is turned off.
    pub fn local_address(&self) -> Option<SocketAddr> {
        self.local_address
    }

    fn off() -> Self {
        Self {
            task: None,
            local_address: None,
        }
    }
}

impl Drop for EgressForwarder {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts the forwarder on [`LISTEN_ADDRESS`] (or `$CRABPOT_EGRESS_LISTEN`) towards
/// `proxy_socket`. Never fails: a bad address or a taken port is logged.
pub async fn start(proxy_socket: &Path) -> EgressForwarder {
    let address = std::env::var(LISTEN_ENV).unwrap_or_else(|_| LISTEN_ADDRESS.to_owned());
    start_at(&address, proxy_socket).await
}

/// [`start`] on `address` (`off`: not at all).
pub async fn start_at(address: &str, proxy_socket: &Path) -> EgressForwarder {
    if address.trim().eq_ignore_ascii_case("off") {
        tracing::debug!("egress forwarder turned off");
        return EgressForwarder::off();
    }
    match TcpListener::bind(address.trim()).await {
        Ok(listener) => start_on(listener, proxy_socket.to_owned(), MAX_CONNECTIONS),
        Err(error) => {
            tracing::warn!(%address, %error, "cannot listen for egress; HTTP(S)_PROXY will not work in this container");
            EgressForwarder::off()
        }
    }
}

/// Forwards connections accepted on `listener` to `proxy_socket`, at most `max_connections`
/// at once.
pub fn start_on(
    listener: TcpListener,
    proxy_socket: PathBuf,
    max_connections: usize,
) -> EgressForwarder {
    let local_address = listener.local_addr().ok();
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let task = tokio::spawn(accept_loop(listener, proxy_socket, limit));
    if let Some(address) = local_address {
        tracing::info!(%address, "egress forwarder listening");
    }
    EgressForwarder {
        task: Some(task),
        local_address,
    }
}

async fn accept_loop(listener: TcpListener, proxy_socket: PathBuf, limit: Arc<Semaphore>) {
    let proxy_socket = Arc::new(proxy_socket);
    loop {
        // Taken before accepting: past the cap, connections wait in the backlog.
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let proxy_socket = Arc::clone(&proxy_socket);
                tokio::spawn(async move {
                    forward(stream, &proxy_socket).await;
                    drop(permit);
                });
            }
            Err(error) => {
                // Out of descriptors and the like: pause instead of spinning.
                tracing::warn!(%error, "cannot accept an egress connection");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn forward(mut client: TcpStream, proxy_socket: &Path) {
    let mut host = match UnixStream::connect(proxy_socket).await {
        Ok(host) => host,
        Err(error) => {
            tracing::warn!(%error, socket = %proxy_socket.display(), "cannot reach the host's proxy socket for egress");
            let message = format!(
                "the host's proxy socket {} cannot be reached: {error}\n",
                proxy_socket.display()
            );
            let response = format!(
                "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{message}",
                message.len()
            );
            let _ = client.write_all(response.as_bytes()).await;
            return;
        }
    };
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut host).await {
        tracing::debug!(%error, "egress connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn bytes_are_piped_to_the_proxy_socket_and_back() {
        let folder = tempfile::tempdir().unwrap();
        let socket = folder.path().join("proxy.sock");
        let host = UnixListener::bind(&socket).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let forwarder = start_on(listener, socket, 2);
        let address = forwarder.local_address().unwrap();
        let mut client = TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let (mut accepted, _) = host.accept().await.unwrap();
        let mut head = [0_u8; 36];
        accepted.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"CONNECT example.com:443 HTTP/1.1\r\n\r\n");
        accepted
            .write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            .await
            .unwrap();
        drop(accepted);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"HTTP/1.1 403 Forbidden\r\n\r\n");
    }

    #[tokio::test]
    async fn an_unreachable_socket_gets_a_clear_answer() {
        let folder = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let forwarder = start_on(listener, folder.path().join("absent.sock"), 2);
        let mut client = TcpStream::connect(forwarder.local_address().unwrap())
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(answer.contains("absent.sock"), "{answer}");
    }

    #[tokio::test]
    async fn a_taken_port_is_not_fatal() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = taken.local_addr().unwrap().to_string();
        let forwarder = start_at(&address, Path::new("/nonexistent/proxy.sock")).await;
        assert_eq!(forwarder.local_address(), None);
        let off = start_at("off", Path::new("/nonexistent/proxy.sock")).await;
        assert_eq!(off.local_address(), None);
    }
}
