//! What every handler of the web server shares.

use crate::admin::Admin;
use crate::channels::web::WebChannel;
use crate::config::WebConfig;
use crate::web::auth::Auth;
use std::sync::Arc;

#[derive(Clone)]
pub struct WebState {
    /// The admin API's handlers: the dashboard and `/api/v1` call these, never a copy.
    pub admin: Arc<Admin>,
    pub auth: Arc<Auth>,
    /// The `web` channel: web chat and OpenAI-compatible conversations.
    pub web: Arc<WebChannel>,
    pub config: WebConfig,
    /// The base URL people open (for links).
    pub base_url: String,
}
