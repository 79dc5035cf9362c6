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
/// Certificate lifetime, in days.
const CERT_DAYS: u32 = 825;
/// Renew when less than this is left.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// The loaded identity.
#[derive(Clone, Debug)]
pub struct ServerIdentity {
    /// Certificate and key for rustls.
    pub certified_key: Arc<CertifiedKey>,
    /// SPKI pin of the key: what terminals pin.
    pub pin: SpkiPin,
    /// The key store, described.
    pub keystore: String,
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

/// Loads the server identity, creating the key and certificate at first
/// start and renewing the certificate (same key) when it nears expiry.
pub fn load_or_create(
    keystore_uri: &str,
    passphrase_file: &Path,
    server_names: &[String],
    now: SystemTime,
) -> Result<ServerIdentity, ServerError> {
    let uri: KeyStoreUri = keystore_uri.parse()?;
    let pass = match uri {
        KeyStoreUri::File(_) => Some(passphrase(passphrase_file)?),
        KeyStoreUri::Pkcs11(_) => None,
    };
    let store: Arc<dyn KeyStore> = Arc::from(pairgate_keystore::open(&uri, pass, true)?);
    let alias = Alias::new(SERVER_ALIAS)?;
    let public = match store.public_key(&alias) {
        Ok(public) => public,
        Err(pairgate_keystore::KeyStoreError::NoSuchAlias(_)) => {
            store.generate_key(&alias, KeyAlgorithm::P256)?
        }
        Err(e) => return Err(e.into()),
    };
    let chain = store.certificate_chain(&alias)?;
    let fresh = chain.first().is_some_and(|leaf| {
        CertificateInfo::parse(leaf)
            .and_then(|info| info.check_validity(now + RENEW_BEFORE))
            .is_ok()
    });
    if !fresh {
        let (dns, ips): (Vec<String>, Vec<std::net::IpAddr>) = {
            let mut dns = Vec::new();
            let mut ips = Vec::new();
            for name in server_names {
                match name.parse() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => dns.push(name.clone()),
                }
            }
            (dns, ips)
        };
        let subject = Subject::common_name("pairgate server")
            .map_err(|e| ServerError::Identity(e.to_string()))?;
        pairgate_keystore::self_signed_server_certificate(
            store.as_ref(),
            &alias,
            &subject,
            &dns,
            &ips,
            now,
            CERT_DAYS,
        )?;
    }
    let certified_key = pairgate_tls::alias_certified_key(store.clone(), &alias)?;
    Ok(ServerIdentity {
        certified_key,
        pin: public.pin(),
        keystore: store.describe(),
    })
}

/// The pin of an identity that already exists, creating nothing: for
/// commands that check what the server signed (`pairgate admin audit
/// verify`).
pub fn existing_pin(keystore_uri: &str, passphrase_file: &Path) -> Result<SpkiPin, ServerError> {
    let uri: KeyStoreUri = keystore_uri.parse()?;
    let pass = match uri {
        KeyStoreUri::File(_) => Some(Passphrase::from_file(passphrase_file)?),
        KeyStoreUri::Pkcs11(_) => None,
    };
    let store = pairgate_keystore::open(&uri, pass, false)?;
    Ok(store.public_key(&Alias::new(SERVER_ALIAS)?)?.pin())
}
