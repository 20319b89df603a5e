//! A private Postfix and Dovecot (from Debian's packages) on loopback ports, for the email
//! adapter's tests: [`MailServer`].
//!
//! Each test gets its own, in a temporary folder: a CA and a server certificate made with
//! `openssl` (the CA file is what crabpot is told to trust), Dovecot (`dovecot -F -c`) with
//! passwd-file users [`BOT`] and [`ALICE`], maildirs in the folder, IMAP with STARTTLS, LMTP
//! and its auth service (for Postfix's SASL) on loopback ports, and Postfix (`master -d -c`)
//! with its own configuration and queue in the folder, one smtpd on a loopback port
//! (STARTTLS, SASL through Dovecot), every other service private to the folder, the test
//! domain delivered over LMTP to Dovecot and nothing else leaving (no DNS, no relay).
//! The system's own Postfix and Dovecot, if any, are not used. Dropping the [`MailServer`]
//! stops both (SIGTERM).
//!
//! The test's people use [`MailServer::send`] (a plain SMTP session, as a mail client on
//! the same network would) and read what reached a mailbox with [`MailServer::mailbox`]
//! (the maildir Dovecot delivered into).

mod config;

use anyhow::{Context, bail};
use config::{dovecot_conf, make_certificates, postfix_main_cf, postfix_master_cf, run};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const DOMAIN: &str = "crabpot.test";
pub const BOT: &str = "bot@crabpot.test";
pub const BOT_PASSWORD: &str = "bot-Pa55word";
pub const ALICE: &str = "alice@crabpot.test";
const ALICE_PASSWORD: &str = "alice-Pa55word";

/// The uid and gid mail is stored as (Debian's `mail` user).
const MAIL_UID: u32 = 8;

/// How long the servers may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stopped server may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One message found in a mailbox: its file name and raw bytes.
#[derive(Clone, Debug)]
pub struct Mail {
    pub file: String,
    pub raw: Vec<u8>,
}

impl Mail {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("a delivered message parses")
    }
}

pub struct MailServer {
    dir: tempfile::TempDir,
    /// SMTP with STARTTLS.
    pub smtp_port: u16,
    /// SMTP with implicit TLS (as on 465).
    pub smtps_port: u16,
    /// IMAP with STARTTLS.
    pub imap_port: u16,
    /// IMAP with implicit TLS (as on 993).
    pub imaps_port: u16,
    dovecot: Option<Child>,
    postfix: Option<Child>,
}

/// The ports handed out in this process: tests run in parallel, and a port released by one
/// server's pick must not become another's.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Free loopback ports (bound, then released: the servers cannot take a bound socket),
/// never one handed out before in this process.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        // Kept bound until all are picked, so the same port is not given twice.
        listeners.push(listener);
    }
    Ok(ports)
}

async fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

impl MailServer {
    /// Starts both servers and waits until they listen.
    pub async fn start() -> anyhow::Result<MailServer> {
        Self::start_with(true).await
    }

    /// Like [`MailServer::start`], with an IMAP server that does not offer IDLE (so the
    /// adapter polls).
    pub async fn start_without_idle() -> anyhow::Result<MailServer> {
        Self::start_with(false).await
    }

    async fn start_with(idle: bool) -> anyhow::Result<MailServer> {
        let dir = tempfile::Builder::new().prefix("crabpot-mail-").tempdir()?;
        let root = dir.path().to_path_buf();
        // The servers' unprivileged processes (mail, dovecot, postfix) walk into it.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
        make_certificates(&root)?;
        let ports = free_ports(6)?;
        let (smtp_port, imap_port, lmtp_port, auth_port) = (ports[0], ports[1], ports[2], ports[3]);
        let (smtps_port, imaps_port) = (ports[4], ports[5]);

        std::fs::write(
            root.join("users"),
            format!(
                "{BOT}:{{PLAIN}}{BOT_PASSWORD}::::::\n{ALICE}:{{PLAIN}}{ALICE_PASSWORD}::::::\n"
            ),
        )?;
        let mail = root.join("mail");
        std::fs::create_dir(&mail)?;
        std::os::unix::fs::chown(&mail, Some(MAIL_UID), Some(MAIL_UID))?;
        std::fs::write(
            root.join("dovecot.conf"),
            dovecot_conf(&root, [imap_port, imaps_port, lmtp_port, auth_port], idle),
        )?;
        let dovecot = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(root.join("dovecot.out"))?)
            .stderr(std::fs::File::create(root.join("dovecot.err"))?)
            .spawn()
            .context("starting dovecot")?;

        let postfix_dir = root.join("postfix");
        std::fs::create_dir_all(postfix_dir.join("queue"))?;
        std::fs::create_dir_all(postfix_dir.join("data"))?;
        let postfix_user = users_id("postfix")?;
        std::os::unix::fs::chown(postfix_dir.join("data"), Some(postfix_user), None)?;
        std::fs::write(
            postfix_dir.join("main.cf"),
            postfix_main_cf(&root, lmtp_port, auth_port),
        )?;
        std::fs::write(
            postfix_dir.join("master.cf"),
            postfix_master_cf(smtp_port, smtps_port),
        )?;
        let mut server = MailServer {
            dir,
            smtp_port,
            smtps_port,
            imap_port,
            imaps_port,
            dovecot: Some(dovecot),
            postfix: None,
        };
        // `postfix check` makes the queue's folders with their owners and modes.
        run(
            Command::new("postfix")
                .arg("-c")
                .arg(&postfix_dir)
                .arg("check"),
            "postfix check",
        )?;
        server.postfix = Some(server.spawn_postfix()?);

        let deadline = Instant::now() + START_TIMEOUT;
        for (port, what) in [
            (smtp_port, "postfix smtpd"),
            (smtps_port, "postfix smtpd (implicit TLS)"),
            (imap_port, "dovecot imap"),
            (imaps_port, "dovecot imaps"),
            (lmtp_port, "dovecot lmtp"),
            (auth_port, "dovecot auth"),
        ] {
            while !listening(port).await {
                if Instant::now() > deadline {
                    bail!("{what} does not listen on {port}: {}", server.logs());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(server)
    }

    /// Starts the Postfix master of this server's configuration.
    fn spawn_postfix(&self) -> anyhow::Result<Child> {
        let root = self.dir.path();
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(root.join(name))
        };
        Command::new("/usr/lib/postfix/sbin/master")
            .arg("-d")
            .arg("-c")
            .arg(root.join("postfix"))
            .stdin(Stdio::null())
            .stdout(log("postfix.out")?)
            .stderr(log("postfix.err")?)
            .spawn()
            .context("starting the postfix master")
    }

    /// Stops Postfix: the SMTP server is down (IMAP goes on).
    pub fn stop_smtp(&mut self) {
        if let Some(postfix) = self.postfix.take() {
            stop(postfix);
        }
    }

    /// Starts Postfix again after [`MailServer::stop_smtp`] and waits until it listens.
    pub async fn start_smtp(&mut self) -> anyhow::Result<()> {
        if self.postfix.is_none() {
            self.postfix = Some(self.spawn_postfix()?);
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while !listening(self.smtp_port).await {
            if Instant::now() > deadline {
                bail!("postfix does not listen again: {}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA file crabpot is told to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The servers' logs, for failure messages.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- postfix.log\n{}\n--- dovecot.log\n{}\n--- stderr\n{}{}",
            read("postfix.log"),
            read("dovecot.log"),
            read("postfix.err"),
            read("dovecot.err")
        )
    }

    /// The `CRABPOT_EMAIL_*` variables that point crabpot at this server as [`BOT`], over
    /// STARTTLS.
    pub fn bot_env(&self) -> Vec<(String, String)> {
        self.bot_env_with(self.imap_port, self.smtp_port, "starttls")
    }

    /// Like [`MailServer::bot_env`], over implicit TLS for both IMAP and SMTP.
    pub fn bot_env_tls(&self) -> Vec<(String, String)> {
        self.bot_env_with(self.imaps_port, self.smtps_port, "tls")
    }

    fn bot_env_with(&self, imap: u16, smtp: u16, security: &str) -> Vec<(String, String)> {
        [
            ("CRABPOT_EMAIL_ADDRESS", BOT.to_owned()),
            ("CRABPOT_EMAIL_IMAP_HOST", "localhost".to_owned()),
            ("CRABPOT_EMAIL_IMAP_PORT", imap.to_string()),
            ("CRABPOT_EMAIL_IMAP_SECURITY", security.to_owned()),
            ("CRABPOT_EMAIL_SMTP_HOST", "localhost".to_owned()),
            ("CRABPOT_EMAIL_SMTP_PORT", smtp.to_string()),
            ("CRABPOT_EMAIL_SMTP_SECURITY", security.to_owned()),
            ("CRABPOT_EMAIL_PASSWORD", BOT_PASSWORD.to_owned()),
            (
                "CRABPOT_EMAIL_CA_FILE",
                self.ca_file().display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Submits `raw` (an RFC 5322 message, `\n` or `\r\n` line ends) from `from` to `to` in a
    /// plain SMTP session from the loopback network, as a mail client there would.
    pub async fn send(&self, from: &str, to: &str, raw: &str) -> anyhow::Result<()> {
        let stream = TcpStream::connect(("127.0.0.1", self.smtp_port)).await?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut expect = async |code: &str| -> anyhow::Result<()> {
            loop {
                let mut line = String::new();
                if read.read_line(&mut line).await? == 0 {
                    bail!("the SMTP server closed the connection");
                }
                if !line.starts_with(code) {
                    bail!("SMTP answered {line:?}, not {code}");
                }
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Ok(());
                }
            }
        };
        expect("220").await?;
        for (command, code) in [
            ("EHLO client.crabpot.test".to_owned(), "250"),
            (format!("MAIL FROM:<{from}>"), "250"),
            (format!("RCPT TO:<{to}>"), "250"),
            ("DATA".to_owned(), "354"),
        ] {
            write.write_all(format!("{command}\r\n").as_bytes()).await?;
            expect(code).await?;
        }
        let mut data = String::new();
        for line in raw.replace("\r\n", "\n").split('\n') {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        data.push_str(".\r\n");
        write.write_all(data.as_bytes()).await?;
        expect("250").await?;
        write.write_all(b"QUIT\r\n").await?;
        expect("221").await?;
        Ok(())
    }

    /// The messages delivered to `user`'s inbox so far, oldest first.
    pub fn mailbox(&self, user: &str) -> Vec<Mail> {
        let base = self.dir.path().join("mail").join(user);
        let mut found: Vec<(std::time::SystemTime, Mail)> = Vec::new();
        for folder in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(base.join(folder)) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(raw) = std::fs::read(entry.path()) else {
                    continue;
                };
                let modified = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                found.push((
                    modified,
                    Mail {
                        file: entry.file_name().to_string_lossy().into_owned(),
                        raw,
                    },
                ));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.file.cmp(&b.1.file)));
        found.into_iter().map(|(_, mail)| mail).collect()
    }

    /// Polls `user`'s inbox until `pick` finds something, or fails after `timeout`.
    pub async fn wait_mail<T>(
        &self,
        user: &str,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&[Mail]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = pick(&self.mailbox(user)) {
                return Ok(found);
            }
            if Instant::now() > deadline {
                bail!(
                    "{what} never reached {user} within {timeout:?}:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The uid of a system user (from `id -u`).
fn users_id(name: &str) -> anyhow::Result<u32> {
    let output = Command::new("id").arg("-u").arg(name).output()?;
    if !output.status.success() {
        bail!("there is no {name} user: is postfix installed (tests/deps/install.sh)?");
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

/// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL.
fn stop(mut child: Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    // std has no SIGTERM; the `kill` utility sends it (as the host harness does).
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for MailServer {
    fn drop(&mut self) {
        if let Some(postfix) = self.postfix.take() {
            stop(postfix);
        }
        if let Some(dovecot) = self.dovecot.take() {
            stop(dovecot);
        }
    }
}
