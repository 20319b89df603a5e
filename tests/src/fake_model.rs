//! A fake model server speaking the real wire formats: OpenAI Chat Completions
//! (`POST /v1/chat/completions`) and Anthropic Messages (`POST /v1/messages`), each as one JSON
//! reply or as an SSE stream, whichever the request asked for.
//!
//! A test scripts the replies with [`FakeModel::push`] ([`Reply::text`], [`Reply::tool_call`],
//! both together, [`Reply::error`] for retry tests); once the queue is empty the default reply
//! answers (an echo of the last user text, prefixed by `"echo: "`, unless the test set another
//! with [`FakeModel::set_default_reply`]). Every request is recorded as a [`RecordedRequest`]
//! (path, headers, JSON body, arrival time) and [`FakeModel::wait_for_requests`] awaits them
//! with a deadline. A reply can be streamed slowly ([`Reply::streamed_slowly`]); every text
//! chunk a streamed reply sends is recorded with its send time as a [`SentChunk`]
//! ([`FakeModel::sent_chunks`]), for timing how soon the client shows the model's text.
//!
//! [`FakeModel::start`] binds `127.0.0.1:0` first, then runs [`serve`] on its own thread with its
//! own runtime, so the fake keeps answering whatever the test's runtime is doing (even a
//! blocking call). Dropping the [`FakeModel`] shuts the server down. The scripted side lives in
//! `reply`, the recorded side in `request`, the HTTP answer in `respond`, and the two wire
//! formats in `openai` and `anthropic`.

mod anthropic;
mod openai;
mod reply;
mod request;
mod respond;

pub use reply::{Reply, ReplyContent, StreamPacing, ToolCall, Usage};
pub use request::{Api, RecordedImage, RecordedRequest, echo_reply};

#[cfg(test)]
use respond::split_every;
use respond::{ResolvedMessage, StreamEvent, split_pieces};

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

/// The path of OpenAI Chat Completions.
pub const OPENAI_CHAT_PATH: &str = "/v1/chat/completions";
/// The path of Anthropic Messages.
pub const ANTHROPIC_MESSAGES_PATH: &str = "/v1/messages";

type DefaultReplyFn = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

/// One text chunk of a streamed reply, as the fake sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentChunk {
    /// Which request (its index in [`FakeModel::requests`]) the chunk answers.
    pub request_index: usize,
    pub text: String,
    /// When the chunk was handed to the connection.
    pub sent_at: Instant,
    pub sent_at_system: SystemTime,
}

struct State {
    queue: VecDeque<Reply>,
    default_reply: DefaultReplyFn,
    requests: Vec<RecordedRequest>,
    sent_chunks: Vec<SentChunk>,
    /// Counter for the ids the fake makes up (messages, tool calls).
    next_id: u64,
}

struct Shared {
    state: Mutex<State>,
    request_arrived: Notify,
}

/// The script and the record of a fake model server; cheap to clone, shared with [`serve`].
#[derive(Clone)]
pub struct FakeModelHandle {
    shared: Arc<Shared>,
}

impl Default for FakeModelHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeModelHandle {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    default_reply: Arc::new(echo_reply),
                    requests: Vec::new(),
                    sent_chunks: Vec::new(),
                    next_id: 1,
                }),
                request_arrived: Notify::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to a test, so a poisoned lock is still usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a reply; queued replies answer model requests in order.
    pub fn push(&self, reply: Reply) {
        self.state().queue.push_back(reply);
    }

    /// How many queued replies have not been used yet.
    pub fn pending_replies(&self) -> usize {
        self.state().queue.len()
    }

    /// Answers with this reply whenever the queue is empty.
    pub fn set_default_reply(&self, reply: Reply) {
        self.state().default_reply = Arc::new(move |_| reply.clone());
    }

    /// Answers with what `make_reply` returns whenever the queue is empty.
    pub fn set_default_reply_fn(
        &self,
        make_reply: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    ) {
        self.state().default_reply = Arc::new(make_reply);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Every text chunk streamed so far, in the order sent.
    pub fn sent_chunks(&self) -> Vec<SentChunk> {
        self.state().sent_chunks.clone()
    }

    fn record_chunk(&self, chunk: SentChunk) {
        self.state().sent_chunks.push(chunk);
    }

    /// Waits until at least `n` requests have arrived and returns all of them; fails after
    /// `timeout` with what did arrive.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<RecordedRequest>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before looking, so an arrival in between is not missed.
            let notified = self.shared.request_arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.state();
                if state.requests.len() >= n {
                    return Ok(state.requests.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let requests = self.requests();
                let summary: Vec<String> = requests
                    .iter()
                    .map(|request| format!("{} {}", request.method, request.path))
                    .collect();
                bail!(
                    "the fake model received {} request(s) within {timeout:?}, wanted {n}: {summary:?}",
                    requests.len()
                );
            }
        }
    }

    /// Picks the request's reply (the next queued one, or the default) if it `consumes_reply`,
    /// records the request and wakes the waiters. Returns the reply, a fresh id number and
    /// the request's index in [`FakeModelHandle::requests`].
    fn record(
        &self,
        request: RecordedRequest,
        consumes_reply: bool,
    ) -> (Option<Reply>, u64, usize) {
        let reply = if consumes_reply {
            let (queued, default_reply) = {
                let mut state = self.state();
                (state.queue.pop_front(), state.default_reply.clone())
            };
            // The default reply runs without the lock: it may look at the handle itself.
            Some(queued.unwrap_or_else(|| default_reply(&request)))
        } else {
            None
        };
        let (id, index) = {
            let mut state = self.state();
            let id = state.next_id;
            state.next_id += 1;
            state.requests.push(request);
            (id, state.requests.len() - 1)
        };
        self.shared.request_arrived.notify_waiters();
        (reply, id, index)
    }

    /// A fresh number for an id the fake makes up.
    fn next_id(&self) -> u64 {
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        id
    }
}

/// A fake model server running on its own thread; dropping it stops the server.
pub struct FakeModel {
    handle: FakeModelHandle,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeModel {
    /// Binds `127.0.0.1:0` and starts serving.
    pub fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("binding the fake model server to 127.0.0.1:0")?;
        Self::start_on(listener)
    }

    /// Starts serving on an already-bound listener.
    pub fn start_on(listener: std::net::TcpListener) -> anyhow::Result<Self> {
        let addr = listener.local_addr().context("reading the bound address")?;
        listener
            .set_nonblocking(true)
            .context("making the listener non-blocking")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the fake model server's runtime")?;
        let handle = FakeModelHandle::new();
        let (shutdown_sender, shutdown_receiver) = oneshot::channel::<()>();
        let server_handle = handle.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-model-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            eprintln!("fake model: cannot use the listener: {error}");
                            return;
                        }
                    };
                    serve(listener, server_handle, async {
                        // A dropped sender is a shutdown too.
                        let _ = shutdown_receiver.await;
                    })
                    .await;
                });
            })
            .context("spawning the fake model server thread")?;
        Ok(Self {
            handle,
            addr,
            shutdown: Some(shutdown_sender),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL an OpenAI client is configured with: `http://127.0.0.1:PORT/v1`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The base URL an Anthropic client is configured with: `http://127.0.0.1:PORT`.
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A handle on the script and record, for code that outlives a borrow of the server.
    pub fn handle(&self) -> FakeModelHandle {
        self.handle.clone()
    }

    /// See [`FakeModelHandle::push`].
    pub fn push(&self, reply: Reply) {
        self.handle.push(reply);
    }

    /// See [`FakeModelHandle::pending_replies`].
    pub fn pending_replies(&self) -> usize {
        self.handle.pending_replies()
    }

    /// See [`FakeModelHandle::set_default_reply`].
    pub fn set_default_reply(&self, reply: Reply) {
        self.handle.set_default_reply(reply);
    }

    /// See [`FakeModelHandle::set_default_reply_fn`].
    pub fn set_default_reply_fn(
        &self,
        make_reply: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    ) {
        self.handle.set_default_reply_fn(make_reply);
    }

    /// See [`FakeModelHandle::requests`].
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.handle.requests()
    }

    /// See [`FakeModelHandle::sent_chunks`].
    pub fn sent_chunks(&self) -> Vec<SentChunk> {
        self.handle.sent_chunks()
    }

    /// See [`FakeModelHandle::wait_for_requests`].
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<RecordedRequest>> {
        self.handle.wait_for_requests(n, timeout).await
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves the fake model on `listener` until `shutdown` completes. Connections still open at
/// shutdown are dropped with the runtime that runs them.
pub async fn serve(
    listener: TcpListener,
    handle: FakeModelHandle,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        eprintln!("fake model: accept failed: {error}");
                        continue;
                    }
                };
                let handle = handle.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let handle = handle.clone();
                        async move { Ok::<_, Infallible>(respond::respond(&handle, request).await) }
                    });
                    if let Err(error) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        // Clients that hang up mid-stream are normal in retry tests.
                        eprintln!("fake model: connection ended with an error: {error}");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
