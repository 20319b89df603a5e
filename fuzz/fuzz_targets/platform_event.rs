//! Fuzz target `platform_event`: arbitrary bytes as what a chat platform sends the host —
//! a Telegram update, a Slack Events API body or event, a Discord `MESSAGE_CREATE` or
//! `INTERACTION_CREATE` payload, a Matrix room event, an email, a webhook's signature
//! headers — through the adapters' own mapping, and as button data read back
//! (`callback_data`, `custom_id`, keycaps, `mxc://` URLs). Nothing may panic, whatever is
//! taken in names a sender of its own platform, and no forged signature is accepted.

#![no_main]

use host::channels::discord::{components, inbound as discord};
use host::channels::email::parse as email;
use host::channels::matrix::{mapping as matrix, wire as matrix_wire};
use host::channels::webhook::signature;
use host::channels::slack::events as slack;
use host::channels::telegram::{buttons, mapping, wire};
use libfuzzer_sys::fuzz_target;

fn sender_of(event: &host::edge::InboundEvent, channel: &str) {
    assert_eq!(event.channel_type, channel);
    assert!(
        event.sender.id.starts_with(&format!("{channel}:")),
        "{} is not a {channel} sender",
        event.sender.id
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = buttons::parse(text);
        let _ = components::parse_custom_id(text);
        let _ = slack::mentions(text, "UBOT");
        let _ = discord::mentions_bot(text, "4242");
        let _ = matrix::parse_mxc(text);
        let _ = matrix::keycap_number(text);
        let _ = matrix::numbered_options(text);
        // A signature header made of fuzz never verifies: the secret is not in it.
        let now = 1_700_000_000;
        assert!(signature::verify(b"secret", Some(text), None, data, now).is_err());
        assert!(signature::verify(b"secret", None, Some(text), data, now).is_err());
    }
    if let Ok(incoming) = email::parse(data, 1, 1, 1024) {
        assert!(!incoming.from_address.is_empty());
        let _ = incoming.thread_root();
    }
    if let Ok(update) = serde_json::from_slice::<wire::Update>(data)
        && let Some(message) = &update.message
    {
        let bot = mapping::BotIdentity {
            id: 4242,
            username: Some("crabbot".into()),
        };
        if let Some(mapped) = mapping::message_event(message, &bot) {
            sender_of(&mapped.event, "telegram");
        }
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = slack::envelope(&value);
    let _ = slack::map_event(&value, "UBOT");
    if let Ok(received) = discord::message_event(&value, "4242") {
        sender_of(&received.event, "discord");
    }
    let _ = discord::press(&value);
    if let Ok(event) = serde_json::from_value::<matrix_wire::RoomEvent>(value) {
        let bot = matrix::BotIdentity {
            user_id: "@crabpot:crabpot.test".into(),
            display_name: Some("crabpot".into()),
        };
        let room = matrix::RoomView {
            room_id: "!room:crabpot.test".into(),
            is_group: true,
            name: None,
            sender_name: None,
        };
        if let Some(mapped) = matrix::message_event(&event, &room, &bot) {
            sender_of(&mapped.event, "matrix");
        }
        let _ = matrix::reaction(&event, &room, &bot);
    }
});
