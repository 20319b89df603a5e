//! Images the model may see: screenshots a tool took and pictures people sent in chat.
//! [`ImageFormat`] and [`sniff`] tell a PNG, JPEG, GIF or WebP from its first bytes and read
//! its size without decoding it; [`ImageStore`] keeps accepted images under
//! `out/images/<id>.<ext>` and hands out an [`ImageRef`], the small record the transcript
//! holds instead of the bytes (the bytes are read again when a request is built).
//!
//! Images are hostile input (a person's upload, a page the agent rendered): anything that is
//! not one of the four formats, claims an absurd size, or is over [`MAX_IMAGE_BYTES`] is
//! refused with an [`ImageError`] naming the problem, never decoded.

use crate::transcript::Entry;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Largest image kept for the model, in bytes (the providers' own per-image limit).
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Largest width or height a provider accepts (Anthropic refuses images over 8000 px).
pub const MAX_IMAGE_SIDE: u32 = 8000;
/// The folder under `out/` that holds the images the transcript refers to.
pub const IMAGES_DIR: &str = "images";

/// Why an image was not kept. None is retryable as is.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{name} is not a PNG, JPEG, GIF or WebP image")]
    NotAnImage { name: String },
    #[error("{name} is {bytes} bytes; images sent to the model are capped at {max} bytes")]
    TooLarge {
        name: String,
        bytes: usize,
        max: usize,
    },
    #[error("{name}: the image header is damaged ({reason})")]
    Damaged { name: String, reason: &'static str },
    #[error("cannot store image {name} under {dir}: {source}")]
    Io {
        name: String,
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The four formats both providers accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Gif => "gif",
            ImageFormat::Webp => "webp",
        }
    }
}

/// An image the transcript refers to: its file under `out/images/`, what it is, and the name
/// the model is told (the screenshot's workspace path, the attachment's file name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// A plain file name under `out/images/` (checked again when it is read back).
    pub file: String,
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub name: String,
    pub bytes: usize,
}

impl ImageRef {
    /// How the image is described where it is not shown: `[image: home.png, 800x600]`.
    pub fn describe(&self) -> String {
        format!("[image: {}, {}x{}]", self.name, self.width, self.height)
    }
}

/// What [`sniff`] read from a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// The format and size of an image, from its header alone.
pub fn sniff(name: &str, bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    let damaged = |reason| ImageError::Damaged {
        name: name.to_owned(),
        reason,
    };
    let be32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let le16 = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let le24 = |at: usize| {
        bytes
            .get(at..at + 3)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
    };
    let (format, width, height) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        if bytes.get(12..16) != Some(b"IHDR") {
            return Err(damaged("no IHDR chunk first"));
        }
        let size = be32(16).zip(be32(20)).ok_or(damaged("short IHDR"))?;
        (ImageFormat::Png, size.0, size.1)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        let size = le16(6).zip(le16(8)).ok_or(damaged("short header"))?;
        (ImageFormat::Gif, size.0, size.1)
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        let (width, height) = jpeg_size(bytes).ok_or(damaged("no frame header"))?;
        (ImageFormat::Jpeg, width, height)
    } else if bytes.len() >= 16 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        let size = match &bytes[12..16] {
            b"VP8 " => bytes
                .get(26..30)
                .map(|b| {
                    (
                        u32::from(u16::from_le_bytes([b[0], b[1]]) & 0x3fff),
                        u32::from(u16::from_le_bytes([b[2], b[3]]) & 0x3fff),
                    )
                })
                .ok_or(damaged("short VP8 frame"))?,
            b"VP8L" => {
                let bits = bytes
                    .get(21..25)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or(damaged("short VP8L header"))?;
                ((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1)
            }
            b"VP8X" => le24(24)
                .zip(le24(27))
                .map(|(w, h)| (w + 1, h + 1))
                .ok_or(damaged("short VP8X header"))?,
            _ => return Err(damaged("unknown WebP chunk")),
        };
        (ImageFormat::Webp, size.0, size.1)
    } else {
        return Err(ImageError::NotAnImage {
            name: name.to_owned(),
        });
    };
    if width == 0 || height == 0 {
        return Err(damaged("zero width or height"));
    }
    Ok(ImageInfo {
        format,
        width,
        height,
    })
}

/// Width and height from the first start-of-frame marker of a JPEG.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        // Markers may be padded with extra 0xff bytes.
        while *bytes.get(at)? == 0xff && *bytes.get(at + 1)? == 0xff {
            at += 1;
        }
        if *bytes.get(at)? != 0xff {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        let length = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        let is_frame = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_frame {
            let height = u16::from_be_bytes([*bytes.get(at + 5)?, *bytes.get(at + 6)?]);
            let width = u16::from_be_bytes([*bytes.get(at + 7)?, *bytes.get(at + 8)?]);
            return Some((u32::from(width), u32::from(height)));
        }
        if length < 2 {
            return None;
        }
        at += 2 + length;
    }
}

/// The images of one session, under `out/images/`.
#[derive(Clone, Debug)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// The store under a session's `out/` folder.
    pub fn in_out_dir(out_dir: &Path) -> Self {
        Self {
            dir: out_dir.join(IMAGES_DIR),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks `bytes` and keeps them; `name` is what the model will be told.
    pub fn keep(&self, name: &str, bytes: &[u8]) -> Result<ImageRef, ImageError> {
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(ImageError::TooLarge {
                name: name.to_owned(),
                bytes: bytes.len(),
                max: MAX_IMAGE_BYTES,
            });
        }
        let info = sniff(name, bytes)?;
        let io = |source| ImageError::Io {
            name: name.to_owned(),
            dir: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let file = format!(
            "{}.{}",
            uuid::Uuid::now_v7().simple(),
            info.format.extension()
        );
        std::fs::write(self.dir.join(&file), bytes).map_err(io)?;
        Ok(ImageRef {
            file,
            format: info.format,
            width: info.width,
            height: info.height,
            name: name.to_owned(),
            bytes: bytes.len(),
        })
    }

    /// Keeps the files among `files` (name, path) that are images, for a user entry.
    /// Other files are not images and stay attachments only; an image that is too large or
    /// damaged is left out with a warning (the message still names the file).
    pub fn keep_files(&self, files: &[(String, PathBuf)]) -> Vec<ImageRef> {
        let mut kept = Vec::new();
        for (name, path) in files {
            let bytes = match read_capped(path) {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(%name, %error, "cannot read an attachment");
                    continue;
                }
            };
            match self.keep(name, &bytes) {
                Ok(image) => kept.push(image),
                Err(ImageError::NotAnImage { .. }) => {}
                Err(error) => tracing::warn!(%error, "an attached image is not shown to the model"),
            }
        }
        kept
    }

    /// Removes the kept images no entry of `entries` refers to any more: after `/clear` or a
    /// compaction replaced the transcript, their files would only fill the session's disk.
    /// Returns how many were removed; a file that cannot be removed is logged and left.
    pub fn prune(&self, entries: &[Entry]) -> usize {
        let referenced: HashSet<&str> = entries
            .iter()
            .flat_map(Entry::images)
            .map(|image| image.file.as_str())
            .collect();
        let listing = match std::fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return 0,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot list the kept images");
                return 0;
            }
        };
        let mut removed = 0;
        for item in listing.flatten() {
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if referenced.contains(name) || !item.file_type().is_ok_and(|kind| kind.is_file()) {
                continue;
            }
            match std::fs::remove_file(item.path()) {
                Ok(()) => removed += 1,
                Err(error) => tracing::warn!(file = %name, %error, "cannot remove an unused image"),
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed images the transcript no longer refers to");
        }
        removed
    }

    /// The bytes of a kept image; `None` when the reference is not a plain file name of
    /// this store (a hand-edited transcript) or the file is gone or changed size.
    pub fn read(&self, image: &ImageRef) -> Option<Vec<u8>> {
        let plain = !image.file.is_empty()
            && image
                .file
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
            && !image.file.starts_with('.');
        if !plain || image.bytes > MAX_IMAGE_BYTES {
            return None;
        }
        let bytes = std::fs::read(self.dir.join(&image.file)).ok()?;
        (bytes.len() == image.bytes).then_some(bytes)
    }
}

/// Reads at most one byte more than [`MAX_IMAGE_BYTES`], so a huge file is refused by size
/// without being read whole.
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_IMAGE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid, tiny PNG header of the given size (enough for [`sniff`]).
    pub fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        bytes.extend(width.to_be_bytes());
        bytes.extend(height.to_be_bytes());
        bytes.extend([8, 2, 0, 0, 0]);
        bytes
    }

    #[test]
    fn sniff_table() {
        let check = |bytes: &[u8], expected: Result<(ImageFormat, u32, u32), &str>| {
            let got = sniff("x", bytes);
            match (got, expected) {
                (Ok(info), Ok(want)) => {
                    assert_eq!((info.format, info.width, info.height), want)
                }
                (Err(error), Err(fragment)) => {
                    assert!(error.to_string().contains(fragment), "{error}")
                }
                (got, want) => panic!("got {got:?}, want {want:?}"),
            }
        };
        check(&png_header(800, 600), Ok((ImageFormat::Png, 800, 600)));
        check(b"GIF89a\x20\x03\x58\x02", Ok((ImageFormat::Gif, 800, 600)));
        // SOI, an APP0 segment of 16 bytes, then SOF0 with height 600 and width 800.
        let mut jpeg =
            b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00".to_vec();
        jpeg.extend(b"\xff\xc0\x00\x11\x08\x02\x58\x03\x20\x03");
        check(&jpeg, Ok((ImageFormat::Jpeg, 800, 600)));
        let mut vp8x = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        vp8x.extend([0x1f, 0x03, 0x00, 0x57, 0x02, 0x00]);
        check(&vp8x, Ok((ImageFormat::Webp, 800, 600)));
        check(b"hello world", Err("is not a PNG"));
        check(b"\x89PNG\r\n\x1a\n\0\0", Err("damaged"));
        check(&png_header(0, 10), Err("zero width"));
        check(b"\xff\xd8\xff\xe0\x00\x01", Err("no frame header"));
    }

    #[test]
    fn store_keeps_reads_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::in_out_dir(dir.path());
        let bytes = png_header(10, 20);
        let image = store.keep("shot.png", &bytes).unwrap();
        assert_eq!((image.width, image.height), (10, 20));
        assert!(image.file.ends_with(".png"));
        assert_eq!(store.read(&image).unwrap(), bytes);
        assert_eq!(image.describe(), "[image: shot.png, 10x20]");
        let escape = ImageRef {
            file: "../transcript.jsonl".into(),
            ..image.clone()
        };
        assert!(store.read(&escape).is_none());
        let too_big = vec![0u8; MAX_IMAGE_BYTES + 1];
        assert!(matches!(
            store.keep("big.png", &too_big),
            Err(ImageError::TooLarge { .. })
        ));
        assert!(matches!(
            store.keep("notes.txt", b"plain text"),
            Err(ImageError::NotAnImage { .. })
        ));

        let inbox = dir.path().join("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        std::fs::write(inbox.join("cat.png"), png_header(3, 4)).unwrap();
        std::fs::write(inbox.join("notes.txt"), "text").unwrap();
        std::fs::write(inbox.join("huge.png"), &too_big).unwrap();
        let files: Vec<(String, PathBuf)> = ["notes.txt", "cat.png", "huge.png", "gone.png"]
            .iter()
            .map(|name| (name.to_string(), inbox.join(name)))
            .collect();
        let kept = store.keep_files(&files);
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].name.as_str(), kept[0].width), ("cat.png", 3));
    }

    #[test]
    fn prune_removes_only_images_no_entry_refers_to() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::in_out_dir(dir.path());
        assert_eq!(store.prune(&[]), 0, "no images folder yet");
        let kept = store.keep("kept.png", &png_header(5, 5)).unwrap();
        let dropped = store.keep("old.png", &png_header(6, 6)).unwrap();
        let entries = vec![
            Entry::User {
                text: "see".into(),
                seqs: vec![2],
                images: Vec::new(),
            },
            Entry::ToolResult {
                call_id: "c1".into(),
                content: "shot".into(),
                is_error: false,
                images: vec![kept.clone()],
            },
        ];
        assert_eq!(store.prune(&entries), 1);
        assert!(store.read(&kept).is_some());
        assert!(store.read(&dropped).is_none());
        assert!(!store.dir().join(&dropped.file).exists());
        // After /clear nothing is referred to.
        assert_eq!(store.prune(&[]), 1);
        assert_eq!(std::fs::read_dir(store.dir()).unwrap().count(), 0);
    }
}
