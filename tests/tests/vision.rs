//! Seeing what the agent builds, end to end: a real host, real containers and the fake model
//! in both wire formats.
//!
//! - In the toolbox image, the agent writes a page with a known background colour, screenshots
//!   it with `preview_screenshot` at a desktop and a phone width, and sends the last one with
//!   `send_file`: the next requests carry the PNGs as image input (tied to their tool calls),
//!   decoded they have the sizes asked for and the page's colour, the files are under
//!   `work/.previews/`, and the file reaches the chat.
//! - An image a person sends in Telegram reaches the model as image input; with
//!   `CRABPOT_MODEL_VISION=false` it is described as text instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine;
use serde_json::json;
use std::time::Duration;
use support::{TURN, cli_ok, find_files};
use tests::docker::require_docker;
use tests::fake_model::{FakeModel, RecordedImage, Reply, ToolCall};
use tests::fake_telegram::{FakeTelegram, Say, TgUser};
use tests::host_process::{HostOptions, HostProcess, ModelConfig};

/// The page's background: dodger blue.
const PAGE_COLOUR: [u8; 3] = [30, 144, 255];
const PAGE: &str = "<!doctype html><html><head><style>html,body{margin:0;height:100%;\
background:#1e90ff}</style></head><body></body></html>";
/// A real 1x1 PNG, as a person might send one.
const PHOTO_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const TOKEN: &str = "123456:TEST-token_abc";

#[tokio::test(flavor = "multi_thread")]
async fn screenshots_reach_the_model_openai() {
    if !require_docker("screenshots_reach_the_model_openai").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    screenshot_loop(&fake, ModelConfig::openai(&fake)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn screenshots_reach_the_model_anthropic() {
    if !require_docker("screenshots_reach_the_model_anthropic").await {
        return;
    }
    let fake = FakeModel::start().unwrap();
    screenshot_loop(&fake, ModelConfig::anthropic(&fake)).await;
}

/// Write, look at desktop and phone width, send the last screenshot.
async fn screenshot_loop(fake: &FakeModel, model: ModelConfig) {
    let call = |id: &str, name: &str, arguments| {
        Reply::tool_calls(vec![ToolCall::new(name, arguments).with_id(id)])
    };
    fake.push(call(
        "write_1",
        "write_file",
        json!({"path": "site/index.html", "content": PAGE}),
    ));
    fake.push(call(
        "shot_desktop",
        "preview_screenshot",
        json!({"path": "site/index.html", "width": 800, "height": 600}),
    ));
    fake.push(call(
        "shot_phone",
        "preview_screenshot",
        json!({"path": "site/index.html", "width": 390, "height": 844}),
    ));
    fake.push(call(
        "send_1",
        "send_file",
        json!({"path": ".previews/index-390x844.png", "text": "the landing page on a phone"}),
    ));
    fake.push(Reply::text(""));
    let host = HostProcess::start(HostOptions::with_model(model))
        .await
        .unwrap();
    cli_ok(&host, &["groups", "update", "main", "--image", "toolbox"]).await;
    let output = host
        .chat("make me a landing page", Duration::from_secs(180))
        .await
        .unwrap();
    assert!(output.success(), "{output:?}\n{}", host.log_tail(80));

    let requests = fake.requests();
    let results: Vec<String> = requests.iter().filter_map(support::tool_result).collect();
    assert!(
        results
            .iter()
            .any(|r| r.contains("Saved a 800x600 screenshot")),
        "{results:#?}\n{}",
        host.log_tail(80)
    );
    // The request after the phone shot (the last one) carries both screenshots.
    let last = requests.last().unwrap();
    let images = last.images();
    let by_call = |id: &str| -> &RecordedImage {
        images
            .iter()
            .find(|image| image.tool_call_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no image of {id}: {:?}", last.body))
    };
    for (id, size) in [("shot_desktop", (800, 600)), ("shot_phone", (390, 844))] {
        let image = by_call(id);
        assert_eq!(image.media_type, "image/png");
        let decoded = png::decode(&image.data);
        assert_eq!((decoded.width, decoded.height), size, "{id}");
        for (x, y) in [(0, 0), (size.0 / 2, size.1 / 2), (size.0 - 1, size.1 - 1)] {
            let pixel = decoded.pixel(x, y);
            assert!(
                pixel
                    .iter()
                    .zip(PAGE_COLOUR)
                    .all(|(a, b)| a.abs_diff(b) <= 2),
                "{id} ({x}, {y}) is {pixel:?}, not the page's colour"
            );
        }
    }
    // The first request after a screenshot already carried it.
    let first_with_image = requests
        .iter()
        .position(|request| !request.images().is_empty())
        .unwrap();
    assert!(
        support::tool_result(&requests[first_with_image])
            .is_some_and(|text| text.contains("800x600")),
        "the desktop shot is seen right after its call"
    );

    let session = host.session_dir("main").unwrap();
    let saved = find_files(&session, "index-390x844.png");
    let saved = saved
        .iter()
        .find(|path| path.to_string_lossy().contains(".previews"))
        .unwrap_or_else(|| panic!("no .previews file: {saved:?}"));
    assert_eq!(std::fs::read(saved).unwrap(), by_call("shot_phone").data);
    let sent = output
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("[file] "))
        .unwrap_or_else(|| panic!("the screenshot reaches the chat: {}", output.stdout));
    let sent = std::fs::read(sent.trim()).unwrap();
    assert_eq!(sent, by_call("shot_phone").data);
}

async fn telegram_host(telegram: &FakeTelegram, model: ModelConfig, vision: bool) -> HostProcess {
    HostProcess::start(
        HostOptions::with_model(model)
            .env("CRABPOT_TELEGRAM_BOT_TOKEN", TOKEN)
            .env("CRABPOT_TELEGRAM_API_URL", telegram.url())
            .env(
                "CRABPOT_MODEL_VISION",
                if vision { "true" } else { "false" },
            ),
    )
    .await
    .unwrap()
}

/// A person's photo in Telegram reaches the model: as image input with vision on, named
/// as text with vision off.
async fn photo_reaches_the_model(model: impl Fn(&FakeModel) -> ModelConfig) {
    let photo = base64::engine::general_purpose::STANDARD
        .decode(PHOTO_PNG)
        .unwrap();
    for vision in [true, false] {
        let fake = FakeModel::start().unwrap();
        fake.set_default_reply(Reply::text("a nice crab"));
        let telegram = FakeTelegram::start(TOKEN).unwrap();
        let host = telegram_host(&telegram, model(&fake), vision).await;
        let ann = TgUser::new(5301, "Ann", None);
        let id = ann.dm().id.to_string();
        cli_ok(&host, &["chats", "create", "telegram", "--", &id]).await;
        let address = format!("telegram/{id}");
        cli_ok(&host, &["wirings", "create", &address, "main"]).await;
        telegram.send(
            &ann.dm(),
            &ann,
            Say::text("what is this").with_document("crab.png", &photo),
        );
        telegram
            .wait_sent("the reply", TURN, |sent| {
                sent.iter()
                    .find(|s| s.text.contains("a nice crab"))
                    .cloned()
            })
            .await
            .unwrap();
        let request = fake
            .requests()
            .into_iter()
            .find(|request| {
                request
                    .last_user_text()
                    .is_some_and(|text| text.contains("what is this"))
            })
            .unwrap();
        let images = request.images();
        if vision {
            assert_eq!(images.len(), 1, "{}", request.body);
            assert_eq!(images[0].media_type, "image/png");
            assert_eq!(images[0].data, photo);
            assert_eq!(images[0].tool_call_id, None);
        } else {
            assert!(images.is_empty(), "{}", request.body);
            let text = request.last_user_text().unwrap();
            assert!(
                text.contains("[image: crab.png, 1x1] (this model cannot see images"),
                "{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_photo_sent_in_chat_reaches_the_model_openai() {
    if !require_docker("a_photo_sent_in_chat_reaches_the_model_openai").await {
        return;
    }
    photo_reaches_the_model(ModelConfig::openai).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_photo_sent_in_chat_reaches_the_model_anthropic() {
    if !require_docker("a_photo_sent_in_chat_reaches_the_model_anthropic").await {
        return;
    }
    photo_reaches_the_model(ModelConfig::anthropic).await;
}

/// Just enough PNG decoding to check a screenshot: 8-bit RGB or RGBA, not interlaced.
mod png {
    use std::io::Read;

    pub struct Decoded {
        pub width: u32,
        pub height: u32,
        channels: usize,
        pixels: Vec<u8>,
    }

    impl Decoded {
        pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
            let at = (y as usize * self.width as usize + x as usize) * self.channels;
            [self.pixels[at], self.pixels[at + 1], self.pixels[at + 2]]
        }
    }

    pub fn decode(bytes: &[u8]) -> Decoded {
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let mut at = 8;
        let (mut width, mut height, mut channels) = (0, 0, 0);
        let mut compressed = Vec::new();
        while at + 8 <= bytes.len() {
            let length = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let kind = &bytes[at + 4..at + 8];
            let data = &bytes[at + 8..at + 8 + length];
            match kind {
                b"IHDR" => {
                    width = u32::from_be_bytes(data[0..4].try_into().unwrap());
                    height = u32::from_be_bytes(data[4..8].try_into().unwrap());
                    assert_eq!(data[8], 8, "bit depth");
                    assert_eq!(data[12], 0, "interlaced");
                    channels = match data[9] {
                        2 => 3,
                        6 => 4,
                        other => panic!("colour type {other}"),
                    };
                }
                b"IDAT" => compressed.extend_from_slice(data),
                b"IEND" => break,
                _ => {}
            }
            at += 12 + length;
        }
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(compressed.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        let stride = width as usize * channels;
        let mut pixels = vec![0u8; stride * height as usize];
        for row in 0..height as usize {
            let filter = raw[row * (stride + 1)];
            let line = &raw[row * (stride + 1) + 1..(row + 1) * (stride + 1)];
            for i in 0..stride {
                let left = if i >= channels {
                    pixels[row * stride + i - channels]
                } else {
                    0
                };
                let up = if row > 0 {
                    pixels[(row - 1) * stride + i]
                } else {
                    0
                };
                let up_left = if row > 0 && i >= channels {
                    pixels[(row - 1) * stride + i - channels]
                } else {
                    0
                };
                let predicted = match filter {
                    0 => 0,
                    1 => left,
                    2 => up,
                    3 => ((u16::from(left) + u16::from(up)) / 2) as u8,
                    4 => paeth(left, up, up_left),
                    other => panic!("filter {other}"),
                };
                pixels[row * stride + i] = line[i].wrapping_add(predicted);
            }
        }
        Decoded {
            width,
            height,
            channels,
            pixels,
        }
    }

    fn paeth(a: u8, b: u8, c: u8) -> u8 {
        let p = i16::from(a) + i16::from(b) - i16::from(c);
        let (pa, pb, pc) = (
            (p - i16::from(a)).abs(),
            (p - i16::from(b)).abs(),
            (p - i16::from(c)).abs(),
        );
        if pa <= pb && pa <= pc {
            a
        } else if pb <= pc {
            b
        } else {
            c
        }
    }
}
