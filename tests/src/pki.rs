//! A private CA and certificates made fresh by a test (rcgen), for NTS-KE over TLS on loopback:
//! PEM files in a temporary directory, the private keys mode 0600.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A CA and the files of the server certificates it signed.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pki({})", self.dir.path().display())
    }
}

/// One certificate's files.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    /// The certificate, PEM.
    pub certificate: PathBuf,
    /// Its private key, PEM (PKCS#8), mode 0600.
    pub private_key: PathBuf,
}

impl Pki {
    /// A new CA named `name`; its certificate is written to [`Pki::ca_file`].
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ntp-pki-")
            .tempdir()
            .expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&ca_key).expect("CA certificate");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        Self { dir, ca, ca_key }
    }

    /// The CA certificate, PEM.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `localhost` and 127.0.0.1 (and ::1), files named after `name`;
    /// `expired` makes one whose validity ended in 2021.
    pub fn server(&self, name: &str, expired: bool) -> ServerFiles {
        use std::os::unix::fs::PermissionsExt as _;
        let key = KeyPair::generate().expect("server key");
        let names = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let certificate = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("server certificate");
        let files = ServerFiles {
            certificate: self.dir.path().join(format!("{name}.crt")),
            private_key: self.dir.path().join(format!("{name}.key")),
        };
        std::fs::write(&files.certificate, certificate.pem()).expect("write certificate");
        std::fs::write(&files.private_key, key.serialize_pem()).expect("write key");
        std::fs::set_permissions(&files.private_key, std::fs::Permissions::from_mode(0o600))
            .expect("chmod key");
        files
    }
}
