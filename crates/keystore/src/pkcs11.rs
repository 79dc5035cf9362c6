//! The PKCS#11 key store: keys generated on a token (an HSM; SoftHSM2 in
//! tests) with `CKA_SENSITIVE` true and `CKA_EXTRACTABLE` false, so the
//! private key can sign but never leave. Each alias is the `CKA_ID` and
//! `CKA_LABEL` of its key pair and certificates; trust-store certificates
//! are certificate objects labelled `trust:<fingerprint>`.
//!
//! Signing hashes in software and signs the digest on the token
//! (`CKM_ECDSA`, `CKM_RSA_PKCS` over a DigestInfo, `CKM_RSA_PKCS_PSS`),
//! which every HSM offers; SoftHSM2 lacks `CKM_ECDSA_SHA256`. A module is
//! initialised once per process and its sessions are pooled, since a
//! `Session` may move between threads but not be shared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use pairgate_pki::der;
use pairgate_pki::{
    CertificateFingerprint, CertificateInfo, KeyAlgorithm, SignatureScheme, TrustedCertificate,
};
use rustls_pki_types::CertificateDer;

use crate::{Alias, AliasEntry, KeyStore, KeyStoreError, Pkcs11Uri, PublicKeyInfo};

/// Environment variable naming the module when the URI has no
/// `module-path`.
pub const MODULE_ENV: &str = "PAIRGATE_PKCS11_MODULE";
/// Environment variable naming the PIN file when the URI has no
/// `pin-source`.
pub const PIN_FILE_ENV: &str = "PAIRGATE_PKCS11_PIN_FILE";

const TRUST_ID: &[u8] = b"pairgate-trust:";
const TRUST_LABEL_PREFIX: &str = "trust:";

fn ck(context: &str) -> impl FnOnce(CkError) -> KeyStoreError + '_ {
    move |e| KeyStoreError::Pkcs11(format!("{context}: {e}"))
}

/// Loaded and initialised modules, by path. C_Initialize may run only once
/// per module per process, so every store on a module shares its context.
fn module(path: &Path) -> Result<Pkcs11, KeyStoreError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(path)
        .map_err(|e| KeyStoreError::Pkcs11(format!("loading module {}: {e}", path.display())))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(KeyStoreError::Pkcs11(format!(
                "initialising {}: {e}",
                path.display()
            )));
        }
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

fn module_path(uri: &Pkcs11Uri) -> Result<PathBuf, KeyStoreError> {
    uri.module_path
        .clone()
        .or_else(|| std::env::var_os(MODULE_ENV).map(PathBuf::from))
        .ok_or_else(|| KeyStoreError::InvalidUri {
            uri: uri.to_string(),
            reason: format!("no module: add ?module-path=… or set {MODULE_ENV}"),
        })
}

fn read_pin(uri: &Pkcs11Uri) -> Result<AuthPin, KeyStoreError> {
    let path = uri
        .pin_source
        .clone()
        .or_else(|| std::env::var_os(PIN_FILE_ENV).map(PathBuf::from))
        .ok_or_else(|| KeyStoreError::InvalidUri {
            uri: uri.to_string(),
            reason: format!("no PIN: add pin-source=file:PATH or set {PIN_FILE_ENV}"),
        })?;
    let passphrase = crate::Passphrase::from_file(&path)?;
    let pin = std::str::from_utf8(passphrase.expose()).map_err(|_| {
        KeyStoreError::Pkcs11(format!("the PIN in {} is not UTF-8", path.display()))
    })?;
    Ok(AuthPin::new(pin.into()))
}

fn find_slot(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, KeyStoreError> {
    let mut labels = Vec::new();
    let mut unreadable = 0usize;
    // Slots with a token, read one by one: a token that cannot be read (on
    // SoftHSM2, one that another process is creating or deleting in the
    // shared token directory) must not hide the token we are looking for.
    for slot in ctx.get_slots_with_token().map_err(ck("listing slots"))? {
        let Ok(info) = ctx.get_token_info(slot) else {
            unreadable += 1;
            continue;
        };
        if !info.token_initialized() {
            continue;
        }
        let label = info.label().trim_end().to_owned();
        let matches = label == uri.token
            && uri
                .manufacturer
                .as_deref()
                .is_none_or(|m| info.manufacturer_id().trim_end() == m)
            && uri
                .model
                .as_deref()
                .is_none_or(|m| info.model().trim_end() == m)
            && uri
                .serial
                .as_deref()
                .is_none_or(|s| info.serial_number().trim_end() == s);
        if matches {
            return Ok(slot);
        }
        labels.push(label);
    }
    Err(KeyStoreError::Pkcs11(format!(
        "no token labelled {:?} (tokens present: {}{})",
        uri.token,
        if labels.is_empty() {
            "none".to_owned()
        } else {
            labels.join(", ")
        },
        if unreadable > 0 {
            format!("; {unreadable} unreadable")
        } else {
            String::new()
        }
    )))
}

/// Initialises a fresh token in the module's first free slot and sets its
/// user PIN: provisioning for a new terminal, and per-test tokens.
pub fn provision_token(
    module_path: &Path,
    label: &str,
    so_pin: &str,
    user_pin: &str,
) -> Result<(), KeyStoreError> {
    static PROVISIONING: Mutex<()> = Mutex::new(());
    let _guard = PROVISIONING.lock().unwrap_or_else(|p| p.into_inner());
    let ctx = module(module_path)?;
    let mut free = None;
    for slot in ctx.get_slots_with_token().map_err(ck("listing slots"))? {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if info.label().trim_end() == label && info.token_initialized() {
            return Err(KeyStoreError::Pkcs11(format!(
                "a token labelled {label:?} already exists"
            )));
        }
        if !info.token_initialized() && free.is_none() {
            free = Some(slot);
        }
    }
    let slot =
        free.ok_or_else(|| KeyStoreError::Pkcs11("no free slot to initialise a token in".into()))?;
    let so_pin = AuthPin::new(so_pin.into());
    ctx.init_token(slot, &so_pin, label)
        .map_err(ck("initialising the token"))?;
    let session = ctx.open_rw_session(slot).map_err(ck("opening a session"))?;
    session
        .login(UserType::So, Some(&so_pin))
        .map_err(ck("security officer login"))?;
    session
        .init_pin(&AuthPin::new(user_pin.into()))
        .map_err(ck("setting the user PIN"))?;
    session.logout().map_err(ck("logging out"))?;
    Ok(())
}

/// What a token says about how a private key is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyProtection {
    /// `CKA_SENSITIVE`: the value cannot be read in the clear.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`: the key can be wrapped out of the token.
    pub extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`: it has been sensitive since creation.
    pub always_sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`: it has never been extractable.
    pub never_extractable: bool,
    /// `CKA_TOKEN`: it persists on the token.
    pub on_token: bool,
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
        Ok(Self {
            uri: uri.clone(),
            ctx,
            slot,
            sessions: Mutex::new(vec![session]),
            signing_keys: Mutex::new(HashMap::new()),
        })
    }

    /// The protection attributes the token reports for the private key of
    /// `alias`, read fresh from the token.
    pub fn key_protection(&self, alias: &Alias) -> Result<KeyProtection, KeyStoreError> {
        self.with_session(|session| {
            let handle = Self::find_key(session, ObjectClass::PRIVATE_KEY, alias)?
                .ok_or_else(|| KeyStoreError::NoSuchAlias(alias.to_string()))?;
            let attrs = session
                .get_attributes(
                    handle,
                    &[
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                        AttributeType::AlwaysSensitive,
                        AttributeType::NeverExtractable,
                        AttributeType::Token,
                    ],
                )
                .map_err(ck("reading key attributes"))?;
            let mut p = KeyProtection::default();
            for attr in attrs {
                match attr {
                    Attribute::Sensitive(v) => p.sensitive = v,
                    Attribute::Extractable(v) => p.extractable = v,
                    Attribute::AlwaysSensitive(v) => p.always_sensitive = v,
                    Attribute::NeverExtractable(v) => p.never_extractable = v,
                    Attribute::Token(v) => p.on_token = v,
                    _ => {}
                }
            }
            Ok(p)
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
            &[
                Attribute::Class(class),
                Attribute::Id(alias.as_str().as_bytes().to_vec()),
            ],
        )?;
        Ok(handles.into_iter().next())
    }

    fn read_public(
        session: &Session,
        handle: ObjectHandle,
    ) -> Result<PublicKeyInfo, KeyStoreError> {
        let attrs = session
            .get_attributes(
                handle,
                &[
                    AttributeType::KeyType,
                    AttributeType::EcPoint,
                    AttributeType::Modulus,
                    AttributeType::PublicExponent,
                ],
            )
            .map_err(ck("reading the public key"))?;
        let mut key_type = None;
        let (mut point, mut modulus, mut exponent) = (None, None, None);
        for attr in attrs {
            match attr {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::EcPoint(p) => point = Some(p),
                Attribute::Modulus(m) => modulus = Some(m),
                Attribute::PublicExponent(e) => exponent = Some(e),
                _ => {}
            }
        }
        let malformed =
            |what: &str| KeyStoreError::Pkcs11(format!("public key object without {what}"));
        match key_type {
            Some(t) if t == KeyType::EC => {
                let point =
                    der::ec_point_from_pkcs11(&point.ok_or_else(|| malformed("CKA_EC_POINT"))?)
                        .map_err(|e| KeyStoreError::Pkcs11(format!("CKA_EC_POINT: {e}")))?;
                Ok(PublicKeyInfo {
                    algorithm: KeyAlgorithm::P256,
                    spki_der: der::p256_spki(&point),
                })
            }
            Some(t) if t == KeyType::RSA => {
                let modulus = modulus.ok_or_else(|| malformed("CKA_MODULUS"))?;
                let exponent = exponent.ok_or_else(|| malformed("CKA_PUBLIC_EXPONENT"))?;
                let bits = modulus.iter().skip_while(|b| **b == 0).count() * 8;
                let algorithm = match bits {
                    2048 => KeyAlgorithm::Rsa2048,
                    3072 => KeyAlgorithm::Rsa3072,
                    other => {
                        return Err(KeyStoreError::Pkcs11(format!(
                            "unsupported RSA key size {other}"
                        )));
                    }
                };
                Ok(PublicKeyInfo {
                    algorithm,
                    spki_der: der::rsa_spki(&modulus, &exponent),
                })
            }
            _ => Err(KeyStoreError::Pkcs11(
                "unsupported key type on the token".into(),
            )),
        }
    }

    fn public_in(session: &Session, alias: &Alias) -> Result<PublicKeyInfo, KeyStoreError> {
        let handle = Self::find_key(session, ObjectClass::PUBLIC_KEY, alias)?
            .ok_or_else(|| KeyStoreError::NoSuchAlias(alias.to_string()))?;
        Self::read_public(session, handle)
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

/// The mechanism and the data a token signs for `scheme`: the digest
/// (ECDSA, PSS) or the DigestInfo (PKCS#1 v1.5), hashed in software.
fn signing_input(scheme: SignatureScheme, message: &[u8]) -> (Mechanism<'static>, Vec<u8>) {
    use pairgate_pki::algorithm::HashAlgorithm;
    let hash = scheme.hash();
    let digest = hash.digest(message);
    match scheme {
        SignatureScheme::EcdsaP256Sha256 => (Mechanism::Ecdsa, digest),
        SignatureScheme::RsaPkcs1Sha256
        | SignatureScheme::RsaPkcs1Sha384
        | SignatureScheme::RsaPkcs1Sha512 => {
            (Mechanism::RsaPkcs, der::rsa_digest_info(hash, &digest))
        }
        SignatureScheme::RsaPssSha256
        | SignatureScheme::RsaPssSha384
        | SignatureScheme::RsaPssSha512 => {
            let (hash_alg, mgf) = match hash {
                HashAlgorithm::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
                HashAlgorithm::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
                HashAlgorithm::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
            };
            let params = PkcsPssParams {
                hash_alg,
                mgf,
                s_len: (hash.len() as u64).into(),
            };
            (Mechanism::RsaPkcsPss(params), digest)
        }
    }
}

/// Chain position N of an alias is labelled `alias` (leaf) or `alias#N`.
fn chain_label(alias: &Alias, index: usize) -> String {
    if index == 0 {
        alias.to_string()
    } else {
        format!("{alias}#{index}")
    }
}

fn chain_index(alias: &Alias, label: &str) -> Option<usize> {
    if label == alias.as_str() {
        return Some(0);
    }
    label
        .strip_prefix(alias.as_str())?
        .strip_prefix('#')?
        .parse()
        .ok()
}

impl KeyStore for Pkcs11KeyStore {
    fn describe(&self) -> String {
        self.uri.to_string()
    }

    fn is_hardware(&self) -> bool {
        true
    }

    fn generate_key(
        &self,
        alias: &Alias,
        algorithm: KeyAlgorithm,
    ) -> Result<PublicKeyInfo, KeyStoreError> {
        self.signing_keys().clear();
        let id = alias.as_str().as_bytes().to_vec();
        let label = id.clone();
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
            Self::read_public(session, public_handle)
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
        let (mechanism, input) = signing_input(scheme, message);
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
            let id = alias.as_str().as_bytes();
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
                Self::certificates_with(session, alias.as_str().as_bytes())?
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
                if let Some(alias) = id
                    .and_then(|id| String::from_utf8(id).ok())
                    .and_then(|s| Alias::new(&s).ok())
                {
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
            let handles = Self::find(
                session,
                &[Attribute::Id(alias.as_str().as_bytes().to_vec())],
            )?;
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
                    session
                        .destroy_object(handle)
                        .map_err(ck("wiping an object"))?;
                }
            }
            Ok(())
        })
    }
}
