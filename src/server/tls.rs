//! HTTPS for `cairn serve` (`[server] tls_cert`, `tls_key`): rustls with the ring provider,
//! the same TLS stack the S3 and REST clients use. Handshakes run on tasks of their own, so a
//! slow or silent client never holds up the next connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::{Error, Result};

/// The longest a client may take to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The server's TLS configuration from PEM files.
pub fn config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<std::result::Result<_, _>>())
        .map_err(|e| {
            Error::Invalid(format!(
                "[server] tls_cert {}: {e} (give a PEM certificate chain)",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Invalid(format!(
            "[server] tls_cert {} holds no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::Invalid(format!(
            "[server] tls_key {}: {e} (give a PEM private key)",
            key.display()
        ))
    })?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Invalid(format!("TLS: {e}")))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| {
        Error::Invalid(format!(
            "[server] tls_cert and tls_key do not make a usable pair: {e}"
        ))
    })?;
    Ok(Arc::new(cfg))
}

/// A listener that hands axum connections whose handshake succeeded.
pub struct Listener {
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl Listener {
    /// Accepts on `tcp`, shaking hands with `cfg`.
    pub fn new(tcp: TcpListener, cfg: Arc<rustls::ServerConfig>) -> Listener {
        let addr = tcp.local_addr().expect("a bound listener has an address");
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(cfg);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(_) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await
                    {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Listener { ready, addr }
    }
}

impl axum::serve::Listener for Listener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
