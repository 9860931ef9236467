//! TLS (rustls, ring provider) for every port: tonic's own server TLS for
//! the agents' gRPC port, and a handshaking listener for the HTTP API and
//! for OpAMP.
//! Certificates are read and parsed at startup, so a wrong path or a key
//! that does not match fails there with a clear message, not at the first
//! connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A TLS handshake must finish within this; a client that stalls (or a
/// scanner) does not hold a slot longer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once on the HTTP port.
const MAX_HANDSHAKES: usize = 256;

/// The certificate files as given on the command line.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Agents must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// Certificates and key, read and checked.
#[derive(Clone)]
pub struct TlsMaterial {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
    http: Arc<rustls::ServerConfig>,
    /// The OpAMP port: HTTP/1.1 like the API, and the agents' client
    /// certificate rule (`--client-ca`) like the gRPC port.
    opamp: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("client_ca", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

impl TlsMaterial {
    /// Read and check the files.
    pub fn load(files: &TlsFiles) -> Result<TlsMaterial, String> {
        let cert_pem = read(&files.cert, "certificate")?;
        let key_pem = read(&files.key, "private key")?;
        let certs = certificates(&cert_pem, &files.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| format!("{}: no usable private key: {e}", files.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (client_ca_pem, client_verifier) = match &files.client_ca {
            Some(p) => {
                let pem = read(p, "client CA")?;
                let cas = certificates(&pem, p)?;
                let mut roots = rustls::RootCertStore::empty();
                for ca in cas {
                    roots
                        .add(ca)
                        .map_err(|e| format!("{}: unusable CA certificate: {e}", p.display()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| format!("{}: unusable client CA: {e}", p.display()))?;
                (Some(pem), Some(verifier))
            }
            None => (None, None),
        };
        let unusable = |e: rustls::Error| {
            format!(
                "{} and {} do not make a usable certificate and key: {e}",
                files.cert.display(),
                files.key.display()
            )
        };
        let builder = || {
            rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())
        };
        let mut http = builder()?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(unusable)?;
        // The API speaks HTTP/1.1 only.
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut opamp = match client_verifier {
            Some(v) => builder()?.with_client_cert_verifier(v),
            None => builder()?.with_no_client_auth(),
        }
        .with_single_cert(certs, key)
        .map_err(unusable)?;
        opamp.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsMaterial {
            cert_pem,
            key_pem,
            client_ca_pem,
            http: Arc::new(http),
            opamp: Arc::new(opamp),
        })
    }

    /// Whether agents must present a client certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    /// tonic's server TLS for the agents' port.
    pub fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        let identity = tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem);
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(identity)
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &self.client_ca_pem {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        config
    }

    /// A listener for axum that hands over connections once their TLS
    /// handshake is done.
    pub fn http_listener(&self, tcp: TcpListener, stop: watch::Receiver<bool>) -> TlsListener {
        TlsListener::spawn(tcp, TlsAcceptor::from(self.http.clone()), stop)
    }

    /// The same for the OpAMP port, which asks for client certificates
    /// when `--client-ca` is set.
    pub fn opamp_listener(&self, tcp: TcpListener, stop: watch::Receiver<bool>) -> TlsListener {
        TlsListener::spawn(tcp, TlsAcceptor::from(self.opamp.clone()), stop)
    }
}

/// Accepts TCP connections and runs each TLS handshake in its own task, so
/// one slow client never blocks the others; finished handshakes are queued
/// for [`axum::serve`].
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn spawn(
        tcp: TcpListener,
        acceptor: TlsAcceptor,
        mut stop: watch::Receiver<bool>,
    ) -> TlsListener {
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = crate::stopped(&mut stop) => break,
                    _ = tx.closed() => break,
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off
                            // instead of spinning.
                            tracing::warn!(error = %e, "HTTP accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop stopped (shutdown): nothing will come again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
