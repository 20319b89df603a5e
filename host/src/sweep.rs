//! The sweep (DESIGN §4): on an interval, asks the supervisor to notice exited containers,
//! stale heartbeats and idle sessions, and to wake sessions without a container whose
//! scheduled rows came due. (A recurring task's next run is written when a run finishes, in
//! delivery's ack sync; see `crate::tasks`.)

use crate::supervisor::Supervisor;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs until `shutdown`.
pub async fn run(supervisor: Arc<Supervisor>, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                supervisor.check().await;
                supervisor.wake_due().await;
            }
        }
    }
}
