//! TLS for the nodes and the management API: the control plane's local certificate
//! authority and the certificates it issues (rcgen), and rustls configurations built from
//! redis-server's `tls-*` settings. The only crate that builds certificates; it reads and
//! writes PEM files and nothing else.

mod ca;
mod config;

pub use ca::{Issued, LocalCa};
pub use config::{ClientAuth, ServerSettings, client_config, server_config};
pub use rustls;

/// The names a certificate of this machine's services carries: the host name clients are
/// told (`--host`), and 127.0.0.1 and localhost, each once.
pub fn server_names(host: &str) -> Vec<String> {
    let mut names = vec![host.to_string()];
    for local in ["127.0.0.1", "localhost"] {
        if !names.iter().any(|n| n == local) {
            names.push(local.to_string());
        }
    }
    names
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn server_names_hold_each_name_once() {
        assert_eq!(
            super::server_names("cache.example.com"),
            ["cache.example.com", "127.0.0.1", "localhost"]
        );
        assert_eq!(super::server_names("localhost"), ["localhost", "127.0.0.1"]);
        assert_eq!(super::server_names("127.0.0.1"), ["127.0.0.1", "localhost"]);
    }
}
