//! The files of a [`super::MailServer`]: the certificates (made with `openssl`), Dovecot's
//! `dovecot.conf` and Postfix's `main.cf` and `master.cf`, all pointing into the server's
//! own folder and loopback ports.

use super::{DOMAIN, MAIL_UID};
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

pub(super) fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A CA and a certificate for `localhost` and 127.0.0.1 signed by it.
pub(super) fn make_certificates(dir: &Path) -> anyhow::Result<()> {
    let openssl = |args: &[&str], what: &str| {
        run(
            Command::new("openssl").args(args).current_dir(dir),
            &format!("openssl ({what})"),
        )
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&[
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=crabpot test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&ca, "the CA")?;
    let mut request = vec!["req"];
    request.extend_from_slice(&ec);
    request.extend_from_slice(&[
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&request, "the server key")?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )?;
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
        "the server certificate",
    )?;
    // Dovecot reads the key as root; Postfix's smtpd too (it opens it before dropping).
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    Ok(())
}

/// What the logged-in IMAP server says it can do without IDLE (Dovecot's list, less IDLE).
const CAPABILITIES_WITHOUT_IDLE: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT \
    THREAD=REFERENCES MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED \
    I18NLEVEL=1 CONDSTORE ESEARCH SEARCHRES WITHIN LITERAL+";

/// Dovecot's configuration; `ports` are IMAP (STARTTLS), IMAPS (implicit TLS), LMTP and the
/// auth service for Postfix.
pub(super) fn dovecot_conf(dir: &Path, ports: [u16; 4], idle: bool) -> String {
    let d = dir.display();
    let [imap, imaps, lmtp, auth] = ports;
    let capabilities = if idle {
        String::new()
    } else {
        format!("imap_capability = {CAPABILITIES_WITHOUT_IDLE}\n")
    };
    let name = dir.file_name().map_or("x".into(), |n| n.to_string_lossy());
    format!(
        "base_dir = {d}/dovecot-run
state_dir = {d}/dovecot-state
instance_name = crabpot-{name}
protocols = imap lmtp
listen = 127.0.0.1
log_path = {d}/dovecot.log
ssl = required
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_username_format = %Lu
first_valid_uid = {MAIL_UID}
first_valid_gid = {MAIL_UID}
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {d}/users
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_UID} home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
  unix_listener lmtp {{
    mode = 0
  }}
}}
service auth {{
  inet_listener {{
    address = 127.0.0.1
    port = {auth}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@{DOMAIN}
}}
{capabilities}"
    )
}

pub(super) fn postfix_main_cf(dir: &Path, lmtp: u16, auth: u16) -> String {
    let d = dir.display();
    format!(
        "compatibility_level = 3.6
queue_directory = {d}/postfix/queue
data_directory = {d}/postfix/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.{DOMAIN}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
relay_domains =
virtual_mailbox_domains = {DOMAIN}
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
default_transport = error:no mail leaves the test
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
disable_dns_lookups = yes
maillog_file_prefixes = {d}
maillog_file = {d}/postfix.log
smtpd_tls_security_level = may
smtpd_tls_chain_files = {d}/server.key, {d}/server.pem
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:{auth}
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
biff = no
append_dot_mydomain = no
readme_directory = no
alias_maps =
alias_database =
local_recipient_maps =
message_size_limit = 52428800
smtputf8_enable = no
"
    )
}

/// Postfix's services: an smtpd on loopback with STARTTLS (`smtp`) and one with implicit
/// TLS (`smtps`, as on port 465), the rest private to the queue folder.
pub(super) fn postfix_master_cf(smtp: u16, smtps: u16) -> String {
    let mut out = format!(
        "127.0.0.1:{smtp} inet n - n - - smtpd\n\
         127.0.0.1:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt\n"
    );
    for line in [
        "pickup unix n - n 60 1 pickup",
        "cleanup unix n - n - 0 cleanup",
        "qmgr unix n - n 300 1 qmgr",
        "tlsmgr unix - - n 1000? 1 tlsmgr",
        "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce",
        "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush",
        "proxymap unix - - n - - proxymap",
        "proxywrite unix - - n - 1 proxymap",
        "smtp unix - - n - - smtp",
        "relay unix - - n - - smtp",
        "showq unix n - n - - showq",
        "error unix - - n - - error",
        "retry unix - - n - - error",
        "discard unix - - n - - discard",
        "lmtp unix - - n - - lmtp",
        "anvil unix - - n - 1 anvil",
        "scache unix - - n - 1 scache",
        "postlog unix-dgram n - n - 1 postlogd",
    ] {
        let _ = writeln!(out, "{line}");
    }
    out
}
