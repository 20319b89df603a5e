//! `crabpot service install|uninstall`, run as the real binary: the unit it writes runs this
//! binary's `serve` with the data dir and config made absolute, passes `systemd-analyze verify`
//! (installed with systemd, as on the machines this project runs on) with no warning, and is
//! removed again; bad input is refused with a message naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use tests::host_process::crabpot_bin;

fn crabpot(dir: &Path, args: &[&str]) -> Output {
    Command::new(crabpot_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("CRABPOT_DATA_DIR")
        .env_remove("CRABPOT_CONFIG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `systemd-analyze verify` of a unit file: its exit status and what it printed.
fn verify(unit: &Path) -> (bool, String) {
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .expect("systemd-analyze is part of systemd: apt-get install systemd");
    (
        output.status.success(),
        format!("{}{}", text(&output.stdout), text(&output.stderr)),
    )
}

#[test]
fn service_install_writes_a_unit_systemd_accepts_and_uninstall_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    std::fs::write(dir.path().join("my.toml"), "max_containers = 4\n").unwrap();
    let units_arg = units.to_string_lossy().into_owned();

    let output = crabpot(
        dir.path(),
        &[
            "--data-dir",
            "state",
            "--config",
            "my.toml",
            "service",
            "install",
            "--unit-dir",
            &units_arg,
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let said = text(&output.stdout);
    assert!(said.contains("enable --now crabpot"), "{said}");
    assert!(said.contains("journalctl"), "{said}");

    let unit_path = units.join("crabpot.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let root = dir.path().canonicalize().unwrap();
    let exe = crabpot_bin().canonicalize().unwrap();
    let exec = format!(
        "ExecStart=\"{}\" \"--data-dir\" \"{}\" \"--config\" \"{}\" \"serve\"",
        exe.display(),
        root.join("state").display(),
        root.join("my.toml").display()
    );
    assert!(unit.contains(&exec), "{exec}\n{unit}");
    assert!(
        unit.contains(&format!("WorkingDirectory={}\n", root.display())),
        "{unit}"
    );
    assert!(!unit.contains("API_KEY") && !unit.contains("sk-"), "{unit}");

    let (ok, printed) = verify(&unit_path);
    assert!(ok, "systemd-analyze verify failed: {printed}\n{unit}");
    assert!(
        !printed.contains("crabpot.service"),
        "systemd-analyze warned about the unit: {printed}\n{unit}"
    );

    // A user unit: no ordering after the system's docker.service, started by default.target.
    let output = crabpot(
        dir.path(),
        &[
            "service",
            "install",
            "--user",
            "--name",
            "crab-user",
            "--unit-dir",
            &units_arg,
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let user_unit = units.join("crab-user.service");
    let text_of_user = std::fs::read_to_string(&user_unit).unwrap();
    assert!(
        text_of_user.contains("WantedBy=default.target"),
        "{text_of_user}"
    );
    assert!(!text_of_user.contains("docker.service"), "{text_of_user}");
    let (ok, printed) = verify(&user_unit);
    assert!(ok && !printed.contains("crab-user.service"), "{printed}");

    // Hostile names are refused before anything is written.
    let output = crabpot(
        dir.path(),
        &[
            "service",
            "install",
            "--name",
            "../escape",
            "--unit-dir",
            &units_arg,
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("--name \"../escape\""),
        "{output:?}"
    );
    assert!(!dir.path().join("escape.service").exists());

    // Uninstall removes it; a second one says there is nothing to remove.
    for name in ["crabpot", "crab-user"] {
        let output = crabpot(
            dir.path(),
            &[
                "service",
                "uninstall",
                "--name",
                name,
                "--unit-dir",
                &units_arg,
            ],
        );
        assert!(output.status.success(), "{output:?}");
        assert!(text(&output.stdout).contains("removed"), "{output:?}");
    }
    assert!(!unit_path.exists() && !user_unit.exists());
    let output = crabpot(
        dir.path(),
        &["service", "uninstall", "--unit-dir", &units_arg],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("nothing to remove"),
        "{output:?}"
    );
}
