//! Fuzz target `proxy_request`: arbitrary bytes as one connection to a session's model proxy,
//! served by the host's real `Proxy::serve_io` (the connection code of every session socket:
//! HTTP/1 parsing, header and request timeouts, routing, body limits) with no upstream
//! configured, so every model route is answered 503 and nothing leaves the machine.
//!
//! Each input is one in-memory connection (`tokio::io::duplex`): the client writes the bytes,
//! half-closes and reads the answer, on one current-thread runtime built once. The proxy must
//! end the connection within the per-input deadline, and must never answer 2xx: without an
//! upstream nothing can succeed.

#![no_main]

use host::proxy::{Proxy, SessionLabel, UsageRecord};
use libfuzzer_sys::fuzz_target;
use protocol::{AgentGroupId, SessionId};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long one input may take, answer included: above the proxy's own 10 s header timeout,
/// so that hitting it means the connection never ended.
const PER_INPUT: Duration = Duration::from_secs(15);

/// The in-memory connection's buffer, above any input libFuzzer makes here.
const DUPLEX_BYTES: usize = 256 * 1024;

/// The most of an answer read back.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

struct Harness {
    runtime: Runtime,
    proxy: Arc<Proxy>,
    label: SessionLabel,
    /// Kept so the proxy's usage channel stays open.
    _usage: UnboundedReceiver<UsageRecord>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| match start() {
        Ok(harness) => harness,
        Err(e) => panic!("cannot start the proxy under test: {e}"),
    })
}

fn start() -> Result<Harness, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building the runtime: {e}"))?;
    let (usage_tx, usage) = tokio::sync::mpsc::unbounded_channel();
    let proxy = runtime
        .block_on(async { Proxy::new(None, usage_tx) })
        .map_err(|e| format!("building the proxy: {e}"))?;
    let label = SessionLabel {
        session_id: SessionId::new("fuzz-session"),
        agent_group_id: AgentGroupId::new("fuzz-group"),
    };
    Ok(Harness {
        runtime,
        proxy,
        label,
        _usage: usage,
    })
}

async fn client(mut stream: DuplexStream, data: &[u8]) -> Vec<u8> {
    // The proxy may answer and close before it has read everything: a failed write is fine.
    if stream.write_all(data).await.is_ok() {
        let _ = stream.shutdown().await;
    }
    let mut answer = Vec::new();
    let _ = (&mut stream)
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .await;
    answer
}

fuzz_target!(|data: &[u8]| {
    let harness = harness();
    let (client_end, server_end) = tokio::io::duplex(DUPLEX_BYTES);
    let serve = Arc::clone(&harness.proxy).serve_io(server_end, harness.label.clone());
    let answer = harness.runtime.block_on(async {
        tokio::time::timeout(PER_INPUT, async {
            let ((), answer) = tokio::join!(serve, client(client_end, data));
            answer
        })
        .await
    });
    let Ok(answer) = answer else {
        panic!("the proxy did not end the connection within {PER_INPUT:?}");
    };
    // Every answer on this connection: a status line starts the answer or follows a blank line.
    let text = String::from_utf8_lossy(&answer);
    for (index, _) in text.match_indices("HTTP/1.1 2") {
        let at_start = index == 0 || text[..index].ends_with("\r\n\r\n");
        assert!(
            !at_start,
            "the proxy answered 2xx without an upstream: {text:?}"
        );
    }
});
