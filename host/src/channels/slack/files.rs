//! [`SlackFiles`]: files both ways. Files people send (`files[].url_private_download` of a
//! message) are downloaded with the bot token — only from the API's own host or
//! `files.slack.com`, so the token never goes anywhere else — capped, and staged for the
//! router. Files the agent sends go through Slack's external upload flow:
//! `files.getUploadURLExternal` (filename, length) gives an `upload_url` and `file_id`, the
//! bytes are POSTed there (a pre-signed URL: no token), and `files.completeUploadExternal`
//! shares them in the chat (thread and comment included).

use super::api::{Args, SlackApi, str_field};
use super::events::SlackFile;
use crate::channels::http;
use crate::channels::staging::{MAX_STAGED_BYTES, Staging};
use crate::edge::{ChannelError, Upload};
use serde_json::{Value, json};
use std::path::PathBuf;

/// The largest file the agent may send: the cap of every attachment.
pub const MAX_SEND_BYTES: u64 = MAX_STAGED_BYTES;

/// The host Slack serves private files from.
const FILES_HOST: &str = "files.slack.com";

/// Downloads of files people send and uploads of the agent's (see the module docs).
pub struct SlackFiles {
    api: SlackApi,
    staging: Staging,
}

/// Where to share uploaded files.
pub struct Share<'a> {
    pub channel: &'a str,
    pub thread_ts: Option<&'a str>,
    /// The message text shown with the files (empty: none).
    pub comment: &'a str,
}

impl SlackFiles {
    /// Transfers with `api`'s token, staging downloads in `staging`.
    pub fn new(api: SlackApi, staging: Staging) -> Self {
        Self { api, staging }
    }

    /// Whether the bot token may be sent to `url`: the API's own host and port, or
    /// `https://files.slack.com`.
    pub fn may_send_token(&self, url: &str) -> bool {
        let (Ok(url), Ok(api)) = (
            reqwest::Url::parse(url),
            reqwest::Url::parse(self.api.base_url()),
        ) else {
            return false;
        };
        let same_as_api = url.scheme() == api.scheme()
            && url.host_str() == api.host_str()
            && url.port_or_known_default() == api.port_or_known_default();
        let slack_files = url.scheme() == "https" && url.host_str() == Some(FILES_HOST);
        same_as_api || slack_files
    }

    /// Downloads and stages one file a person sent.
    pub async fn download(&self, file: &SlackFile) -> Result<Upload, ChannelError> {
        if !self.may_send_token(&file.url) {
            return Err(ChannelError::Rejected(format!(
                "the file {:?} is not on Slack's file host; not downloaded",
                file.name
            )));
        }
        if file.size.is_some_and(|size| size > MAX_STAGED_BYTES) {
            return Err(ChannelError::Rejected(format!(
                "the file {:?} is larger than {MAX_STAGED_BYTES} bytes",
                file.name
            )));
        }
        let response = self
            .api
            .client()
            .get(&file.url)
            .header(reqwest::header::AUTHORIZATION, self.api.bearer())
            .timeout(http::CALL_TIMEOUT * 4)
            .send()
            .await
            .map_err(|e| http::unavailable("downloading a Slack file", e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(if status.is_server_error() {
                ChannelError::Unavailable(format!("downloading a Slack file: HTTP {status}"))
            } else {
                ChannelError::Rejected(format!("downloading a Slack file: HTTP {status}"))
            });
        }
        let max = usize::try_from(MAX_STAGED_BYTES).unwrap_or(usize::MAX);
        let bytes = http::read_capped(response, max, "the file").await?;
        self.staging.stage(&file.name, bytes).await
    }

    /// Removes staged files once the router has them (or the message failed).
    pub async fn discard(&self, uploads: &[Upload]) {
        self.staging.discard(uploads).await;
    }

    /// Uploads `paths` and shares them; returns the first file's id.
    pub async fn send(&self, paths: &[PathBuf], share: Share<'_>) -> Result<String, ChannelError> {
        let mut files = Vec::new();
        for path in paths {
            let (name, bytes) = http::read_outgoing_file(path, MAX_SEND_BYTES).await?;
            let reserved = self
                .api
                .call(
                    "files.getUploadURLExternal",
                    Args::Form(&[
                        ("filename", name.clone()),
                        ("length", bytes.len().to_string()),
                    ]),
                )
                .await?;
            let (Some(upload_url), Some(file_id)) = (
                str_field(&reserved, "upload_url"),
                str_field(&reserved, "file_id"),
            ) else {
                return Err(ChannelError::Unavailable(
                    "files.getUploadURLExternal gave no upload_url or file_id".into(),
                ));
            };
            let response = self
                .api
                .client()
                .post(upload_url)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .timeout(http::CALL_TIMEOUT * 4)
                .body(bytes)
                .send()
                .await
                .map_err(|e| http::unavailable("uploading a file to Slack", e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(ChannelError::Unavailable(format!(
                    "uploading a file to Slack: HTTP {status}"
                )));
            }
            files.push(json!({"id": file_id, "title": name}));
        }
        let Some(first) = files
            .first()
            .and_then(|file| str_field(file, "id"))
            .map(str::to_owned)
        else {
            return Err(ChannelError::Rejected("no file to send".into()));
        };
        let mut body = json!({"files": files, "channel_id": share.channel});
        if let Some(thread_ts) = share.thread_ts {
            body["thread_ts"] = Value::from(thread_ts);
        }
        if !share.comment.trim().is_empty() {
            body["initial_comment"] = Value::from(share.comment);
        }
        self.api
            .call("files.completeUploadExternal", Args::Json(&body))
            .await
            .map_err(ChannelError::from)?;
        Ok(first)
    }
}
