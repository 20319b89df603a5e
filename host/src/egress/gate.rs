//! The egress decision for one attempt: [`EgressGate::open`] reads the agent group's rules
//! from the central DB (on every attempt, so `crabpot groups update G --allow-egress/--deny-egress`
//! holds for the next connection without a restart), checks the [`Target`] against them,
//! resolves it on the host ([`super::resolve`]) and connects within the connect timeout. A
//! refusal is a [`Refusal`] whose message tells a person which rule to add, and maps to the
//! recorded [`Outcome`].
//!
//! The gate also holds the [`EgressRecorder`] and the [`EgressLimits`] the proxy serves
//! egress with. [`EgressGate::start`] builds one for `crabpot serve` and spawns the DB writer.

use super::address::ResolveError;
use super::recorder::{EgressRecorder, QUEUE_CAPACITY, persist_attempts};
use super::rules::Verdict;
use super::target::Target;
use super::tunnel::TunnelLimits;
use crate::db::DbThread;
use crate::db::central::egress_log::Outcome;
use crate::db::central::groups;
use protocol::AgentGroupId;
use rusqlite::Connection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The bounds egress is served with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EgressLimits {
    /// How long the destination may take to accept a connection (each resolved address).
    pub connect_timeout: Duration,
    /// Idle and total bounds of each `CONNECT` tunnel. A tunnel is not a model request: the
    /// proxy's request timeout does not apply to it.
    pub tunnel: TunnelLimits,
}

impl Default for EgressLimits {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            tunnel: TunnelLimits::default(),
        }
    }
}

/// Why an attempt was refused. None is retryable as is, except `Lookup` and `Connect` (the
/// destination may recover).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "egress to {target} is not allowed for agent group {group}: crabpot groups update {group} --allow-egress {rule}",
        rule = target.rule_text()
    )]
    NotListed { target: Target, group: AgentGroupId },
    #[error(
        "egress to {target} is refused by the deny rule {rule} of agent group {group}: crabpot groups update {group} --allow-egress {allow} lifts it",
        allow = target.rule_text()
    )]
    DeniedRule {
        target: Target,
        group: AgentGroupId,
        rule: String,
    },
    #[error("egress to {target} is not allowed for agent group {group}: {source}")]
    Internal {
        target: Target,
        group: AgentGroupId,
        source: ResolveError,
    },
    #[error("egress to {target} failed: {source}")]
    Lookup {
        target: Target,
        source: ResolveError,
    },
    #[error("egress to {target} failed: no connection within {} s ({reason})", timeout.as_secs())]
    Connect {
        target: Target,
        timeout: Duration,
        reason: String,
    },
    #[error(
        "egress to {target} is refused: the rules of agent group {group} cannot be read ({reason})"
    )]
    RulesUnavailable {
        target: Target,
        group: AgentGroupId,
        reason: String,
    },
}

impl Refusal {
    /// What the egress log records for this refusal.
    pub fn outcome(&self) -> Outcome {
        match self {
            Refusal::NotListed { .. } | Refusal::RulesUnavailable { .. } => Outcome::NotListed,
            Refusal::DeniedRule { .. } => Outcome::DeniedRule,
            Refusal::Internal { .. } => Outcome::InternalAddress,
            Refusal::Lookup { .. } => Outcome::LookupFailed,
            Refusal::Connect { .. } => Outcome::ConnectFailed,
        }
    }

    /// Whether the proxy answers `502 Bad Gateway` (the destination failed) rather than
    /// `403 Forbidden` (the rules refused it).
    pub fn is_destination_failure(&self) -> bool {
        match self {
            Refusal::Lookup { .. } | Refusal::Connect { .. } => true,
            Refusal::NotListed { .. }
            | Refusal::DeniedRule { .. }
            | Refusal::Internal { .. }
            | Refusal::RulesUnavailable { .. } => false,
        }
    }
}

/// An allowed, connected destination.
#[derive(Debug)]
pub struct Opened {
    pub stream: TcpStream,
    /// The rule that allowed it (canonical text).
    pub rule: String,
    pub address: SocketAddr,
}

/// Decides and opens egress connections for every session of a host.
pub struct EgressGate {
    central: Arc<DbThread<Connection>>,
    recorder: EgressRecorder,
    limits: EgressLimits,
}

impl std::fmt::Debug for EgressGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressGate")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl EgressGate {
    /// A gate over `central`'s group rules, recording through `recorder`.
    pub fn new(
        central: Arc<DbThread<Connection>>,
        recorder: EgressRecorder,
        limits: EgressLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            central,
            recorder,
            limits,
        })
    }

    /// The gate `crabpot serve` uses: default limits, attempts written to `central` by a
    /// task on `tasks` until `shutdown`.
    pub fn start(
        central: Arc<DbThread<Connection>>,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (recorder, attempts) = EgressRecorder::channel(QUEUE_CAPACITY);
        tasks.spawn(persist_attempts(Arc::clone(&central), attempts, shutdown));
        Self::new(central, recorder, EgressLimits::default())
    }

    pub fn recorder(&self) -> &EgressRecorder {
        &self.recorder
    }

    pub fn limits(&self) -> &EgressLimits {
        &self.limits
    }

    /// Checks `target` against `group`'s rules, resolves it and connects.
    pub async fn open(&self, group: &AgentGroupId, target: &Target) -> Result<Opened, Refusal> {
        let id = group.clone();
        let rules = match self
            .central
            .call(move |conn| Ok(groups::agent_group(conn, &id)?.overrides().egress))
            .await
        {
            Ok(rules) => rules,
            Err(error) => {
                return Err(Refusal::RulesUnavailable {
                    target: target.clone(),
                    group: group.clone(),
                    reason: error.to_string(),
                });
            }
        };
        let (rule, names_address) = match rules.check(&target.host, target.port) {
            Verdict::Allowed {
                rule,
                names_address,
            } => (rule, names_address),
            Verdict::Denied { rule } => {
                return Err(Refusal::DeniedRule {
                    target: target.clone(),
                    group: group.clone(),
                    rule,
                });
            }
            Verdict::NotListed => {
                return Err(Refusal::NotListed {
                    target: target.clone(),
                    group: group.clone(),
                });
            }
        };
        let addresses = super::resolve(&target.host, target.port, names_address)
            .await
            .map_err(|source| match source {
                ResolveError::Internal { .. } => Refusal::Internal {
                    target: target.clone(),
                    group: group.clone(),
                    source,
                },
                ResolveError::Lookup { .. } => Refusal::Lookup {
                    target: target.clone(),
                    source,
                },
            })?;
        let timeout = self.limits.connect_timeout;
        let mut reason = String::from("no address");
        for address in addresses {
            match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    // Interactive protocols (ssh, TLS handshakes) should not wait on Nagle.
                    let _ = stream.set_nodelay(true);
                    return Ok(Opened {
                        stream,
                        rule,
                        address,
                    });
                }
                Ok(Err(error)) => reason = format!("{address}: {error}"),
                Err(_elapsed) => reason = format!("{address}: timed out"),
            }
        }
        Err(Refusal::Connect {
            target: target.clone(),
            timeout,
            reason,
        })
    }
}
