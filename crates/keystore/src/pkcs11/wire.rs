//! What crosses the PKCS#11 boundary for keys: public-key attributes read
//! back into a SubjectPublicKeyInfo, and the mechanism and input a token
//! signs (hashing happens in software, since not every token offers the
//! hash-and-sign mechanisms).

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::MechanismType;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectHandle};
use cryptoki::session::Session;
use pairgate_pki::der;
use pairgate_pki::{KeyAlgorithm, SignatureScheme};

use super::ck;
use crate::{KeyStoreError, PublicKeyInfo};

pub(super) fn read_public(
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
    let malformed = |what: &str| KeyStoreError::Pkcs11(format!("public key object without {what}"));
    match key_type {
        Some(t) if t == KeyType::EC => {
            let point = der::ec_point_from_pkcs11(&point.ok_or_else(|| malformed("CKA_EC_POINT"))?)
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

/// The mechanism and the data a token signs for `scheme`: the digest
/// (ECDSA, PSS) or the DigestInfo (PKCS#1 v1.5), hashed in software.
pub(super) fn signing_input(
    scheme: SignatureScheme,
    message: &[u8],
) -> (Mechanism<'static>, Vec<u8>) {
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
