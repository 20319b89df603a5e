//! A private Synapse (the reference Matrix homeserver, from PyPI) on loopback, for the Matrix
//! adapter's tests: [`Synapse`] starts one per test with a generated config (server name
//! `crabpot.test`, a free port on 127.0.0.1, SQLite in a temporary folder, no federation
//! listener, rate limits raised so a test's bursts are not refused) and kills it on drop;
//! [`MatrixUser`] is a person's small client (register, rooms, messages, threads,
//! reactions, media) over [`crate::http_client`].
//!
//! The client is in [`client`].
//!
//! Synapse lives in its own virtual environment, `CRABPOT_SYNAPSE_VENV` (by default
//! `/var/tmp/crabpot-synapse-venv`), which `tests/deps/install.sh` prepares.

use crate::http_client::{HttpResponse, send_tcp};
use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::json;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod client;

pub use client::MatrixUser;

/// The server name every test homeserver has: user ids are `@<name>:crabpot.test`.
pub const SERVER_NAME: &str = "crabpot.test";

/// How long Synapse may take to answer after it was started.
const START_DEADLINE: Duration = Duration::from_secs(90);

/// The venv Synapse is installed in.
pub fn venv() -> PathBuf {
    match std::env::var("CRABPOT_SYNAPSE_VENV") {
        Ok(path) if !path.trim().is_empty() => PathBuf::from(path),
        Ok(_) | Err(_) => PathBuf::from("/var/tmp/crabpot-synapse-venv"),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A running private homeserver; killed when dropped.
pub struct Synapse {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    shared_secret: String,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn random_hex(bytes: usize) -> String {
    (0..bytes.div_ceil(16))
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect::<String>()
        .chars()
        .take(bytes * 2)
        .collect()
}

fn config(dir: &Path, port: u16, shared_secret: &str) -> String {
    let dir = dir.display();
    let rate = "{per_second: 1000, burst_count: 1000}";
    format!(
        r#"server_name: "{SERVER_NAME}"
pid_file: "{dir}/homeserver.pid"
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "{dir}/homeserver.db"
media_store_path: "{dir}/media_store"
max_upload_size: 50M
registration_shared_secret: "{shared_secret}"
macaroon_secret_key: "{macaroon}"
form_secret: "{form}"
signing_key_path: "{dir}/signing.key"
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
enable_registration: false
url_preview_enabled: false
federation_domain_whitelist: []
presence:
  enabled: false
rc_message: {rate}
rc_registration: {rate}
rc_login:
  address: {rate}
  account: {rate}
  failed_attempts: {rate}
rc_joins:
  local: {rate}
  remote: {rate}
rc_invites:
  per_room: {rate}
  per_user: {rate}
  per_issuer: {rate}
rc_media_create: {rate}
"#,
        macaroon = random_hex(24),
        form = random_hex(24),
    )
}

/// Starts Synapse on the config in `dir`, its output appended to `dir/synapse.log`.
fn spawn(dir: &Path) -> anyhow::Result<Child> {
    let python = venv().join("bin/python");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("synapse.log"))?;
    Command::new(&python)
        .args(["-m", "synapse.app.homeserver", "-c"])
        .arg(dir.join("homeserver.yaml"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting Synapse with {}", python.display()))
}

impl Synapse {
    /// Starts a fresh homeserver and waits until it answers.
    pub async fn start() -> anyhow::Result<Synapse> {
        let python = venv().join("bin/python");
        if !python.is_file() {
            bail!(
                "Synapse is not installed: {} is missing; run tests/deps/install.sh \
                 (or set CRABPOT_SYNAPSE_VENV to the venv that has matrix-synapse)",
                python.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("crabpot-synapse-")
            .tempdir()?;
        let shared_secret = random_hex(24);
        // The signing key: Synapse's own format, `ed25519 <key id> <unpadded base64 seed>`.
        let seed: Vec<u8> = uuid::Uuid::new_v4()
            .as_bytes()
            .iter()
            .chain(uuid::Uuid::new_v4().as_bytes())
            .copied()
            .collect();
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed);
        std::fs::write(
            dir.path().join("signing.key"),
            format!("ed25519 a_test {key}\n"),
        )?;
        let port = free_port()?;
        let config_path = dir.path().join("homeserver.yaml");
        std::fs::write(&config_path, config(dir.path(), port, &shared_secret))?;
        let mut synapse = Synapse {
            child: spawn(dir.path())?,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            shared_secret,
        };
        synapse.wait_ready().await?;
        Ok(synapse)
    }

    /// Waits until the homeserver answers `/versions`, or fails with its log.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(answer) = self
                .request(Method::GET, "/_matrix/client/versions", None, None)
                .await
                && answer.status.is_success()
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "Synapse exited ({status}) before answering:\n{}",
                    self.log_tail(40)
                );
            }
            if started.elapsed() > START_DEADLINE {
                bail!(
                    "Synapse did not answer within {START_DEADLINE:?}:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the homeserver (an outage); [`Synapse::restart`] brings it back.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts the homeserver again on the same port and data, and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.kill()?;
        }
        self.child = spawn(self.dir.path())?;
        self.wait_ready().await
    }

    /// The client-server API's base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Synapse's whole log (it records every request, with its answer's status).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("synapse.log")).unwrap_or_default()
    }

    /// The last `n` lines of Synapse's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("synapse.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// One request to the homeserver, with an optional access token and body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Bytes)>,
    ) -> anyhow::Result<HttpResponse> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.addr.to_string());
        if let Some(token) = token {
            builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(http::header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        send_tcp(self.addr, builder.body(Full::new(body))?).await
    }

    /// Registers `name` with `password` through the shared-secret admin API; returns the
    /// person's client, logged in.
    pub async fn register(&self, name: &str, password: &str) -> anyhow::Result<MatrixUser> {
        let path = "/_synapse/admin/v1/register";
        let nonce = self.request(Method::GET, path, None, None).await?.json()?["nonce"]
            .as_str()
            .context("no nonce")?
            .to_owned();
        let key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            self.shared_secret.as_bytes(),
        );
        let message = format!("{nonce}\0{name}\0{password}\0notadmin");
        let mac: String = ring::hmac::sign(&key, message.as_bytes())
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let body = json!({
            "nonce": nonce, "username": name, "password": password, "admin": false, "mac": mac,
        });
        let answer = self
            .request(
                Method::POST,
                path,
                None,
                Some(("application/json", Bytes::from(body.to_string()))),
            )
            .await?;
        let registered = answer.json()?;
        if !answer.status.is_success() {
            bail!("registering {name} failed: {registered}");
        }
        Ok(MatrixUser::new(
            registered["user_id"].as_str().context("no user_id")?,
            registered["access_token"]
                .as_str()
                .context("no access_token")?,
            self.addr,
        ))
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
