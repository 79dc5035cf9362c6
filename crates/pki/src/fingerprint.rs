//! SHA-256 identities: the fingerprint of a whole certificate (how the server
//! knows a terminal, and how a trust-store entry is named) and the pin of a
//! SubjectPublicKeyInfo (how a terminal knows its server across certificate
//! renewals on the same key).
//!
//! On the wire and in JSON they are 64 lowercase hex digits; for people they
//! are shown grouped in fours. Parsing accepts either form, upper or lower
//! case, with spaces or colons between groups.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest;

/// Why a fingerprint or pin could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// The text did not hold exactly 64 hex digits.
    #[error("a fingerprint is 64 hex digits (SHA-256); got {0} hex digits")]
    WrongLength(usize),
    /// The text held something other than hex digits and separators.
    #[error("a fingerprint holds only hex digits, spaces and colons; found {0:?}")]
    InvalidCharacter(char),
}

fn parse_hex32(text: &str) -> Result<[u8; 32], FingerprintError> {
    let mut digits = String::with_capacity(64);
    for c in text.trim().chars() {
        if c.is_ascii_hexdigit() {
            digits.push(c.to_ascii_lowercase());
        } else if c == ' ' || c == ':' || c == '-' {
            continue;
        } else {
            return Err(FingerprintError::InvalidCharacter(c));
        }
    }
    if digits.len() != 64 {
        return Err(FingerprintError::WrongLength(digits.len()));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(&digits, &mut out)
        .map_err(|_| FingerprintError::WrongLength(digits.len()))?;
    Ok(out)
}

fn grouped(bytes: &[u8; 32]) -> String {
    let hex = hex::encode(bytes);
    let mut out = String::with_capacity(80);
    for (i, c) in hex.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

macro_rules! sha256_identity {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps 32 raw digest bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The 32 raw digest bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// 64 lowercase hex digits: the wire form.
            pub fn to_hex(&self) -> String {
                // Two digits per byte by arithmetic: the master writes one
                // per request (hex's iterator took 2.5% of its CPU on /v1/me).
                let mut out = String::with_capacity(64);
                for byte in self.0 {
                    for nibble in [byte >> 4, byte & 0x0f] {
                        out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    }
                }
                out
            }

            /// Hex in groups of four separated by spaces, for people to read
            /// out and compare.
            pub fn grouped(&self) -> String {
                grouped(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = FingerprintError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

sha256_identity!(
    /// SHA-256 of a certificate's DER encoding: names an entry of a trust
    /// store and any certificate in logs.
    CertificateFingerprint
);

sha256_identity!(
    /// The Terminal Certificate Fingerprint: SHA-256 of the DER of the
    /// terminal's client certificate. The server stores it per paired
    /// terminal and compares it on every request.
    TerminalFingerprint
);

sha256_identity!(
    /// SHA-256 of a certificate's SubjectPublicKeyInfo DER. Terminals pin
    /// their server by it, so a renewed certificate on the same key keeps
    /// working while a new key does not.
    SpkiPin
);

impl CertificateFingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Self {
        Self(sha256(der))
    }
}

impl TerminalFingerprint {
    /// The fingerprint of a terminal's DER client certificate.
    pub fn of_certificate(der: &[u8]) -> Self {
        Self(sha256(der))
    }
}

impl From<CertificateFingerprint> for TerminalFingerprint {
    fn from(fp: CertificateFingerprint) -> Self {
        Self(fp.0)
    }
}

impl SpkiPin {
    /// The pin of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        Self(sha256(spki_der))
    }

    /// The pin of the public key inside a DER certificate.
    pub fn of_certificate(cert_der: &[u8]) -> Result<Self, crate::CertificateError> {
        let info = crate::CertificateInfo::parse(cert_der)?;
        Ok(Self::of_spki(&info.spki_der))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_grouping() {
        let fp = TerminalFingerprint::from_bytes([0xab; 32]);
        assert_eq!(fp.to_hex(), "ab".repeat(32));
        assert_eq!(fp.to_hex().parse::<TerminalFingerprint>().unwrap(), fp);
        let mut counting = [0u8; 32];
        for (i, b) in counting.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(9);
        }
        assert_eq!(
            TerminalFingerprint::from_bytes(counting).to_hex(),
            hex::encode(counting)
        );
        assert!(fp.grouped().starts_with("abab abab "));
        assert_eq!(fp.grouped().parse::<TerminalFingerprint>().unwrap(), fp);
        let colons = "AB:".repeat(31) + "AB";
        assert_eq!(colons.parse::<TerminalFingerprint>().unwrap(), fp);
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(
            "abc".parse::<SpkiPin>(),
            Err(FingerprintError::WrongLength(3))
        );
        let bad = "g".repeat(64);
        assert_eq!(
            bad.parse::<SpkiPin>(),
            Err(FingerprintError::InvalidCharacter('g'))
        );
        assert!("0".repeat(66).parse::<SpkiPin>().is_err());
    }

    #[test]
    fn serde_uses_hex() {
        let pin = SpkiPin::from_bytes([1; 32]);
        let json = serde_json::to_string(&pin).unwrap();
        assert_eq!(json, format!("\"{}\"", "01".repeat(32)));
        let back: SpkiPin = serde_json::from_str(&json).unwrap();
        assert_eq!(back, pin);
    }

    #[test]
    fn fingerprint_is_sha256_of_der() {
        // SHA-256("abc") from FIPS 180-2.
        let fp = CertificateFingerprint::of_certificate(b"abc");
        assert_eq!(
            fp.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
