//! The key algorithms a terminal key may use and the signature schemes a key
//! store is asked to produce. These are the only ones pairgate accepts:
//! nothing with SHA-1 or MD5, no RSA below 2048 bits.

use std::fmt;
use std::str::FromStr;

/// The algorithm of a key generated inside a key store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (the default).
    P256,
    /// RSA with a 2048-bit modulus, for HSMs that only do RSA.
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    Rsa3072,
}

impl KeyAlgorithm {
    /// Every supported algorithm, default first.
    pub const ALL: [KeyAlgorithm; 3] = [Self::P256, Self::Rsa2048, Self::Rsa3072];

    /// The short name used on the command line and in files.
    pub const fn name(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
        }
    }

    /// Whether this is an RSA algorithm.
    pub const fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072)
    }

    /// RSA modulus size in bits, if RSA.
    pub const fn rsa_bits(self) -> Option<u32> {
        match self {
            Self::P256 => None,
            Self::Rsa2048 => Some(2048),
            Self::Rsa3072 => Some(3072),
        }
    }

    /// The scheme used for certificates and CSRs signed with this key.
    pub const fn certificate_scheme(self) -> SignatureScheme {
        match self {
            Self::P256 => SignatureScheme::EcdsaP256Sha256,
            Self::Rsa2048 | Self::Rsa3072 => SignatureScheme::RsaPkcs1Sha256,
        }
    }

    /// The rcgen algorithm for certificates and CSRs signed with this key.
    pub fn rcgen_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::Rsa2048 | Self::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// The signature schemes a key of this algorithm can produce.
    pub fn schemes(self) -> &'static [SignatureScheme] {
        match self {
            Self::P256 => &[SignatureScheme::EcdsaP256Sha256],
            Self::Rsa2048 | Self::Rsa3072 => &[
                SignatureScheme::RsaPssSha256,
                SignatureScheme::RsaPssSha384,
                SignatureScheme::RsaPssSha512,
                SignatureScheme::RsaPkcs1Sha256,
                SignatureScheme::RsaPkcs1Sha384,
                SignatureScheme::RsaPkcs1Sha512,
            ],
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown key algorithm name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key algorithm {0:?}: use p256, rsa2048 or rsa3072")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for KeyAlgorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "ecdsa-p256" | "prime256v1" | "secp256r1" => Ok(Self::P256),
            "rsa2048" | "rsa-2048" => Ok(Self::Rsa2048),
            "rsa3072" | "rsa-3072" => Ok(Self::Rsa3072),
            _ => Err(UnknownAlgorithm(s.to_owned())),
        }
    }
}

/// The hash function inside a signature scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Self::Sha256 => &aws_lc_rs::digest::SHA256,
            Self::Sha384 => &aws_lc_rs::digest::SHA384,
            Self::Sha512 => &aws_lc_rs::digest::SHA512,
        };
        aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
    }

    /// Digest length in bytes.
    pub const fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Always false: a digest is never empty (present for clippy's
    /// `len_without_is_empty`).
    pub const fn is_empty(self) -> bool {
        false
    }
}

/// A signature a key store can be asked for. ECDSA signatures are returned
/// DER-encoded (`ECDSA-Sig-Value`), as X.509 and TLS want them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// ECDSA P-256 with SHA-256.
    EcdsaP256Sha256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSA PKCS#1 v1.5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSA PKCS#1 v1.5 with SHA-512.
    RsaPkcs1Sha512,
    /// RSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt.
    RsaPssSha256,
    /// RSA-PSS with SHA-384, MGF1-SHA-384, 48-byte salt.
    RsaPssSha384,
    /// RSA-PSS with SHA-512, MGF1-SHA-512, 64-byte salt.
    RsaPssSha512,
}

impl SignatureScheme {
    /// The hash the scheme signs over.
    pub const fn hash(self) -> HashAlgorithm {
        match self {
            Self::EcdsaP256Sha256 | Self::RsaPkcs1Sha256 | Self::RsaPssSha256 => {
                HashAlgorithm::Sha256
            }
            Self::RsaPkcs1Sha384 | Self::RsaPssSha384 => HashAlgorithm::Sha384,
            Self::RsaPkcs1Sha512 | Self::RsaPssSha512 => HashAlgorithm::Sha512,
        }
    }

    /// Whether a key of `algorithm` can make this signature.
    pub fn suits(self, algorithm: KeyAlgorithm) -> bool {
        algorithm.schemes().contains(&self)
    }

    /// The aws-lc-rs algorithm that verifies this scheme.
    pub fn verification_algorithm(
        self,
    ) -> &'static dyn aws_lc_rs::signature::VerificationAlgorithm {
        use aws_lc_rs::signature as s;
        match self {
            Self::EcdsaP256Sha256 => &s::ECDSA_P256_SHA256_ASN1,
            Self::RsaPkcs1Sha256 => &s::RSA_PKCS1_2048_8192_SHA256,
            Self::RsaPkcs1Sha384 => &s::RSA_PKCS1_2048_8192_SHA384,
            Self::RsaPkcs1Sha512 => &s::RSA_PKCS1_2048_8192_SHA512,
            Self::RsaPssSha256 => &s::RSA_PSS_2048_8192_SHA256,
            Self::RsaPssSha384 => &s::RSA_PSS_2048_8192_SHA384,
            Self::RsaPssSha512 => &s::RSA_PSS_2048_8192_SHA512,
        }
    }
}

/// How pairgate's own signed statements (re-key proofs, server key
/// rotations) are verified for a key: ECDSA P-256 with SHA-256 (DER), or
/// RSA-PSS with SHA-256 for RSA of 2048 bits or more; the key's
/// description when it is neither.
pub(crate) fn statement_verification(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<&'static dyn aws_lc_rs::signature::VerificationAlgorithm, String> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, RSA_PSS_2048_8192_SHA256};
    use x509_parser::public_key::PublicKey;
    let p256 = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .is_some_and(|oid| oid.to_id_string() == "1.2.840.10045.3.1.7");
    match spki.parsed() {
        Ok(PublicKey::EC(_)) if p256 => Ok(&ECDSA_P256_SHA256_ASN1),
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => Ok(&RSA_PSS_2048_8192_SHA256),
        Ok(_) => Err(format!(
            "a {} key, not P-256 or RSA of 2048 bits or more",
            spki.algorithm.algorithm.to_id_string()
        )),
        Err(e) => Err(format!("the key does not parse: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in KeyAlgorithm::ALL {
            assert_eq!(alg.name().parse::<KeyAlgorithm>().unwrap(), alg);
        }
        assert!("rsa1024".parse::<KeyAlgorithm>().is_err());
    }

    #[test]
    fn schemes_match_key_types() {
        assert!(SignatureScheme::EcdsaP256Sha256.suits(KeyAlgorithm::P256));
        assert!(!SignatureScheme::RsaPssSha256.suits(KeyAlgorithm::P256));
        assert!(SignatureScheme::RsaPssSha384.suits(KeyAlgorithm::Rsa3072));
        assert_eq!(SignatureScheme::RsaPssSha512.hash().len(), 64);
    }
}
