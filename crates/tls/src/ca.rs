//! The control plane's local certificate authority: created once under the data dir
//! (`ca.pem`, and `ca-key.pem` readable by its owner only), it signs a certificate per cache
//! (and one for the management API) for the names clients connect to. A user trusts
//! `ca.pem` once.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::TlsError;

/// How long the authority is valid.
const CA_VALIDITY_DAYS: i64 = 3650;
/// How long an issued certificate is valid, and how long before its end it is replaced.
const LEAF_VALIDITY_DAYS: i64 = 365;
const LEAF_RENEW_BEFORE_DAYS: i64 = 30;
const CA_NAME: &str = "cacheplane local CA";

/// The authority: its key and the parameters its certificate was made from (enough to sign
/// with, without parsing the certificate back).
pub struct LocalCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A certificate and its key, in PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "cacheplane");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Writes `text` readable by its owner only (keys), or by anyone (certificates).
fn write_file(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl LocalCa {
    /// Opens the authority in `dir`, creating it on first use.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa, TlsError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca-key.pem");
        let (key, cert_pem) = if key_path.exists() && cert_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let key = KeyPair::from_pem(&key_pem)?;
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            (key, cert_pem)
        } else {
            let key = KeyPair::generate()?;
            let mut params = ca_params();
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::days(1);
            params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
            let cert = params.self_signed(&key)?;
            write_file(&key_path, &key.serialize_pem(), true)?;
            write_file(&cert_path, &cert.pem(), false)?;
            tracing::info!(ca = %cert_path.display(), "created the local certificate authority");
            (key, cert.pem())
        };
        Ok(LocalCa {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(ca_params(), key),
            cert_pem,
        })
    }

    /// The authority's certificate file, the one clients trust.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid `days` from
    /// `not_before`.
    pub fn issue_at(
        &self,
        names: &[String],
        not_before: OffsetDateTime,
        days: i64,
    ) -> Result<Issued, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = not_before;
        params.not_after = not_before + Duration::days(days);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Makes sure `cert`/`key` hold a certificate of this authority for `names` that is
    /// not about to expire, issuing a new one otherwise (then true); the names and the end
    /// of validity are kept beside it (`<cert>.names`), so nothing is parsed back.
    pub fn ensure(&self, cert: &Path, key: &Path, names: &[String]) -> Result<bool, TlsError> {
        let meta = cert.with_extension("names");
        let now = OffsetDateTime::now_utc();
        let wanted = names.join(" ");
        let current = std::fs::read_to_string(&meta).ok().and_then(|m| {
            let (until, have) = m.trim().split_once(' ')?;
            let until = OffsetDateTime::from_unix_timestamp(until.parse().ok()?).ok()?;
            Some((until, have.to_string()))
        });
        let fresh = current.is_some_and(|(until, have)| {
            have == wanted && until - now > Duration::days(LEAF_RENEW_BEFORE_DAYS)
        });
        if fresh && cert.exists() && key.exists() {
            return Ok(false);
        }
        if let Some(dir) = cert.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let not_before = now - Duration::hours(1);
        let issued = self.issue_at(names, not_before, LEAF_VALIDITY_DAYS)?;
        write_file(key, &issued.key_pem, true)?;
        write_file(cert, &issued.cert_pem, false)?;
        let until = (not_before + Duration::days(LEAF_VALIDITY_DAYS)).unix_timestamp();
        write_file(&meta, &format!("{until} {wanted}\n"), false)?;
        tracing::info!(cert = %cert.display(), names = %wanted, "issued a certificate");
        Ok(true)
    }
}
