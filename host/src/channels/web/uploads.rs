//! Files the owner of a web conversation uploads ([`Uploads`]): staged on the host under
//! `data/uploads/<conversation>/<upload id>/<name>` until the message that carries them is
//! routed, when the router copies them into the session's inbox (`in/inbox/<message>/`) and
//! names them in the row's attachments; then the staged copy is removed.
//!
//! The name and the bytes come from the browser and are hostile: the name must be one plain
//! path component ([`Upload::is_valid_name`]), the size is capped at [`MAX_UPLOAD_BYTES`]
//! (the cap of every attachment), and an upload id is only ever looked up inside its own
//! conversation's folder, so nobody can name another person's file, or any other path.

use super::WebChatError;
use crate::edge::Upload;
use std::path::PathBuf;

/// The largest upload: the cap of every attachment.
pub const MAX_UPLOAD_BYTES: u64 = crate::edge::MAX_ATTACHMENT_BYTES;

/// Most files one message may carry.
pub const MAX_UPLOADS_PER_MESSAGE: usize = 10;

pub struct Uploads {
    dir: PathBuf,
}

impl Uploads {
    pub fn new(dir: PathBuf) -> Self {
        Uploads { dir }
    }

    fn folder(&self, conversation_id: &str, upload_id: &str) -> Result<PathBuf, WebChatError> {
        if !protocol::ids::is_safe_folder_name(conversation_id) {
            return Err(WebChatError::Invalid(format!(
                "conversation id {conversation_id:?} is not a plain name"
            )));
        }
        let well_formed = upload_id
            .strip_prefix("up-")
            .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Err(WebChatError::Invalid(format!(
                "{:?} is not an upload id",
                upload_id.chars().take(64).collect::<String>()
            )));
        }
        Ok(self.dir.join(conversation_id).join(upload_id))
    }

    /// Stores one upload; returns its id.
    pub async fn stage(
        &self,
        conversation_id: &str,
        name: &str,
        bytes: bytes::Bytes,
    ) -> Result<String, WebChatError> {
        if !Upload::is_valid_name(name) {
            return Err(WebChatError::Invalid(format!(
                "{:?} is not a plain file name (1-200 characters, no '/', not hidden)",
                name.chars().take(64).collect::<String>()
            )));
        }
        if bytes.len() as u64 > MAX_UPLOAD_BYTES {
            return Err(WebChatError::Invalid(format!(
                "the file is {} bytes, more than the {MAX_UPLOAD_BYTES} allowed",
                bytes.len()
            )));
        }
        let id = format!("up-{}", uuid::Uuid::new_v4().simple());
        let folder = self.folder(conversation_id, &id)?;
        let path = folder.join(name);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&folder)?;
            std::fs::write(&path, &bytes)
        })
        .await
        .map_err(|e| WebChatError::Invalid(format!("storing the upload failed: {e}")))?
        .map_err(|e| WebChatError::Invalid(format!("storing the upload failed: {e}")))?;
        Ok(id)
    }

    /// The staged files of `ids`, in order; an unknown id is an error naming it.
    pub fn resolve(
        &self,
        conversation_id: &str,
        ids: &[String],
    ) -> Result<Vec<Upload>, WebChatError> {
        if ids.len() > MAX_UPLOADS_PER_MESSAGE {
            return Err(WebChatError::Invalid(format!(
                "{} files in one message, more than the {MAX_UPLOADS_PER_MESSAGE} allowed",
                ids.len()
            )));
        }
        ids.iter()
            .map(|id| {
                let folder = self.folder(conversation_id, id)?;
                let unknown =
                    || WebChatError::NotFound(format!("no upload {id} in this conversation"));
                let entry = std::fs::read_dir(&folder)
                    .map_err(|_| unknown())?
                    .flatten()
                    .next()
                    .ok_or_else(unknown)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                Ok(Upload {
                    name,
                    path: entry.path(),
                })
            })
            .collect()
    }

    /// Removes the staged copies (after the router copied them into the inbox).
    pub fn discard(&self, conversation_id: &str, ids: &[String]) {
        for id in ids {
            if let Ok(folder) = self.folder(conversation_id, id) {
                let _ = std::fs::remove_dir_all(folder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_is_staged_resolved_and_discarded_within_its_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads::new(dir.path().to_owned());
        let id = uploads
            .stage("wc-1", "notes.txt", bytes::Bytes::from_static(b"hello"))
            .await
            .unwrap();
        let found = uploads.resolve("wc-1", std::slice::from_ref(&id)).unwrap();
        assert_eq!(found[0].name, "notes.txt");
        assert_eq!(std::fs::read(&found[0].path).unwrap(), b"hello");
        // Another conversation cannot name it.
        assert!(matches!(
            uploads.resolve("wc-2", std::slice::from_ref(&id)),
            Err(WebChatError::NotFound(_))
        ));
        uploads.discard("wc-1", std::slice::from_ref(&id));
        assert!(uploads.resolve("wc-1", &[id]).is_err());
    }

    #[tokio::test]
    async fn hostile_names_and_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads::new(dir.path().to_owned());
        for name in ["", "../x", "a/b", ".hidden", "nul\0l"] {
            let staged = uploads.stage("wc-1", name, bytes::Bytes::new()).await;
            assert!(matches!(staged, Err(WebChatError::Invalid(_))), "{name:?}");
        }
        for id in ["../../etc", "up-xyz", "up-0123456789abcdef0123456789abcdeg"] {
            assert!(
                matches!(
                    uploads.resolve("wc-1", &[id.to_owned()]),
                    Err(WebChatError::Invalid(_))
                ),
                "{id}"
            );
        }
        assert!(
            uploads.resolve("../wc", &[]).is_ok(),
            "no ids, nothing to check"
        );
    }
}
