//! The TLS trust of both mail connections: the public roots (`webpki-roots`) plus, for a
//! private mail server, the CA certificates of `channels.email.ca_file`. IMAP uses
//! [`client_config`] with `tokio-rustls`; SMTP hands the same PEM to `lettre`
//! ([`extra_roots_pem`]). Both run on the rustls + ring stack the host already has.

use crate::edge::ChannelError;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The largest CA file read.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// The PEM text of the extra CA file; `None` without one.
pub fn extra_roots_pem(ca_file: Option<&Path>) -> Result<Option<Vec<u8>>, ChannelError> {
    let Some(path) = ca_file else {
        return Ok(None);
    };
    let unreadable = |why: String| {
        ChannelError::Rejected(format!(
            "the CA file {} (channels.email.ca_file) {why}",
            path.display()
        ))
    };
    let size = std::fs::metadata(path)
        .map_err(|e| unreadable(format!("cannot be read: {e}")))?
        .len();
    if size > MAX_CA_FILE_BYTES {
        return Err(unreadable(format!(
            "is larger than {MAX_CA_FILE_BYTES} bytes"
        )));
    }
    std::fs::read(path)
        .map(Some)
        .map_err(|e| unreadable(format!("cannot be read: {e}")))
}

/// A rustls client configuration trusting the public roots and the certificates in `pem`.
pub fn client_config(pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, ChannelError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| {
                ChannelError::Rejected(format!(
                    "channels.email.ca_file is not PEM certificates: {e}"
                ))
            })?;
            roots.add(cert).map_err(|e| {
                ChannelError::Rejected(format!("channels.email.ca_file has a bad certificate: {e}"))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(ChannelError::Rejected(
                "channels.email.ca_file holds no certificate".into(),
            ));
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ChannelError::Rejected(format!("TLS set-up failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
