//! [`RecordingRuntime`]: an in-memory [`ContainerRuntime`] for tests, in this crate and
//! in the `tests` crate (so it is not `cfg(test)`).
//!
//! It records every call in order as a [`RuntimeCall`], keeps a container table with the
//! same semantics as Docker where the host relies on them (validation and verification
//! on create, name conflicts, names accepted as ids, idempotent stop/remove, label
//! listing in any state), and can be told to fail the next call of a [`CallKind`] with a
//! chosen [`RuntimeError`], or panic (`panic_next`, for the supervisor's panic handling).
//! Tests can also make a container exit (`exit`) or plant a
//! container that already exists when the host starts (`insert_existing`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::policy::{expected_policy, validate_spec, verify};
use super::{
    BoxFuture, ContainerId, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerState,
    ContainerSummary, RuntimeError, RuntimeVersion,
};

/// One recorded call with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeCall {
    Version,
    Create { spec: ContainerSpec },
    Start { id: ContainerId },
    Stop { id: ContainerId, grace: Duration },
    Remove { id: ContainerId },
    Inspect { id: ContainerId },
    ListByLabel { key: String, value: String },
}

/// The kind of a call, to inject failures and to compare call sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    Version,
    Create,
    Start,
    Stop,
    Remove,
    Inspect,
    ListByLabel,
}

impl RuntimeCall {
    pub fn kind(&self) -> CallKind {
        match self {
            RuntimeCall::Version => CallKind::Version,
            RuntimeCall::Create { .. } => CallKind::Create,
            RuntimeCall::Start { .. } => CallKind::Start,
            RuntimeCall::Stop { .. } => CallKind::Stop,
            RuntimeCall::Remove { .. } => CallKind::Remove,
            RuntimeCall::Inspect { .. } => CallKind::Inspect,
            RuntimeCall::ListByLabel { .. } => CallKind::ListByLabel,
        }
    }
}

/// An in-memory container runtime that records what it is asked to do.
#[derive(Debug, Default)]
pub struct RecordingRuntime {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    calls: Vec<RuntimeCall>,
    /// Keyed by container id.
    containers: BTreeMap<String, ContainerInfo>,
    failures: HashMap<CallKind, VecDeque<RuntimeError>>,
    /// Calls of these kinds panic, once per entry.
    panics: Vec<CallKind>,
    n_created: u64,
}

impl FakeState {
    /// Finds a container by id or by name, as Docker does.
    fn find_id(&self, id_or_name: &ContainerId) -> Option<String> {
        let wanted = id_or_name.as_str();
        if self.containers.contains_key(wanted) {
            return Some(wanted.to_owned());
        }
        self.containers
            .values()
            .find(|info| info.name == wanted)
            .map(|info| info.id.to_string())
    }

    fn insert(&mut self, spec: &ContainerSpec) -> ContainerId {
        self.n_created += 1;
        let id = ContainerId::new(format!("fake{:060x}", self.n_created));
        let info = ContainerInfo {
            id: id.clone(),
            name: spec.name.clone(),
            image: spec.image.clone(),
            state: ContainerState::Created,
            running: false,
            exit_code: None,
            labels: spec.labels.clone(),
            policy: expected_policy(spec),
        };
        self.containers.insert(id.to_string(), info);
        id
    }
}

impl RecordingRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// A panic in another test thread must not hide what was recorded.
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `call` and returns the injected failure for its kind, if any.
    fn record(&self, call: RuntimeCall) -> (MutexGuard<'_, FakeState>, Option<RuntimeError>) {
        let mut state = self.lock();
        let kind = call.kind();
        state.calls.push(call);
        if let Some(at) = state.panics.iter().position(|k| *k == kind) {
            state.panics.remove(at);
            drop(state);
            panic!("RecordingRuntime: injected panic in {kind:?}");
        }
        let failure = state.failures.get_mut(&kind).and_then(VecDeque::pop_front);
        (state, failure)
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<RuntimeCall> {
        self.lock().calls.clone()
    }

    /// The kinds of every call so far, in order.
    pub fn call_kinds(&self) -> Vec<CallKind> {
        self.lock().calls.iter().map(RuntimeCall::kind).collect()
    }

    /// Forgets the recorded calls (not the containers).
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Makes the next call of `kind` fail with `error`. Queued failures apply in order.
    pub fn fail_next(&self, kind: CallKind, error: RuntimeError) {
        self.lock()
            .failures
            .entry(kind)
            .or_default()
            .push_back(error);
    }

    /// Makes the next call of `kind` panic (as a bug in an engine client would).
    pub fn panic_next(&self, kind: CallKind) {
        self.lock().panics.push(kind);
    }

    /// A snapshot of every container the fake holds.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        self.lock().containers.values().cloned().collect()
    }

    /// Adds a container without recording a call, as if it had been left running by a
    /// previous host process. Returns its id.
    pub fn insert_existing(&self, spec: &ContainerSpec, running: bool) -> ContainerId {
        let mut state = self.lock();
        let id = state.insert(spec);
        if let Some(info) = state.containers.get_mut(id.as_str()) {
            info.running = running;
            info.state = if running {
                ContainerState::Running
            } else {
                ContainerState::Created
            };
        }
        id
    }

    /// Makes a container exit with `exit_code`, as if its process had ended.
    /// Returns false if there is no such container.
    pub fn exit(&self, id: &ContainerId, exit_code: i64) -> bool {
        let mut state = self.lock();
        let Some(key) = state.find_id(id) else {
            return false;
        };
        if let Some(info) = state.containers.get_mut(&key) {
            info.running = false;
            info.state = ContainerState::Exited;
            info.exit_code = Some(exit_code);
        }
        true
    }
}

impl ContainerRuntime for RecordingRuntime {
    fn version(&self) -> BoxFuture<'_, Result<RuntimeVersion, RuntimeError>> {
        let (_state, failure) = self.record(RuntimeCall::Version);
        let result = match failure {
            Some(error) => Err(error),
            None => Ok(RuntimeVersion {
                engine_version: "fake".to_owned(),
                engine_api_version: "1.41".to_owned(),
                negotiated_api_version: "1.41".to_owned(),
            }),
        };
        Box::pin(async move { result })
    }

    fn create<'a>(
        &'a self,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<ContainerId, RuntimeError>> {
        let (mut state, failure) = self.record(RuntimeCall::Create { spec: spec.clone() });
        let result = (|| {
            if let Some(error) = failure {
                return Err(error);
            }
            validate_spec(spec)?;
            if state.containers.values().any(|info| info.name == spec.name) {
                return Err(RuntimeError::NameConflict {
                    name: spec.name.clone(),
                });
            }
            let id = state.insert(spec);
            // The same check the Docker implementation runs; here it guards the fake.
            let checked = match state.containers.get(id.as_str()) {
                Some(info) => verify(spec, info),
                None => Err(RuntimeError::NotFound(id.to_string())),
            };
            if let Err(error) = checked {
                state.containers.remove(id.as_str());
                return Err(error);
            }
            Ok(id)
        })();
        drop(state);
        Box::pin(async move { result })
    }

    fn start<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        let (mut state, failure) = self.record(RuntimeCall::Start { id: id.clone() });
        let result = match failure {
            Some(error) => Err(error),
            None => match state.find_id(id) {
                Some(key) => {
                    if let Some(info) = state.containers.get_mut(&key) {
                        info.running = true;
                        info.state = ContainerState::Running;
                        info.exit_code = None;
                    }
                    Ok(())
                }
                None => Err(RuntimeError::NotFound(id.to_string())),
            },
        };
        drop(state);
        Box::pin(async move { result })
    }

    fn stop<'a>(
        &'a self,
        id: &'a ContainerId,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        let (mut state, failure) = self.record(RuntimeCall::Stop {
            id: id.clone(),
            grace,
        });
        let result = match failure {
            Some(error) => Err(error),
            None => {
                let key = state.find_id(id);
                if let Some(info) = key.and_then(|key| state.containers.get_mut(&key))
                    && info.running
                {
                    info.running = false;
                    info.state = ContainerState::Exited;
                    // What a process that honours SIGTERM reports.
                    info.exit_code = Some(143);
                }
                Ok(())
            }
        };
        drop(state);
        Box::pin(async move { result })
    }

    fn remove<'a>(&'a self, id: &'a ContainerId) -> BoxFuture<'a, Result<(), RuntimeError>> {
        let (mut state, failure) = self.record(RuntimeCall::Remove { id: id.clone() });
        let result = match failure {
            Some(error) => Err(error),
            None => {
                if let Some(key) = state.find_id(id) {
                    state.containers.remove(&key);
                }
                Ok(())
            }
        };
        drop(state);
        Box::pin(async move { result })
    }

    fn inspect<'a>(
        &'a self,
        id: &'a ContainerId,
    ) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>> {
        let (state, failure) = self.record(RuntimeCall::Inspect { id: id.clone() });
        let result = match failure {
            Some(error) => Err(error),
            None => state
                .find_id(id)
                .and_then(|key| state.containers.get(&key).cloned())
                .ok_or_else(|| RuntimeError::NotFound(id.to_string())),
        };
        drop(state);
        Box::pin(async move { result })
    }

    fn list_by_label<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerSummary>, RuntimeError>> {
        let (state, failure) = self.record(RuntimeCall::ListByLabel {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        let result = match failure {
            Some(error) => Err(error),
            None => Ok(state
                .containers
                .values()
                .filter(|info| info.labels.get(key).map(String::as_str) == Some(value))
                .map(|info| ContainerSummary {
                    id: info.id.clone(),
                    name: info.name.clone(),
                    state: info.state,
                    labels: info.labels.clone(),
                })
                .collect()),
        };
        drop(state);
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::runtime::{ContainerLimits, MountSpec};

    fn spec(name: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.to_owned(),
            image: "crabpot-agent:latest".to_owned(),
            labels: BTreeMap::from([("crabpot.install".to_owned(), "test".to_owned())]),
            user: "10001:10001".to_owned(),
            env: Vec::new(),
            command: Vec::new(),
            mounts: vec![MountSpec {
                source: PathBuf::from("/data/in"),
                target: "/session/in".to_owned(),
                read_only: true,
            }],
            limits: ContainerLimits::default(),
        }
    }

    #[tokio::test]
    async fn records_calls_and_tracks_containers() {
        let fake = RecordingRuntime::new();
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(RecordingRuntime::new());
        assert!(runtime.version().await.is_ok(), "usable as a trait object");

        let id = fake.create(&spec("a")).await.expect("create");
        let info = fake.inspect(&id).await.expect("inspect");
        assert_eq!(info.state, ContainerState::Created);
        assert_eq!(info.policy, expected_policy(&spec("a")));
        fake.start(&ContainerId::new("a"))
            .await
            .expect("start by name");
        assert!(fake.inspect(&id).await.expect("inspect").running);

        let listed = fake
            .list_by_label("crabpot.install", "test")
            .await
            .expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, ContainerState::Running);
        assert!(
            fake.list_by_label("crabpot.install", "other")
                .await
                .expect("list")
                .is_empty()
        );

        fake.stop(&id, Duration::from_secs(3)).await.expect("stop");
        let stopped = fake.inspect(&id).await.expect("inspect");
        assert_eq!((stopped.running, stopped.exit_code), (false, Some(143)));
        fake.stop(&id, Duration::from_secs(3))
            .await
            .expect("stop again");
        fake.remove(&id).await.expect("remove");
        fake.remove(&id).await.expect("remove again");
        fake.stop(&id, Duration::ZERO)
            .await
            .expect("stop after remove");
        assert_eq!(
            fake.inspect(&id).await,
            Err(RuntimeError::NotFound(id.to_string()))
        );
        assert!(matches!(
            fake.start(&id).await,
            Err(RuntimeError::NotFound(_))
        ));

        assert_eq!(
            fake.call_kinds(),
            vec![
                CallKind::Create,
                CallKind::Inspect,
                CallKind::Start,
                CallKind::Inspect,
                CallKind::ListByLabel,
                CallKind::ListByLabel,
                CallKind::Stop,
                CallKind::Inspect,
                CallKind::Stop,
                CallKind::Remove,
                CallKind::Remove,
                CallKind::Stop,
                CallKind::Inspect,
                CallKind::Start,
            ]
        );
        assert_eq!(
            fake.calls()[6],
            RuntimeCall::Stop {
                id: id.clone(),
                grace: Duration::from_secs(3)
            }
        );
        fake.clear_calls();
        assert!(fake.calls().is_empty());
    }

    #[tokio::test]
    async fn create_behaves_like_docker() {
        let fake = RecordingRuntime::new();
        fake.create(&spec("a")).await.expect("create");
        assert_eq!(
            fake.create(&spec("a")).await,
            Err(RuntimeError::NameConflict {
                name: "a".to_owned()
            })
        );
        let mut root = spec("b");
        root.user = "0:0".to_owned();
        assert!(matches!(
            fake.create(&root).await,
            Err(RuntimeError::InvalidSpec(_))
        ));
        assert_eq!(fake.containers().len(), 1);
    }

    #[tokio::test]
    async fn injected_failures_apply_once_in_order() {
        let fake = RecordingRuntime::new();
        fake.fail_next(
            CallKind::Create,
            RuntimeError::Unreachable("down".to_owned()),
        );
        fake.fail_next(
            CallKind::Create,
            RuntimeError::ImageMissing {
                image: "x".to_owned(),
            },
        );
        fake.fail_next(CallKind::Stop, RuntimeError::Engine("boom".to_owned()));
        assert_eq!(
            fake.create(&spec("a")).await,
            Err(RuntimeError::Unreachable("down".to_owned()))
        );
        assert!(matches!(
            fake.create(&spec("a")).await,
            Err(RuntimeError::ImageMissing { .. })
        ));
        let id = fake
            .create(&spec("a"))
            .await
            .expect("third create succeeds");
        assert!(fake.containers().iter().all(|info| info.id == id));
        assert_eq!(
            fake.stop(&id, Duration::ZERO).await,
            Err(RuntimeError::Engine("boom".to_owned()))
        );
        assert_eq!(fake.stop(&id, Duration::ZERO).await, Ok(()));
    }

    #[tokio::test]
    async fn existing_containers_can_be_planted_and_exit() {
        let fake = RecordingRuntime::new();
        let id = fake.insert_existing(&spec("left-over"), true);
        assert!(fake.calls().is_empty());
        assert!(fake.inspect(&id).await.expect("inspect").running);
        assert!(fake.exit(&id, 1));
        let info = fake.inspect(&id).await.expect("inspect");
        assert_eq!(
            (info.state, info.running, info.exit_code),
            (ContainerState::Exited, false, Some(1))
        );
        assert!(!fake.exit(&ContainerId::new("nope"), 1));
    }
}
