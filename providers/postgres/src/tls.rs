//! TLS for tokio-postgres over rustls (aws-lc-rs): the tree's one TLS stack, no OpenSSL and
//! no `ring`.
//!
//! The modes mean what libpq's `sslmode` values of the same names mean:
//! - [`TlsMode::Disable`]: plain TCP.
//! - [`TlsMode::Require`]: encrypted, the certificate not checked (it still proves the
//!   handshake's signatures, and SCRAM channel binding, see below, keeps a man in the middle
//!   from relaying a password login).
//! - [`TlsMode::VerifyFull`]: the chain checked against a CA file (or the platform's roots)
//!   and the server's name (a DNS name or an IP address) against the certificate.
//!
//! Every session reports `tls-server-end-point` channel binding (RFC 5929: the hash of the
//! server's certificate), so SCRAM logins over TLS use SCRAM-SHA-256-PLUS when the server
//! offers it, as libpq does. The connector also offers the ALPN protocol `postgresql`
//! (PostgreSQL 17's direct TLS needs it; older servers ignore it).
//!
//! [`connector`] and [`ssl_mode`] are the whole API, so any client of the tree (the state
//! backend too) configures TLS the same way.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// How a connection to the server is secured (libpq's `sslmode` of the same names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP: only for a server on this machine or behind a tunnel.
    Disable,
    /// Encrypted without checking the certificate (libpq's `sslmode=require`).
    Require,
    /// Encrypted, the certificate chain and the host name checked (libpq's
    /// `sslmode=verify-full`).
    VerifyFull {
        /// PEM file of the CA certificates to trust; `None`: the platform's roots.
        ca_file: Option<PathBuf>,
    },
}

/// The TLS settings could not be loaded (a CA file missing or holding no certificate, no
/// platform roots).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The tokio-postgres `sslmode` for `mode`: TLS is insisted on (never `prefer`, which
/// falls back to plain TCP when the server declines) unless disabled.
pub fn ssl_mode(mode: &TlsMode) -> SslMode {
    match mode {
        TlsMode::Disable => SslMode::Disable,
        TlsMode::Require | TlsMode::VerifyFull { .. } => SslMode::Require,
    }
}

/// The connector for `mode`, to pass to `tokio_postgres::Config::connect` together with
/// [`ssl_mode`]. For [`TlsMode::Disable`] it is never asked to connect.
///
/// # Errors
/// For [`TlsMode::VerifyFull`]: a CA file that cannot be read or holds no certificate, or no
/// CA file and no platform root certificate.
pub fn connector(mode: &TlsMode) -> Result<RustlsConnect, TlsError> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("cannot set up TLS: {e}")))?;
    let mut config = match mode {
        TlsMode::Disable => builder
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
        TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        TlsMode::VerifyFull { ca_file } => {
            let roots = match ca_file {
                Some(path) => file_roots(path)?,
                None => platform_roots()?,
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(RustlsConnect {
        config: Arc::new(config),
    })
}

/// The certificates of the PEM file at `path`.
fn file_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("cannot read the CA file {shown}: {e}")))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError(format!(
            "the CA file {shown} holds no usable certificate (PEM `CERTIFICATE` blocks)"
        )));
    }
    Ok(roots)
}

/// The platform's trusted roots (the system store, or `SSL_CERT_FILE`/`SSL_CERT_DIR`).
fn platform_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(String::new, |e| format!(": {e}"));
        return Err(TlsError(format!(
            "no trusted root certificate found on this machine{why}; name the server's CA \
             file instead"
        )));
    }
    Ok(roots)
}

/// `Require`'s verifier: any certificate is accepted, but the handshake's signatures are
/// still checked (against the certificate presented), as OpenSSL does without verification.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Makes a TLS connector per host (tokio-postgres's `MakeTlsConnect`). Cheap to clone.
#[derive(Clone)]
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for RustlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RustlsConnect")
    }
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsHost;
    type Error = io::Error;

    /// Never fails: the name is checked when a handshake is made, so a plain connection
    /// (tokio-postgres asks for a connector even then) works with any host.
    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsHost, io::Error> {
        Ok(RustlsHost {
            config: Arc::clone(&self.config),
            domain: domain.to_string(),
        })
    }
}

/// The TLS connector for one host (tokio-postgres's `TlsConnect`).
pub struct RustlsHost {
    config: Arc<ClientConfig>,
    domain: String,
}

impl<S> TlsConnect<S> for RustlsHost
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = ServerName::try_from(self.domain.as_str())
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("`{}` is not a host name TLS can verify", self.domain),
                    )
                })?
                .to_owned();
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(name, stream)
                .await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// A TLS session with the server (tokio-postgres's `TlsStream`).
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| tls_server_end_point(cert))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The hash RFC 5929 binds a session to: the certificate hashed with its signature's hash
/// function, SHA-256 for MD5 and SHA-1. `None` for a signature with no single hash
/// (Ed25519, RSA-PSS) or a certificate that does not parse: the login then goes without
/// channel binding, as libpq's would.
fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    let oid = signature_oid(cert)?;
    let hash = match oid {
        _ if oid.starts_with(RSA) && oid.len() == RSA.len() + 1 => match oid[RSA.len()] {
            4 | 5 | 11 => 256,
            12 => 384,
            13 => 512,
            _ => return None,
        },
        _ if oid == [ECDSA, &[0x01]].concat() => 256,
        _ if oid.starts_with(ECDSA) && oid.len() == ECDSA.len() + 2 && oid[ECDSA.len()] == 3 => {
            match oid[ECDSA.len() + 1] {
                2 => 256,
                3 => 384,
                4 => 512,
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(match hash {
        256 => sha2::Sha256::digest(cert).to_vec(),
        384 => sha2::Sha384::digest(cert).to_vec(),
        _ => sha2::Sha512::digest(cert).to_vec(),
    })
}

/// The OID (content bytes) of a DER certificate's `signatureAlgorithm`: `Certificate ::=
/// SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { algorithm OID, .. }, .. }`.
fn signature_oid(der: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, _tbs, rest) = tlv(cert)? else {
        return None;
    };
    let (0x30, algorithm, _) = tlv(rest)? else {
        return None;
    };
    match tlv(algorithm)? {
        (0x06, oid, _) => Some(oid),
        _ => None,
    }
}

/// One DER element: its tag, its content and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = input
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |len, b| (len << 8) | *b as usize);
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_insist_on_tls_unless_disabled() {
        assert_eq!(ssl_mode(&TlsMode::Disable), SslMode::Disable);
        assert_eq!(ssl_mode(&TlsMode::Require), SslMode::Require);
        assert_eq!(
            ssl_mode(&TlsMode::VerifyFull { ca_file: None }),
            SslMode::Require
        );
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_error() {
        let missing = TlsMode::VerifyFull {
            ca_file: Some("/nonexistent/ca.pem".into()),
        };
        let e = connector(&missing).unwrap_err().to_string();
        assert!(
            e.contains("cannot read the CA file /nonexistent/ca.pem"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("flyteinfra-pg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = connector(&TlsMode::VerifyFull {
            ca_file: Some(empty.clone()),
        })
        .unwrap_err()
        .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("holds no usable certificate"), "{e}");
    }

    #[test]
    fn disable_and_require_need_no_roots() {
        connector(&TlsMode::Disable).unwrap();
        connector(&TlsMode::Require).unwrap();
    }

    /// A certificate's DER skeleton with the given signature OID.
    fn cert_with(oid: &[u8]) -> Vec<u8> {
        let tbs = [0x30, 0x03, 0x02, 0x01, 0x01];
        let mut alg = vec![0x30, (oid.len() + 4) as u8, 0x06, oid.len() as u8];
        alg.extend_from_slice(oid);
        alg.extend_from_slice(&[0x05, 0x00]);
        let sig = [0x03, 0x02, 0x00, 0xff];
        let body: Vec<u8> = [&tbs[..], &alg, &sig].concat();
        let mut cert = vec![0x30, body.len() as u8];
        cert.extend(body);
        cert
    }

    #[test]
    fn the_binding_hash_follows_the_signature_algorithm() {
        let rsa256 = cert_with(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]);
        assert_eq!(
            tls_server_end_point(&rsa256),
            Some(sha2::Sha256::digest(&rsa256).to_vec())
        );
        // SHA-1 is bound with SHA-256 (RFC 5929 §4.1).
        let rsa1 = cert_with(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05]);
        assert_eq!(tls_server_end_point(&rsa1).map(|h| h.len()), Some(32));
        let ecdsa384 = cert_with(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]);
        assert_eq!(
            tls_server_end_point(&ecdsa384),
            Some(sha2::Sha384::digest(&ecdsa384).to_vec())
        );
        let rsa512 = cert_with(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d]);
        assert_eq!(tls_server_end_point(&rsa512).map(|h| h.len()), Some(64));
        // Ed25519 and RSA-PSS have no hash to bind with; junk does not parse.
        assert_eq!(tls_server_end_point(&cert_with(&[0x2b, 0x65, 0x70])), None);
        let pss = cert_with(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]);
        assert_eq!(tls_server_end_point(&pss), None);
        assert_eq!(tls_server_end_point(&[0x30, 0x85, 1, 2]), None);
        assert_eq!(tls_server_end_point(&[]), None);
    }
}
