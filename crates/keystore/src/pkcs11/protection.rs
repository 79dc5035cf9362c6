//! How a token protects a private key: the attributes that show a key
//! can sign but never leave (`CKA_SENSITIVE`, `CKA_EXTRACTABLE` and their
//! history), read fresh from the token for operators and tests.

use cryptoki::object::{Attribute, AttributeType, ObjectClass};

use super::{Pkcs11KeyStore, ck};
use crate::{Alias, KeyStoreError};

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

impl Pkcs11KeyStore {
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
}
