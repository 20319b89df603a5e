//! [`Outbound`]: sending one reply. The thread's [`ThreadState`] says whom to write, what to
//! answer and how to thread it; the agent's files are read (capped) and attached; the
//! message is composed ([`super::compose`]) and sent ([`super::smtp`]); then our message
//! becomes the thread's newest, so the next reply answers it.

use super::compose::{self, File, Reply};
use super::inbound::{load_thread, store_thread};
use super::smtp::Smtp;
use super::threads::{self, ThreadState};
use crate::config::email::{ChatMode, plain_address};
use crate::db::DbThread;
use crate::edge::{ChannelError, ChatAddress, Health, HealthState, OutgoingMessage};
use rusqlite::Connection;
use std::sync::{Arc, Mutex, PoisonError};

/// How the adapter's health says that sending fails (and, once it works again, is cleared).
const SENDING_FAILED: &str = "email: sending failed: ";

/// The largest file attached to a reply: mail servers commonly take 25 MB messages, and
/// base64 makes a file a third larger.
pub const MAX_ATTACHMENT_BYTES: u64 = 18 * 1024 * 1024;

pub struct Outbound {
    pub address: String,
    pub chat_mode: ChatMode,
    pub smtp: Arc<Smtp>,
    pub central: Arc<DbThread<Connection>>,
    /// The adapter's health: a failing SMTP server shows as degraded.
    pub health: Arc<Mutex<Health>>,
}

impl Outbound {
    /// Sends `message` to `to`; returns our `Message-ID` (without brackets).
    pub async fn deliver(
        &self,
        to: &ChatAddress,
        message: &OutgoingMessage,
    ) -> Result<String, ChannelError> {
        let key = to
            .thread_id
            .as_deref()
            .map(|root| threads::state_key(&to.platform_id, root));
        let thread: Option<ThreadState> = match &key {
            Some(key) => load_thread(&self.central, key)
                .await
                .map_err(ChannelError::Unavailable)?,
            None => None,
        };
        // In sender mode the chat is the person: replies go to its address and nowhere else.
        // In mailbox mode the chat is the mailbox, and a thread's last writer is answered.
        let recipient = match (&thread, self.chat_mode) {
            (_, ChatMode::Sender) => plain_address(&to.platform_id).ok_or_else(|| {
                ChannelError::Rejected(format!("{:?} is not an email address", to.platform_id))
            })?,
            (Some(thread), ChatMode::Mailbox) if !thread.reply_to.is_empty() => {
                thread.reply_to.clone()
            }
            (_, ChatMode::Mailbox) => {
                return Err(ChannelError::Rejected(
                    "in mailbox mode a message needs a thread to know whom to write".into(),
                ));
            }
        };
        let files = read_files(message).await?;
        let (email, id) = compose::compose(Reply {
            from: &self.address,
            to: &recipient,
            thread: thread.as_ref(),
            message,
            files,
        })?;
        let sent = self.smtp.send(&email).await;
        self.note_sending(sent.as_ref().err());
        sent?;
        if let (Some(key), Some(mut thread)) = (key, thread) {
            thread.push(&id);
            if let Err(reason) = store_thread(&self.central, key, &thread).await {
                // The email went; a later reply then answers the person's message instead of
                // ours, which still threads.
                tracing::warn!(%reason, "the email thread state was not updated");
            }
        }
        Ok(id)
    }
}

impl Outbound {
    /// Shows a failed send in the health (unless the adapter is failing for a worse reason),
    /// and clears it once a send works again.
    fn note_sending(&self, error: Option<&ChannelError>) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let ours = health
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with(SENDING_FAILED));
        match error {
            Some(error) if health.state != HealthState::Failing => {
                *health = Health {
                    state: HealthState::Degraded,
                    last_error: Some(format!("{SENDING_FAILED}{error}")),
                };
            }
            None if ours => *health = Health::connected(),
            Some(_) | None => {}
        }
    }
}

/// The files of `message`, each at most [`MAX_ATTACHMENT_BYTES`].
async fn read_files(message: &OutgoingMessage) -> Result<Vec<File>, ChannelError> {
    let mut files = Vec::new();
    for path in &message.files {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned());
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| ChannelError::Rejected(format!("the file {name:?} cannot be read: {e}")))?
            .len();
        if size > MAX_ATTACHMENT_BYTES {
            return Err(ChannelError::Rejected(format!(
                "the file {name:?} is {size} bytes, more than the {MAX_ATTACHMENT_BYTES} an email takes"
            )));
        }
        let bytes = tokio::fs::read(path).await.map_err(|e| {
            ChannelError::Rejected(format!("the file {name:?} cannot be read: {e}"))
        })?;
        files.push(File { name, bytes });
    }
    Ok(files)
}
