//! Which of the conversation's images go to the model with a request, and their bytes:
//! [`ImageInputs`]. Only the most recent [`MAX_SENT_IMAGES`] images, within
//! [`MAX_SENT_IMAGE_BYTES`] together, are sent as image input; every other one is shown as a
//! short text placeholder ([`ImageInputs::placeholder`]), so a long session does not resend
//! megabytes with every call and a request stays well below the proxy's 16 MB body cap
//! (base64 adds a third). With vision off no image is sent at all.

use crate::image::{ImageRef, ImageStore, MAX_IMAGE_SIDE};
use crate::transcript::Entry;
use base64::Engine;
use std::collections::{HashMap, HashSet};

/// Most images sent with one request.
pub const MAX_SENT_IMAGES: usize = 4;
/// Most image bytes (before base64) sent with one request.
pub const MAX_SENT_IMAGE_BYTES: usize = 8 * 1024 * 1024;

/// The images of one request, loaded and base64-encoded.
#[derive(Clone, Debug, Default)]
pub struct ImageInputs {
    vision: bool,
    /// By [`ImageRef::file`].
    sent: HashMap<String, String>,
    /// Chosen to be sent, but the file could not be read.
    missing: HashSet<String>,
}

/// Why an image is not sent, for its placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Withheld {
    NoVision,
    Older,
    TooLarge,
    Missing,
}

impl ImageInputs {
    /// No image is sent: every image is described as text. What a model without vision gets.
    pub fn none() -> Self {
        Self::default()
    }

    /// Picks the images to send, newest first, and reads them from `store`. A file that is
    /// gone is described instead.
    pub fn load(entries: &[Entry], store: &ImageStore, vision: bool) -> Self {
        let mut inputs = Self {
            vision,
            sent: HashMap::new(),
            missing: HashSet::new(),
        };
        if !vision {
            return inputs;
        }
        let mut total = 0;
        for image in select(entries) {
            let Some(bytes) = store.read(image) else {
                tracing::warn!(file = %image.file, "an image of the transcript is missing");
                inputs.missing.insert(image.file.clone());
                continue;
            };
            total += bytes.len();
            let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
            inputs.sent.insert(image.file.clone(), data);
        }
        tracing::debug!(
            n_images = inputs.sent.len(),
            bytes = total,
            "images for the model"
        );
        inputs
    }

    /// The base64 data of `image` when it is sent with this request.
    pub fn data(&self, image: &ImageRef) -> Option<&str> {
        self.sent.get(&image.file).map(String::as_str)
    }

    /// The text shown in place of an image that is not sent.
    pub fn placeholder(&self, image: &ImageRef) -> String {
        let described = image.describe();
        match self.withheld(image) {
            Withheld::NoVision => {
                format!(
                    "{described} (this model cannot see images; only its name and size are shown)"
                )
            }
            Withheld::Older => {
                format!("{described} (an earlier image, not sent again to save space)")
            }
            Withheld::TooLarge => format!(
                "{described} (too large to show: images are capped at {MAX_IMAGE_SIDE} px a side)"
            ),
            Withheld::Missing => format!("{described} (the image file is no longer available)"),
        }
    }

    fn withheld(&self, image: &ImageRef) -> Withheld {
        if !self.vision {
            Withheld::NoVision
        } else if !fits(image) {
            Withheld::TooLarge
        } else if self.missing.contains(&image.file) {
            Withheld::Missing
        } else {
            Withheld::Older
        }
    }
}

fn fits(image: &ImageRef) -> bool {
    image.width <= MAX_IMAGE_SIDE && image.height <= MAX_IMAGE_SIDE
}

/// The images to send: the newest first, at most [`MAX_SENT_IMAGES`] and
/// [`MAX_SENT_IMAGE_BYTES`] together, skipping those no provider accepts.
fn select(entries: &[Entry]) -> Vec<&ImageRef> {
    let mut chosen = Vec::new();
    let mut total = 0;
    let newest_first = entries
        .iter()
        .rev()
        .flat_map(|entry| entry.images().iter().rev());
    for image in newest_first {
        if chosen.len() == MAX_SENT_IMAGES {
            break;
        }
        if !fits(image) || total + image.bytes > MAX_SENT_IMAGE_BYTES {
            continue;
        }
        total += image.bytes;
        chosen.push(image);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::png_header;

    fn tool_result(images: Vec<ImageRef>) -> Entry {
        Entry::ToolResult {
            call_id: "c".into(),
            content: "shot".into(),
            is_error: false,
            images,
        }
    }

    #[test]
    fn only_the_newest_images_are_sent() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::in_out_dir(dir.path());
        let images: Vec<ImageRef> = (0..6)
            .map(|n| {
                store
                    .keep(&format!("shot-{n}.png"), &png_header(10 + n, 10))
                    .unwrap()
            })
            .collect();
        let mut entries: Vec<Entry> = images
            .iter()
            .map(|i| tool_result(vec![i.clone()]))
            .collect();
        let mut huge = images[0].clone();
        huge.height = MAX_IMAGE_SIDE + 1;
        huge.file = "huge.png".into();
        entries.push(tool_result(vec![huge.clone()]));
        let inputs = ImageInputs::load(&entries, &store, true);
        let sent: Vec<bool> = images.iter().map(|i| inputs.data(i).is_some()).collect();
        assert_eq!(sent, [false, false, true, true, true, true]);
        assert!(inputs.data(&huge).is_none());
        assert!(inputs.placeholder(&huge).contains("too large"));
        assert_eq!(
            inputs.placeholder(&images[0]),
            "[image: shot-0.png, 10x10] (an earlier image, not sent again to save space)"
        );
        let expected = base64::engine::general_purpose::STANDARD.encode(png_header(15, 10));
        assert_eq!(inputs.data(&images[5]), Some(expected.as_str()));

        let blind = ImageInputs::load(&entries, &store, false);
        assert!(images.iter().all(|i| blind.data(i).is_none()));
        assert!(blind.placeholder(&images[5]).contains("cannot see images"));

        std::fs::remove_file(store.dir().join(&images[5].file)).unwrap();
        let gone = ImageInputs::load(&entries, &store, true);
        assert!(gone.placeholder(&images[5]).contains("no longer available"));
    }

    #[test]
    fn the_byte_budget_holds() {
        let image = |n: usize, bytes: usize| ImageRef {
            file: format!("{n}.png"),
            format: crate::image::ImageFormat::Png,
            width: 10,
            height: 10,
            name: format!("{n}.png"),
            bytes,
        };
        let big = MAX_SENT_IMAGE_BYTES / 2;
        let entries = vec![
            tool_result(vec![image(0, 10)]),
            tool_result(vec![image(1, big), image(2, big)]),
            tool_result(vec![image(3, 10)]),
        ];
        let files: Vec<&str> = select(&entries).iter().map(|i| i.file.as_str()).collect();
        // Newest first: 3, then 2; 1 would pass the budget, and 0 still fits.
        assert_eq!(files, ["3.png", "2.png", "0.png"]);
    }
}
