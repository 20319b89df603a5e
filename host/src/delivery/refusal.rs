//! Why delivery refused an outbound row: [`Refusal`], one variant per kind of reason, each
//! with its stable [`Refusal::code`]. The code and the detail are what `dropped_messages`
//! records (`<code>: <detail>`), so a dashboard or a script can count refusals by kind
//! without parsing prose; the agent is told the detail.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A column of the row is unreadable or over its cap (the reader named which).
    BadRow(String),
    /// `kind` is neither `chat` nor `system`.
    UnknownKind(String),
    /// The content is not a well-formed message or operation within its caps.
    BadContent(String),
    /// The seq is even, does not increase, or is not above the last delivered seq.
    OutOfOrder(String),
    /// Over a cap: rows per turn or per minute, or the agent-to-agent loop cap.
    OverLimit(String),
    /// The destination is not one the agent group may send to, or names no chat.
    Destination(String),
    /// No adapter serves the chat's channel type.
    NoAdapter(String),
    /// The reply of a turn an inbound webhook started has nowhere to go: the agent group has
    /// no channel destinations (or only ones no adapter serves).
    NoFanoutDestination(String),
    /// The row's files were refused (links, FIFOs, paths outside the outbox, over a cap).
    Files(String),
    /// What another agent cannot receive (only plain messages with plain ids go there).
    ToAgent(String),
    /// A `system` action was not carried out.
    Action(String),
}

impl Refusal {
    /// The stable name of the kind of refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadRow(_) => "bad_row",
            Refusal::UnknownKind(_) => "unknown_kind",
            Refusal::BadContent(_) => "bad_content",
            Refusal::OutOfOrder(_) => "out_of_order",
            Refusal::OverLimit(_) => "over_limit",
            Refusal::Destination(_) => "destination",
            Refusal::NoAdapter(_) => "no_adapter",
            Refusal::NoFanoutDestination(_) => "no_fanout_destination",
            Refusal::Files(_) => "files",
            Refusal::ToAgent(_) => "to_agent",
            Refusal::Action(_) => "action",
        }
    }

    /// The reason in words.
    pub fn detail(&self) -> &str {
        match self {
            Refusal::BadRow(detail)
            | Refusal::UnknownKind(detail)
            | Refusal::BadContent(detail)
            | Refusal::OutOfOrder(detail)
            | Refusal::OverLimit(detail)
            | Refusal::Destination(detail)
            | Refusal::NoAdapter(detail)
            | Refusal::NoFanoutDestination(detail)
            | Refusal::Files(detail)
            | Refusal::ToAgent(detail)
            | Refusal::Action(detail) => detail,
        }
    }
}

impl fmt::Display for Refusal {
    /// `<code>: <detail>`, as `dropped_messages` records it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_recorded_as_its_code_and_detail() {
        let refusal = Refusal::OutOfOrder("seq 4 is not odd".into());
        assert_eq!(refusal.code(), "out_of_order");
        assert_eq!(refusal.detail(), "seq 4 is not odd");
        assert_eq!(refusal.to_string(), "out_of_order: seq 4 is not odd");
    }
}
