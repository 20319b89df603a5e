//! [`DeclaredCapabilities`]: what an adapter says its platform can do in its `hello`, every
//! field optional, and [`DeclaredCapabilities::effective`], the [`Capabilities`] the host
//! uses: missing fields are those of a plain-text platform, and every value is kept within
//! bounds, so a buggy or hostile adapter cannot make the bridge spin (a typing renewal of
//! 0 ms), stall (an edit interval of a year), or split a reply into a million pieces.

use crate::edge::{Capabilities, Markup, Rate, RateLimits};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The longest text of one message an adapter may declare (`max_text_chars`), and the
/// shortest: below it, a reply would be cut into absurdly many pieces.
pub const MAX_TEXT_CHARS: usize = 100_000;
const MIN_TEXT_CHARS: usize = 100;
/// `max_text_chars` of an adapter that declares none.
const DEFAULT_TEXT_CHARS: usize = 4_000;
/// The longest gap between edits an adapter may ask for.
const MAX_EDIT_INTERVAL: Duration = Duration::from_secs(60);
/// The bounds of `typing_renew`: faster would be a busy loop, slower is no indicator.
const MIN_TYPING_RENEW: Duration = Duration::from_secs(1);
const MAX_TYPING_RENEW: Duration = Duration::from_secs(600);
/// The bounds of a declared rate.
const MAX_RATE_BURST: u32 = 10_000;
const MAX_RATE_WINDOW: Duration = Duration::from_secs(3_600);

/// The capabilities an adapter declares: every field optional, missing ones are those of a
/// plain-text platform. The same names and units (milliseconds) as [`Capabilities`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeclaredCapabilities {
    pub threads: Option<bool>,
    pub edits: Option<bool>,
    pub min_edit_interval: Option<u64>,
    pub reactions: Option<bool>,
    pub buttons: Option<bool>,
    pub files: Option<bool>,
    pub max_file_bytes: Option<u64>,
    pub max_text_chars: Option<u64>,
    pub markup: Option<Markup>,
    pub typing_renew: Option<u64>,
    pub live_drafts: Option<bool>,
    pub deletes: Option<bool>,
    pub rate: Option<RateLimits>,
}

impl DeclaredCapabilities {
    /// What the host will use: the declared values, each within sane bounds.
    pub fn effective(&self) -> Capabilities {
        let files = self.files.unwrap_or(false);
        let max_text_chars = self
            .max_text_chars
            .map_or(DEFAULT_TEXT_CHARS, |chars| {
                usize::try_from(chars).unwrap_or(usize::MAX)
            })
            .clamp(MIN_TEXT_CHARS, MAX_TEXT_CHARS);
        Capabilities {
            threads: self.threads.unwrap_or(false),
            edits: self.edits.unwrap_or(false),
            min_edit_interval: Duration::from_millis(self.min_edit_interval.unwrap_or(0))
                .min(MAX_EDIT_INTERVAL),
            reactions: self.reactions.unwrap_or(false),
            buttons: self.buttons.unwrap_or(false),
            files,
            max_file_bytes: if files {
                self.max_file_bytes.unwrap_or(u64::MAX)
            } else {
                0
            },
            max_text_chars,
            markup: self.markup.unwrap_or(Markup::Plain),
            typing_renew: self
                .typing_renew
                .map(|ms| Duration::from_millis(ms).clamp(MIN_TYPING_RENEW, MAX_TYPING_RENEW)),
            live_drafts: self.live_drafts.unwrap_or(false),
            deletes: self.deletes.unwrap_or(false),
            rate: RateLimits {
                per_platform: self
                    .rate
                    .and_then(|rate| rate.per_platform)
                    .map(bounded_rate),
                per_chat: self.rate.and_then(|rate| rate.per_chat).map(bounded_rate),
            },
        }
    }
}

fn bounded_rate(rate: Rate) -> Rate {
    Rate {
        burst: rate.burst.clamp(1, MAX_RATE_BURST),
        per: rate.per.min(MAX_RATE_WINDOW),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_capabilities_are_capped() {
        let none = DeclaredCapabilities::default().effective();
        assert_eq!(none, Capabilities::text_only(4_000, Markup::Plain));

        let wild: DeclaredCapabilities = serde_json::from_str(
            r#"{"max_text_chars":18446744073709551615,"min_edit_interval":99999999,
                "typing_renew":0,"max_file_bytes":5,"edits":true,
                "rate":{"per_chat":{"burst":0,"per":999999999999}}}"#,
        )
        .unwrap();
        let capped = wild.effective();
        assert_eq!(capped.max_text_chars, MAX_TEXT_CHARS);
        assert_eq!(capped.min_edit_interval, MAX_EDIT_INTERVAL);
        assert_eq!(capped.typing_renew, Some(MIN_TYPING_RENEW));
        assert_eq!(capped.max_file_bytes, 0, "no files declared, no file size");
        assert!(capped.edits);
        let rate = capped.rate.per_chat.unwrap();
        assert_eq!((rate.burst, rate.per), (1, MAX_RATE_WINDOW));

        let tiny: DeclaredCapabilities =
            serde_json::from_str(r#"{"max_text_chars":1,"typing_renew":99999999999}"#).unwrap();
        let tiny = tiny.effective();
        assert_eq!(tiny.max_text_chars, MIN_TEXT_CHARS);
        assert_eq!(tiny.typing_renew, Some(MAX_TYPING_RENEW));
    }
}
