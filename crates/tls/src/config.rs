//! rustls configurations from redis-server's `tls-*` settings (server side) and from a CA
//! file (the control plane's client side).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::TlsError;

/// `tls-auth-clients`: whether clients must present a certificate signed by the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    No,
    Yes,
    Optional,
}

/// The TLS settings a server listener takes (Redis's names in comments).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// `tls-cert-file`, `tls-key-file`.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// `tls-ca-cert-file`: the CA client certificates are checked against.
    pub ca_cert_file: Option<PathBuf>,
    /// `tls-auth-clients`.
    pub auth_clients: ClientAuth,
    /// `tls-protocols`: "TLSv1.2", "TLSv1.3" (rustls has no older ones).
    pub protocols: Vec<String>,
    /// `tls-ciphersuites`: TLS 1.3 suites by their IANA names, colon-separated; empty for
    /// rustls's defaults.
    pub ciphersuites: String,
    /// `tls-session-caching` and `tls-session-cache-size`.
    pub session_caching: bool,
    pub session_cache_size: usize,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid {
            what: "certificate file",
            reason: format!("{}: {e}", path.display()),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn roots(pem: &[u8], what: &'static str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsError::Invalid {
            what,
            reason: e.to_string(),
        })?;
        roots.add(cert)?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server configuration for a listener with `settings`.
pub fn server_config(settings: &ServerSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut provider = (*provider()).clone();
    let suites: Vec<&str> = settings
        .ciphersuites
        .split(':')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if !suites.is_empty() {
        provider.cipher_suites.retain(|s| {
            // TLS 1.2 suites stay (they follow `tls-ciphers`, OpenSSL names rustls lacks).
            s.version() == &rustls::version::TLS12
                || s.suite()
                    .as_str()
                    .is_some_and(|name| suites.contains(&name))
        });
    }
    let mut versions = Vec::new();
    for p in &settings.protocols {
        match p.as_str() {
            "TLSv1.2" => versions.push(&rustls::version::TLS12),
            "TLSv1.3" => versions.push(&rustls::version::TLS13),
            other => {
                return Err(TlsError::Invalid {
                    what: "tls-protocols",
                    reason: format!("'{other}' is not supported (TLSv1.2, TLSv1.3)"),
                });
            }
        }
    }
    if versions.is_empty() {
        versions = vec![&rustls::version::TLS12, &rustls::version::TLS13];
    }
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)?;
    let builder = match (&settings.ca_cert_file, settings.auth_clients) {
        (_, ClientAuth::No) => builder.with_no_client_auth(),
        (None, _) => {
            return Err(TlsError::Invalid {
                what: "tls-auth-clients",
                reason: "needs tls-ca-cert-file to check client certificates against".into(),
            });
        }
        (Some(ca), auth) => {
            let roots = Arc::new(roots(&read(ca)?, "tls-ca-cert-file")?);
            let verifier = WebPkiClientVerifier::builder(roots);
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Invalid {
                what: "tls-ca-cert-file",
                reason: e.to_string(),
            })?)
        }
    };
    let key_pem = read(&settings.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Missing {
        path: settings.key_file.clone(),
        what: "private key",
    })?;
    let mut config = builder.with_single_cert(certs(&settings.cert_file)?, key)?;
    config.session_storage = if settings.session_caching {
        rustls::server::ServerSessionMemoryCache::new(settings.session_cache_size.max(1))
    } else {
        Arc::new(rustls::server::NoServerSessionStorage {})
    };
    Ok(Arc::new(config))
}

/// A client configuration trusting the CA certificates in `ca_pem` only.
pub fn client_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = roots(ca_pem, "CA certificate")?;
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalCa;

    #[test]
    fn a_server_with_the_cas_certificate_completes_a_handshake_with_a_client_trusting_it() {
        let dir = std::env::temp_dir().join(format!("cacheplane-tls-{}", std::process::id()));
        let ca = LocalCa::load_or_create(&dir).unwrap();
        let (cert, key) = (dir.join("node.pem"), dir.join("node-key.pem"));
        let names = ["localhost".to_string(), "127.0.0.1".into()];
        assert!(ca.ensure(&cert, &key, &names).unwrap(), "issued");
        assert!(!ca.ensure(&cert, &key, &names).unwrap(), "fresh: kept");
        assert!(
            ca.ensure(&cert, &key, &names[..1]).unwrap(),
            "other names: reissued"
        );
        // Near its end (as the sidecar records it): renewed.
        std::fs::write(cert.with_extension("names"), "0 localhost 127.0.0.1\n").unwrap();
        assert!(ca.ensure(&cert, &key, &names).unwrap(), "expiring: renewed");
        // Opened again: the same authority.
        assert_eq!(
            LocalCa::load_or_create(&dir).unwrap().cert_pem(),
            ca.cert_pem()
        );
        let key_mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join("ca-key.pem"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(key_mode & 0o777, 0o600);
        let server = server_config(&ServerSettings {
            cert_file: cert,
            key_file: key,
            ca_cert_file: None,
            auth_clients: ClientAuth::No,
            protocols: vec!["TLSv1.3".into()],
            ciphersuites: String::new(),
            session_caching: true,
            session_cache_size: 16,
        })
        .unwrap();
        let client = client_config(ca.cert_pem().as_bytes()).unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut c = rustls::ClientConnection::new(client, name).unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        // Shuttle bytes both ways until the handshake is done.
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets().unwrap();
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        assert!(!c.is_handshaking());
        assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_settings_get_clear_errors() {
        let err = server_config(&ServerSettings {
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
            ca_cert_file: None,
            auth_clients: ClientAuth::No,
            protocols: vec!["TLSv1.1".into()],
            ciphersuites: String::new(),
            session_caching: false,
            session_cache_size: 0,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("TLSv1.1"), "{err}");
    }
}
