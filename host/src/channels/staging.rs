//! Files a person sent on a platform, downloaded by its adapter and staged on the host under
//! `data/uploads/<channel type>/<file id>/<name>` until the router has copied them into the
//! session's inbox ([`crate::edge::InboundEvent::uploads`]); then the adapter discards them.
//!
//! A platform's file name is hostile: [`plain_name`] makes it one plain path component, and
//! the size is capped at the cap of every attachment.

use crate::edge::{ChannelError, Upload};
use bytes::Bytes;
use std::path::{Path, PathBuf};

/// The largest file taken in from a platform: the cap of every attachment.
pub const MAX_STAGED_BYTES: u64 = crate::edge::MAX_ATTACHMENT_BYTES;

pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Staging for `channel_type` under `uploads_dir` (`data/uploads`).
    pub fn new(uploads_dir: &Path, channel_type: &str) -> Self {
        Staging {
            dir: uploads_dir.join(channel_type),
        }
    }

    /// Stores one file under a plain version of `name`.
    pub async fn stage(&self, name: &str, bytes: Bytes) -> Result<Upload, ChannelError> {
        if bytes.len() as u64 > MAX_STAGED_BYTES {
            return Err(ChannelError::Rejected(format!(
                "the file is {} bytes, more than the {MAX_STAGED_BYTES} allowed",
                bytes.len()
            )));
        }
        let name = plain_name(name);
        let folder = self
            .dir
            .join(format!("f-{}", uuid::Uuid::new_v4().simple()));
        let path = folder.join(&name);
        let write_path = path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&folder)?;
            std::fs::write(&write_path, &bytes)
        })
        .await
        .map_err(|e| ChannelError::Unavailable(format!("staging the file failed: {e}")))?
        .map_err(|e| ChannelError::Unavailable(format!("staging the file failed: {e}")))?;
        Ok(Upload { name, path })
    }

    /// Removes staged files (after the router copied them, or when the message failed).
    pub async fn discard(&self, uploads: &[Upload]) {
        let folders: Vec<PathBuf> = uploads
            .iter()
            .filter_map(|upload| upload.path.parent().map(Path::to_path_buf))
            .filter(|folder| folder.starts_with(&self.dir))
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for folder in folders {
                let _ = std::fs::remove_dir_all(folder);
            }
        })
        .await;
    }
}

/// `name` as one plain path component ([`Upload::is_valid_name`]): separators and control
/// characters become `_`, leading dots go, at most 200 characters; `file` when nothing is
/// left.
pub fn plain_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned: String = cleaned
        .trim_start_matches('.')
        .trim()
        .chars()
        .take(200)
        .collect();
    if Upload::is_valid_name(&cleaned) {
        cleaned
    } else {
        "file".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_plain_component() {
        for (given, wanted) in [
            ("photo.jpg", "photo.jpg"),
            ("../../etc/passwd", "_.._etc_passwd"),
            (".hidden", "hidden"),
            ("", "file"),
            ("..", "file"),
            ("a\nb", "a_b"),
        ] {
            let name = plain_name(given);
            assert_eq!(name, wanted, "{given:?}");
            assert!(Upload::is_valid_name(&name), "{name:?}");
        }
        assert_eq!(plain_name(&"x".repeat(500)).chars().count(), 200);
    }

    #[tokio::test]
    async fn a_staged_file_is_kept_until_discarded() -> Result<(), ChannelError> {
        let dir = tempfile::tempdir().map_err(|e| ChannelError::Unavailable(e.to_string()))?;
        let staging = Staging::new(dir.path(), "telegram");
        let upload = staging.stage("../x.txt", Bytes::from_static(b"hi")).await?;
        assert_eq!(upload.name, "_x.txt");
        assert!(upload.path.starts_with(dir.path().join("telegram")));
        assert_eq!(
            std::fs::read(&upload.path).ok().as_deref(),
            Some(&b"hi"[..])
        );
        staging.discard(std::slice::from_ref(&upload)).await;
        assert!(!upload.path.exists());
        Ok(())
    }
}
