//! The server identity: one P-256 key in a key store (software by default,
//! PKCS#11 allowed) and a self-signed server certificate for it, shared by
//! gate and master. Terminals pin the SHA-256 of its SubjectPublicKeyInfo,
//! so the certificate is renewed on the same key when it nears expiry and
//! the pin never changes.
//!
//! The default software store needs a passphrase: at first start a random
//! one is written to `<data_dir>/identity.passphrase` (mode 0600). That
//! protects the key as well as the data directory's permissions do; an
//! HSM (`identity_keystore = "pkcs11:…"`) keeps it out of reach entirely.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pairgate_keystore::{Alias, KeyStore, KeyStoreUri, Passphrase};
use pairgate_pki::{CertificateInfo, KeyAlgorithm, SpkiPin, Subject};
use rustls::sign::CertifiedKey;

use crate::ServerError;

/// The alias of the server key.
pub const SERVER_ALIAS: &str = "pairgate-server";
/// Self-signed certificate lifetime, in days: with the five minutes its
/// validity starts early (clock skew), the whole stays within the 398
/// days browsers and the CA/Browser Forum accept for a server certificate.
pub const CERT_DAYS: u32 = 397;
/// Renew when less than this is left.
pub(crate) const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// The identity gate and master present now, its pin and certificate: a
/// rotation's activation or a certificate renewal replaces it while they
/// serve.
#[derive(Debug)]
pub(crate) struct Presented(std::sync::RwLock<(SpkiPin, ServedCertificate)>);

impl Presented {
    /// Starting with `identity`.
    pub(crate) fn new(identity: &ServerIdentity) -> Self {
        Self(std::sync::RwLock::new((identity.pin, identity.certificate)))
    }

    fn read(&self) -> (SpkiPin, ServedCertificate) {
        *self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The pin now.
    pub(crate) fn get(&self) -> SpkiPin {
        self.read().0
    }

    /// The certificate now.
    pub(crate) fn certificate(&self) -> ServedCertificate {
        self.read().1
    }

    fn set(&self, identity: &ServerIdentity) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            (identity.pin, identity.certificate);
    }
}

/// Follows the identity the store records: when a rotation's activation
/// moves it, or when the self-signed certificate comes within
/// [`RENEW_BEFORE`] of its end (renewed on the same key, as at start),
/// loads the identity from the key store and presents it on `servers`
/// (gate and master) from the next handshake on, checking every `every`
/// until `shutdown`.
pub(crate) async fn follow(
    settings: crate::Settings,
    store: pairgate_store::Store,
    current: Arc<Presented>,
    servers: Vec<pairgate_tls::server::TlsServer>,
    (every, clock): (Duration, pairgate_clock::Clock),
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let served = current.certificate();
        let renew = !served.operator_issued && clock.now() + RENEW_BEFORE > served.not_after;
        let recorded = match store.recorded_identity().await {
            Ok(Some(pin)) if pin != current.get() || renew => pin,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading the recorded server identity failed");
                continue;
            }
        };
        let (uri, pass) = (
            settings.identity_keystore(),
            settings.identity_passphrase_file(),
        );
        let (names, now) = (settings.server_names.clone(), clock.now());
        let loaded = tokio::task::spawn_blocking(move || {
            load_pinned(&uri, &pass, &names, now, Creating::Refused, Some(recorded))
        })
        .await;
        match loaded {
            Ok(Ok(identity)) if identity.pin == recorded => {
                for server in &servers {
                    server.replace_identity(identity.certified_key.clone());
                }
                if recorded == current.get() {
                    tracing::info!(pin = %recorded, "server certificate renewed on the same key");
                } else {
                    tracing::info!(pin = %recorded, previous = %current.get(), "server key rotated: presenting the activated key");
                }
                current.set(&identity);
            }
            Ok(Ok(identity)) => {
                tracing::error!(recorded = %recorded, found = %identity.pin, "the store's server identity was rotated to a key this instance's key store does not hold; still presenting the old key: give this instance the rotated key store")
            }
            Ok(Err(e)) => tracing::error!(error = %e, "loading the rotated server key failed"),
            Err(e) => tracing::error!(error = %e, "loading the rotated server key failed"),
        }
    }
}

/// The loaded identity.
#[derive(Clone, Debug)]
pub struct ServerIdentity {
    /// Certificate and key for rustls.
    pub certified_key: Arc<CertifiedKey>,
    /// SPKI pin of the key: what terminals pin.
    pub pin: SpkiPin,
    /// The key store, described.
    pub keystore: String,
    /// The certificate served, for operators to watch.
    pub certificate: ServedCertificate,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> ServerError {
    move |e| ServerError::Identity(format!("{context}: {e}"))
}

/// Reads the passphrase file, creating it with 32 random bytes (hex) when
/// missing.
fn passphrase(path: &Path) -> Result<Passphrase, ServerError> {
    if !path.exists() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        let mut bytes = [0u8; 32];
        // aws-lc aborts the process rather than return weak randomness.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .map_err(io(format!("creating {}", path.display())))?;
        file.write_all(hex::encode(bytes).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io(format!("writing {}", path.display())))?;
    }
    Ok(Passphrase::from_file(path)?)
}

/// Whether [`load`] may make the identity's key when it is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creating {
    /// Make it: the first start of the first instance (or `server init`).
    Allowed,
    /// Refuse: the store records an identity already, or this instance
    /// runs only some services and must present the one all share.
    Refused,
}

/// How an operator gives an instance the identity the store records.
const PROVIDE_IDENTITY: &str = "copy the identity from the first instance (the identity \
     key store directory and identity.passphrase of its data directory), or point \
     identity_keystore at the PKCS#11 token that holds it; docs/operations.md \
     (\"Sharing the identity\") says how";

/// Loads the server identity, creating the key (when `creating` allows)
/// and the certificate, and renewing the certificate (same key) when it
/// nears expiry.
pub fn load(
    keystore_uri: &str,
    passphrase_file: &Path,
    server_names: &[String],
    now: SystemTime,
    creating: Creating,
) -> Result<ServerIdentity, ServerError> {
    load_pinned(
        keystore_uri,
        passphrase_file,
        server_names,
        now,
        creating,
        None,
    )
}

/// The alias of the key whose pin is `want` (the identity the store
/// records: after a rotation, the key it announced), else
/// [`SERVER_ALIAS`].
pub fn alias_for(store: &dyn KeyStore, want: Option<SpkiPin>) -> Result<Alias, ServerError> {
    if let Some(want) = want
        && let Some(entry) = store
            .aliases()?
            .into_iter()
            .find(|e| e.public_key_pin == want)
    {
        return Ok(entry.alias);
    }
    Ok(Alias::new(SERVER_ALIAS)?)
}

/// [`load`], presenting the key whose pin is `want` when the key store
/// holds it.
pub fn load_pinned(
    keystore_uri: &str,
    passphrase_file: &Path,
    server_names: &[String],
    now: SystemTime,
    creating: Creating,
    want: Option<SpkiPin>,
) -> Result<ServerIdentity, ServerError> {
    let uri: KeyStoreUri = keystore_uri.parse()?;
    let create = creating == Creating::Allowed;
    let missing = |what: String| {
        ServerError::Identity(format!(
            "{what}, and this instance may not create one; {PROVIDE_IDENTITY}"
        ))
    };
    let pass = match &uri {
        KeyStoreUri::File(_) if create => Some(passphrase(passphrase_file)?),
        KeyStoreUri::File(_) if !passphrase_file.exists() => {
            return Err(missing(format!(
                "the identity passphrase {} is missing",
                passphrase_file.display()
            )));
        }
        KeyStoreUri::File(_) => Some(Passphrase::from_file(passphrase_file)?),
        KeyStoreUri::Pkcs11(_) => None,
    };
    let store: Arc<dyn KeyStore> = match pairgate_keystore::open(&uri, pass, create) {
        Ok(store) => Arc::from(store),
        Err(e) if !create => {
            return Err(missing(format!(
                "the identity key store cannot be opened ({e})"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let alias = alias_for(store.as_ref(), want)?;
    let public = match store.public_key(&alias) {
        Ok(public) => public,
        Err(pairgate_keystore::KeyStoreError::NoSuchAlias(_)) if create => {
            store.generate_key(&alias, KeyAlgorithm::P256)?
        }
        Err(pairgate_keystore::KeyStoreError::NoSuchAlias(_)) => {
            return Err(missing(format!(
                "the key store {} holds no identity key",
                store.describe()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let certificate = renew_certificate(store.as_ref(), &alias, server_names, now)?;
    let certified_key = pairgate_tls::alias_certified_key(store.clone(), &alias)?;
    Ok(ServerIdentity {
        certified_key,
        pin: public.pin(),
        keystore: store.describe(),
        certificate,
    })
}

/// Refuses an identity whose pin differs from the one the store records
/// (`recorded`), saying how to provide the right one.
pub fn check_recorded(identity: &ServerIdentity, recorded: SpkiPin) -> Result<(), ServerError> {
    if identity.pin == recorded {
        return Ok(());
    }
    Err(ServerError::Identity(format!(
        "this instance's identity key ({}) is not the server identity the store records \
         ({recorded}) that terminals have pinned; refusing to serve with it: {PROVIDE_IDENTITY}",
        identity.pin
    )))
}

/// The certificate the identity serves, as far as operators watch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServedCertificate {
    /// The leaf's end of validity.
    pub not_after: SystemTime,
    /// Issued by someone else (the operator's or acquirer's CA), so
    /// served as given and never replaced without the operator's word.
    pub operator_issued: bool,
}

/// Keeps the identity's certificate current and says what is served. A
/// self-signed one (issuer = subject) is reissued on the same key, for
/// [`CERT_DAYS`], once less than [`RENEW_BEFORE`] is left. A chain someone
/// else issued is never replaced: its coming expiry is logged (and is on
/// `/metrics`), and once expired it is still served, with an error in the
/// log, until the operator installs a new one.
fn renew_certificate(
    store: &dyn KeyStore,
    alias: &Alias,
    server_names: &[String],
    now: SystemTime,
) -> Result<ServedCertificate, ServerError> {
    let chain = store.certificate_chain(alias)?;
    // A leaf that does not read (or uses a weak algorithm) is not served:
    // it is replaced, as a missing one is.
    let leaf = chain.first().and_then(|c| match CertificateInfo::parse(c) {
        Ok(info) => Some(info),
        Err(e) => {
            tracing::warn!(error = %e, "the identity's certificate does not read; issuing a self-signed one");
            None
        }
    });
    if let Some(info) = &leaf {
        let not_after = info.validity().1;
        if info.issuer_der != info.subject_der {
            warn_of_expiry(info, now);
            return Ok(ServedCertificate {
                not_after,
                operator_issued: true,
            });
        }
        if info.check_validity(now + RENEW_BEFORE).is_ok() {
            return Ok(ServedCertificate {
                not_after,
                operator_issued: false,
            });
        }
    }
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in server_names {
        match name.parse::<std::net::IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(name.clone()),
        }
    }
    let subject = Subject::common_name("pairgate server")
        .map_err(|e| ServerError::Identity(e.to_string()))?;
    let cert = pairgate_keystore::self_signed_server_certificate(
        store, alias, &subject, &dns, &ips, now, CERT_DAYS,
    )?;
    let info = CertificateInfo::parse(&cert).map_err(|e| ServerError::Identity(e.to_string()))?;
    Ok(ServedCertificate {
        not_after: info.validity().1,
        operator_issued: false,
    })
}

/// Logs an operator-issued certificate that expires within
/// [`RENEW_BEFORE`] (a warning) or has expired (an error).
fn warn_of_expiry(info: &CertificateInfo, now: SystemTime) {
    let not_after = &info.not_after;
    let issuer = &info.issuer;
    if info.check_validity(now).is_err() {
        tracing::error!(%not_after, %issuer, "the server certificate your CA issued has expired; it is still served (pairgate never replaces it by a self-signed one on its own): install a renewed chain");
    } else if info.check_validity(now + RENEW_BEFORE).is_err() {
        tracing::warn!(%not_after, %issuer, "the server certificate your CA issued expires within 30 days: install a renewed chain");
    }
}

/// The key store of an identity that already exists, creating nothing:
/// for the commands that read or certify it (`pairgate admin identity`,
/// `pairgate admin audit verify`).
pub fn open_existing(
    keystore_uri: &str,
    passphrase_file: &Path,
) -> Result<Box<dyn KeyStore>, ServerError> {
    let uri: KeyStoreUri = keystore_uri.parse()?;
    let pass = match uri {
        KeyStoreUri::File(_) => Some(Passphrase::from_file(passphrase_file)?),
        KeyStoreUri::Pkcs11(_) => None,
    };
    Ok(pairgate_keystore::open(&uri, pass, false)?)
}

/// The identity key store, created (with its passphrase file, for the
/// software store) when missing: for `pairgate admin identity recover`
/// on a machine whose key was lost with its store.
pub fn open_or_create(
    keystore_uri: &str,
    passphrase_file: &Path,
) -> Result<Box<dyn KeyStore>, ServerError> {
    let uri: KeyStoreUri = keystore_uri.parse()?;
    let pass = match uri {
        KeyStoreUri::File(_) => Some(passphrase(passphrase_file)?),
        KeyStoreUri::Pkcs11(_) => None,
    };
    Ok(pairgate_keystore::open(&uri, pass, true)?)
}

/// The pin of an identity that already exists, creating nothing: for
/// commands that check what the server signed (`pairgate admin audit
/// verify`).
pub fn existing_pin(keystore_uri: &str, passphrase_file: &Path) -> Result<SpkiPin, ServerError> {
    let store = open_existing(keystore_uri, passphrase_file)?;
    Ok(store.public_key(&Alias::new(SERVER_ALIAS)?)?.pin())
}
