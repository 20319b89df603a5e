//! The web tools' endpoint on the session socket, `POST /crabpot/v1/web/fetch` and
//! `/crabpot/v1/web/search` (`protocol::web`): [`WebTools`] reads the call, looks the
//! session's agent group's egress rules up in the central DB (per call, so a `groups update`
//! applies to the next fetch), runs [`super::fetch`] or [`super::search`], and answers
//! `200 {"text": ...}` or a JSON error whose message is for the model.
//!
//! The proxy holds a [`WebSlot`]; until the host puts its `WebTools` there (at start, with
//! the central DB and the search backend), these paths answer `503`.
//!
//! Statuses: `400` bad body, `403` refused by the egress rules, `404` unknown web path,
//! `405` not POST, `502` the page or backend failed, `503` not configured, `504` too slow.

use super::fetch::{self, FetchError, FetchLimits, HopRecord};
use super::search::{self, SearchError};
use super::{AttemptKind, EgressAttempt, EgressRecorder, Outcome};
use crate::config::SearchConfig;
use crate::db::DbThread;
use crate::db::central::groups;
use crate::proxy::SessionLabel;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use protocol::web::{FETCH_PATH, FetchRequest, MAX_WEB_BODY_BYTES, SEARCH_PATH, SearchRequest};
use rusqlite::Connection;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

/// Why the web tools could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("building the search client failed: {0}")]
    HttpClient(reqwest::Error),
}

/// The host's side of `web_fetch` and `web_search`.
pub struct WebTools {
    central: Arc<DbThread<Connection>>,
    search: Option<SearchConfig>,
    search_client: reqwest::Client,
    limits: FetchLimits,
    /// The egress log; `None` (tests without egress): attempts are only traced.
    recorder: Option<EgressRecorder>,
}

impl std::fmt::Debug for WebTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebTools")
            .field("search", &self.search)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Where the proxy finds the web tools (empty until the host sets them).
#[derive(Debug, Default)]
pub struct WebSlot(RwLock<Option<Arc<WebTools>>>);

impl WebSlot {
    pub fn set(&self, tools: Arc<WebTools>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(tools);
    }

    /// Answers one web tool request of `session`.
    pub async fn handle(
        &self,
        session: &SessionLabel,
        request: Request<Incoming>,
    ) -> Response<String> {
        let tools = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match tools {
            Some(tools) => tools.handle(session, request).await,
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "web_unavailable",
                "the web tools are not available on this host",
            ),
        }
    }
}

impl WebTools {
    /// Web tools reading group rules from `central`, searching with `search` (`None`:
    /// web_search answers that it is not configured) and recording each attempt with
    /// `recorder`.
    pub fn new(
        central: Arc<DbThread<Connection>>,
        search: Option<SearchConfig>,
        recorder: Option<EgressRecorder>,
    ) -> Result<Arc<Self>, WebError> {
        let search_client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            // A redirect would carry the key elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("crabpot-web-search/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebError::HttpClient)?;
        Ok(Arc::new(Self {
            central,
            search,
            search_client,
            limits: FetchLimits::default(),
            recorder,
        }))
    }

    /// The same, with other fetch limits (tests).
    pub fn with_limits(mut self: Arc<Self>, limits: FetchLimits) -> Arc<Self> {
        if let Some(tools) = Arc::get_mut(&mut self) {
            tools.limits = limits;
        }
        self
    }

    async fn handle(&self, session: &SessionLabel, request: Request<Incoming>) -> Response<String> {
        if request.method() != http::Method::POST {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the web tool paths take POST",
            );
        }
        let path = request.uri().path().to_owned();
        let body = match read_body(request.into_body()).await {
            Ok(body) => body,
            Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_body", &message),
        };
        match path.as_str() {
            FETCH_PATH => match serde_json::from_slice::<FetchRequest>(&body) {
                Ok(call) => self.fetch(session, call).await,
                Err(e) => error(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    &format!("not a fetch request: {e}"),
                ),
            },
            SEARCH_PATH => match serde_json::from_slice::<SearchRequest>(&body) {
                Ok(call) => self.search(session, call).await,
                Err(e) => error(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    &format!("not a search request: {e}"),
                ),
            },
            _ => error(
                StatusCode::NOT_FOUND,
                "unknown_web_path",
                "the web tool paths are /crabpot/v1/web/fetch and /crabpot/v1/web/search",
            ),
        }
    }

    async fn fetch(&self, session: &SessionLabel, call: FetchRequest) -> Response<String> {
        let group = session.agent_group_id.clone();
        let rules = self
            .central
            .call(move |conn| groups::agent_group(conn, &group))
            .await
            .map(|group| group.overrides().egress);
        let rules = match rules {
            Ok(rules) => rules,
            Err(e) => {
                tracing::warn!(error = %e, "web_fetch: reading the group's egress rules failed");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "web_fetch",
                    "the host could not read this agent group's egress rules; try again",
                );
            }
        };
        let max_chars = protocol::web::fetch_chars(call.max_chars);
        let mut hops = Vec::new();
        let result = fetch::fetch(
            &rules,
            session.agent_group_id.as_str(),
            &call.url,
            max_chars,
            &self.limits,
            &mut hops,
        )
        .await;
        self.record_hops(session, &hops);
        match result {
            Ok(fetched) => answer(fetched.to_text()),
            Err(e) => {
                let status = match &e {
                    FetchError::BadUrl { .. } => StatusCode::BAD_REQUEST,
                    FetchError::NotListed { .. }
                    | FetchError::Denied { .. }
                    | FetchError::Resolve(super::ResolveError::Internal { .. }) => {
                        StatusCode::FORBIDDEN
                    }
                    FetchError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                    FetchError::Resolve(super::ResolveError::Lookup { .. })
                    | FetchError::Request { .. }
                    | FetchError::TooManyRedirects { .. }
                    | FetchError::BadRedirect { .. }
                    | FetchError::Status { .. }
                    | FetchError::Page(_) => StatusCode::BAD_GATEWAY,
                };
                tracing::info!(status = status.as_u16(), "web_fetch refused or failed");
                tracing::debug!(error = %e, "web_fetch error");
                error(status, "web_fetch", &e.to_string())
            }
        }
    }

    async fn search(&self, session: &SessionLabel, call: SearchRequest) -> Response<String> {
        let Some(config) = &self.search else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "web_search",
                &SearchError::NotConfigured.to_string(),
            );
        };
        let began = Instant::now();
        let at_ms = protocol::time::now_ms();
        let limit = protocol::web::search_results(call.limit);
        let result = search::search(&self.search_client, config, &call.query, limit).await;
        self.record_search(session, config, &result, began, at_ms);
        match result {
            Ok(searched) => answer(searched.text),
            Err(e) => {
                let status = match &e {
                    SearchError::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
                    SearchError::EmptyQuery | SearchError::QueryTooLong(_) => {
                        StatusCode::BAD_REQUEST
                    }
                    SearchError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                    SearchError::Unreachable(_)
                    | SearchError::Status { .. }
                    | SearchError::BadAnswer(_) => StatusCode::BAD_GATEWAY,
                };
                error(status, "web_search", &e.to_string())
            }
        }
    }
}

impl WebTools {
    /// Each hop of a fetch goes to the egress log as kind `fetch`.
    fn record_hops(&self, session: &SessionLabel, hops: &[HopRecord]) {
        for hop in hops {
            tracing::info!(
                host = %hop.host,
                port = hop.port,
                outcome = hop.outcome.as_str(),
                bytes = hop.bytes_down,
                "web_fetch"
            );
            let Some(recorder) = &self.recorder else {
                continue;
            };
            let mut attempt = EgressAttempt::new(
                session.session_id.clone(),
                session.agent_group_id.clone(),
                &hop.host,
                hop.port,
                AttemptKind::Fetch,
            );
            attempt.outcome = hop.outcome;
            attempt.detail = hop.detail.clone();
            attempt.bytes_down = hop.bytes_down;
            attempt.duration_ms = u64::try_from(hop.duration.as_millis()).unwrap_or(u64::MAX);
            attempt.at_ms = hop.at_ms;
            recorder.record(attempt);
        }
    }

    /// A search goes to the egress log as kind `search`, under the backend's host. It is
    /// never refused by rules (the backend is the host's own), so a failure is recorded as
    /// `connect_failed` with its reason.
    fn record_search(
        &self,
        session: &SessionLabel,
        config: &SearchConfig,
        result: &Result<search::Searched, SearchError>,
        began: Instant,
        at_ms: i64,
    ) {
        tracing::info!(ok = result.is_ok(), "web_search");
        let Some(recorder) = &self.recorder else {
            return;
        };
        let (host, port) = backend_host_port(&config.url);
        let mut attempt = EgressAttempt::new(
            session.session_id.clone(),
            session.agent_group_id.clone(),
            &host,
            port,
            AttemptKind::Search,
        );
        match result {
            Ok(searched) => {
                attempt.outcome = Outcome::Allowed;
                attempt.detail = format!("search backend; {} results", searched.results);
                attempt.bytes_down = searched.bytes_down;
            }
            Err(error) => {
                attempt.outcome = Outcome::ConnectFailed;
                attempt.detail = error.to_string();
            }
        }
        attempt.duration_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        attempt.at_ms = at_ms;
        recorder.record(attempt);
    }
}

/// The host and port of the backend URL, for the log.
fn backend_host_port(url: &str) -> (String, u16) {
    match reqwest::Url::parse(url) {
        Ok(url) => (
            url.host_str().unwrap_or_default().to_owned(),
            url.port_or_known_default().unwrap_or(0),
        ),
        Err(_) => (String::new(), 0),
    }
}

async fn read_body(body: Incoming) -> Result<Vec<u8>, String> {
    match Limited::new(body, MAX_WEB_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(format!(
            "the body is larger than {MAX_WEB_BODY_BYTES} bytes"
        )),
        Err(e) => Err(format!("reading the body failed: {e}")),
    }
}

fn answer(text: String) -> Response<String> {
    let body = serde_json::to_string(&protocol::web::WebAnswer { text })
        .unwrap_or_else(|_| r#"{"text":""}"#.to_owned());
    json(StatusCode::OK, body)
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<String> {
    let body = serde_json::json!({ "error": { "type": kind, "message": message } }).to_string();
    json(status, body)
}

fn json(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
