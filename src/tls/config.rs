//! TLS configuration: the context (Beast's `ssl::context`) and helpers that build rustls
//! configurations from PEM files and root stores, always with the `aws-lc-rs` provider.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::{Error, TlsError, TlsErrorKind};

/// A [`TlsErrorKind::Config`] error.
pub(crate) fn config_error(what: impl Into<String>) -> Error {
    Error::Tls(TlsError::new(TlsErrorKind::Config, what))
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> Error {
    match e {
        rustls::pki_types::pem::Error::Io(e) => Error::from(e),
        e => config_error(format!("{}: {e}", path.display())),
    }
}

/// The configurations a [`Stream`](super::Stream) handshakes with (Beast's
/// `ssl::context`): a client configuration, a server configuration, or both. Cheap to
/// clone; share one among every stream of a program.
///
/// ```
/// use rbeast::tls::Context;
/// let ctx = Context::default();
/// assert!(ctx.client_config().is_none() && ctx.server_config().is_none());
/// ```
#[derive(Clone, Default)]
pub struct Context {
    client: Option<Arc<ClientConfig>>,
    server: Option<Arc<ServerConfig>>,
}

impl Context {
    /// A context for client handshakes.
    ///
    /// ```
    /// let roots = rustls::RootCertStore::empty();
    /// let ctx = rbeast::tls::Context::client(rbeast::tls::client_config(roots).unwrap());
    /// assert!(ctx.client_config().is_some());
    /// ```
    pub fn client(config: Arc<ClientConfig>) -> Context {
        Context {
            client: Some(config),
            server: None,
        }
    }

    /// A context for server handshakes.
    ///
    /// ```no_run
    /// let config = rbeast::tls::server_config_from_pem_files("cert.pem", "key.pem").unwrap();
    /// let ctx = rbeast::tls::Context::server(config);
    /// assert!(ctx.server_config().is_some());
    /// ```
    pub fn server(config: Arc<ServerConfig>) -> Context {
        Context {
            client: None,
            server: Some(config),
        }
    }

    /// This context with `config` for client handshakes too.
    ///
    /// ```
    /// let roots = rustls::RootCertStore::empty();
    /// let client = rbeast::tls::client_config(roots).unwrap();
    /// let ctx = rbeast::tls::Context::default().with_client(client);
    /// assert!(ctx.client_config().is_some());
    /// ```
    pub fn with_client(mut self, config: Arc<ClientConfig>) -> Context {
        self.client = Some(config);
        self
    }

    /// This context with `config` for server handshakes too.
    ///
    /// ```no_run
    /// let server = rbeast::tls::server_config_from_pem_files("cert.pem", "key.pem").unwrap();
    /// let ctx = rbeast::tls::Context::default().with_server(server);
    /// ```
    pub fn with_server(mut self, config: Arc<ServerConfig>) -> Context {
        self.server = Some(config);
        self
    }

    /// The client configuration, if any.
    ///
    /// ```
    /// assert!(rbeast::tls::Context::default().client_config().is_none());
    /// ```
    pub fn client_config(&self) -> Option<&Arc<ClientConfig>> {
        self.client.as_ref()
    }

    /// The server configuration, if any.
    ///
    /// ```
    /// assert!(rbeast::tls::Context::default().server_config().is_none());
    /// ```
    pub fn server_config(&self) -> Option<&Arc<ServerConfig>> {
        self.server.as_ref()
    }
}

/// The crypto provider of every configuration built here: rustls's `aws-lc-rs` provider
/// (rustls's default one), with the TLS 1.2 and 1.3 suites browsers use. It is chosen for
/// speed: AWS-LC's AES-GCM uses the widest vector instructions the CPU has (VAES with
/// AVX-512 where available), which made a `wss://` echo of 16 KiB messages about 14%
/// cheaper than with the `ring` provider (see `docs/performance.md`). It builds with a C
/// compiler alone on Linux and macOS.
/// Its suites are reordered to prefer AES-128-GCM, as browsers do; every suite of the
/// provider stays available.
///
/// Configurations built elsewhere, with another provider, work with [`Context`] just the
/// same.
///
/// ```
/// use rbeast::tls::rustls::CipherSuite;
/// let provider = rbeast::tls::crypto_provider();
/// assert_eq!(provider.cipher_suites[0].suite(), CipherSuite::TLS13_AES_128_GCM_SHA256);
/// assert!(provider.cipher_suites.len() > 3);
/// ```
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // AES-128-GCM first (as browsers order it): as strong as needed and, with AES
    // instructions, a third faster than AES-256-GCM, which stays offered.
    provider
        .cipher_suites
        .sort_by_key(|suite| !is_aes_128_gcm(suite.suite()));
    Arc::new(provider)
}

fn is_aes_128_gcm(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as S;
    matches!(
        suite,
        S::TLS13_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    )
}

/// Reads every certificate of a PEM file (a chain: the leaf first).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Tls`] of kind
/// [`Config`](crate::TlsErrorKind::Config) when it is not PEM or holds no certificate.
///
/// ```
/// assert!(rbeast::tls::load_certs("/no/such/file.pem").is_err());
/// ```
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>, Error> {
    let path = path.as_ref();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(config_error(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Tls`] of kind
/// [`Config`](crate::TlsErrorKind::Config) when it holds no key.
///
/// ```
/// assert!(rbeast::tls::load_private_key("/no/such/key.pem").is_err());
/// ```
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, Error> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e))
}

/// A server configuration presenting `certs` (the leaf first) with `key`, no client
/// authentication, TLS 1.2 and 1.3.
///
/// # Errors
/// [`Error::Tls`] when the key does not fit the certificate or is not supported.
///
/// ```
/// let key = rcgen::KeyPair::generate().unwrap();
/// let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
///     .unwrap()
///     .self_signed(&key)
///     .unwrap();
/// let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
/// let config = rbeast::tls::server_config(vec![cert.der().clone()], key).unwrap();
/// assert!(config.alpn_protocols.is_empty());
/// ```
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, Error> {
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| super::engine::map_rustls_error(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| config_error(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A server configuration from a PEM certificate chain and a PEM private key (the
/// arguments of Beast's `use_certificate_chain` and `use_private_key`).
///
/// # Errors
/// As [`load_certs`], [`load_private_key`] and [`server_config`].
///
/// ```
/// assert!(rbeast::tls::server_config_from_pem_files("/no/cert.pem", "/no/key.pem").is_err());
/// ```
pub fn server_config_from_pem_files(
    cert_chain: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>, Error> {
    server_config(load_certs(cert_chain)?, load_private_key(key)?)
}

/// A client configuration trusting `roots`, TLS 1.2 and 1.3, no client certificate.
///
/// # Errors
/// [`Error::Tls`] when the provider offers no usable protocol version (not with `aws-lc-rs`).
///
/// ```
/// let config = rbeast::tls::client_config(rustls::RootCertStore::empty()).unwrap();
/// # drop(config);
/// ```
pub fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, Error> {
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| super::engine::map_rustls_error(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration trusting the certificates of a PEM file (a private CA, or a
/// self-signed server certificate).
///
/// # Errors
/// As [`load_certs`]; [`Error::Tls`] of kind [`Config`](crate::TlsErrorKind::Config)
/// when a certificate is not a usable trust anchor.
///
/// ```
/// assert!(rbeast::tls::client_config_from_ca_pem_file("/no/such/ca.pem").is_err());
/// ```
pub fn client_config_from_ca_pem_file(path: impl AsRef<Path>) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| config_error(format!("bad CA certificate: {e}")))?;
    }
    client_config(roots)
}

/// A client configuration trusting the platform's root certificates (the system store,
/// through `rustls-native-certs`). Certificates the platform lists but rustls cannot parse
/// are skipped.
///
/// # Errors
/// [`Error::Tls`] of kind [`Config`](crate::TlsErrorKind::Config) when no usable root
/// certificate was found.
///
/// ```no_run
/// let config = rbeast::tls::client_config_native_roots().unwrap();
/// # drop(config);
/// ```
pub fn client_config_native_roots() -> Result<Arc<ClientConfig>, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _skipped) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "the platform has no root certificates".into());
        return Err(config_error(why));
    }
    client_config(roots)
}
