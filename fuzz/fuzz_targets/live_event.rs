//! Fuzz target `live_event`: arbitrary bytes as the body of a runner's
//! `POST /crabpot/v1/live` on its proxy socket, through the one parser the host calls
//! (`protocol::live::parse`). An accepted event must write back into the same event and stay
//! within the caps.

#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::live::{LiveEvent, MAX_DRAFT_CHARS, MAX_LIVE_BODY_BYTES, parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = parse(data) {
        assert!(data.len() <= MAX_LIVE_BODY_BYTES);
        if let LiveEvent::Draft { offset, text, .. } = &event {
            let total = u64::from(*offset) + text.chars().count() as u64;
            assert!(total <= MAX_DRAFT_CHARS as u64, "draft over the cap: {total}");
        }
        let body = event.to_body().unwrap_or_default();
        assert_eq!(parse(&body).ok().as_ref(), Some(&event), "does not read back");
    }
});
