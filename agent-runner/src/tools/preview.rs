//! `preview_screenshot` ([`PreviewScreenshot`]): renders a workspace HTML file, or a page of
//! a dev server the agent started in the container (`http://localhost:PORT/...` only), in
//! headless Chromium (`browser`), saves the PNG under `/session/work/.previews/` so the agent
//! can send it with `send_file`, and returns it to the model as image input
//! (`TurnEffects::images`) when the model can see images.
//!
//! Sizes are clamped to [`MIN_SIDE`]..=[`MAX_WIDTH`] by [`MIN_SIDE`]..=[`MAX_HEIGHT`]; a
//! full-page capture grows to the page's height within the same cap.

use super::{Tool, ToolContext, ToolDefinition, ToolError, ToolFuture, blocking, parse_arguments};
use crate::browser::{Browser, ShotRequest};
use crate::config::ToolLimits;
use crate::image::{ImageStore, MAX_IMAGE_BYTES, MAX_IMAGE_SIDE};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const NAME: &str = "preview_screenshot";
/// The folder under the workspace the screenshots are saved in.
pub const PREVIEWS_DIR: &str = ".previews";
pub const DEFAULT_WIDTH: u32 = 1280;
pub const DEFAULT_HEIGHT: u32 = 800;
pub const MIN_SIDE: u32 = 100;
pub const MAX_WIDTH: u32 = 4000;
/// The providers refuse images taller than this.
pub const MAX_HEIGHT: u32 = MAX_IMAGE_SIDE;
/// How long the browser may take to start, load the page and capture it.
pub const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Screenshots a page.
pub struct PreviewScreenshot;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    path: String,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
    #[serde(default)]
    full_page: Option<bool>,
}

/// What is rendered: a workspace file or a local URL.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Page {
    File(PathBuf),
    Local { url: String, port: u16 },
}

impl Tool for PreviewScreenshot {
    fn definition(&self) -> ToolDefinition {
        ToolDefinition {
            name: NAME.into(),
            description: "Render a web page in headless Chromium and look at it: an HTML \
                file in your workspace /session/work, or a page of a dev server you started \
                in this container (http://localhost:PORT/... only). You get the screenshot \
                as an image, and it is saved as .previews/<name>-<width>x<height>.png in your \
                workspace, so you can send it to the chat with send_file. Use it to check a \
                page you made, at a desktop width and at a phone width (e.g. 390), fix what \
                looks wrong, and look again."
                .into(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "An HTML file relative to /session/work, or http://localhost:PORT/path."},
                    "width": {"type": "integer", "description": "Viewport width in CSS pixels (default 1280, 100 to 4000)."},
                    "height": {"type": "integer", "description": "Viewport height in CSS pixels (default 800, 100 to 8000)."},
                    "full_page": {"type": "boolean", "description": "Capture the whole page height, not just the viewport (up to 8000 px)."}
                },
                "required": ["path"],
                "additionalProperties": false
            }),
        }
    }

    fn declared_timeout(
        &self,
        _arguments: &serde_json::Value,
        _limits: &ToolLimits,
    ) -> Option<Duration> {
        // The browser's own limit, plus time to start it and save the file.
        Some(SCREENSHOT_TIMEOUT + Duration::from_secs(30))
    }

    fn call<'a>(
        &'a self,
        context: &'a mut ToolContext<'_>,
        arguments: serde_json::Value,
    ) -> ToolFuture<'a> {
        Box::pin(async move {
            let arguments: Arguments = parse_arguments(NAME, arguments)?;
            let page = page(context, &arguments.path)?;
            let width = arguments
                .width
                .unwrap_or(DEFAULT_WIDTH)
                .clamp(MIN_SIDE, MAX_WIDTH);
            let height = arguments
                .height
                .unwrap_or(DEFAULT_HEIGHT)
                .clamp(MIN_SIDE, MAX_HEIGHT);
            let full_page = arguments.full_page.unwrap_or(false);
            let browser = Browser::find().map_err(|error| ToolError::Refused(error.to_string()))?;
            let (url, stem) = match &page {
                Page::File(path) => (
                    format!("file://{}", path.display()),
                    path.file_stem()
                        .map(|stem| stem.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "page".to_owned()),
                ),
                Page::Local { url, port } => (url.clone(), format!("localhost-{port}")),
            };
            let shot = browser
                .screenshot(&ShotRequest {
                    url,
                    width,
                    height,
                    full_page,
                    max_height: MAX_HEIGHT,
                    timeout: SCREENSHOT_TIMEOUT,
                })
                .await
                .map_err(|error| ToolError::Io(error.to_string()))?;
            let suffix = if full_page { "-full" } else { "" };
            let relative = format!(
                "{PREVIEWS_DIR}/{}-{width}x{height}{suffix}.png",
                safe_stem(&stem)
            );
            let saved = context.workspace.root().join(&relative);
            let png = shot.png;
            let vision = context.limits.config.vision;
            let store = ImageStore::in_out_dir(&context.paths.out_dir());
            let name = relative.clone();
            let (image, size) = blocking(move || {
                save(&saved, &png)?;
                let image = if vision && png.len() <= MAX_IMAGE_BYTES {
                    Some(
                        store
                            .keep(&name, &png)
                            .map_err(|error| ToolError::Io(error.to_string()))?,
                    )
                } else {
                    None
                };
                Ok((image, png.len()))
            })
            .await?;
            let mut text = format!(
                "Saved a {}x{} screenshot of {} to {relative} ({} KB). Send it to the chat \
                 with send_file {{\"path\": \"{relative}\"}}.",
                shot.width,
                shot.height,
                arguments.path,
                size.div_ceil(1024)
            );
            match image {
                Some(image) => {
                    text.push_str(" The screenshot is attached: look at it.");
                    context.effects.images.push(image);
                }
                None if !vision => text
                    .push_str(" This model cannot see images, so the screenshot was only saved."),
                None => text.push_str(&format!(
                    " It is over {} MB, too large to show you: take a smaller one to look at it.",
                    MAX_IMAGE_BYTES / (1024 * 1024)
                )),
            }
            Ok(text)
        })
    }
}

/// Resolves the `path` argument: a local URL, or a file inside the workspace.
fn page(context: &ToolContext<'_>, path: &str) -> Result<Page, ToolError> {
    let path = path.trim();
    if path.contains("://") {
        return local_url(path).map_err(ToolError::Refused);
    }
    let resolved = context.workspace.resolve(path)?;
    if !resolved.is_file() {
        return Err(ToolError::Refused(format!(
            "{path} is not a file in the workspace: write the page first (write_file), or give http://localhost:PORT/ for a dev server"
        )));
    }
    Ok(Page::File(resolved))
}

/// Accepts `http://localhost[:port]/...` (or 127.0.0.1, [::1]) and nothing else.
fn local_url(url: &str) -> Result<Page, String> {
    let refused = || {
        format!(
            "{url:?} is not a local dev server URL: only http://localhost:PORT/... pages in this container can be previewed (or give a workspace HTML file)"
        )
    };
    let rest = url.strip_prefix("http://").ok_or_else(refused)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => {
            (host, port.parse::<u16>().map_err(|_| refused())?)
        }
        _ => (authority, 80),
    };
    if !matches!(host, "localhost" | "127.0.0.1" | "[::1]") || port == 0 {
        return Err(refused());
    }
    let path = if end == rest.len() { "/" } else { &rest[end..] };
    Ok(Page::Local {
        url: format!("http://{authority}{path}"),
        port,
    })
}

/// A file-name-safe version of a page's name.
fn safe_stem(stem: &str) -> String {
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if safe.is_empty() {
        "page".to_owned()
    } else {
        safe
    }
}

fn save(path: &Path, png: &[u8]) -> Result<(), ToolError> {
    let io = |error: std::io::Error| {
        ToolError::Io(format!(
            "could not save the screenshot {}: {error}",
            path.display()
        ))
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, png).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_url_table() {
        let check = |url: &str, expected: Option<(&str, u16)>| {
            let got = local_url(url).ok().map(|page| match page {
                Page::Local { url, port } => (url, port),
                Page::File(_) => unreachable!(),
            });
            assert_eq!(
                got.as_ref().map(|(url, port)| (url.as_str(), *port)),
                expected,
                "{url}"
            );
        };
        check(
            "http://localhost:8000/",
            Some(("http://localhost:8000/", 8000)),
        );
        check(
            "http://localhost:3000",
            Some(("http://localhost:3000/", 3000)),
        );
        check(
            "http://127.0.0.1:5173/a?b#c",
            Some(("http://127.0.0.1:5173/a?b#c", 5173)),
        );
        check("http://[::1]:8080/x", Some(("http://[::1]:8080/x", 8080)));
        check("http://localhost/", Some(("http://localhost/", 80)));
        check("https://localhost:8000/", None);
        check("http://example.com/", None);
        check("http://localhost.example.com:80/", None);
        check("http://user@example.com:80/", None);
        check("http://localhost@example.com/", None);
        check("http://localhost:99999/", None);
        check("http://localhost:0/", None);
        check("file:///etc/passwd", None);
    }

    #[test]
    fn stems_are_safe() {
        assert_eq!(safe_stem("index"), "index");
        assert_eq!(safe_stem("my page.v2"), "my_page_v2");
        assert_eq!(safe_stem(""), "page");
    }

    /// A page written to the workspace is rendered (when Chromium is installed), saved
    /// under .previews, and attached as an image.
    #[tokio::test]
    async fn screenshot_is_saved_and_attached() {
        let mut fixture = crate::tools::testing::Fixture::new().await;
        std::fs::write(
            fixture.work("index.html"),
            "<body style='background:#00ff00'></body>",
        )
        .unwrap();
        let arguments = serde_json::json!({"path": "index.html", "width": 390, "height": 300});
        if Browser::find().is_err() {
            let error = fixture.error(PreviewScreenshot, arguments).await;
            assert!(error.contains("--image toolbox"), "{error}");
            return;
        }
        let text = fixture.ok(PreviewScreenshot, arguments).await;
        assert!(text.contains(".previews/index-390x300.png"), "{text}");
        let saved = std::fs::read(fixture.work(".previews/index-390x300.png")).unwrap();
        let info = crate::image::sniff("x", &saved).unwrap();
        assert_eq!((info.width, info.height), (390, 300));
        assert_eq!(fixture.effects.images.len(), 1);
        assert_eq!(
            fixture.effects.images[0].name,
            ".previews/index-390x300.png"
        );

        fixture.limits.config.vision = false;
        fixture.effects.images.clear();
        let blind = fixture
            .ok(PreviewScreenshot, serde_json::json!({"path": "index.html"}))
            .await;
        assert!(blind.contains("cannot see images"), "{blind}");
        assert!(fixture.effects.images.is_empty());
        assert!(fixture.work(".previews/index-1280x800.png").is_file());

        let outside = fixture
            .error(
                PreviewScreenshot,
                serde_json::json!({"path": "http://example.com/"}),
            )
            .await;
        assert!(outside.contains("not a local dev server"), "{outside}");
        let missing = fixture
            .error(PreviewScreenshot, serde_json::json!({"path": "nope.html"}))
            .await;
        assert!(missing.contains("write the page first"), "{missing}");
    }
}
