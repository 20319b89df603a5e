//! Fuzz target `platform_event`: arbitrary bytes as what a chat platform sends the host —
//! a Telegram update, a Slack Events API body or event, a Discord `MESSAGE_CREATE` or
//! `INTERACTION_CREATE` payload — through the adapters' own mapping, and as button data read
//! back (`callback_data`, `custom_id`). Nothing may panic, and whatever is taken in names a
//! sender of its own platform.

#![no_main]

use host::channels::discord::{components, inbound as discord};
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
});
