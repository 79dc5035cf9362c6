//! The few DER encodings a hardware key store needs that PKCS#11 does not
//! hand over ready-made: ECDSA signatures come back as raw `r ‖ s`, EC
//! public keys as an OCTET STRING around the point, RSA public keys as
//! modulus and exponent, and `CKM_RSA_PKCS` signs a DigestInfo we build.

use crate::algorithm::HashAlgorithm;

/// A DER value that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    /// The bytes are not the encoding the caller expected.
    #[error("malformed DER: {0}")]
    Malformed(&'static str),
}

/// OID 1.2.840.10045.2.1 (id-ecPublicKey).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// OID 1.2.840.10045.3.1.7 (prime256v1).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// OID 1.2.840.113549.1.1.1 (rsaEncryption).
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The DER encoding of the P-256 named-curve OID, as PKCS#11 wants it in
/// `CKA_EC_PARAMS`.
pub fn p256_ec_params() -> Vec<u8> {
    tlv(0x06, OID_P256)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    push_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A non-negative INTEGER from big-endian magnitude bytes.
fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let trimmed = magnitude.get(skip..).unwrap_or_default();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    match trimmed.first() {
        None => content.push(0),
        Some(first) if first & 0x80 != 0 => {
            content.push(0);
            content.extend_from_slice(trimmed);
        }
        Some(_) => content.extend_from_slice(trimmed),
    }
    tlv(0x02, &content)
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

/// Reads one TLV at the start of `input`: (tag, content, rest).
pub(crate) fn read_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), DerError> {
    let (&tag, rest) = input
        .split_first()
        .ok_or(DerError::Malformed("empty input"))?;
    let (&first, mut rest) = rest
        .split_first()
        .ok_or(DerError::Malformed("missing length"))?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(DerError::Malformed("unsupported length form"));
        }
        let (len_bytes, after) = rest
            .split_at_checked(n)
            .ok_or(DerError::Malformed("truncated length"))?;
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize)
    };
    let (content, rest) = rest
        .split_at_checked(len)
        .ok_or(DerError::Malformed("truncated content"))?;
    Ok((tag, content, rest))
}

/// Converts a raw PKCS#11 ECDSA signature (`r ‖ s`, each `field_len`
/// bytes) into a DER `ECDSA-Sig-Value`.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, DerError> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(DerError::Malformed("raw ECDSA signature has odd length"));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Ok(sequence(&[&unsigned_integer(r), &unsigned_integer(s)]))
}

/// The uncompressed P-256 point from a PKCS#11 `CKA_EC_POINT`, which the
/// standard says is a DER OCTET STRING (some modules return the bare point).
pub fn ec_point_from_pkcs11(value: &[u8]) -> Result<Vec<u8>, DerError> {
    if value.len() == 65 && value.first() == Some(&0x04) {
        return Ok(value.to_vec());
    }
    let (tag, content, rest) = read_tlv(value)?;
    if tag != 0x04 || !rest.is_empty() {
        return Err(DerError::Malformed("CKA_EC_POINT is not an OCTET STRING"));
    }
    if content.len() != 65 || content.first() != Some(&0x04) {
        return Err(DerError::Malformed(
            "EC point is not an uncompressed P-256 point",
        ));
    }
    Ok(content.to_vec())
}

/// The SubjectPublicKeyInfo of an uncompressed P-256 point.
pub fn p256_spki(point: &[u8]) -> Vec<u8> {
    let algorithm = sequence(&[&tlv(0x06, OID_EC_PUBLIC_KEY), &tlv(0x06, OID_P256)]);
    sequence(&[&algorithm, &bit_string(point)])
}

/// The PKCS#1 `RSAPublicKey` of a modulus and exponent (big-endian).
pub fn rsa_public_key(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    sequence(&[&unsigned_integer(modulus), &unsigned_integer(exponent)])
}

/// The SubjectPublicKeyInfo of an RSA modulus and exponent (big-endian).
pub fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let algorithm = sequence(&[&tlv(0x06, OID_RSA_ENCRYPTION), &[0x05, 0x00]]);
    sequence(&[&algorithm, &bit_string(&rsa_public_key(modulus, exponent))])
}

/// The content of the SubjectPublicKeyInfo's BIT STRING: the EC point or
/// the PKCS#1 RSA public key, which is what rcgen calls the raw key.
pub fn spki_subject_public_key(spki: &[u8]) -> Result<Vec<u8>, DerError> {
    let (tag, body, rest) = read_tlv(spki)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(DerError::Malformed(
            "SubjectPublicKeyInfo is not a SEQUENCE",
        ));
    }
    let (tag, _algorithm, rest) = read_tlv(body)?;
    if tag != 0x30 {
        return Err(DerError::Malformed("missing AlgorithmIdentifier"));
    }
    let (tag, bits, rest) = read_tlv(rest)?;
    if tag != 0x03 || !rest.is_empty() {
        return Err(DerError::Malformed("missing subjectPublicKey BIT STRING"));
    }
    match bits.split_first() {
        Some((0, key)) => Ok(key.to_vec()),
        _ => Err(DerError::Malformed("subjectPublicKey has unused bits")),
    }
}

/// DER DigestInfo prefixes (RFC 8017 §9.2, note 1).
const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_PREFIX: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const SHA512_PREFIX: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

/// The PKCS#1 v1.5 DigestInfo over `digest`, which `CKM_RSA_PKCS` pads
/// and signs.
pub fn rsa_digest_info(hash: HashAlgorithm, digest: &[u8]) -> Vec<u8> {
    let prefix = match hash {
        HashAlgorithm::Sha256 => SHA256_PREFIX,
        HashAlgorithm::Sha384 => SHA384_PREFIX,
        HashAlgorithm::Sha512 => SHA512_PREFIX,
    };
    [prefix, digest].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};

    #[test]
    fn raw_ecdsa_converts_to_a_signature_aws_lc_accepts() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .unwrap();
        // Many signatures so that high-bit and leading-zero r/s both occur.
        for i in 0..64u8 {
            let msg = [i; 17];
            let raw = key.sign(&rng, &msg).unwrap();
            let der = ecdsa_raw_to_der(raw.as_ref()).unwrap();
            let public = signature::UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_ASN1,
                key.public_key().as_ref(),
            );
            public.verify(&msg, &der).unwrap();
        }
    }

    #[test]
    fn p256_spki_matches_aws_lc() {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
                .unwrap();
        let point = key.public_key().as_ref();
        let spki = p256_spki(point);
        let wrapped = tlv(0x04, point);
        assert_eq!(ec_point_from_pkcs11(&wrapped).unwrap(), point);
        assert_eq!(spki_subject_public_key(&spki).unwrap(), point);
        let (_, parsed) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).unwrap();
        assert_eq!(parsed.subject_public_key.data.as_ref(), point);
    }

    #[test]
    fn long_lengths_and_integers() {
        let big = vec![0xffu8; 300];
        let enc = unsigned_integer(&big);
        assert_eq!(&enc[..4], &[0x02, 0x82, 0x01, 0x2d]);
        assert_eq!(enc[4], 0);
        assert_eq!(unsigned_integer(&[0, 0, 1]), vec![0x02, 0x01, 0x01]);
        assert_eq!(unsigned_integer(&[]), vec![0x02, 0x01, 0x00]);
        let (tag, content, rest) = read_tlv(&enc).unwrap();
        assert_eq!((tag, content.len(), rest.len()), (0x02, 301, 0));
    }

    #[test]
    fn malformed_input_is_refused() {
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_err());
        assert!(ec_point_from_pkcs11(&[0x04, 0x05, 1]).is_err());
        assert!(spki_subject_public_key(&[0x30, 0x80]).is_err());
        assert!(read_tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
    }

    use x509_parser::prelude::FromDer;
}
