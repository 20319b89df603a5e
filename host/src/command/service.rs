//! `crabpot service install|uninstall`: a systemd unit that runs `crabpot serve` as a service.
//!
//! [`install`] writes `<name>.service` ([`render`]): this very binary, with the data dir and
//! config file it was given (made absolute), in the directory it was run from. As root it is a
//! system unit in `/etc/systemd/system`, otherwise a user unit in `~/.config/systemd/user`;
//! `--unit-dir` writes elsewhere. The unit holds no secret (it is world-readable as a system
//! unit): keys stay in the config file or in the optional `<data dir>/crabpot.env`
//! (`EnvironmentFile`, 0600). Nothing is started: the commands to enable it, follow its log and
//! remove it are printed. [`uninstall`] removes the file.

use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Write a systemd unit that runs `crabpot serve` with this data dir and config (a system
    /// unit as root, else a user unit), and print how to enable it.
    Install(UnitArgs),
    /// Remove the unit `service install` wrote.
    Uninstall(UnitArgs),
}

/// Which unit, and where it lives.
#[derive(Debug, Args)]
pub struct UnitArgs {
    /// Write the unit here instead of /etc/systemd/system or ~/.config/systemd/user.
    #[arg(long)]
    pub unit_dir: Option<PathBuf>,
    /// A user unit even as root (`systemctl --user`).
    #[arg(long)]
    pub user: bool,
    /// The unit's name: `<NAME>.service`.
    #[arg(long, default_value = "crabpot")]
    pub name: String,
}

impl UnitArgs {
    /// A user unit: asked for, or not root.
    fn user_unit(&self) -> bool {
        self.user || !is_root()
    }

    /// The unit file's path, after checking the name.
    fn path(&self) -> Result<PathBuf, String> {
        check_name(&self.name)?;
        Ok(unit_dir(self.unit_dir.as_deref(), self.user_unit())?
            .join(format!("{}.service", self.name)))
    }
}

/// What the unit runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitSpec {
    /// The crabpot binary.
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub working_dir: PathBuf,
    /// A user unit (`default.target`, no `User=`), else a system unit.
    pub user_unit: bool,
    /// `USER` for the host, so its first start makes this terminal user the owner.
    pub terminal_user: String,
}

/// The unit file's text.
pub fn render(spec: &UnitSpec) -> String {
    let mut exec = vec![
        quote(&spec.exe.to_string_lossy()),
        quote("--data-dir"),
        quote(&spec.data_dir.to_string_lossy()),
    ];
    if let Some(config) = &spec.config {
        exec.push(quote("--config"));
        exec.push(quote(&config.to_string_lossy()));
    }
    exec.push(quote("serve"));
    let env_file = spec.data_dir.join("crabpot.env");
    let (docker, target) = if spec.user_unit {
        // A user manager cannot order itself after a system unit; Docker must simply run.
        ("", "default.target")
    } else {
        (
            "After=docker.service\nWants=docker.service\n",
            "multi-user.target",
        )
    };
    format!(
        "# Written by `crabpot service install`; `crabpot service uninstall` removes it.\n\
         [Unit]\n\
         Description=crabpot: one sandboxed AI agent per conversation\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         {docker}\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exec}\n\
         WorkingDirectory={working}\n\
         Environment={user}\n\
         # CRABPOT_* settings and keys, if any, kept out of this file (0600).\n\
         EnvironmentFile=-{env_file}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         # A graceful stop: deliveries in flight finish, containers are left to be adopted.\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=60\n\
         \n\
         [Install]\n\
         WantedBy={target}\n",
        exec = exec.join(" "),
        // One path, not a command line: systemd takes it as it is, without quotes.
        working = escape(&spec.working_dir.to_string_lossy()),
        user = quote(&format!("USER={}", spec.terminal_user)),
        env_file = escape(&env_file.to_string_lossy()),
    )
}

/// One argument for systemd: double-quoted, with `\` and `"` escaped and `%` and `$` doubled
/// (systemd's specifiers and variable expansion).
fn quote(text: &str) -> String {
    format!(
        "\"{}\"",
        escape(text).replace('\\', "\\\\").replace('"', "\\\"")
    )
}

fn escape(text: &str) -> String {
    text.replace('%', "%%").replace('$', "$$")
}

/// `name` is a plain unit name.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "--name {name:?}: use 1-64 letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

/// Where the unit goes: `--unit-dir`, else the system or the user's unit directory.
fn unit_dir(explicit: Option<&Path>, user_unit: bool) -> Result<PathBuf, String> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    if !user_unit {
        return Ok(PathBuf::from("/etc/systemd/system"));
    }
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .ok_or("neither XDG_CONFIG_HOME nor HOME is set: pass --unit-dir")?;
    Ok(config_home.join("systemd/user"))
}

/// Whether this process runs as root.
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Carries out `service install|uninstall`; returns what to tell the person.
pub fn run(
    command: &ServiceCommand,
    data_dir: &Path,
    config: Option<&Path>,
) -> Result<String, String> {
    match command {
        ServiceCommand::Install(unit) => install(unit, data_dir, config),
        ServiceCommand::Uninstall(unit) => uninstall(unit),
    }
}

fn systemctl(user_unit: bool) -> &'static str {
    if user_unit {
        "systemctl --user"
    } else {
        "systemctl"
    }
}

/// Writes the unit (through a temporary file renamed over it).
fn install(unit: &UnitArgs, data_dir: &Path, config: Option<&Path>) -> Result<String, String> {
    let path = unit.path()?;
    let user_unit = unit.user_unit();
    let absolute =
        |path: &Path| std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()));
    let exe = std::env::current_exe()
        .and_then(|exe| exe.canonicalize())
        .map_err(|e| format!("cannot find this crabpot binary: {e}"))?;
    let spec = UnitSpec {
        exe,
        data_dir: absolute(data_dir)?,
        config: config.map(absolute).transpose()?,
        working_dir: std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?,
        user_unit,
        terminal_user: crate::channels::cli::terminal_user(),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let partial = dir.join(format!(".{}.service.partial", unit.name));
    std::fs::write(&partial, render(&spec))
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let systemctl = systemctl(user_unit);
    let journal = if user_unit {
        "journalctl --user"
    } else {
        "journalctl"
    };
    Ok(format!(
        "wrote {path}\n\
         start it now and at boot:  {systemctl} daemon-reload && {systemctl} enable --now {name}\n\
         its log:                   {journal} -u {name} -f\n\
         stop it:                   {systemctl} stop {name}\n\
         remove it:                 {systemctl} disable --now {name} && crabpot service uninstall{flags}",
        path = path.display(),
        name = unit.name,
        flags = if unit.user { " --user" } else { "" },
    ))
}

/// Removes the unit.
fn uninstall(unit: &UnitArgs) -> Result<String, String> {
    let path = unit.path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(format!(
            "removed {} (run `{} daemon-reload`)",
            path.display(),
            systemctl(unit.user_unit())
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{} does not exist: nothing to remove",
            path.display()
        )),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(user_unit: bool) -> UnitSpec {
        UnitSpec {
            exe: PathBuf::from("/opt/crab pot/crabpot"),
            data_dir: PathBuf::from("/var/lib/crabpot"),
            config: Some(PathBuf::from("/etc/crabpot/100%.toml")),
            working_dir: PathBuf::from("/srv/crabpot"),
            user_unit,
            terminal_user: "ada".into(),
        }
    }

    #[test]
    fn a_system_unit_runs_serve_after_docker() {
        let unit = render(&spec(false));
        assert!(unit.contains(
            "ExecStart=\"/opt/crab pot/crabpot\" \"--data-dir\" \"/var/lib/crabpot\" \"--config\" \"/etc/crabpot/100%%.toml\" \"serve\"\n"
        ), "{unit}");
        assert!(
            unit.contains("After=docker.service\nWants=docker.service\n"),
            "{unit}"
        );
        assert!(unit.contains("Environment=\"USER=ada\"\n"), "{unit}");
        assert!(
            unit.contains("EnvironmentFile=-/var/lib/crabpot/crabpot.env\n"),
            "{unit}"
        );
        assert!(unit.contains("WantedBy=multi-user.target\n"), "{unit}");
        let user = render(&spec(true));
        assert!(!user.contains("docker.service"), "{user}");
        assert!(user.contains("WantedBy=default.target\n"), "{user}");
    }

    #[test]
    fn arguments_are_quoted_for_systemd() {
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(quote("c:\\x"), "\"c:\\\\x\"");
        assert_eq!(quote("$HOME 5%"), "\"$$HOME 5%%\"");
    }

    #[test]
    fn names_are_plain() {
        assert!(check_name("crabpot").is_ok());
        assert!(check_name("crab-pot_2").is_ok());
        for bad in ["", "../etc/passwd", "a b", "x.service", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
