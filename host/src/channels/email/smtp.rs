//! [`Smtp`]: sending through the SMTP server with `lettre`, over implicit TLS or STARTTLS
//! (required: a server that does not offer it is refused), authenticated with the account.
//!
//! Answers are classified for delivery: a 4xx or a connection failure is
//! `ChannelError::Unavailable` (retried), a 5xx is `ChannelError::Rejected`. Errors name the
//! server's answer, never the password (lettre does not echo credentials).

use crate::config::email::{EmailConfig, Security};
use crate::edge::ChannelError;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// How long one SMTP exchange may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Smtp {
    /// The transport for `config`, trusting the public roots and the certificates in
    /// `extra_roots` (PEM). Nothing is sent until [`Smtp::send`].
    pub fn new(config: &EmailConfig, extra_roots: Option<&[u8]>) -> Result<Smtp, ChannelError> {
        let server = &config.smtp;
        let mut tls = TlsParameters::builder(server.host.clone());
        if let Some(pem) = extra_roots {
            let certificate = Certificate::from_pem(pem).map_err(|e| {
                ChannelError::Rejected(format!("channels.email.ca_file is not usable: {e}"))
            })?;
            tls = tls.add_root_certificate(certificate);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| ChannelError::Rejected(format!("SMTP TLS set-up failed: {e}")))?;
        let tls = match server.security {
            Security::Tls => Tls::Wrapper(tls),
            Security::Starttls => Tls::Required(tls),
        };
        let domain = config
            .address
            .rsplit_once('@')
            .map_or("localhost", |(_, domain)| domain)
            .to_owned();
        let transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host.clone())
                .port(server.port)
                .tls(tls)
                .hello_name(ClientId::Domain(domain))
                .credentials(Credentials::new(
                    config.username.clone(),
                    config.password.expose_secret().to_owned(),
                ))
                .timeout(Some(SEND_TIMEOUT))
                .build();
        Ok(Smtp { transport })
    }

    /// Sends `message` to the recipients of its headers.
    pub async fn send(&self, message: &Message) -> Result<(), ChannelError> {
        match self.transport.send(message.clone()).await {
            Ok(_) => Ok(()),
            Err(error) => Err(classify(&error)),
        }
    }
}

fn classify(error: &lettre::transport::smtp::Error) -> ChannelError {
    let text = error.to_string();
    if error.is_permanent() {
        ChannelError::Rejected(format!("the SMTP server refused the email: {text}"))
    } else {
        // 4xx, timeouts, connection and TLS trouble: the server may take it later.
        ChannelError::Unavailable(format!("smtp: {text}"))
    }
}
