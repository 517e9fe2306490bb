//! TLS to Redis (its `tls-port`): the CA that signed the Redis certificates,
//! and a client certificate when Redis requires one (`tls-auth-clients`).
//! Used by every connection the daemon makes — the role logic (through the
//! `redis` crate), the health check and the FIN/RST probe (through rustls).
use std::{fmt, io, path::Path, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;

#[derive(Clone)]
pub struct Tls {
    ca_pem: Vec<u8>,
    /// Client certificate and key, PEM. Never printed.
    client: Option<(Vec<u8>, Vec<u8>)>,
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tls {{ client certificate: {} }}", self.client.is_some())
    }
}

/// rustls needs one crypto provider per process; ring, installed once.
fn provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Tls {
    /// Reads and checks the files; each error names the key and the file.
    pub fn load(ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<Self, String> {
        provider();
        let read = |p: &Path, what: &str| {
            std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()))
        };
        let ca_pem = read(ca, "tls_ca_file")?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca_pem) {
            let c = c.map_err(|e| format!("tls_ca_file {}: {e}", ca.display()))?;
            roots
                .add(c)
                .map_err(|e| format!("tls_ca_file {}: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!(
                "tls_ca_file {}: no PEM certificate in it (valid: the CA that signed the Redis certificates, PEM)",
                ca.display()
            ));
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let (config, client) = match (cert, key) {
            (None, None) => (builder.with_no_client_auth(), None),
            (Some(c), Some(k)) => {
                let cert_pem = read(c, "tls_cert_file")?;
                let key_pem = crate::secret::read(k, "tls_key_file")?;
                let certs = CertificateDer::pem_slice_iter(&cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("tls_cert_file {}: {e}", c.display()))?;
                if certs.is_empty() {
                    return Err(format!(
                        "tls_cert_file {}: no PEM certificate in it",
                        c.display()
                    ));
                }
                let pk = PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|e| format!("tls_key_file {}: {e}", k.display()))?;
                let config = builder.with_client_auth_cert(certs, pk).map_err(|e| {
                    format!(
                        "tls_cert_file {} with tls_key_file {}: {e}",
                        c.display(),
                        k.display()
                    )
                })?;
                (config, Some((cert_pem, key_pem)))
            }
            _ => {
                return Err(
                    "tls_cert_file and tls_key_file go together (a client certificate and its key)"
                        .into(),
                );
            }
        };
        Ok(Self {
            ca_pem,
            client,
            config: Arc::new(config),
        })
    }

    /// The same material for the `redis` crate.
    pub fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self.client.as_ref().map(|(c, k)| redis::ClientTlsConfig {
                client_cert: c.clone(),
                client_key: k.clone(),
            }),
            root_cert: Some(self.ca_pem.clone()),
        }
    }

    /// The TLS handshake over `tcp`, verifying the server as `host` (an IP
    /// address or a name in its certificate).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }
}
