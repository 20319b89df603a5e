//! Emoji to Slack reaction names (`reactions.add` takes `thumbsup`, not `👍`): the common
//! reactions an agent uses. An emoji without a name here is shown as a short message
//! instead, so nothing an agent does is lost.

/// The Slack name of `emoji`: a known emoji, or a name given as `:name:` or `name`.
pub fn slack_name(emoji: &str) -> Option<String> {
    let emoji = emoji.trim();
    // Variation selectors do not change which emoji it is.
    let plain: String = emoji.chars().filter(|c| *c != '\u{fe0f}').collect();
    let known = match plain.as_str() {
        "👍" => Some("thumbsup"),
        "👎" => Some("thumbsdown"),
        "❤" => Some("heart"),
        "👀" => Some("eyes"),
        "✅" => Some("white_check_mark"),
        "✔" => Some("heavy_check_mark"),
        "❌" => Some("x"),
        "🎉" => Some("tada"),
        "😄" => Some("smile"),
        "😀" => Some("grinning"),
        "😂" => Some("joy"),
        "🙂" => Some("slightly_smiling_face"),
        "😢" => Some("cry"),
        "🤔" => Some("thinking_face"),
        "🙏" => Some("pray"),
        "🔥" => Some("fire"),
        "🚀" => Some("rocket"),
        "👋" => Some("wave"),
        "👏" => Some("clap"),
        "💯" => Some("100"),
        "⚠" => Some("warning"),
        "⏳" => Some("hourglass_flowing_sand"),
        "🦀" => Some("crab"),
        "⭐" => Some("star"),
        "✨" => Some("sparkles"),
        "🐛" => Some("bug"),
        "📝" => Some("memo"),
        "🔧" => Some("wrench"),
        _ => None,
    };
    if let Some(name) = known {
        return Some(name.to_owned());
    }
    let name = plain
        .strip_prefix(':')
        .and_then(|rest| rest.strip_suffix(':'))
        .unwrap_or(&plain);
    let is_name = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_+-'".contains(c));
    is_name.then(|| name.to_owned())
}
