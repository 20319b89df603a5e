//! What arrives from Discord, read into crabpot's terms: a `MESSAGE_CREATE` into an
//! [`InboundEvent`] ([`message_event`]) with the attachments to fetch, and an
//! `INTERACTION_CREATE` button press into a [`Press`]. Payloads are hostile: missing or odd
//! fields drop the event (logged), never panic; texts and lists are capped.
//!
//! Chats are `discord/<channel id>`: a DM channel or a guild text channel (a thread's
//! message is moved to its parent's chat by [`super::threads`], with the thread as
//! `thread_id`). Users are `discord:<user id>`,
//! named by their server nickname, else their display name (`global_name`), else username.

use super::CHANNEL_TYPE;
use crate::edge::InboundEvent;
use protocol::Sender;
use serde::Deserialize;

/// The longest message text taken in (Discord's own cap is 4000 for Nitro users).
const MAX_TEXT_CHARS: usize = 8000;
/// At most this many attachments of one message are fetched (Discord allows 10).
pub const MAX_ATTACHMENTS: usize = 10;

#[derive(Clone, Debug, Default, Deserialize)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub global_name: Option<String>,
    #[serde(default)]
    pub bot: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Member {
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub nick: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub filename: String,
    #[serde(default)]
    pub size: u64,
    pub url: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Referenced {
    #[serde(default)]
    author: Option<User>,
}

#[derive(Clone, Debug, Deserialize)]
struct Message {
    id: String,
    channel_id: String,
    #[serde(default)]
    guild_id: Option<String>,
    author: User,
    #[serde(default)]
    member: Option<Member>,
    #[serde(default)]
    content: String,
    #[serde(default)]
    mentions: Vec<User>,
    #[serde(default)]
    attachments: Vec<Attachment>,
    #[serde(default)]
    referenced_message: Option<Box<Referenced>>,
    #[serde(default, rename = "type")]
    kind: u8,
    #[serde(default)]
    webhook_id: Option<String>,
}

/// A person's name as Discord shows it in a chat.
pub fn display_name(user: &User, member: Option<&Member>) -> String {
    member
        .and_then(|member| member.nick.clone())
        .or_else(|| user.global_name.clone())
        .or_else(|| user.username.clone())
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| user.id.clone())
        .chars()
        .take(100)
        .collect()
}

/// The sender `discord:<id>` with its display name.
pub fn sender(user: &User, member: Option<&Member>) -> Sender {
    Sender {
        id: format!("{CHANNEL_TYPE}:{}", user.id),
        name: Some(display_name(user, member)),
    }
}

/// Whether `content` names the bot `<@id>` or `<@!id>`.
pub fn mentions_bot(content: &str, bot_id: &str) -> bool {
    !bot_id.is_empty()
        && (content.contains(&format!("<@{bot_id}>")) || content.contains(&format!("<@!{bot_id}>")))
}

/// Why a dispatch is not an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Skip {
    /// Written by the bot itself, another bot, or a webhook.
    Bot,
    /// A system message (a join, a pin), not something someone said.
    System(u8),
    /// Nothing to read in it.
    Empty,
    /// Not the shape of a message.
    Malformed(String),
}

/// A message read in: the event, and the files it came with (fetched by the adapter).
#[derive(Debug)]
pub struct Received {
    pub event: InboundEvent,
    pub attachments: Vec<Attachment>,
}

/// A `MESSAGE_CREATE`'s `d` as an event, for the bot `bot_id`.
pub fn message_event(data: &serde_json::Value, bot_id: &str) -> Result<Received, Skip> {
    let message =
        Message::deserialize(data).map_err(|e| Skip::Malformed(format!("MESSAGE_CREATE: {e}")))?;
    if message.author.bot || message.author.id == bot_id || message.webhook_id.is_some() {
        return Err(Skip::Bot);
    }
    // 0 = DEFAULT, 19 = REPLY; the rest are system messages.
    if !matches!(message.kind, 0 | 19) {
        return Err(Skip::System(message.kind));
    }
    if message.content.trim().is_empty() && message.attachments.is_empty() {
        return Err(Skip::Empty);
    }
    let is_group = message.guild_id.is_some();
    let replied_to_bot = message
        .referenced_message
        .as_ref()
        .and_then(|referenced| referenced.author.as_ref())
        .is_some_and(|author| author.id == bot_id);
    let is_mention = !is_group
        || mentions_bot(&message.content, bot_id)
        || message.mentions.iter().any(|user| user.id == bot_id)
        || replied_to_bot;
    let sender = sender(&message.author, message.member.as_ref());
    let chat_name = if is_group {
        None
    } else {
        sender.name.as_ref().map(|name| format!("DM with {name}"))
    };
    let mut attachments = message.attachments;
    attachments.truncate(MAX_ATTACHMENTS);
    Ok(Received {
        event: InboundEvent {
            channel_type: CHANNEL_TYPE.to_owned(),
            platform_id: message.channel_id,
            thread_id: None,
            platform_message_id: message.id,
            sender,
            text: message.content.chars().take(MAX_TEXT_CHARS).collect(),
            attachments: Vec::new(),
            is_mention,
            is_group,
            chat_name,
            uploads: Vec::new(),
        },
        attachments,
    })
}

/// A button press (`INTERACTION_CREATE` of type 3, MESSAGE_COMPONENT).
#[derive(Clone, Debug)]
pub struct Press {
    pub interaction_id: String,
    pub token: String,
    pub channel_id: String,
    pub is_group: bool,
    pub custom_id: String,
    pub presser: User,
    pub member: Option<Member>,
}

#[derive(Deserialize)]
struct Interaction {
    id: String,
    token: String,
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    guild_id: Option<String>,
    #[serde(default)]
    member: Option<Member>,
    #[serde(default)]
    user: Option<User>,
    #[serde(default)]
    data: Option<InteractionData>,
}

#[derive(Deserialize)]
struct InteractionData {
    #[serde(default)]
    custom_id: Option<String>,
}

/// An `INTERACTION_CREATE`'s `d` as a press; `Skip` for other interactions.
pub fn press(data: &serde_json::Value) -> Result<Press, Skip> {
    let interaction = Interaction::deserialize(data)
        .map_err(|e| Skip::Malformed(format!("INTERACTION_CREATE: {e}")))?;
    if interaction.kind != 3 {
        return Err(Skip::System(interaction.kind));
    }
    // In a guild the presser is `member.user`; in a DM, `user`.
    let presser = interaction
        .member
        .as_ref()
        .and_then(|member| member.user.clone())
        .or(interaction.user)
        .ok_or_else(|| Skip::Malformed("a press without a presser".into()))?;
    if presser.bot {
        return Err(Skip::Bot);
    }
    let custom_id = interaction
        .data
        .and_then(|data| data.custom_id)
        .ok_or(Skip::Empty)?;
    let channel_id = interaction
        .channel_id
        .ok_or_else(|| Skip::Malformed("a press without a channel".into()))?;
    Ok(Press {
        interaction_id: interaction.id,
        token: interaction.token,
        channel_id,
        is_group: interaction.guild_id.is_some(),
        custom_id,
        presser,
        member: interaction.member,
    })
}

/// Whether an attachment URL may be fetched: Discord's CDN hosts, or the configured API's
/// own host (a self-hosted or fake API), over HTTPS or that API's scheme.
pub fn may_fetch(url: &str, api_url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let cdn = url.scheme() == "https"
        && matches!(
            url.host_str(),
            Some("cdn.discordapp.com" | "media.discordapp.net")
        )
        && url.port().is_none();
    let own = reqwest::Url::parse(api_url).is_ok_and(|api| {
        api.scheme() == url.scheme()
            && api.host_str() == url.host_str()
            && api.port_or_known_default() == url.port_or_known_default()
    });
    cdn || own
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BOT: &str = "900";

    fn message(extra: serde_json::Value) -> serde_json::Value {
        let mut base = json!({
            "id": "1001", "channel_id": "55", "type": 0, "content": "hello",
            "author": {"id": "7", "username": "ann", "global_name": "Ann A."},
            "mentions": [], "attachments": []
        });
        if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                base.insert(key.clone(), value.clone());
            }
        }
        base
    }

    fn check(data: serde_json::Value, expected: Result<(bool, bool, &str), Skip>) {
        let got = message_event(&data, BOT).map(|received| {
            (
                received.event.is_group,
                received.event.is_mention,
                received.event.sender.name.unwrap_or_default(),
            )
        });
        match (got, expected) {
            (Ok((group, mention, name)), Ok((want_group, want_mention, want_name))) => {
                assert_eq!(
                    (group, mention, name.as_str()),
                    (want_group, want_mention, want_name),
                    "{data}"
                )
            }
            (Err(skip), Err(want)) => assert_eq!(skip, want, "{data}"),
            (got, want) => panic!("{data}: got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn messages_become_events() {
        // A DM: not a group, always addressed to the bot.
        check(message(json!({})), Ok((false, true, "Ann A.")));
        // A guild channel: a mention only when the bot is named or replied to.
        check(
            message(json!({"guild_id": "3"})),
            Ok((true, false, "Ann A.")),
        );
        check(
            message(json!({"guild_id": "3", "content": "<@900> hi"})),
            Ok((true, true, "Ann A.")),
        );
        check(
            message(json!({"guild_id": "3", "content": "<@!900> hi"})),
            Ok((true, true, "Ann A.")),
        );
        check(
            message(json!({"guild_id": "3", "mentions": [{"id": "900", "username": "bot"}]})),
            Ok((true, true, "Ann A.")),
        );
        check(
            message(
                json!({"guild_id": "3", "type": 19, "referenced_message": {"author": {"id": "900"}}}),
            ),
            Ok((true, true, "Ann A.")),
        );
        check(
            message(json!({"guild_id": "3", "content": "<@901> hi"})),
            Ok((true, false, "Ann A.")),
        );
        // Names: the nickname first, then the display name, then the username.
        check(
            message(json!({"guild_id": "3", "member": {"nick": "Annie"}})),
            Ok((true, false, "Annie")),
        );
        check(
            message(json!({"author": {"id": "7", "username": "ann"}})),
            Ok((false, true, "ann")),
        );
        // Skipped: bots (the bot itself too), system messages, nothing said, junk.
        check(
            message(json!({"author": {"id": "900", "username": "me"}})),
            Err(Skip::Bot),
        );
        check(
            message(json!({"author": {"id": "8", "username": "b", "bot": true}})),
            Err(Skip::Bot),
        );
        check(message(json!({"type": 7})), Err(Skip::System(7)));
        check(message(json!({"content": "  "})), Err(Skip::Empty));
        assert!(matches!(
            message_event(&json!({"id": 5}), BOT),
            Err(Skip::Malformed(_))
        ));
    }

    #[test]
    fn an_event_names_its_chat_sender_and_files() {
        let data = message(json!({"attachments": [
            {"id": "1", "filename": "a.txt", "size": 3, "url": "https://cdn.discordapp.com/attachments/1/a.txt"}
        ]}));
        let received = message_event(&data, BOT).map_err(|e| format!("{e:?}"));
        let Ok(received) = received else {
            panic!("{received:?}")
        };
        assert_eq!(received.event.channel_type, "discord");
        assert_eq!(received.event.platform_id, "55");
        assert_eq!(received.event.platform_message_id, "1001");
        assert_eq!(received.event.sender.id, "discord:7");
        assert_eq!(received.event.chat_name.as_deref(), Some("DM with Ann A."));
        assert_eq!(received.attachments.len(), 1);
    }

    #[test]
    fn presses_name_the_presser() {
        let guild = json!({"id": "1", "token": "t", "type": 3, "channel_id": "55", "guild_id": "3",
            "member": {"nick": "Annie", "user": {"id": "7", "username": "ann"}},
            "data": {"custom_id": "t:approve ap-1", "component_type": 2}});
        let pressed = press(&guild).map_err(|e| format!("{e:?}"));
        let Ok(pressed) = pressed else {
            panic!("{pressed:?}")
        };
        assert_eq!(pressed.presser.id, "7");
        assert!(pressed.is_group);
        assert_eq!(
            display_name(&pressed.presser, pressed.member.as_ref()),
            "Annie"
        );
        let dm = json!({"id": "1", "token": "t", "type": 3, "channel_id": "56",
            "user": {"id": "8", "username": "bob"}, "data": {"custom_id": "q:q-1:2"}});
        assert!(press(&dm).is_ok_and(|p| p.presser.id == "8" && !p.is_group));
        let ping = json!({"id": "1", "token": "t", "type": 1});
        assert!(matches!(press(&ping), Err(Skip::System(1))));
    }

    #[test]
    fn attachments_come_only_from_discord_or_the_api_host() {
        let api = "http://127.0.0.1:4000/api/v10";
        assert!(may_fetch(
            "https://cdn.discordapp.com/attachments/1/2/a.png",
            api
        ));
        assert!(may_fetch(
            "https://media.discordapp.net/attachments/1/2/a.png",
            api
        ));
        assert!(may_fetch("http://127.0.0.1:4000/files/a.png", api));
        assert!(!may_fetch("http://127.0.0.1:4001/files/a.png", api));
        assert!(!may_fetch("http://cdn.discordapp.com/a.png", api));
        assert!(!may_fetch("https://evil.example/a.png", api));
        assert!(!may_fetch("file:///etc/passwd", api));
    }
}
