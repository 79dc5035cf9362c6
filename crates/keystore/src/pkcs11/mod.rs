//! The PKCS#11 key store: keys generated on a token (an HSM; SoftHSM2 in
//! tests) with `CKA_SENSITIVE` true and `CKA_EXTRACTABLE` false, so the
//! private key can sign but never leave. Objects are named by pairgate's
//! scheme (`objects`: `CKA_ID` `pairgate:<alias>`, trust-store
//! certificates `pairgate-trust:`), and only such objects are listed,
//! changed or wiped: the token may be shared with other applications.
//!
//! Signing hashes in software and signs the digest on the token
//! (`CKM_ECDSA`, `CKM_RSA_PKCS` over a DigestInfo, `CKM_RSA_PKCS_PSS`),
//! which every HSM offers; SoftHSM2 lacks `CKM_ECDSA_SHA256`. A module is
//! initialised once per process and its sessions are pooled, since a
//! `Session` may move between threads but not be shared.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use pairgate_pki::der;
use pairgate_pki::{
    CertificateFingerprint, CertificateInfo, KeyAlgorithm, SignatureScheme, TrustedCertificate,
};
use rustls_pki_types::CertificateDer;

use crate::{Alias, AliasEntry, KeyStore, KeyStoreError, Pkcs11Uri, PublicKeyInfo};

mod objects;
mod protection;
mod token;
mod wire;

use objects::{TRUST_ID, alias_of, chain_index, chain_label, id_and_label, is_ours, key_id};
pub use protection::KeyProtection;
pub use token::provision_token;
use token::{find_slot, module, module_path, read_pin};

/// Environment variable naming the module when the URI has no
/// `module-path`.
pub const MODULE_ENV: &str = "PAIRGATE_PKCS11_MODULE";
/// Environment variable naming the PIN file when the URI has no
/// `pin-source`.
pub const PIN_FILE_ENV: &str = "PAIRGATE_PKCS11_PIN_FILE";

const TRUST_LABEL_PREFIX: &str = "trust:";

pub(crate) fn ck(context: &str) -> impl FnOnce(CkError) -> KeyStoreError + '_ {
    move |e| KeyStoreError::Pkcs11(format!("{context}: {e}"))
}

/// A key store on a PKCS#11 token.
pub struct Pkcs11KeyStore {
    uri: Pkcs11Uri,
    ctx: Pkcs11,
    slot: Slot,
    /// Idle logged-in sessions. At least one stays open while the store
    /// lives, which keeps the token's login state.
    sessions: Mutex<Vec<Session>>,
    /// Private-key handle and algorithm per alias, so a signature costs one
    /// token call. Our own key changes clear it; a handle another process
    /// invalidated is looked up again on first failure.
    signing_keys: Mutex<HashMap<String, (ObjectHandle, KeyAlgorithm)>>,
}

impl std::fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11KeyStore")
            .field("uri", &self.uri.to_string())
            .finish_non_exhaustive()
    }
}

impl Pkcs11KeyStore {
    /// Opens the token the URI names and logs in with the user PIN.
    pub fn open(uri: &Pkcs11Uri) -> Result<Self, KeyStoreError> {
        let ctx = module(&module_path(uri)?)?;
        let slot = find_slot(&ctx, uri)?;
        let pin = read_pin(uri)?;
        let session = ctx.open_rw_session(slot).map_err(ck("opening a session"))?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(KeyStoreError::Pkcs11(format!(
                    "wrong PIN for token {:?}",
                    uri.token
                )));
            }
            Err(e) => {
                return Err(KeyStoreError::Pkcs11(format!(
                    "login to token {:?}: {e}",
                    uri.token
                )));
            }
        }
        objects::migrate_bare_aliases(&session)?;
        Ok(Self {
            uri: uri.clone(),
            ctx,
            slot,
            sessions: Mutex::new(vec![session]),
            signing_keys: Mutex::new(HashMap::new()),
        })
    }

    /// The default alias named by the URI's `object=`, if any.
    pub fn default_alias(&self) -> Option<&str> {
        self.uri.object.as_deref()
    }

    fn pool(&self) -> MutexGuard<'_, Vec<Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with a session from the pool (opening one if all are
    /// busy), then returns the session to the pool.
    fn with_session<R>(
        &self,
        f: impl FnOnce(&Session) -> Result<R, KeyStoreError>,
    ) -> Result<R, KeyStoreError> {
        let popped = self.pool().pop();
        let session = match popped {
            Some(s) => s,
            None => self
                .ctx
                .open_rw_session(self.slot)
                .map_err(ck("opening a session"))?,
        };
        let result = f(&session);
        self.pool().push(session);
        result
    }

    fn signing_keys(&self) -> MutexGuard<'_, HashMap<String, (ObjectHandle, KeyAlgorithm)>> {
        self.signing_keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The private-key handle and algorithm of `alias`, from the cache
    /// unless `fresh`. The exact RSA size does not matter for signing.
    fn signing_key(
        &self,
        session: &Session,
        alias: &Alias,
        fresh: bool,
    ) -> Result<(ObjectHandle, KeyAlgorithm), KeyStoreError> {
        if !fresh && let Some(found) = self.signing_keys().get(alias.as_str()) {
            return Ok(*found);
        }
        let handle = Self::find_key(session, ObjectClass::PRIVATE_KEY, alias)?
            .ok_or_else(|| KeyStoreError::NoSuchAlias(alias.to_string()))?;
        let key_type = session
            .get_attributes(handle, &[AttributeType::KeyType])
            .map_err(ck("reading the key type"))?
            .into_iter()
            .find_map(|a| {
                if let Attribute::KeyType(t) = a {
                    Some(t)
                } else {
                    None
                }
            });
        let algorithm = match key_type {
            Some(t) if t == KeyType::EC => KeyAlgorithm::P256,
            Some(t) if t == KeyType::RSA => KeyAlgorithm::Rsa2048,
            _ => {
                return Err(KeyStoreError::Pkcs11(
                    "unsupported key type on the token".into(),
                ));
            }
        };
        self.signing_keys()
            .insert(alias.to_string(), (handle, algorithm));
        Ok((handle, algorithm))
    }

    fn find(session: &Session, template: &[Attribute]) -> Result<Vec<ObjectHandle>, KeyStoreError> {
        session
            .find_objects(template)
            .map_err(ck("finding objects"))
    }

    fn find_key(
        session: &Session,
        class: ObjectClass,
        alias: &Alias,
    ) -> Result<Option<ObjectHandle>, KeyStoreError> {
        let handles = Self::find(
            session,
            &[Attribute::Class(class), Attribute::Id(key_id(alias))],
        )?;
        Ok(handles.into_iter().next())
    }

    fn public_in(session: &Session, alias: &Alias) -> Result<PublicKeyInfo, KeyStoreError> {
        let handle = Self::find_key(session, ObjectClass::PUBLIC_KEY, alias)?
            .ok_or_else(|| KeyStoreError::NoSuchAlias(alias.to_string()))?;
        wire::read_public(session, handle)
    }

    fn certificates_with(
        session: &Session,
        id: &[u8],
    ) -> Result<Vec<(String, ObjectHandle, Vec<u8>)>, KeyStoreError> {
        let handles = Self::find(
            session,
            &[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::Id(id.to_vec()),
            ],
        )?;
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            let attrs = session
                .get_attributes(handle, &[AttributeType::Label, AttributeType::Value])
                .map_err(ck("reading a certificate"))?;
            let (mut label, mut value) = (String::new(), Vec::new());
            for attr in attrs {
                match attr {
                    Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                    Attribute::Value(v) => value = v,
                    _ => {}
                }
            }
            out.push((label, handle, value));
        }
        Ok(out)
    }

    fn create_certificate(
        session: &Session,
        id: &[u8],
        label: &str,
        der: &[u8],
    ) -> Result<ObjectHandle, KeyStoreError> {
        let info = CertificateInfo::parse(der)?;
        session
            .create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Id(id.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Subject(info.subject_der),
                Attribute::Issuer(info.issuer_der),
                Attribute::Value(der.to_vec()),
            ])
            .map_err(ck("storing a certificate"))
    }
}

impl KeyStore for Pkcs11KeyStore {
    fn describe(&self) -> String {
        self.uri.to_string()
    }

    fn is_hardware(&self) -> bool {
        true
    }

    fn pkcs11_reference(
        &self,
        alias: &Alias,
    ) -> Result<Option<crate::Pkcs11Reference>, KeyStoreError> {
        self.public_key(alias)?;
        token::reference(&self.ctx, self.slot, &self.uri, &key_id(alias)).map(Some)
    }

    fn generate_key(
        &self,
        alias: &Alias,
        algorithm: KeyAlgorithm,
    ) -> Result<PublicKeyInfo, KeyStoreError> {
        self.signing_keys().clear();
        let id = key_id(alias);
        let label = chain_label(alias, 0).into_bytes();
        self.with_session(|session| {
            if Self::find_key(session, ObjectClass::PRIVATE_KEY, alias)?.is_some()
                || Self::find_key(session, ObjectClass::PUBLIC_KEY, alias)?.is_some()
            {
                return Err(KeyStoreError::AliasExists(alias.to_string()));
            }
            let private = vec![
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Decrypt(false),
                Attribute::Derive(false),
                Attribute::Id(id.clone()),
                Attribute::Label(label.clone()),
            ];
            let mut public = vec![
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::Encrypt(false),
                Attribute::Id(id.clone()),
                Attribute::Label(label.clone()),
            ];
            let mechanism = match algorithm {
                KeyAlgorithm::P256 => {
                    public.push(Attribute::EcParams(der::p256_ec_params()));
                    Mechanism::EccKeyPairGen
                }
                KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => {
                    let bits = u64::from(algorithm.rsa_bits().unwrap_or(2048));
                    public.push(Attribute::ModulusBits(bits.into()));
                    public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                    Mechanism::RsaPkcsKeyPairGen
                }
            };
            let (public_handle, _) = session
                .generate_key_pair(&mechanism, &public, &private)
                .map_err(ck("generating the key pair"))?;
            wire::read_public(session, public_handle)
        })
    }

    fn public_key(&self, alias: &Alias) -> Result<PublicKeyInfo, KeyStoreError> {
        self.with_session(|session| Self::public_in(session, alias))
    }

    fn sign(
        &self,
        alias: &Alias,
        scheme: SignatureScheme,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyStoreError> {
        let (mechanism, input) = wire::signing_input(scheme, message);
        self.with_session(|session| {
            let attempt = |fresh: bool| -> Result<Result<Vec<u8>, CkError>, KeyStoreError> {
                let (handle, algorithm) = self.signing_key(session, alias, fresh)?;
                if !scheme.suits(algorithm) {
                    return Err(KeyStoreError::SchemeMismatch {
                        alias: alias.to_string(),
                        algorithm,
                        scheme,
                    });
                }
                Ok(session.sign(&mechanism, handle, &input))
            };
            let signature = match attempt(false)? {
                // Another process replaced or deleted the key since we
                // cached its handle: look it up once more.
                Err(CkError::Pkcs11(
                    RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid,
                    _,
                )) => attempt(true)?,
                other => other,
            }
            .map_err(ck("signing"))?;
            if scheme == SignatureScheme::EcdsaP256Sha256 {
                der::ecdsa_raw_to_der(&signature)
                    .map_err(|e| KeyStoreError::Pkcs11(format!("ECDSA signature: {e}")))
            } else {
                Ok(signature)
            }
        })
    }

    fn set_certificate_chain(
        &self,
        alias: &Alias,
        chain: &[CertificateDer<'static>],
    ) -> Result<(), KeyStoreError> {
        self.with_session(|session| {
            Self::public_in(session, alias)?.check_chain(alias, chain)?;
            let id = &key_id(alias);
            let old: Vec<ObjectHandle> = Self::certificates_with(session, id)?
                .into_iter()
                .map(|(_, h, _)| h)
                .collect();
            // Write the new chain before removing the old one: a failure
            // part-way leaves the old chain (plus strays the next set
            // removes), never an alias without a certificate.
            let mut created = Vec::with_capacity(chain.len());
            for (i, cert) in chain.iter().enumerate() {
                match Self::create_certificate(
                    session,
                    id,
                    &format!("{}.new", chain_label(alias, i)),
                    cert,
                ) {
                    Ok(h) => created.push(h),
                    Err(e) => {
                        for h in created {
                            let _ = session.destroy_object(h);
                        }
                        return Err(e);
                    }
                }
            }
            for handle in old {
                session
                    .destroy_object(handle)
                    .map_err(ck("removing the old certificate"))?;
            }
            for (i, handle) in created.into_iter().enumerate() {
                session
                    .update_attributes(
                        handle,
                        &[Attribute::Label(chain_label(alias, i).into_bytes())],
                    )
                    .map_err(ck("labelling the certificate"))?;
            }
            Ok(())
        })
    }

    fn certificate_chain(
        &self,
        alias: &Alias,
    ) -> Result<Vec<CertificateDer<'static>>, KeyStoreError> {
        self.with_session(|session| {
            Self::public_in(session, alias)?;
            let mut chain: Vec<(usize, Vec<u8>)> =
                Self::certificates_with(session, &key_id(alias))?
                    .into_iter()
                    .filter_map(|(label, _, der)| chain_index(alias, &label).map(|i| (i, der)))
                    .collect();
            chain.sort_by_key(|(i, _)| *i);
            Ok(chain
                .into_iter()
                .map(|(_, der)| CertificateDer::from(der))
                .collect())
        })
    }

    fn aliases(&self) -> Result<Vec<AliasEntry>, KeyStoreError> {
        let names: Vec<Alias> = self.with_session(|session| {
            let handles = Self::find(session, &[Attribute::Class(ObjectClass::PRIVATE_KEY)])?;
            let mut names = Vec::new();
            for handle in handles {
                let id = session
                    .get_attributes(handle, &[AttributeType::Id])
                    .map_err(ck("reading a key id"))?
                    .into_iter()
                    .find_map(|a| {
                        if let Attribute::Id(id) = a {
                            Some(id)
                        } else {
                            None
                        }
                    });
                // Keys another application put on the token with ids that
                // are not aliases are not ours to list.
                if let Some(alias) = id.and_then(|id| alias_of(&id)) {
                    names.push(alias);
                }
            }
            Ok(names)
        })?;
        let mut entries = Vec::with_capacity(names.len());
        for alias in names {
            let public = self.public_key(&alias)?;
            let chain = self.certificate_chain(&alias)?;
            entries.push(AliasEntry {
                algorithm: public.algorithm,
                public_key_pin: public.pin(),
                certificate: chain
                    .first()
                    .map(|c| CertificateFingerprint::of_certificate(c)),
                alias,
            });
        }
        entries.sort_by(|a, b| a.alias.cmp(&b.alias));
        entries.dedup_by(|a, b| a.alias == b.alias);
        Ok(entries)
    }

    fn delete(&self, alias: &Alias) -> Result<(), KeyStoreError> {
        self.signing_keys().clear();
        self.with_session(|session| {
            let handles = Self::find(session, &[Attribute::Id(key_id(alias))])?;
            if handles.is_empty() {
                return Err(KeyStoreError::NoSuchAlias(alias.to_string()));
            }
            for handle in handles {
                session
                    .destroy_object(handle)
                    .map_err(ck("deleting an object"))?;
            }
            Ok(())
        })
    }

    fn add_trusted(&self, certificate: &TrustedCertificate) -> Result<(), KeyStoreError> {
        let label = format!("{TRUST_LABEL_PREFIX}{}", certificate.info().fingerprint);
        self.with_session(|session| {
            let exists = Self::certificates_with(session, TRUST_ID)?
                .iter()
                .any(|(l, _, _)| *l == label);
            if !exists {
                Self::create_certificate(session, TRUST_ID, &label, certificate.der())?;
            }
            Ok(())
        })
    }

    fn trusted(&self) -> Result<Vec<CertificateDer<'static>>, KeyStoreError> {
        self.with_session(|session| {
            let mut certs = Self::certificates_with(session, TRUST_ID)?;
            certs.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(certs
                .into_iter()
                .map(|(_, _, der)| CertificateDer::from(der))
                .collect())
        })
    }

    fn remove_trusted(&self, fingerprint: &CertificateFingerprint) -> Result<(), KeyStoreError> {
        self.with_session(|session| {
            let matching: Vec<ObjectHandle> = Self::certificates_with(session, TRUST_ID)?
                .into_iter()
                .filter(|(_, _, der)| CertificateFingerprint::of_certificate(der) == *fingerprint)
                .map(|(_, h, _)| h)
                .collect();
            if matching.is_empty() {
                return Err(KeyStoreError::NotTrusted(*fingerprint));
            }
            for handle in matching {
                session
                    .destroy_object(handle)
                    .map_err(ck("removing a trusted certificate"))?;
            }
            Ok(())
        })
    }

    fn sealed_copy(&self) -> Result<Option<Vec<u8>>, KeyStoreError> {
        // Keys are generated non-extractable: they never leave the token.
        Ok(None)
    }

    fn factory_reset(&self) -> Result<(), KeyStoreError> {
        self.signing_keys().clear();
        self.with_session(|session| {
            for class in [
                ObjectClass::PRIVATE_KEY,
                ObjectClass::PUBLIC_KEY,
                ObjectClass::CERTIFICATE,
            ] {
                for handle in Self::find(session, &[Attribute::Class(class)])? {
                    // Only pairgate's objects: the token may hold another
                    // application's keys.
                    let (id, _) = id_and_label(session, handle)?;
                    if is_ours(&id) {
                        session
                            .destroy_object(handle)
                            .map_err(ck("wiping an object"))?;
                    }
                }
            }
            Ok(())
        })
    }
}
