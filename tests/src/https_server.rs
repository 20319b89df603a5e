//! A loopback static file server for the egress suite: [`StaticServer::https`] serves a
//! folder over TLS with a fresh self-signed certificate for `127.0.0.1` (made with the
//! `openssl` command), [`StaticServer::http`] over plain HTTP. Both run
//! `tests/deps/static_server.py` (Python's standard library only) on `127.0.0.1:<port 0>`.
//! [`bare_repo`] makes a bare git repository in such a folder that git can clone (dumb or smart
//! HTTP) and push to (smart HTTP: the script runs `git http-backend`). Dropping the server kills
//! it.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running static file server.
pub struct StaticServer {
    child: Child,
    port: u16,
    /// Holds the certificate and key (HTTPS only).
    _certificate_dir: Option<tempfile::TempDir>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deps/static_server.py")
}

impl StaticServer {
    /// Serves `dir` over plain HTTP.
    pub fn http(dir: &Path) -> anyhow::Result<Self> {
        Self::spawn(dir, None)
    }

    /// Serves `dir` over HTTPS with a self-signed certificate for IP 127.0.0.1.
    pub fn https(dir: &Path) -> anyhow::Result<Self> {
        let certificate_dir = tempfile::tempdir()?;
        let cert = certificate_dir.path().join("cert.pem");
        let key = certificate_dir.path().join("key.pem");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running openssl to make a test certificate")?;
        if !status.success() {
            bail!("openssl req failed: {status}");
        }
        let mut server = Self::spawn(dir, Some((&cert, &key)))?;
        server._certificate_dir = Some(certificate_dir);
        Ok(server)
    }

    fn spawn(dir: &Path, tls: Option<(&Path, &Path)>) -> anyhow::Result<Self> {
        let mut command = Command::new("python3");
        command.arg(script()).arg("--dir").arg(dir);
        if let Some((cert, key)) = tls {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let (child, port) = spawn_printing_port(&mut command, "static_server.py")?;
        Ok(Self {
            child,
            port,
            _certificate_dir: None,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Spawns a server script that prints its port on the first line of stdout once it listens
/// (or exits on an error), and returns it with that port. Its stderr goes to the test's.
pub(crate) fn spawn_printing_port(
    command: &mut Command,
    what: &str,
) -> anyhow::Result<(Child, u16)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    match line.trim().parse::<u16>() {
        Ok(port) => Ok((child, port)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not print its port (got {line:?})")
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=crabpot test",
            "-c",
            "user.email=test@crabpot.invalid",
        ])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .context("running git")?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Makes `<site>/<name>.git`, a bare repository with one commit holding `files`, ready for
/// git's dumb HTTP protocol (`git update-server-info`) and open to pushes over smart HTTP
/// (`http.receivepack`, which `git http-backend` otherwise grants only to authenticated users).
pub fn bare_repo(site: &Path, name: &str, files: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
    let work = tempfile::tempdir()?;
    git(work.path(), &["init", "-q"])?;
    for (path, content) in files {
        std::fs::write(work.path().join(path), content)?;
        git(work.path(), &["add", path])?;
    }
    git(work.path(), &["commit", "-q", "-m", "the first commit"])?;
    let bare = site.join(format!("{name}.git"));
    let bare_text = bare.to_string_lossy().into_owned();
    git(
        site,
        &[
            "clone",
            "-q",
            "--bare",
            &work.path().to_string_lossy(),
            &bare_text,
        ],
    )?;
    git(&bare, &["update-server-info"])?;
    git(&bare, &["config", "http.receivepack", "true"])?;
    Ok(bare)
}

/// `git log -1 --format=<format> <rev>` in `repo`, as the host sees it.
pub fn git_show(repo: &Path, rev: &str, format: &str) -> anyhow::Result<String> {
    let output = Command::new("git")
        .args(["log", "-1", &format!("--format={format}"), rev])
        .current_dir(repo)
        .output()
        .context("running git log")?;
    if !output.status.success() {
        bail!(
            "git log {rev} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
