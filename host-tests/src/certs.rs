//! Certificates made for a test: a CA, a server certificate for 127.0.0.1 and `localhost`, a
//! client certificate for a role, and a second CA that signed none of them. Written as PEM
//! files into a directory of the test's own.

use std::{fs, path::PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// The PEM files of one test's certificates.
pub struct TestPki {
    /// Where the files are.
    pub dir: PathBuf,
    /// The CA's certificate (PEM text).
    pub ca_pem: String,
    /// The server's certificate (PEM text).
    pub server_cert_pem: String,
    /// The server's private key (PEM text).
    pub server_key_pem: String,
}

impl TestPki {
    /// Makes the certificates, a client certificate for `client_role`, and writes them into a
    /// fresh directory named after `test`: `ca.pem`, `other-ca.pem`, `client.pem`,
    /// `client.key`.
    pub fn new(test: &str, client_role: &str) -> TestPki {
        let dir = std::env::temp_dir().join(format!("rc-pki-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the certificates' directory");
        let ca = new_ca("resilient-circuit test CA");
        let other = new_ca("another CA");
        let (server_cert, server_key) = signed(
            &ca,
            "127.0.0.1",
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        );
        let (client_cert, client_key) = signed(&ca, client_role, Vec::new());
        let write = |name: &str, text: &str| {
            fs::write(dir.join(name), text).expect("write a certificate file");
        };
        write("ca.pem", &ca.pem());
        write("other-ca.pem", &other.pem());
        write("client.pem", &client_cert);
        write("client.key", &client_key);
        TestPki {
            ca_pem: ca.pem(),
            server_cert_pem: server_cert,
            server_key_pem: server_key,
            dir,
        }
    }

    /// The path of one of the files, as a DSN names it.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("a CA")
}

/// A certificate with common name `name` and these alternative names, signed by `ca`: its PEM
/// and its key's.
fn signed(
    ca: &CertifiedIssuer<'_, KeyPair>,
    name: &str,
    alt_names: Vec<String>,
) -> (String, String) {
    let mut params = CertificateParams::new(alt_names).expect("certificate parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("a key");
    let cert = params.signed_by(&key, ca).expect("a signed certificate");
    (cert.pem(), key.serialize_pem())
}
