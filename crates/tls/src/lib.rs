//! TLS for the nodes and the management API: the control plane's local certificate
//! authority and the certificates it issues (rcgen), and rustls configurations built from
//! redis-server's `tls-*` settings. The only crate that builds certificates; it reads and
//! writes PEM files and nothing else.

mod ca;
mod config;

pub use ca::{Issued, LocalCa};
pub use config::{ClientAuth, ServerSettings, client_config, server_config};
pub use rustls;

/// What went wrong with a certificate, a key or a TLS setting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no {what} in it")]
    Missing {
        path: std::path::PathBuf,
        what: &'static str,
    },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}
