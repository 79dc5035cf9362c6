//! The pairing code of docs/protocol.md: both sides derive an 8-digit code from
//! the fingerprints each saw in its own TLS session and two nonces, the
//! terminal's committed before the server's was revealed. A relay that
//! terminates TLS on both sides sees different fingerprints and so yields
//! two different codes; the commitment stops it from grinding keys or
//! nonces until the codes match, leaving it one chance in 10^8.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::constant_time;

use crate::fingerprint::{SpkiPin, TerminalFingerprint, sha256};

/// Domain separation label of the v1 derivation.
const LABEL_V1: &[u8] = b"pairgate pairing code v1";

/// Why pairing input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// A nonce or commitment that is not 64 hex digits.
    #[error("expected 64 hex digits (32 bytes)")]
    BadHex,
    /// A pairing code that is not 8 digits.
    #[error("a pairing code is 8 digits, written NNNN-NNNN")]
    BadCode,
}

/// 32 random bytes drawn by one side of a pairing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Nonce([u8; 32]);

impl Nonce {
    /// Draws a fresh nonce from the system RNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        // aws-lc aborts the process rather than return weak randomness.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        Self(bytes)
    }

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, the wire form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The commitment to this nonce: SHA-256 of its bytes.
    pub fn commitment(&self) -> Commitment {
        Commitment(sha256(&self.0))
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A terminal nonce is secret until revealed.
        f.write_str("Nonce(..)")
    }
}

impl FromStr for Nonce {
    type Err = PairingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_32(s).map(Self)
    }
}

fn parse_32(s: &str) -> Result<[u8; 32], PairingError> {
    if s.len() != 64 {
        return Err(PairingError::BadHex);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| PairingError::BadHex)?;
    Ok(out)
}

/// SHA-256 of the terminal's nonce, sent before the server's nonce is known.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Commitment([u8; 32]);

impl Commitment {
    /// Lowercase hex, the wire form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `nonce` is the one committed to.
    pub fn opens_to(&self, nonce: &Nonce) -> bool {
        constant_time::verify_slices_are_equal(&self.0, &nonce.commitment().0).is_ok()
    }
}

impl FromStr for Commitment {
    type Err = PairingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_32(s).map(Self)
    }
}

/// Nonces and commitments travel as 64 lowercase hex digits.
macro_rules! hex_serde {
    ($name:ident) => {
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

hex_serde!(Nonce);
hex_serde!(Commitment);

/// An 8-digit pairing code, shown as `NNNN-NNNN`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PairingCode(u32);

impl PairingCode {
    /// Derives the v1 code from what one side saw in its TLS session:
    /// `SHA-256("pairgate pairing code v1" ‖ 0x00 ‖ terminal_cert_fp ‖
    /// server_spki_fp ‖ terminal_nonce ‖ server_nonce)`, first 8 bytes as a
    /// big-endian u64, modulo 10^8.
    pub fn derive(
        terminal: &TerminalFingerprint,
        server: &SpkiPin,
        terminal_nonce: &Nonce,
        server_nonce: &Nonce,
    ) -> Self {
        let mut input = Vec::with_capacity(LABEL_V1.len() + 1 + 128);
        input.extend_from_slice(LABEL_V1);
        input.push(0);
        input.extend_from_slice(terminal.as_bytes());
        input.extend_from_slice(server.as_bytes());
        input.extend_from_slice(terminal_nonce.as_bytes());
        input.extend_from_slice(server_nonce.as_bytes());
        let h = sha256(&input);
        let mut first = [0u8; 8];
        first.copy_from_slice(h.get(..8).unwrap_or(&[0; 8]));
        Self((u64::from_be_bytes(first) % 100_000_000) as u32)
    }

    /// A code from its number; `None` at 10^8 or above.
    pub const fn from_value(value: u32) -> Option<Self> {
        if value < 100_000_000 {
            Some(Self(value))
        } else {
            None
        }
    }

    /// The code as a number below 10^8.
    pub const fn value(&self) -> u32 {
        self.0
    }

    /// Compares in constant time, so a wrong guess leaks nothing through
    /// timing.
    pub fn matches(&self, other: &PairingCode) -> bool {
        constant_time::verify_slices_are_equal(&self.0.to_be_bytes(), &other.0.to_be_bytes())
            .is_ok()
    }
}

impl fmt::Display for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:04}", self.0 / 10_000, self.0 % 10_000)
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingCode(....-....)")
    }
}

impl FromStr for PairingCode {
    type Err = PairingError;

    /// Accepts `NNNN-NNNN`, `NNNNNNNN`, or digits with spaces, as people
    /// type what they hear over the phone.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut value: u32 = 0;
        let mut digits = 0;
        for c in s.trim().chars() {
            match c {
                '0'..='9' => {
                    digits += 1;
                    if digits > 8 {
                        return Err(PairingError::BadCode);
                    }
                    value = value * 10 + (c as u32 - '0' as u32);
                }
                '-' | ' ' => {}
                _ => return Err(PairingError::BadCode),
            }
        }
        if digits != 8 {
            return Err(PairingError::BadCode);
        }
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_reference_vector() {
        let code = PairingCode::derive(
            &TerminalFingerprint::from_bytes([1; 32]),
            &SpkiPin::from_bytes([2; 32]),
            &Nonce::from_bytes([3; 32]),
            &Nonce::from_bytes([4; 32]),
        );
        assert_eq!(code.to_string(), "4863-4365");
    }

    #[test]
    fn code_parsing() {
        let c: PairingCode = "0001-0203".parse().unwrap();
        assert_eq!(c.value(), 10203);
        assert_eq!(c.to_string(), "0001-0203");
        assert_eq!("00010203".parse::<PairingCode>().unwrap(), c);
        assert!("0001-020".parse::<PairingCode>().is_err());
        assert!("0001-02034".parse::<PairingCode>().is_err());
        assert!("0001-02a3".parse::<PairingCode>().is_err());
        assert!(c.matches(&"0001 0203".parse().unwrap()));
        assert!(!c.matches(&"0001-0204".parse().unwrap()));
        assert_eq!(format!("{c:?}"), "PairingCode(....-....)");
    }

    #[test]
    fn commitment_opens_only_to_its_nonce() {
        let n = Nonce::random();
        let c = n.commitment();
        assert!(c.opens_to(&n));
        assert!(!c.opens_to(&Nonce::random()));
        assert_eq!(c.to_hex().parse::<Commitment>().unwrap(), c);
        assert!("zz".parse::<Commitment>().is_err());
    }
}
