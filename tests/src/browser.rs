//! A real browser for the web tests: Debian's `chromium`, headless, driven through
//! `chromedriver` with the W3C WebDriver protocol (JSON over HTTP on loopback).
//!
//! [`Browser::start`] runs `chromedriver` on a free port and opens one session with its own
//! profile folder; dropping the [`Browser`] ends the session and kills the driver. The client
//! speaks the dozen commands the tests need ([`Browser::goto`], [`Browser::find`],
//! [`Browser::click`], [`Browser::type_into`], [`Browser::text`], [`Browser::execute`],
//! [`Browser::screenshot`], and [`Browser::wait_for`] to poll for a condition) over
//! [`crate::http_client`]. A client crate (fantoccini) was weighed and left out: its TLS
//! stack pulls in `aws-lc-sys`, a C build that needs cmake, for calls to a local driver.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::http_client::{HttpResponse, send_tcp};

/// The W3C id of a web element in a JSON answer.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long the driver may take to listen.
const DRIVER_READY: Duration = Duration::from_secs(20);
/// How often [`Browser::wait_for`] looks again.
const POLL: Duration = Duration::from_millis(50);

/// Paths of the browser and its driver: `CRABPOT_CHROMIUM` and `CRABPOT_CHROMEDRIVER`, else
/// Debian's.
fn binary(variable: &str, default: &str) -> PathBuf {
    std::env::var_os(variable)
        .filter(|value| !value.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// One element of the page, by its WebDriver id.
#[derive(Clone, Debug)]
pub struct Element(String);

pub struct Browser {
    driver: Option<Child>,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> anyhow::Result<Browser> {
        let chromium = binary("CRABPOT_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("CRABPOT_CHROMEDRIVER", "/usr/bin/chromedriver");
        for path in [&chromium, &chromedriver] {
            if !path.is_file() {
                bail!(
                    "{} is missing: the browser tests need Debian's chromium and chromium-driver \
                     (tests/deps/install.sh installs them)",
                    path.display()
                );
            }
        }
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Its own process group: Chromium is the driver's child and outlives a killed driver
        // (reparented, still running the page's timers), so Drop kills the whole group.
        let driver = Command::new(&chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let profile = tempfile::tempdir().context("making a browser profile folder")?;
        let mut browser = Browser {
            driver: Some(driver),
            addr,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + DRIVER_READY;
        loop {
            if let Ok(status) = browser.call(Method::GET, "/status", None).await
                && status["value"]["ready"].as_bool() == Some(true)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not get ready on {addr} within {DRIVER_READY:?}");
            }
            tokio::time::sleep(POLL).await;
        }
        let capabilities = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium.display().to_string(),
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--no-first-run", "--window-size=1100,800",
                        format!("--user-data-dir={}", browser._profile.path().display()),
                    ],
                },
            }},
        });
        let created = browser
            .call(Method::POST, "/session", Some(capabilities))
            .await
            .context("opening a Chromium session")?;
        browser.session = created["value"]["sessionId"]
            .as_str()
            .context("no sessionId in the new session's answer")?
            .to_owned();
        Ok(browser)
    }

    /// One WebDriver command; the answer's JSON, or an error with the driver's message.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::HOST, self.addr.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .context("building a WebDriver request")?;
        let response: HttpResponse = send_tcp(self.addr, request).await?;
        let value = response.json().unwrap_or(Value::Null);
        if !response.status.is_success() {
            bail!(
                "WebDriver {method} {path} answered {}: {}",
                response.status,
                value["value"]["message"].as_str().unwrap_or("(no message)")
            );
        }
        Ok(value)
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(Method::POST, &self.path("/url"), Some(json!({"url": url})))
            .await?;
        Ok(())
    }

    /// Resizes the window (a phone is about 390 x 844).
    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            Method::POST,
            &self.path("/window/rect"),
            Some(json!({"width": width, "height": height})),
        )
        .await?;
        Ok(())
    }

    pub async fn current_url(&self) -> anyhow::Result<String> {
        let value = self.call(Method::GET, &self.path("/url"), None).await?;
        Ok(value["value"].as_str().unwrap_or_default().to_owned())
    }

    /// Every element matching a CSS selector (none is not an error).
    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element>> {
        let value = self
            .call(
                Method::POST,
                &self.path("/elements"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        Ok(value["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|element| element[ELEMENT_KEY].as_str())
            .map(|id| Element(id.to_owned()))
            .collect())
    }

    /// The first element matching `css`, waiting up to `timeout` for it.
    pub async fn find(&self, css: &str, timeout: Duration) -> anyhow::Result<Element> {
        self.wait_for(&format!("an element {css:?}"), timeout, || async {
            Ok(self.find_all(css).await?.into_iter().next())
        })
        .await
    }

    pub async fn click(&self, element: &Element) -> anyhow::Result<()> {
        self.call(
            Method::POST,
            &self.path(&format!("/element/{}/click", element.0)),
            Some(json!({})),
        )
        .await?;
        Ok(())
    }

    /// Empties an input.
    pub async fn clear(&self, element: &Element) -> anyhow::Result<()> {
        self.call(
            Method::POST,
            &self.path(&format!("/element/{}/clear", element.0)),
            Some(json!({})),
        )
        .await?;
        Ok(())
    }

    pub async fn type_into(&self, element: &Element, text: &str) -> anyhow::Result<()> {
        self.call(
            Method::POST,
            &self.path(&format!("/element/{}/value", element.0)),
            Some(json!({"text": text})),
        )
        .await?;
        Ok(())
    }

    /// The element's rendered text.
    pub async fn text(&self, element: &Element) -> anyhow::Result<String> {
        let value = self
            .call(
                Method::GET,
                &self.path(&format!("/element/{}/text", element.0)),
                None,
            )
            .await?;
        Ok(value["value"].as_str().unwrap_or_default().to_owned())
    }

    /// Runs a script in the page and returns its result.
    pub async fn execute(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        let value = self
            .call(
                Method::POST,
                &self.path("/execute/sync"),
                Some(json!({"script": script, "args": args})),
            )
            .await?;
        Ok(value["value"].clone())
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let value = self
            .call(Method::GET, &self.path("/screenshot"), None)
            .await?;
        let data = value["value"]
            .as_str()
            .context("the screenshot answer has no image")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("the screenshot is not base64")?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Polls `check` until it gives `Some`, for at most `timeout`; the error names `what`.
    pub async fn wait_for<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        check: F,
    ) -> anyhow::Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            match check().await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                // A live page re-renders: an element found a moment ago may be gone. Look again.
                Err(error) if is_stale(&error) => {}
                Err(error) => return Err(error),
            }
            if Instant::now() > deadline {
                bail!("waited {timeout:?} for {what}");
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// WebDriver's answer for an element the page has since replaced.
pub fn is_stale(error: &anyhow::Error) -> bool {
    error.to_string().contains("stale element reference")
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver, Chromium and its renderers share the driver's process group.
        if let Some(mut driver) = self.driver.take() {
            let group = format!("-{}", driver.id());
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = driver.kill();
            let _ = driver.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
