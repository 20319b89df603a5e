//! The container security policy of DESIGN §5, applied and then checked.
//!
//! [`validate_spec`] refuses a [`ContainerSpec`] that could weaken the sandbox before
//! anything reaches the engine (root user, a Docker socket mount, relative paths, ...).
//! `host_config` and `create_body` turn a valid spec into the bollard request: non-root
//! user, `CapDrop ["ALL"]` and no CapAdd, `no-new-privileges`, read-only root filesystem,
//! a size-capped `noexec,nosuid` tmpfs at `/tmp`, pids/memory (no swap)/CPU limits, an
//! init process, `NetworkMode "none"`, not privileged, and exactly the spec's bind mounts.
//! [`expected_policy`] states the same policy as an [`ObservedPolicy`], and [`verify`]
//! compares what the engine reports after create with it, listing every difference.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

use super::{ContainerInfo, ContainerSpec, ObservedMount, ObservedPolicy, RuntimeError};

/// The only capability setting a container gets: drop everything.
const CAP_DROP: &str = "ALL";
/// The only security option a container gets.
const NO_NEW_PRIVILEGES: &str = "no-new-privileges";
/// No network at all: the runner reaches the host only through its proxy socket.
const NETWORK_NONE: &str = "none";
/// Where the size-capped tmpfs is mounted.
const TMP_PATH: &str = "/tmp";
/// Docker refuses memory limits below this.
const MIN_MEMORY_BYTES: i64 = 6 * 1024 * 1024;
/// Environment variables an image may set on its own (the legacy builder adds `PATH`
/// to every image built `FROM scratch`). Any other variable must come from the spec.
const IMAGE_ENV_ALLOWED: &[&str] = &["PATH"];
/// Host directories that hold the Docker socket; mounting one would expose it.
const DOCKER_SOCKET_DIRS: &[&str] = &["/run", "/var/run", "/var", "/run/docker", "/var/run/docker"];
/// Container paths that must never be replaced by a mount.
const RESERVED_TARGETS: &[&str] = &["/", TMP_PATH, "/proc", "/sys", "/dev"];

/// Refuses a spec that is malformed or would weaken the sandbox. Pure: touches neither
/// the filesystem nor the engine.
pub fn validate_spec(spec: &ContainerSpec) -> Result<(), RuntimeError> {
    let invalid = |message: String| Err(RuntimeError::InvalidSpec(message));

    if !is_valid_container_name(&spec.name) {
        return invalid(format!(
            "container name {:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
            spec.name
        ));
    }
    if spec.image.is_empty() || spec.image.chars().any(char::is_whitespace) {
        return invalid(format!("image {:?} is not a valid reference", spec.image));
    }
    validate_user(&spec.user)?;
    for (key, value) in &spec.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return invalid(format!("environment variable name {key:?} is not valid"));
        }
    }
    if spec.command.iter().any(|argument| argument.contains('\0')) {
        return invalid("command arguments must not contain NUL".to_owned());
    }
    let limits = &spec.limits;
    if limits.memory_bytes < MIN_MEMORY_BYTES {
        return invalid(format!(
            "memory limit {} is below the minimum of {MIN_MEMORY_BYTES} bytes",
            limits.memory_bytes
        ));
    }
    if limits.nano_cpus <= 0 || limits.pids_limit <= 0 || limits.tmpfs_tmp_bytes == 0 {
        return invalid(format!(
            "limits must be positive (nano_cpus {}, pids_limit {}, tmpfs_tmp_bytes {})",
            limits.nano_cpus, limits.pids_limit, limits.tmpfs_tmp_bytes
        ));
    }

    let mut targets = BTreeSet::new();
    for mount in &spec.mounts {
        let Some(source) = mount.source.to_str() else {
            return invalid(format!("mount source {:?} is not UTF-8", mount.source));
        };
        if !is_plain_absolute(Path::new(source)) {
            return invalid(format!(
                "mount source {source:?} must be absolute, without `..`"
            ));
        }
        if names_docker_socket(source) || names_docker_socket(&mount.target) {
            return invalid(format!(
                "mount {source:?} -> {:?} would expose the docker socket",
                mount.target
            ));
        }
        let source_trimmed = trim_trailing_slashes(source);
        if source_trimmed == "/" || DOCKER_SOCKET_DIRS.contains(&source_trimmed) {
            return invalid(format!(
                "mount source {source:?} may contain the docker socket"
            ));
        }
        if !is_plain_absolute(Path::new(&mount.target)) {
            return invalid(format!(
                "mount target {:?} must be absolute, without `..`",
                mount.target
            ));
        }
        let target_trimmed = trim_trailing_slashes(&mount.target);
        let is_reserved = RESERVED_TARGETS.iter().any(|reserved| {
            target_trimmed.is_empty()
                || target_trimmed == *reserved
                || (*reserved != "/" && target_trimmed.starts_with(&format!("{reserved}/")))
        });
        if is_reserved {
            return invalid(format!("mount target {:?} is reserved", mount.target));
        }
        if !targets.insert(target_trimmed) {
            return invalid(format!("mount target {:?} appears twice", mount.target));
        }
    }
    Ok(())
}

/// The user must be a numeric `uid:gid` with neither part 0: a name cannot be resolved
/// in a `FROM scratch` image, and a uid without a gid would run in group 0.
fn validate_user(user: &str) -> Result<(), RuntimeError> {
    let refuse = || {
        Err(RuntimeError::InvalidSpec(format!(
            "user {user:?} must be a non-root numeric uid:gid"
        )))
    };
    let Some((uid, gid)) = user.split_once(':') else {
        return refuse();
    };
    match (uid.parse::<u32>(), gid.parse::<u32>()) {
        (Ok(uid), Ok(gid)) if uid != 0 && gid != 0 => Ok(()),
        (Ok(_), Ok(_)) | (Err(_), _) | (_, Err(_)) => refuse(),
    }
}

fn is_valid_container_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphanumeric() => {
            chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        }
        Some(_) | None => false,
    }
}

fn is_plain_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path.components().all(|component| match component {
            Component::RootDir | Component::Normal(_) | Component::CurDir => true,
            Component::ParentDir | Component::Prefix(_) => false,
        })
}

fn names_docker_socket(path: &str) -> bool {
    Path::new(path)
        .components()
        .any(|component| match component {
            Component::Normal(name) => name.to_string_lossy().ends_with("docker.sock"),
            Component::RootDir
            | Component::CurDir
            | Component::ParentDir
            | Component::Prefix(_) => false,
        })
}

fn trim_trailing_slashes(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() && path.starts_with('/') {
        "/"
    } else {
        trimmed
    }
}

/// The `/tmp` tmpfs options for a spec.
fn tmp_options(spec: &ContainerSpec) -> String {
    format!("rw,noexec,nosuid,size={}", spec.limits.tmpfs_tmp_bytes)
}

fn env_lines(spec: &ContainerSpec) -> Vec<String> {
    spec.env
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect()
}

/// The policy a container created from `spec` must show when inspected.
pub fn expected_policy(spec: &ContainerSpec) -> ObservedPolicy {
    let mut mounts: Vec<ObservedMount> = spec
        .mounts
        .iter()
        .map(|mount| ObservedMount {
            kind: "bind".to_owned(),
            source: mount.source.to_string_lossy().into_owned(),
            target: mount.target.clone(),
            rw: !mount.read_only,
        })
        .collect();
    mounts.sort();
    ObservedPolicy {
        user: spec.user.clone(),
        privileged: false,
        cap_add: Vec::new(),
        cap_drop: vec![CAP_DROP.to_owned()],
        security_opt: vec![NO_NEW_PRIVILEGES.to_owned()],
        readonly_rootfs: true,
        tmpfs: BTreeMap::from([(TMP_PATH.to_owned(), tmp_options(spec))]),
        pids_limit: Some(spec.limits.pids_limit),
        memory: spec.limits.memory_bytes,
        memory_swap: spec.limits.memory_bytes,
        nano_cpus: spec.limits.nano_cpus,
        init: true,
        network_mode: NETWORK_NONE.to_owned(),
        pid_mode: String::new(),
        ipc_mode: "private".to_owned(),
        mounts,
        devices: Vec::new(),
        env: env_lines(spec),
    }
}

/// The HostConfig for a valid spec: the policy and nothing else.
pub(super) fn host_config(spec: &ContainerSpec) -> Result<HostConfig, RuntimeError> {
    validate_spec(spec)?;
    let mounts = spec
        .mounts
        .iter()
        .map(|mount| Mount {
            target: Some(mount.target.clone()),
            source: Some(mount.source.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(mount.read_only),
            ..Default::default()
        })
        .collect();
    Ok(HostConfig {
        memory: Some(spec.limits.memory_bytes),
        memory_swap: Some(spec.limits.memory_bytes),
        nano_cpus: Some(spec.limits.nano_cpus),
        pids_limit: Some(spec.limits.pids_limit),
        init: Some(true),
        mounts: Some(mounts),
        network_mode: Some(NETWORK_NONE.to_owned()),
        cap_add: Some(Vec::new()),
        cap_drop: Some(vec![CAP_DROP.to_owned()]),
        privileged: Some(false),
        readonly_rootfs: Some(true),
        security_opt: Some(vec![NO_NEW_PRIVILEGES.to_owned()]),
        tmpfs: Some(HashMap::from([(TMP_PATH.to_owned(), tmp_options(spec))])),
        auto_remove: Some(false),
        ..Default::default()
    })
}

/// The whole create request for a valid spec.
pub(super) fn create_body(spec: &ContainerSpec) -> Result<ContainerCreateBody, RuntimeError> {
    let host_config = host_config(spec)?;
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        user: Some(spec.user.clone()),
        env: Some(env_lines(spec)),
        cmd: if spec.command.is_empty() {
            None
        } else {
            Some(spec.command.clone())
        },
        labels: Some(
            spec.labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        ),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// Compares what the engine applied with the policy for `spec`.
///
/// Returns [`RuntimeError::PolicyViolation`] listing every difference (environment values
/// are never printed, only names). Image-provided variables in `IMAGE_ENV_ALLOWED` and
/// non-shared pid/ipc namespace modes are the only tolerated deviations.
pub fn verify(spec: &ContainerSpec, info: &ContainerInfo) -> Result<(), RuntimeError> {
    let differences = differences(spec, info);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::PolicyViolation(differences))
    }
}

fn differences(spec: &ContainerSpec, info: &ContainerInfo) -> Vec<String> {
    let expected = expected_policy(spec);
    let observed = &info.policy;
    let mut differences = Vec::new();

    same(&mut differences, "name", &info.name, &spec.name);
    same(&mut differences, "image", &info.image, &spec.image);
    for (key, value) in &spec.labels {
        same(
            &mut differences,
            &format!("label {key}"),
            &info.labels.get(key),
            &Some(value),
        );
    }
    same(&mut differences, "user", &observed.user, &expected.user);
    same(
        &mut differences,
        "privileged",
        &observed.privileged,
        &expected.privileged,
    );
    same(
        &mut differences,
        "cap_add",
        &sorted(&observed.cap_add),
        &expected.cap_add,
    );
    same(
        &mut differences,
        "cap_drop",
        &sorted(&observed.cap_drop),
        &expected.cap_drop,
    );
    same(
        &mut differences,
        "security_opt",
        &sorted(&observed.security_opt),
        &expected.security_opt,
    );
    same(
        &mut differences,
        "readonly_rootfs",
        &observed.readonly_rootfs,
        &expected.readonly_rootfs,
    );
    same(&mut differences, "tmpfs", &observed.tmpfs, &expected.tmpfs);
    same(
        &mut differences,
        "pids_limit",
        &observed.pids_limit,
        &expected.pids_limit,
    );
    same(
        &mut differences,
        "memory",
        &observed.memory,
        &expected.memory,
    );
    same(
        &mut differences,
        "memory_swap",
        &observed.memory_swap,
        &expected.memory_swap,
    );
    same(
        &mut differences,
        "nano_cpus",
        &observed.nano_cpus,
        &expected.nano_cpus,
    );
    same(&mut differences, "init", &observed.init, &expected.init);
    same(
        &mut differences,
        "network_mode",
        &observed.network_mode,
        &expected.network_mode,
    );
    if !matches!(observed.pid_mode.as_str(), "" | "private") {
        differences.push(format!(
            "pid_mode is {:?}, expected a private pid namespace",
            observed.pid_mode
        ));
    }
    if !matches!(
        observed.ipc_mode.as_str(),
        "" | "private" | "shareable" | "none"
    ) {
        differences.push(format!(
            "ipc_mode is {:?}, expected a private ipc namespace",
            observed.ipc_mode
        ));
    }

    let observed_mounts: BTreeSet<&ObservedMount> = observed.mounts.iter().collect();
    let expected_mounts: BTreeSet<&ObservedMount> = expected.mounts.iter().collect();
    for mount in observed_mounts.difference(&expected_mounts) {
        differences.push(format!("unexpected mount {}", describe_mount(mount)));
    }
    for mount in expected_mounts.difference(&observed_mounts) {
        differences.push(format!("missing mount {}", describe_mount(mount)));
    }
    for device in &observed.devices {
        differences.push(format!("unexpected device {device}"));
    }

    for line in &expected.env {
        if !observed.env.contains(line) {
            differences.push(format!(
                "environment variable {} is missing or different",
                env_key(line)
            ));
        }
    }
    for line in &observed.env {
        let key = env_key(line);
        let from_spec = spec.env.iter().any(|(spec_key, _)| spec_key == key);
        if !from_spec && !IMAGE_ENV_ALLOWED.contains(&key) {
            differences.push(format!("unexpected environment variable {key}"));
        }
    }
    differences
}

fn same<T: PartialEq + std::fmt::Debug>(
    differences: &mut Vec<String>,
    what: &str,
    observed: &T,
    expected: &T,
) {
    if observed != expected {
        differences.push(format!("{what} is {observed:?}, expected {expected:?}"));
    }
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut items = items.to_vec();
    items.sort();
    items
}

fn env_key(line: &str) -> &str {
    line.split_once('=').map_or(line, |(key, _)| key)
}

fn describe_mount(mount: &ObservedMount) -> String {
    let mode = if mount.rw { "rw" } else { "ro" };
    format!(
        "{} {} -> {} ({mode})",
        mount.kind, mount.source, mount.target
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::{Value, json};

    use super::*;
    use crate::runtime::{ContainerId, ContainerLimits, ContainerState, MountSpec};

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "crabpot-test-s1".to_owned(),
            image: "crabpot-agent:latest".to_owned(),
            labels: BTreeMap::from([
                ("crabpot.install".to_owned(), "test".to_owned()),
                ("crabpot.session".to_owned(), "s1".to_owned()),
            ]),
            user: "10001:10001".to_owned(),
            env: vec![("RUST_LOG".to_owned(), "info".to_owned())],
            command: Vec::new(),
            mounts: vec![
                MountSpec {
                    source: PathBuf::from("/data/sessions/g/s1/in"),
                    target: "/session/in".to_owned(),
                    read_only: true,
                },
                MountSpec {
                    source: PathBuf::from("/data/sessions/g/s1/out"),
                    target: "/session/out".to_owned(),
                    read_only: false,
                },
            ],
            limits: ContainerLimits::default(),
        }
    }

    fn info_for(spec: &ContainerSpec) -> ContainerInfo {
        ContainerInfo {
            id: ContainerId::new("abc"),
            name: spec.name.clone(),
            image: spec.image.clone(),
            state: ContainerState::Created,
            running: false,
            exit_code: None,
            labels: spec.labels.clone(),
            policy: expected_policy(spec),
        }
    }

    /// Applies `change` to a valid spec and checks that validation accepts it
    /// (`expected_error == None`) or refuses it with a message containing the text.
    fn check_validation(change: impl FnOnce(&mut ContainerSpec), expected_error: Option<&str>) {
        let mut spec = spec();
        change(&mut spec);
        match (validate_spec(&spec), expected_error) {
            (Ok(()), None) => {}
            (Err(RuntimeError::InvalidSpec(message)), Some(expected)) => assert!(
                message.contains(expected),
                "{spec:?}: message {message:?} lacks {expected:?}"
            ),
            (result, expected) => panic!("{spec:?}: got {result:?}, expected {expected:?}"),
        }
    }

    fn mount(source: &str, target: &str) -> MountSpec {
        MountSpec {
            source: PathBuf::from(source),
            target: target.to_owned(),
            read_only: true,
        }
    }

    #[test]
    fn validate_accepts_and_refuses() {
        check_validation(|_| {}, None);
        check_validation(|spec| spec.mounts.clear(), None);
        check_validation(|spec| spec.user = "1:1".to_owned(), None);
        for user in [
            "",
            "0",
            "root",
            "0:0",
            "root:root",
            "10001",
            "10001:0",
            "0:10001",
        ] {
            check_validation(|spec| spec.user = user.to_owned(), Some("non-root"));
        }
        for user in ["nobody:nogroup", "10001:10001:1", " 10001:10001", "-1:5"] {
            check_validation(|spec| spec.user = user.to_owned(), Some("non-root"));
        }
        for socket in [
            "/var/run/docker.sock",
            "/run/docker.sock",
            "/home/me/.docker/run/docker.sock",
            "/run/user/1000/docker.sock/",
        ] {
            check_validation(
                |spec| spec.mounts.push(mount(socket, "/session/x")),
                Some("docker socket"),
            );
            check_validation(
                |spec| spec.mounts.push(mount("/data/x", socket)),
                Some("docker socket"),
            );
        }
        for directory in ["/", "/run", "/var/run/", "/var", "/run/docker"] {
            check_validation(
                |spec| spec.mounts.push(mount(directory, "/session/x")),
                Some("may contain the docker socket"),
            );
        }
        check_validation(
            |spec| spec.mounts.push(mount("data/x", "/session/x")),
            Some("must be absolute"),
        );
        check_validation(
            |spec| spec.mounts.push(mount("/data/../etc", "/session/x")),
            Some("must be absolute"),
        );
        check_validation(
            |spec| spec.mounts.push(mount("/data/x", "session/x")),
            Some("must be absolute"),
        );
        for target in [
            "/",
            "/tmp",
            "/tmp/",
            "/tmp/x",
            "/proc",
            "/sys/fs",
            "/dev/null",
        ] {
            check_validation(
                |spec| spec.mounts.push(mount("/data/x", target)),
                Some("is reserved"),
            );
        }
        check_validation(|spec| spec.mounts.push(mount("/data/x", "/tmpx")), None);
        check_validation(
            |spec| spec.mounts.push(mount("/data/x", "/session/in/")),
            Some("appears twice"),
        );
        check_validation(|spec| spec.image = String::new(), Some("image"));
        check_validation(|spec| spec.image = "a b".to_owned(), Some("image"));
        check_validation(|spec| spec.name = String::new(), Some("container name"));
        check_validation(|spec| spec.name = "-x".to_owned(), Some("container name"));
        check_validation(|spec| spec.name = "a/b".to_owned(), Some("container name"));
        check_validation(|spec| spec.limits.memory_bytes = 1024, Some("memory limit"));
        check_validation(|spec| spec.limits.pids_limit = 0, Some("positive"));
        check_validation(|spec| spec.limits.nano_cpus = -1, Some("positive"));
        check_validation(|spec| spec.limits.tmpfs_tmp_bytes = 0, Some("positive"));
        check_validation(
            |spec| spec.env.push(("A=B".to_owned(), "c".to_owned())),
            Some("environment variable"),
        );
        check_validation(
            |spec| spec.env.push((String::new(), "c".to_owned())),
            Some("environment variable"),
        );
        check_validation(|spec| spec.command.push("a\0b".to_owned()), Some("NUL"));
    }

    #[test]
    fn host_config_is_the_policy_and_nothing_else() {
        let host_config = host_config(&spec()).expect("valid spec");
        let Value::Object(fields) = serde_json::to_value(&host_config).expect("serialize") else {
            panic!("host config is not a JSON object");
        };
        let expected = json!({
            "Memory": 536_870_912,
            "MemorySwap": 536_870_912,
            "NanoCpus": 1_000_000_000,
            "PidsLimit": 256,
            "Init": true,
            "NetworkMode": "none",
            "CapAdd": [],
            "CapDrop": ["ALL"],
            "Privileged": false,
            "ReadonlyRootfs": true,
            "SecurityOpt": ["no-new-privileges"],
            "Tmpfs": {"/tmp": "rw,noexec,nosuid,size=67108864"},
            "AutoRemove": false,
            "Mounts": [
                {"Type": "bind", "Source": "/data/sessions/g/s1/in", "Target": "/session/in", "ReadOnly": true},
                {"Type": "bind", "Source": "/data/sessions/g/s1/out", "Target": "/session/out", "ReadOnly": false},
            ],
        });
        let Value::Object(expected) = expected else {
            panic!("expected is not a JSON object");
        };
        for (key, value) in &expected {
            assert_eq!(fields.get(key), Some(value), "HostConfig field {key}");
        }
        let extra: Vec<&String> = fields
            .keys()
            .filter(|key| !expected.contains_key(*key))
            .collect();
        assert!(
            extra.is_empty(),
            "HostConfig has fields beyond the policy: {extra:?}"
        );
    }

    #[test]
    fn host_config_follows_limits() {
        let mut spec = spec();
        spec.limits = ContainerLimits {
            memory_bytes: 64 * 1024 * 1024,
            nano_cpus: 500_000_000,
            pids_limit: 32,
            tmpfs_tmp_bytes: 1024 * 1024,
        };
        let host_config = host_config(&spec).expect("valid spec");
        assert_eq!(host_config.memory, Some(64 * 1024 * 1024));
        assert_eq!(host_config.memory_swap, Some(64 * 1024 * 1024));
        assert_eq!(host_config.nano_cpus, Some(500_000_000));
        assert_eq!(host_config.pids_limit, Some(32));
        assert_eq!(
            host_config.tmpfs,
            Some(HashMap::from([(
                "/tmp".to_owned(),
                "rw,noexec,nosuid,size=1048576".to_owned()
            )]))
        );
    }

    #[test]
    fn host_config_refuses_invalid_spec() {
        let mut spec = spec();
        spec.user = "0:0".to_owned();
        assert!(matches!(
            host_config(&spec),
            Err(RuntimeError::InvalidSpec(_))
        ));
        assert!(matches!(
            create_body(&spec),
            Err(RuntimeError::InvalidSpec(_))
        ));
    }

    #[test]
    fn create_body_carries_spec() {
        let mut spec = spec();
        spec.command = vec!["sleep".to_owned(), "60".to_owned()];
        let body = create_body(&spec).expect("valid spec");
        assert_eq!(body.image.as_deref(), Some("crabpot-agent:latest"));
        assert_eq!(body.user.as_deref(), Some("10001:10001"));
        assert_eq!(body.env, Some(vec!["RUST_LOG=info".to_owned()]));
        assert_eq!(body.cmd, Some(vec!["sleep".to_owned(), "60".to_owned()]));
        assert_eq!(
            body.labels
                .as_ref()
                .and_then(|labels| labels.get("crabpot.session")),
            Some(&"s1".to_owned())
        );
        assert!(body.host_config.is_some());
        assert!(body.entrypoint.is_none(), "the image's entrypoint is kept");
        assert!(
            create_body(&ContainerSpec {
                command: Vec::new(),
                ..spec
            })
            .expect("valid")
            .cmd
            .is_none()
        );
    }

    #[test]
    fn verify_accepts_the_expected_policy() {
        let spec = spec();
        assert_eq!(verify(&spec, &info_for(&spec)), Ok(()));
        let mut info = info_for(&spec);
        info.policy.env.push("PATH=/bin".to_owned());
        info.policy.ipc_mode = "shareable".to_owned();
        info.policy.cap_drop = vec!["ALL".to_owned()];
        info.labels.insert("unrelated".to_owned(), "x".to_owned());
        info.policy.mounts.reverse();
        assert_eq!(verify(&spec, &info), Ok(()));
    }

    /// Applies `drift` to the info of a correctly created container and checks that
    /// `verify` reports a difference containing `expected`.
    fn check_drift(drift: impl FnOnce(&mut ContainerInfo), expected: &str) {
        let spec = spec();
        let mut info = info_for(&spec);
        drift(&mut info);
        match verify(&spec, &info) {
            Err(RuntimeError::PolicyViolation(differences)) => assert!(
                differences
                    .iter()
                    .any(|difference| difference.contains(expected)),
                "{differences:?} lacks {expected:?}"
            ),
            other => panic!("drift {expected:?} not caught: {other:?}"),
        }
    }

    #[test]
    fn verify_catches_every_kind_of_drift() {
        check_drift(
            |info| info.policy.network_mode = "bridge".to_owned(),
            "network_mode is \"bridge\"",
        );
        check_drift(
            |info| info.policy.network_mode = "host".to_owned(),
            "network_mode",
        );
        check_drift(
            |info| info.policy.cap_add = vec!["NET_ADMIN".to_owned()],
            "cap_add",
        );
        check_drift(|info| info.policy.cap_drop.clear(), "cap_drop");
        check_drift(
            |info| info.policy.user = "0:0".to_owned(),
            "user is \"0:0\"",
        );
        check_drift(|info| info.policy.user = String::new(), "user");
        check_drift(|info| info.policy.privileged = true, "privileged");
        check_drift(
            |info| info.policy.readonly_rootfs = false,
            "readonly_rootfs",
        );
        check_drift(|info| info.policy.security_opt.clear(), "security_opt");
        check_drift(
            |info| {
                info.policy
                    .security_opt
                    .push("seccomp=unconfined".to_owned())
            },
            "security_opt",
        );
        check_drift(|info| info.policy.tmpfs.clear(), "tmpfs");
        check_drift(
            |info| {
                info.policy
                    .tmpfs
                    .insert("/tmp".to_owned(), "rw,exec,size=1".to_owned());
            },
            "tmpfs",
        );
        check_drift(|info| info.policy.pids_limit = None, "pids_limit");
        check_drift(|info| info.policy.memory = 0, "memory is 0");
        check_drift(|info| info.policy.memory_swap = -1, "memory_swap");
        check_drift(|info| info.policy.nano_cpus = 0, "nano_cpus");
        check_drift(|info| info.policy.init = false, "init");
        check_drift(|info| info.policy.pid_mode = "host".to_owned(), "pid_mode");
        check_drift(|info| info.policy.ipc_mode = "host".to_owned(), "ipc_mode");
        check_drift(
            |info| info.policy.ipc_mode = "container:abc".to_owned(),
            "ipc_mode",
        );
        check_drift(
            |info| {
                info.policy.mounts.push(ObservedMount {
                    kind: "bind".to_owned(),
                    source: "/var/run/docker.sock".to_owned(),
                    target: "/var/run/docker.sock".to_owned(),
                    rw: true,
                });
            },
            "unexpected mount bind /var/run/docker.sock",
        );
        check_drift(
            |info| {
                info.policy.mounts.push(ObservedMount {
                    kind: "volume".to_owned(),
                    source: "/var/lib/docker/volumes/x/_data".to_owned(),
                    target: "/data".to_owned(),
                    rw: true,
                });
            },
            "unexpected mount volume",
        );
        check_drift(
            |info| {
                for mount in &mut info.policy.mounts {
                    mount.rw = true;
                }
            },
            "unexpected mount bind /data/sessions/g/s1/in -> /session/in (rw)",
        );
        check_drift(
            |info| info.policy.mounts.clear(),
            "missing mount bind /data/sessions/g/s1/out",
        );
        check_drift(
            |info| info.policy.mounts[0].source = "/etc".to_owned(),
            "unexpected mount bind /etc",
        );
        check_drift(
            |info| info.policy.devices.push("/dev/kvm:/dev/kvm:rwm".to_owned()),
            "unexpected device /dev/kvm",
        );
        check_drift(
            |info| info.policy.env.push("OPENAI_API_KEY=sk-canary".to_owned()),
            "unexpected environment variable OPENAI_API_KEY",
        );
        check_drift(
            |info| info.policy.env = vec!["RUST_LOG=trace".to_owned()],
            "environment variable RUST_LOG is missing or different",
        );
        check_drift(|info| info.policy.env.clear(), "RUST_LOG is missing");
        check_drift(|info| info.image = "other:latest".to_owned(), "image");
        check_drift(|info| info.name = "other".to_owned(), "name");
        check_drift(|info| info.labels.clear(), "label crabpot.install");
    }

    #[test]
    fn violation_never_prints_environment_values() {
        let spec = spec();
        let mut info = info_for(&spec);
        info.policy.env = vec!["RUST_LOG=changed".to_owned(), "SECRET=sk-canary".to_owned()];
        let message = verify(&spec, &info).expect_err("drift").to_string();
        assert!(!message.contains("sk-canary"), "{message}");
        assert!(!message.contains("changed"), "{message}");
        assert!(message.contains("SECRET"), "{message}");
    }
}
