//! TLS as libpq does it, on rustls: the six `sslmode`s, the roots (a PEM file, or the
//! platform's), and a client certificate.

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc};

use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore,
    SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_postgres::config::SslMode as DriverMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the connection is encrypted and the server checked, as libpq's `sslmode` says.
///
/// ```
/// use resilient_circuit_std::postgres::SslMode;
///
/// let mode: SslMode = "verify-full".parse()?;
/// assert_eq!(mode, SslMode::VerifyFull);
/// assert_eq!(mode.to_string(), "verify-full");
/// # Ok::<(), resilient_circuit_std::postgres::SettingsError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext, or TLS if the server insists (tried as `prefer`: TLS when offered).
    Allow,
    /// TLS when the server offers it, else plaintext; the server is not checked. libpq's
    /// default.
    #[default]
    Prefer,
    /// TLS or nothing; the server is checked only if a root certificate is given (then as
    /// `verify-ca`).
    Require,
    /// TLS, and the server's certificate must chain to a trusted root.
    VerifyCa,
    /// TLS, the certificate must chain to a trusted root and name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The spelling libpq uses.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What the driver is asked for: whether TLS is tried, and whether it is required.
    fn driver_mode(self) -> DriverMode {
        match self {
            SslMode::Disable => DriverMode::Disable,
            SslMode::Allow | SslMode::Prefer => DriverMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverMode::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = super::SettingsError;

    fn from_str(mode: &str) -> Result<Self, Self::Err> {
        Ok(match mode.trim() {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(super::SettingsError::BadSslMode(other.to_owned())),
        })
    }
}

/// The TLS settings: the mode, the roots, a client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: SslMode,
    /// A PEM file of trusted roots, or `system` for the platform's.
    pub(crate) root_cert: Option<String>,
    /// A client certificate (PEM) and its key (PEM), for `cert` authentication.
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
}

/// What the connection uses: the driver's mode, and the connector that does the handshake.
#[derive(Clone)]
pub(crate) struct Tls {
    driver_mode: DriverMode,
    pub(crate) connector: MakeRustlsConnect,
}

impl Tls {
    /// Sets the driver's TLS mode on `config`. As libpq: a Unix socket is never encrypted;
    /// hosts given only as addresses (`hostaddr`) are also the names the handshake checks.
    pub(crate) fn configure(&self, config: &mut tokio_postgres::Config) {
        let hosts = config.get_hosts();
        let unix_only = !hosts.is_empty()
            && hosts
                .iter()
                .all(|host| matches!(host, tokio_postgres::config::Host::Unix(_)));
        if hosts.is_empty() {
            for addr in config.get_hostaddrs().to_vec() {
                config.host(addr.to_string());
            }
        }
        config.ssl_mode(if unix_only {
            DriverMode::Disable
        } else {
            self.driver_mode
        });
    }
}

/// How the server's certificate is checked.
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

impl TlsSettings {
    /// The connector for these settings. Reads the files named now, so a missing or
    /// unreadable one is reported at start, with its path.
    pub(crate) fn connector(&self) -> Result<Tls, String> {
        // ring builds with a C compiler alone (aws-lc-rs, rustls' default, wants more of the
        // build machine); it lacks only the post-quantum key exchange, which PostgreSQL servers
        // do not offer yet.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let check = match self.mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => Check::Nothing,
            SslMode::Require if self.root_cert.is_none() => Check::Nothing,
            SslMode::Require | SslMode::VerifyCa => Check::Chain,
            SslMode::VerifyFull => Check::ChainAndName,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            Check::Nothing => Arc::new(Unchecked(Arc::clone(&provider))),
            Check::Chain | Check::ChainAndName => {
                let roots = Arc::new(self.roots()?);
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                        .build()
                        .map_err(|e| format!("cannot use the root certificates: {e}"))?;
                match check {
                    Check::ChainAndName => webpki,
                    _ => Arc::new(ChainOnly(webpki)),
                }
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = read_certs(cert, "sslcert (RC_DB_SSLCERT)")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    format!(
                        "sslkey (RC_DB_SSLKEY) {}: cannot read a private key: {e}",
                        key.display()
                    )
                })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("the client certificate and key do not fit: {e}"))?
            }
        };
        // PostgreSQL 17 asks for it with direct TLS negotiation (`sslnegotiation=direct`).
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Tls {
            driver_mode: self.mode.driver_mode(),
            connector: MakeRustlsConnect::new(config),
        })
    }

    /// The trusted roots: the PEM file named, or the platform's (`system`, or none named:
    /// reached only by `verify-full`, which checks the name as well).
    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match self.root_cert.as_deref() {
            Some(path) if path != "system" => {
                for cert in read_certs(&PathBuf::from(path), "sslrootcert (RC_DB_SSLROOTCERT)")? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("sslrootcert (RC_DB_SSLROOTCERT) {path}: {e}"))?;
                }
            }
            _ => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(format!(
                        "sslmode={} needs trusted roots, and the platform has none; name a PEM file with RC_DB_SSLROOTCERT (sslrootcert)",
                        self.mode
                    ));
                }
            }
        }
        Ok(roots)
    }
}

/// The certificates of the PEM file at `path` (at least one), named for errors by `setting`.
fn read_certs(path: &PathBuf, setting: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "{setting} {}: cannot read certificates: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{setting} {}: no certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// `sslmode` `prefer` or `require` without roots: encrypted, the server not checked (its
/// handshake signatures still are).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
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

/// `verify-ca`: the chain is checked, the name is not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
