//! Restore points: the terminal's identity and state in one file,
//! encrypted with a passphrase in the `age` format (scrypt recipient), so a
//! replaced board or a re-flashed terminal comes back with the same
//! fingerprint and talks to the master without pairing again.
//!
//! What a restore point holds depends on where the key lives:
//! - a software key store: the whole store, every private key still sealed
//!   under the key store's own passphrase (the key is never unsealed for a
//!   backup; restoring needs both passphrases);
//! - a PKCS#11 token: the certificate chain and the state only. The key is
//!   non-extractable, so the restore point says so and restores only onto a
//!   token that still holds that key.
//!
//! Restoring fails closed: the state directory must be fresh, the key must
//! match the certificate, and the fingerprint must be the recorded one
//! before the state is written.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use age::secrecy::SecretString;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use pairgate_keystore::software::SoftwareKeyStore;
use pairgate_keystore::{Alias, KeyStore, KeyStoreUri, Passphrase};
use pairgate_pki::TerminalFingerprint;
use pairgate_tls::TlsPolicy;
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::state::{State, StateFile};
use crate::{Agent, TerminalError};

/// The format tag inside the encrypted file.
const FORMAT: &str = "pairgate-restore-point/1";

/// Where the restore point's key is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyCopy {
    /// The whole software key store, keys sealed under its passphrase
    /// (base64 of the store document).
    Software {
        /// The store document.
        sealed_store: String,
    },
    /// The key stays in a hardware token; only the certificate and the
    /// state are here.
    Token {
        /// The token the key lives in (no PIN or secret).
        store: String,
    },
}

/// The decrypted content of a restore point.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestorePoint {
    /// Always [`FORMAT`].
    format: String,
    /// When it was made (Unix seconds).
    pub created_at: u64,
    /// The identity's alias.
    pub alias: String,
    /// The Terminal Certificate Fingerprint (hex) it restores.
    pub fingerprint: String,
    /// The alias's certificate chain, leaf first (base64 DER).
    certificate_chain: Vec<String>,
    /// The key or where it stays.
    pub key: KeyCopy,
    /// The agent's state: pins, pairing in progress, paired configuration.
    pub state: State,
}

impl RestorePoint {
    /// Whether the file carries the key itself (software store) or only
    /// the certificate and state (PKCS#11).
    pub fn holds_key(&self) -> bool {
        matches!(self.key, KeyCopy::Software { .. })
    }

    /// Decrypts and parses a restore point.
    pub fn open(encrypted: &[u8], passphrase: &Passphrase) -> Result<Self, TerminalError> {
        let identity = age::scrypt::Identity::new(secret(passphrase)?);
        let plaintext = Zeroizing::new(age::decrypt(&identity, encrypted).map_err(|e| {
            TerminalError::RestorePoint(match e {
                age::DecryptError::DecryptionFailed
                | age::DecryptError::KeyDecryptionFailed
                | age::DecryptError::NoMatchingKeys => {
                    "wrong backup passphrase, or not a passphrase-encrypted restore point".into()
                }
                age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
                    "not an age-encrypted restore point".into()
                }
                other => format!("cannot decrypt the restore point: {other}"),
            })
        })?);
        let point: Self = serde_json::from_slice(&plaintext).map_err(|e| {
            TerminalError::RestorePoint(format!("the restore point's content is damaged: {e}"))
        })?;
        if point.format != FORMAT {
            return Err(TerminalError::RestorePoint(format!(
                "unknown restore point format {:?} (this agent reads {FORMAT})",
                point.format
            )));
        }
        Ok(point)
    }

    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TerminalError> {
        self.certificate_chain
            .iter()
            .map(|c| {
                B64.decode(c).map(CertificateDer::from).map_err(|_| {
                    TerminalError::RestorePoint(
                        "a certificate in the restore point is damaged".into(),
                    )
                })
            })
            .collect()
    }
}

fn secret(passphrase: &Passphrase) -> Result<SecretString, TerminalError> {
    let text = passphrase.as_text().ok_or_else(|| {
        TerminalError::RestorePoint("the backup passphrase must be text (UTF-8)".into())
    })?;
    Ok(SecretString::from(text.to_owned()))
}

impl Agent {
    /// Makes a restore point of the identity and state, encrypted with
    /// `passphrase` (age, scrypt tuned to about a second on this device).
    pub fn backup(
        &self,
        passphrase: &Passphrase,
        now: SystemTime,
    ) -> Result<(Vec<u8>, RestorePoint), TerminalError> {
        let alias = self.alias();
        let fingerprint = self.fingerprint_of(&alias)?;
        let state = self.state.load()?;
        let key = match self.store.sealed_copy()? {
            Some(doc) => KeyCopy::Software {
                sealed_store: B64.encode(doc),
            },
            None => KeyCopy::Token {
                store: self.store.describe(),
            },
        };
        let point = RestorePoint {
            format: FORMAT.into(),
            created_at: now
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            alias: alias.to_string(),
            fingerprint: fingerprint.to_hex(),
            certificate_chain: self
                .store
                .certificate_chain(&alias)?
                .iter()
                .map(|c| B64.encode(c))
                .collect(),
            key,
            state,
        };
        let plaintext = Zeroizing::new(
            serde_json::to_vec(&point)
                .map_err(|e| TerminalError::Io(format!("encoding the restore point: {e}")))?,
        );
        let recipient = age::scrypt::Recipient::new(secret(passphrase)?);
        let encrypted = age::encrypt(&recipient, &plaintext).map_err(|e| {
            TerminalError::RestorePoint(format!("encrypting the restore point: {e}"))
        })?;
        Ok((encrypted, point))
    }
}

/// Restores `point` into the fresh state directory `state_dir` with the key
/// store `uri` (a software store is written there; a PKCS#11 token must
/// already hold the key) and returns the agent and its fingerprint, which
/// is the recorded one. `keystore_passphrase` is the software store's own
/// passphrase (the one it was sealed under).
pub fn restore(
    state_dir: &Path,
    uri: &KeyStoreUri,
    keystore_passphrase: Option<Passphrase>,
    point: &RestorePoint,
    policy: TlsPolicy,
) -> Result<(Agent, TerminalFingerprint), TerminalError> {
    let state_file = StateFile::new(state_dir)?;
    if state_file.load()? != State::default() {
        return Err(TerminalError::NotFresh(state_dir.display().to_string()));
    }
    let alias = Alias::new(&point.alias)?;
    let chain = point.chain()?;
    let store: Arc<dyn KeyStore> = match (&point.key, uri) {
        (KeyCopy::Software { sealed_store }, KeyStoreUri::File(dir)) => {
            let doc = Zeroizing::new(B64.decode(sealed_store).map_err(|_| {
                TerminalError::RestorePoint("the key store copy is damaged".into())
            })?);
            let passphrase =
                keystore_passphrase.ok_or(pairgate_keystore::KeyStoreError::PassphraseRequired)?;
            Arc::new(SoftwareKeyStore::restore(dir, &doc, passphrase)?)
        }
        (KeyCopy::Token { .. }, KeyStoreUri::Pkcs11(_)) => {
            let store: Arc<dyn KeyStore> = Arc::from(pairgate_keystore::open(uri, None, false)?);
            // Refused unless the token holds the certificate's key.
            store.set_certificate_chain(&alias, &chain)?;
            store
        }
        (KeyCopy::Token { store }, KeyStoreUri::File(_)) => {
            return Err(TerminalError::RestorePoint(format!(
                "this restore point holds the certificate and state only: its key stays in {store}; \
                 give --keystore with that token's pkcs11: URI"
            )));
        }
        (KeyCopy::Software { .. }, KeyStoreUri::Pkcs11(_)) => {
            return Err(TerminalError::RestorePoint(
                "this restore point holds a software key store: restore it into a file: key store"
                    .into(),
            ));
        }
    };
    let agent = Agent::new(state_dir, store.clone(), alias, policy)?;
    let finish = || -> Result<TerminalFingerprint, TerminalError> {
        let fingerprint = agent.fingerprint()?;
        if fingerprint.to_hex() != point.fingerprint {
            return Err(TerminalError::RestorePoint(format!(
                "the restored identity has fingerprint {}, not the recorded {}",
                fingerprint.to_hex(),
                point.fingerprint
            )));
        }
        agent.state.save(&point.state)?;
        Ok(fingerprint)
    };
    match finish() {
        Ok(fingerprint) => Ok((agent, fingerprint)),
        Err(e) => {
            // Leave a software store as empty as it was; a token keeps its
            // key (it was there before) and its certificate.
            if point.holds_key() {
                let _ = store.factory_reset();
            }
            Err(e)
        }
    }
}
