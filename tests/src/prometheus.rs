//! A real Prometheus server for tests ([`Prometheus`]): Debian's `prometheus` binary
//! (installed by `tests/deps/install.sh`), with its own config, data dir and port, scraping one
//! target every second. Tests wait for the target to be up ([`Prometheus::wait_until_up`]) and
//! for a query to return a sample ([`Prometheus::wait_for_sample`]) through Prometheus's HTTP
//! API, each poll with an explicit deadline. Dropping it kills the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::Value;
use tempfile::TempDir;

use crate::http_client::{self, HttpResponse};

/// How often the waits poll.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How long Prometheus may take to answer `/-/ready` after it is spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Prometheus; killed on drop.
pub struct Prometheus {
    child: Option<Child>,
    address: SocketAddr,
    dir: TempDir,
}

/// The Prometheus binary: `PROMETHEUS_BIN`, else `prometheus` on the PATH, else Debian's
/// `/usr/bin/prometheus`.
pub fn prometheus_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PROMETHEUS_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("prometheus"))
            .find(|candidate| candidate.is_file())
    });
    let candidate = on_path.unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    if !candidate.is_file() {
        bail!(
            "prometheus is not installed (run tests/deps/install.sh as root, which installs \
             Debian's `prometheus` package, or set PROMETHEUS_BIN)"
        );
    }
    Ok(candidate)
}

/// The scrape config of one target at `target` (`host:port`), path `metrics_path`.
pub fn config(target: &str, metrics_path: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: crabpot\n    metrics_path: {metrics_path}\n    \
         static_configs:\n      - targets: ['{target}']\n"
    )
}

/// Percent-encodes a query parameter value (everything but unreserved characters).
pub fn encode_query_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A free loopback port. Prometheus binds its own listener, so the port is released before
/// the server takes it; another process grabbing it in between fails the start loudly.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) at `metrics_path` every second and
    /// waits until it is ready.
    pub async fn start(target: &str, metrics_path: &str) -> anyhow::Result<Prometheus> {
        let binary = prometheus_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("crabpot-prometheus-")
            .tempdir()
            .context("creating Prometheus's dir")?;
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config(target, metrics_path))
            .context("writing prometheus.yml")?;
        let address: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let log = std::fs::File::create(dir.path().join("prometheus.log"))
            .context("creating prometheus.log")?;
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing prometheus.log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut prometheus = Prometheus {
            child: Some(child),
            address,
            dir,
        };
        prometheus.wait_until_ready().await?;
        Ok(prometheus)
    }

    /// Where Prometheus's HTTP API listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Prometheus's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait().context("checking on prometheus")?
            {
                bail!(
                    "prometheus exited with {status} before it was ready; its log:\n{}",
                    self.log()
                );
            }
            if let Ok(response) = self.get("/-/ready").await
                && response.status.is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "prometheus was not ready within {READY_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// `GET path` on Prometheus's HTTP API.
    pub async fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(http::header::HOST, self.address.to_string())
            .body(Full::new(Bytes::new()))
            .context("building a request")?;
        http_client::send_tcp(self.address, request).await
    }

    /// The active targets (`/api/v1/targets`, `data.activeTargets`).
    pub async fn targets(&self) -> anyhow::Result<Vec<Value>> {
        let body = self.get("/api/v1/targets").await?.json()?;
        Ok(body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until every active target's health is `up` (at least one target), or fails
    /// after `timeout` with each target's last error and Prometheus's log.
    pub async fn wait_until_up(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let targets = self.targets().await.unwrap_or_default();
            if !targets.is_empty() && targets.iter().all(|t| t["health"] == "up") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let state: Vec<String> = targets
                    .iter()
                    .map(|t| format!("{} {}: {}", t["scrapeUrl"], t["health"], t["lastError"]))
                    .collect();
                bail!(
                    "the scrape target was not up within {timeout:?}: {state:?}; prometheus log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// An instant query (`/api/v1/query`): each sample's labels and value.
    pub async fn query(&self, expression: &str) -> anyhow::Result<Vec<(Value, f64)>> {
        let path = format!("/api/v1/query?query={}", encode_query_value(expression));
        let body = self.get(&path).await?.json()?;
        if body["status"] != "success" {
            bail!("query {expression:?} failed: {body}");
        }
        let samples = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|sample| {
                let value = sample["value"][1].as_str()?.parse::<f64>().ok()?;
                Some((sample["metric"].clone(), value))
            })
            .collect();
        Ok(samples)
    }

    /// Polls `expression` until it returns at least one sample, or fails after `timeout`
    /// (naming what the last query returned).
    pub async fn wait_for_sample(
        &self,
        expression: &str,
        timeout: Duration,
    ) -> anyhow::Result<Vec<(Value, f64)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.query(expression).await;
            if let Ok(samples) = &last
                && !samples.is_empty()
            {
                return Ok(samples.clone());
            }
            if Instant::now() >= deadline {
                bail!(
                    "no sample of {expression:?} within {timeout:?} (last: {last:?}); \
                     prometheus log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("up"), "up");
        assert_eq!(
            encode_query_value("a_total{x=\"y z\"}"),
            "a_total%7Bx%3D%22y%20z%22%7D"
        );
    }

    #[test]
    fn the_config_names_the_target_and_path() {
        let text = config("127.0.0.1:7878", "/metrics");
        assert!(text.contains("targets: ['127.0.0.1:7878']"), "{text}");
        assert!(text.contains("metrics_path: /metrics"), "{text}");
        assert!(text.contains("scrape_interval: 1s"), "{text}");
    }
}
