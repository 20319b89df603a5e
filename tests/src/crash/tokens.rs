//! How the crash suite names its messages: each carries one token `cm<n>` in its text, and the
//! fake model answers every turn with [`reply_naming`] — a reply that names every token of the
//! turn's user text — so a reply can be matched to the messages it answers, at the client and
//! in the session files alike.

use crate::fake_model::{RecordedRequest, Reply};

/// The token of message `n`.
pub fn token(n: usize) -> String {
    format!("cm{n}")
}

/// Every message token in `text`, in order of appearance.
pub fn tokens_in(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| {
            word.strip_prefix("cm").is_some_and(|digits| {
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .map(str::to_owned)
        .collect()
}

/// The fake model's answer to a turn: `re: <every token of the last user text>`. The runner
/// renders every row of a turn into that one user text, so a turn over several messages
/// names them all.
pub fn reply_naming(request: &RecordedRequest) -> Reply {
    let text = request.last_user_text().unwrap_or_default();
    let tokens = tokens_in(&text);
    if tokens.is_empty() {
        Reply::text("re: (no message token)")
    } else {
        Reply::text(format!("re: {}", tokens.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_as_whole_words() {
        assert_eq!(
            tokens_in("[seq 4 at x] bench: crash message cm12 in crash-1\n[seq 6] cm3."),
            vec!["cm12", "cm3"]
        );
        assert!(tokens_in("cm cmx cm1x acm1").is_empty());
        assert_eq!(tokens_in(&format!("re: {}", token(40))), vec!["cm40"]);
    }
}
