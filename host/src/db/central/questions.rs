//! Questions agents asked in chats (`questions`): [`Question`], recorded when delivery hands
//! a `question` row to a channel ([`record_question`]) and answered from that chat
//! ([`open_question`], [`set_answered`]). The answer itself travels into the asking
//! session's `inbound.db`; this table is how the host finds that session from a chat.

use super::DbError;
use protocol::time::now_ms;
use protocol::{AgentGroupId, SessionId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// A question as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub id: String,
    pub session_id: SessionId,
    pub agent_group_id: AgentGroupId,
    /// The id the agent chose; unique within its session.
    pub question_id: String,
    pub title: String,
    pub question: String,
    pub options: Vec<String>,
    /// `pending` or `answered`.
    pub status: String,
    pub answer: Option<String>,
    pub answered_by: Option<String>,
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub thread_id: Option<String>,
    /// When the agent stops waiting (unix ms); a later answer does not wake it.
    pub expires_at: Option<i64>,
}

/// What delivery records when it hands a question to a chat.
#[derive(Clone, Debug)]
pub struct NewQuestion {
    pub session_id: SessionId,
    pub agent_group_id: AgentGroupId,
    pub question_id: String,
    pub title: String,
    pub question: String,
    pub options: Vec<String>,
    pub channel_type: String,
    pub platform_id: String,
    pub thread_id: Option<String>,
    pub expires_at: Option<i64>,
}

const COLUMNS: &str = "id, session_id, agent_group_id, question_id, title, question, options, status, answer, \
     answered_by, channel_type, platform_id, thread_id, expires_at";

fn question_from(row: &Row<'_>) -> rusqlite::Result<Question> {
    let options: String = row.get(6)?;
    Ok(Question {
        id: row.get(0)?,
        session_id: row.get(1)?,
        agent_group_id: row.get(2)?,
        question_id: row.get(3)?,
        title: row.get(4)?,
        question: row.get(5)?,
        options: serde_json::from_str(&options).unwrap_or_default(),
        status: row.get(7)?,
        answer: row.get(8)?,
        answered_by: row.get(9)?,
        channel_type: row.get(10)?,
        platform_id: row.get(11)?,
        thread_id: row.get(12)?,
        expires_at: row.get(13)?,
    })
}

/// Records a question; a repeat of the same (session, question id) keeps the first record.
pub fn record_question(conn: &Connection, new: &NewQuestion) -> Result<(), DbError> {
    let options = serde_json::to_string(&new.options).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "INSERT OR IGNORE INTO questions (id, session_id, agent_group_id, question_id, title, question, options, \
         created_at, channel_type, platform_id, thread_id, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            super::short_id("qu"),
            new.session_id,
            new.agent_group_id,
            new.question_id,
            new.title,
            new.question,
            options,
            now_ms(),
            new.channel_type,
            new.platform_id,
            new.thread_id,
            new.expires_at,
        ],
    )?;
    Ok(())
}

/// The newest question with this id asked in this chat, answered or not.
pub fn question_in_chat(
    conn: &Connection,
    question_id: &str,
    channel_type: &str,
    platform_id: &str,
) -> Result<Option<Question>, DbError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM questions WHERE question_id = ?1 AND channel_type = ?2 \
                 AND platform_id = ?3 ORDER BY created_at DESC LIMIT 1"
            ),
            params![question_id, channel_type, platform_id],
            question_from,
        )
        .optional()?)
}

/// The newest unanswered question in a chat (for an answer that names no question).
pub fn open_question(
    conn: &Connection,
    channel_type: &str,
    platform_id: &str,
) -> Result<Option<Question>, DbError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM questions WHERE status = 'pending' AND channel_type = ?1 \
                 AND platform_id = ?2 ORDER BY created_at DESC LIMIT 1"
            ),
            params![channel_type, platform_id],
            question_from,
        )
        .optional()?)
}

/// Records the answer. `Ok(false)` when the question was answered already.
pub fn set_answered(
    conn: &Connection,
    id: &str,
    answer: &str,
    answered_by: &str,
) -> Result<bool, DbError> {
    Ok(conn.execute(
        "UPDATE questions SET status = 'answered', answer = ?2, answered_by = ?3, answered_at = ?4 \
         WHERE id = ?1 AND status = 'pending'",
        params![id, answer, answered_by, now_ms()],
    )? > 0)
}
