//! Tests of the Docker helpers: the skip rule and the tar builder everywhere, and against the
//! real engine a container with the session mounts, poked at with `exec`, then removed by the
//! cleanup guard.

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptionsBuilder;

use super::*;

#[test]
fn skip_needs_exactly_one() {
    fn check(value: Option<&str>, expected: bool) {
        assert_eq!(skip_requested(value.map(OsStr::new)), expected, "{value:?}");
    }
    check(None, false);
    check(Some(""), false);
    check(Some("0"), false);
    check(Some("true"), false);
    check(Some("1"), true);
}

#[test]
fn tar_archive_has_valid_headers() {
    let archive = tar_archive(&[
        TarEntry::Directory {
            path: "bin/",
            mode: 0o755,
        },
        TarEntry::File {
            path: "bin/tool",
            mode: 0o755,
            contents: b"hello",
        },
        TarEntry::Symlink {
            path: "bin/sh",
            target: "tool",
        },
    ]);
    // Three headers, one padded data block, two zero blocks.
    assert_eq!(archive.len(), 512 * 6);
    for header_start in [0, 512, 1536] {
        let header = &archive[header_start..header_start + 512];
        assert_eq!(&header[257..263], b"ustar\0");
        let stored = std::str::from_utf8(&header[148..154]).unwrap();
        let stored = u32::from_str_radix(stored, 8).unwrap();
        let computed: u32 = header
            .iter()
            .enumerate()
            .map(|(index, byte)| {
                if (148..156).contains(&index) {
                    32
                } else {
                    u32::from(*byte)
                }
            })
            .sum();
        assert_eq!(stored, computed, "checksum of the header at {header_start}");
    }
    assert_eq!(&archive[1024..1029], b"hello");
    assert_eq!(&archive[124..135], b"00000000000", "a directory has size 0");
    assert_eq!(&archive[512 + 124..512 + 135], b"00000000005");
    assert_eq!(archive[1536 + 156], b'2');
    assert_eq!(&archive[1536 + 157..1536 + 161], b"tool");
    assert!(archive[512 * 4..].iter().all(|byte| *byte == 0));
}

/// A unique label value, so concurrent tests never see each other's containers.
fn unique_label_value() -> String {
    format!("docker-test-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn exec_sees_the_session_mounts_and_cleanup_removes_the_container() {
    if !require_docker("exec_sees_the_session_mounts_and_cleanup_removes_the_container").await {
        return;
    }
    let docker = connect().await.unwrap();
    let image = ensure_busybox_image(&docker).await.unwrap();
    let label_key = "crabpot.test";
    let label_value = unique_label_value();
    let cleanup = ContainerCleanup::new(label_key, &label_value);

    let session = tempfile::tempdir().unwrap();
    let in_dir = session.path().join("in");
    let out_dir = session.path().join("out");
    std::fs::create_dir_all(&in_dir).unwrap();
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(in_dir.join("inbound.db"), b"host data").unwrap();

    let config = ContainerCreateBody {
        image: Some(image),
        cmd: Some(vec!["/bin/busybox".into(), "sleep".into(), "600".into()]),
        labels: Some(HashMap::from([(
            label_key.to_string(),
            label_value.clone(),
        )])),
        host_config: Some(HostConfig {
            binds: Some(vec![
                format!("{}:/session/in:ro", in_dir.display()),
                format!("{}:/session/out:rw", out_dir.display()),
            ]),
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default()
        .name(&format!("crabpot-{label_value}"))
        .build();
    let created = docker
        .create_container(Some(options), config)
        .await
        .unwrap();
    docker.start_container(&created.id, None).await.unwrap();

    let listed = list_containers_by_label(&docker, label_key, &label_value)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id.as_deref(), Some(created.id.as_str()));

    let inspected = inspect_container_json(&docker, &created.id).await.unwrap();
    assert_eq!(inspected["State"]["Running"], true);
    assert_eq!(
        inspected["Config"]["Labels"][label_key],
        label_value.as_str()
    );
    assert_eq!(inspected["HostConfig"]["NetworkMode"], "none");
    let mounts = inspected["Mounts"].as_array().unwrap();
    let in_mount = mounts
        .iter()
        .find(|mount| mount["Destination"] == "/session/in")
        .unwrap();
    assert_eq!(in_mount["RW"], false);

    // Reading the read-only mount works; writing it fails, as root and all.
    let read = exec(
        &docker,
        &created.id,
        &["/bin/sh", "-c", "cat /session/in/inbound.db"],
    )
    .await
    .unwrap();
    assert_eq!(
        read,
        ExecOutput {
            exit_code: 0,
            stdout: "host data".into(),
            stderr: String::new()
        }
    );
    let write_in = exec(
        &docker,
        &created.id,
        &[
            "/bin/sh",
            "-c",
            "echo planted > /session/in/inbound.db-journal",
        ],
    )
    .await
    .unwrap();
    assert!(!write_in.success(), "{write_in:?}");
    assert!(
        write_in.stderr.contains("Read-only file system"),
        "{write_in:?}"
    );
    assert!(!in_dir.join("inbound.db-journal").exists());

    let write_out = exec(
        &docker,
        &created.id,
        &[
            "/bin/sh",
            "-c",
            "echo beat > /session/out/heartbeat && echo ok",
        ],
    )
    .await
    .unwrap();
    assert_eq!(write_out.exit_code, 0, "{write_out:?}");
    assert_eq!(write_out.stdout, "ok\n");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("heartbeat")).unwrap(),
        "beat\n"
    );

    let exit_code = exec(&docker, &created.id, &["/bin/sh", "-c", "exit 7"])
        .await
        .unwrap();
    assert_eq!(exit_code.exit_code, 7);

    drop(cleanup);
    let listed = list_containers_by_label(&docker, label_key, &label_value)
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test]
async fn removing_an_unused_label_removes_nothing() {
    if !require_docker("removing_an_unused_label_removes_nothing").await {
        return;
    }
    let docker = connect().await.unwrap();
    let removed = remove_containers_by_label(&docker, "crabpot.test", &unique_label_value())
        .await
        .unwrap();
    assert_eq!(removed, 0);
}

/// Set in the re-executed copy of this test binary that probes `require_docker`.
const PROBE_ENV: &str = "CRABPOT_HARNESS_DOCKER_PROBE";

/// Runs this test binary again against a Docker socket that does not exist: without the skip
/// variable `require_docker` must panic with a clear message, with it it must skip loudly.
#[test]
fn require_docker_panics_or_skips_when_docker_is_unreachable() {
    let name = "docker::tests::require_docker_panics_or_skips_when_docker_is_unreachable";
    if let Some(mode) = std::env::var_os(PROBE_ENV) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let required = runtime.block_on(require_docker("probe_test"));
        assert_eq!(
            mode, "skip",
            "require_docker returned {required} instead of panicking"
        );
        assert!(!required);
        return;
    }
    let run = |mode: &str, skip: Option<&str>| {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(PROBE_ENV, mode)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        match skip {
            Some(value) => command.env(SKIP_DOCKER_ENV, value),
            None => command.env_remove(SKIP_DOCKER_ENV),
        };
        let output = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };

    let (passed, text) = run("panic", None);
    assert!(!passed, "require_docker must fail the test:\n{text}");
    assert!(text.contains("Docker is not reachable"), "{text}");
    assert!(text.contains("set CRABPOT_SKIP_DOCKER=1 to skip"), "{text}");

    let (passed, text) = run("skip", Some("1"));
    assert!(passed, "{text}");
    assert!(
        text.contains("SKIPPED (CRABPOT_SKIP_DOCKER=1): probe_test"),
        "{text}"
    );
    assert!(text.contains("1 passed"), "{text}");
}
