//! Headless Chromium for screenshots: [`Browser::find`] looks for `chromium` on `PATH` (the
//! toolbox image has it, the small image does not), [`Browser::screenshot`] starts it with
//! `--remote-debugging-pipe`, opens the page at the size asked, waits for its load event
//! and returns the PNG ([`Shot`]). The DevTools client is [`cdp`].
//!
//! Chromium runs with `--no-sandbox` (the container is the sandbox, and it has no user
//! namespaces for Chromium's own), `--no-proxy-server` (so a page cannot use the egress
//! proxy the runner offers other programs), and a throw-away profile under `/tmp`. It is
//! killed when the screenshot is done or its time is up, whichever comes first.

pub mod cdp;

use base64::Engine;
use cdp::{CdpConnection, CdpError};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The names the browser is looked for under, in order.
pub const BROWSER_NAMES: &[&str] = &["chromium", "chromium-browser", "google-chrome"];

/// Why a screenshot failed. Retryable only for [`BrowserError::TimedOut`] (a slow page).
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "headless Chromium is not installed in this container (no chromium on PATH): an operator can give this agent group the toolbox image with `crabpot groups update <group> --image toolbox`"
    )]
    NotInstalled,
    #[error("could not start {browser}: {source}")]
    Start {
        browser: PathBuf,
        source: std::io::Error,
    },
    #[error("the browser failed: {error}{}", stderr_note(stderr))]
    Protocol { error: CdpError, stderr: String },
    #[error("could not open {url}: {reason}")]
    Navigation { url: String, reason: String },
    #[error("the page did not finish loading and render within {} s", .0.as_secs())]
    TimedOut(Duration),
    #[error("the browser returned a screenshot that is not valid base64")]
    BadImage,
    #[error("could not prepare the browser profile: {0}")]
    Profile(std::io::Error),
}

fn stderr_note(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its last output: {stderr}")
    }
}

/// What to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShotRequest {
    /// A `file://` or `http://localhost` URL, already checked by the caller.
    pub url: String,
    pub width: u32,
    pub height: u32,
    /// Capture the whole page height, up to `max_height`.
    pub full_page: bool,
    pub max_height: u32,
    pub timeout: Duration,
}

/// A screenshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shot {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The browser binary.
#[derive(Clone, Debug)]
pub struct Browser {
    path: PathBuf,
}

impl Browser {
    /// Finds the browser on `PATH` (or in `/usr/bin` and its neighbours).
    pub fn find() -> Result<Self, BrowserError> {
        // The usual folders come last, for a runner started without a PATH.
        let path = std::env::var_os("PATH").unwrap_or_default();
        let usual = ["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from);
        for dir in std::env::split_paths(&path).chain(usual) {
            for name in BROWSER_NAMES {
                let candidate = dir.join(name);
                if is_executable(&candidate) {
                    return Ok(Self { path: candidate });
                }
            }
        }
        Err(BrowserError::NotInstalled)
    }

    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Takes one screenshot in a fresh browser.
    pub async fn screenshot(&self, request: &ShotRequest) -> Result<Shot, BrowserError> {
        let profile = Profile::create()?;
        let stderr_path = profile.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).map_err(BrowserError::Profile)?;
        // `sh` moves the pipes to the fds Chromium's pipe mode reads and writes (3 in, 4
        // out), so no unsafe `pre_exec` is needed.
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg(&self.path)
            .args(flags(profile.path()))
            .env("HOME", profile.path())
            .env("XDG_CONFIG_HOME", profile.path())
            .env("XDG_CACHE_HOME", profile.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BrowserError::Start {
                browser: self.path.clone(),
                source,
            })?;
        let (Some(writer), Some(reader)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(BrowserError::Start {
                browser: self.path.clone(),
                source: std::io::Error::other("the browser's pipes were not set up"),
            });
        };
        let mut connection = CdpConnection::new(writer, reader);
        let outcome =
            tokio::time::timeout(request.timeout, capture(&mut connection, request)).await;
        // Ask politely, then make sure: the browser must not outlive the call.
        if outcome.is_ok() {
            let _closed = tokio::time::timeout(
                Duration::from_secs(2),
                connection.call("Browser.close", json!({}), None),
            )
            .await;
        }
        if let Err(error) = child.kill().await {
            tracing::debug!(%error, "the browser had already exited");
        }
        match outcome {
            Err(_) => Err(BrowserError::TimedOut(request.timeout)),
            Ok(Ok(shot)) => Ok(shot),
            Ok(Err(Failure::Navigation(reason))) => Err(BrowserError::Navigation {
                url: request.url.clone(),
                reason,
            }),
            Ok(Err(Failure::BadImage)) => Err(BrowserError::BadImage),
            Ok(Err(Failure::Cdp(error))) => Err(BrowserError::Protocol {
                error,
                stderr: tail(&stderr_path),
            }),
        }
    }
}

/// A throw-away browser profile under the temporary folder, removed on drop.
struct Profile(PathBuf);

impl Profile {
    fn create() -> Result<Self, BrowserError> {
        let name = format!("crabpot-chromium-{}", uuid::Uuid::new_v4().simple());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).map_err(BrowserError::Profile)?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::debug!(%error, path = %self.0.display(), "cannot remove the browser profile");
        }
    }
}

/// What went wrong inside the DevTools conversation.
enum Failure {
    Cdp(CdpError),
    Navigation(String),
    BadImage,
}

impl From<CdpError> for Failure {
    fn from(error: CdpError) -> Self {
        Failure::Cdp(error)
    }
}

/// The browser's command line (after its path).
pub fn flags(profile: &Path) -> Vec<String> {
    [
        "--headless=new",
        "--remote-debugging-pipe",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--no-proxy-server",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-sync",
        "--disable-breakpad",
        "--disable-crash-reporter",
        "--mute-audio",
        "--hide-scrollbars",
    ]
    .iter()
    .map(|flag| (*flag).to_owned())
    .chain([
        format!("--user-data-dir={}", profile.display()),
        // Chromium opens its first tab itself; the screenshot uses its own target.
        "about:blank".to_owned(),
    ])
    .collect()
}

/// The DevTools steps of one screenshot.
async fn capture<W, R>(
    connection: &mut CdpConnection<W, R>,
    request: &ShotRequest,
) -> Result<Shot, Failure>
where
    W: tokio::io::AsyncWrite + Unpin,
    R: tokio::io::AsyncRead + Unpin,
{
    let target = connection
        .call("Target.createTarget", json!({"url": "about:blank"}), None)
        .await?;
    let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
    let attached = connection
        .call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
            None,
        )
        .await?;
    let session = attached["sessionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let session = Some(session.as_str());
    connection.call("Page.enable", json!({}), session).await?;
    let metrics = |width: u32, height: u32| {
        json!({
            "width": width,
            "height": height,
            "deviceScaleFactor": 1,
            // Desktop mode at every width: the viewport width drives CSS media queries,
            // and the page is laid out at exactly that width (mobile mode would lay a page
            // without a viewport meta tag out at 980 px and scale it).
            "mobile": false,
        })
    };
    connection
        .call(
            "Emulation.setDeviceMetricsOverride",
            metrics(request.width, request.height),
            session,
        )
        .await?;
    // A load event of the blank page must not pass for the page's own.
    connection.discard_events();
    let navigated = connection
        .call("Page.navigate", json!({"url": request.url}), session)
        .await?;
    if let Some(reason) = navigated["errorText"].as_str().filter(|t| !t.is_empty()) {
        return Err(Failure::Navigation(reason.to_owned()));
    }
    connection
        .wait_event("Page.loadEventFired", session)
        .await?;
    let mut height = request.height;
    if request.full_page {
        let layout = connection
            .call("Page.getLayoutMetrics", json!({}), session)
            .await?;
        let content = layout["cssContentSize"]["height"]
            .as_f64()
            .or_else(|| layout["contentSize"]["height"].as_f64())
            .unwrap_or(f64::from(request.height));
        height = (content.ceil() as u32).clamp(request.height, request.max_height.max(1));
        connection
            .call(
                "Emulation.setDeviceMetricsOverride",
                metrics(request.width, height),
                session,
            )
            .await?;
    }
    let shot = connection
        .call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": request.full_page}),
            session,
        )
        .await?;
    let data = shot["data"].as_str().ok_or(Failure::BadImage)?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| Failure::BadImage)?;
    Ok(Shot {
        png,
        width: request.width,
        height,
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The last lines the browser wrote to stderr, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let start = text.len().saturating_sub(600);
    let start = (start..text.len())
        .find(|index| text.is_char_boundary(*index))
        .unwrap_or(text.len());
    text[start..].trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a real Chromium where one is installed (the toolbox image, the dev host);
    /// elsewhere it checks the error names the toolbox image.
    #[tokio::test]
    async fn screenshot_of_a_coloured_page() {
        let browser = match Browser::find() {
            Ok(browser) => browser,
            Err(error) => {
                assert!(error.to_string().contains("--image toolbox"), "{error}");
                eprintln!("no chromium on PATH: only the error was checked");
                return;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("index.html");
        std::fs::write(
            &page,
            "<html><body style='margin:0;background:#ff0000'><div style='height:1500px'></div></body></html>",
        )
        .unwrap();
        let request = ShotRequest {
            url: format!("file://{}", page.display()),
            width: 640,
            height: 480,
            full_page: false,
            max_height: 8000,
            timeout: Duration::from_secs(60),
        };
        let shot = browser.screenshot(&request).await.unwrap();
        let info = crate::image::sniff("shot", &shot.png).unwrap();
        assert_eq!((info.width, info.height), (640, 480));
        let full = browser
            .screenshot(&ShotRequest {
                full_page: true,
                ..request.clone()
            })
            .await
            .unwrap();
        let info = crate::image::sniff("full", &full.png).unwrap();
        assert_eq!((info.width, info.height), (640, 1500));
        let missing = browser
            .screenshot(&ShotRequest {
                url: "http://127.0.0.1:9/".into(),
                ..request
            })
            .await;
        assert!(
            matches!(missing, Err(BrowserError::Navigation { .. })),
            "{missing:?}"
        );
    }
}
