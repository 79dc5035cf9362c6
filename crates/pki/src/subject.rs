//! Certificate subject names given by people on the command line, such as
//! `CN=ATM-0042, O=Example Operator, C=CZ`, parsed into rcgen's
//! distinguished name. Only the attribute types terminals and CAs use are
//! accepted, so a typo is an error rather than a silently odd certificate.

use std::fmt;
use std::str::FromStr;

use rcgen::{DistinguishedName, DnType};

/// Why a subject could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// An attribute had no `=`.
    #[error("subject attribute {0:?} is not of the form TYPE=value")]
    MissingEquals(String),
    /// An attribute type we do not accept.
    #[error(
        "subject attribute type {0:?} is not supported: use CN, O, OU, C, L, ST or serialNumber"
    )]
    UnknownType(String),
    /// An attribute with an empty value, or an empty subject.
    #[error("subject attribute {0:?} has an empty value")]
    EmptyValue(String),
    /// No attributes at all.
    #[error("the subject is empty: give at least CN=...")]
    Empty,
    /// A value longer than X.520 upper bounds allow.
    #[error("subject attribute {0} is longer than 64 characters")]
    TooLong(String),
    /// A country code that is not two letters.
    #[error("C= must be a two-letter country code, got {0:?}")]
    BadCountry(String),
}

/// OID 2.5.4.5 (serialNumber), where terminals put their device serial.
const OID_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];

/// A parsed certificate subject, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    attributes: Vec<(String, String)>,
}

impl Subject {
    /// A subject with only a common name.
    pub fn common_name(cn: &str) -> Result<Self, SubjectError> {
        Self::from_attributes(vec![("CN".to_owned(), cn.to_owned())])
    }

    fn from_attributes(attributes: Vec<(String, String)>) -> Result<Self, SubjectError> {
        if attributes.is_empty() {
            return Err(SubjectError::Empty);
        }
        for (ty, value) in &attributes {
            dn_type(ty)?;
            if value.is_empty() {
                return Err(SubjectError::EmptyValue(ty.clone()));
            }
            if value.chars().count() > 64 {
                return Err(SubjectError::TooLong(ty.clone()));
            }
            if ty == "C" && (value.len() != 2 || !value.chars().all(|c| c.is_ascii_alphabetic())) {
                return Err(SubjectError::BadCountry(value.clone()));
            }
        }
        Ok(Self { attributes })
    }

    /// The rcgen distinguished name.
    pub fn to_distinguished_name(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        for (ty, value) in &self.attributes {
            if let Ok(dn_ty) = dn_type(ty) {
                dn.push(dn_ty, value.as_str());
            }
        }
        dn
    }

    /// The common name, if there is one.
    pub fn cn(&self) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(ty, _)| ty == "CN")
            .map(|(_, v)| v.as_str())
    }
}

fn dn_type(ty: &str) -> Result<DnType, SubjectError> {
    Ok(match ty {
        "CN" => DnType::CommonName,
        "O" => DnType::OrganizationName,
        "OU" => DnType::OrganizationalUnitName,
        "C" => DnType::CountryName,
        "L" => DnType::LocalityName,
        "ST" => DnType::StateOrProvinceName,
        "serialNumber" => DnType::CustomDnType(OID_SERIAL_NUMBER.to_vec()),
        other => return Err(SubjectError::UnknownType(other.to_owned())),
    })
}

fn canonical_type(ty: &str) -> String {
    match ty.to_ascii_lowercase().as_str() {
        "cn" => "CN".into(),
        "o" => "O".into(),
        "ou" => "OU".into(),
        "c" => "C".into(),
        "l" => "L".into(),
        "st" => "ST".into(),
        "serialnumber" => "serialNumber".into(),
        _ => ty.to_owned(),
    }
}

impl FromStr for Subject {
    type Err = SubjectError;

    /// Parses `TYPE=value` pairs separated by commas (`\,` escapes a comma
    /// inside a value), or OpenSSL's `/TYPE=value/TYPE=value` form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (separator, body) = match s.strip_prefix('/') {
            Some(rest) => ('/', rest),
            None => (',', s),
        };
        let mut parts = Vec::new();
        let mut current = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            } else if c == separator {
                parts.push(std::mem::take(&mut current));
            } else {
                current.push(c);
            }
        }
        parts.push(current);
        let mut attributes = Vec::new();
        for part in parts {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (ty, value) = part
                .split_once('=')
                .ok_or_else(|| SubjectError::MissingEquals(part.to_owned()))?;
            attributes.push((canonical_type(ty.trim()), value.trim().to_owned()));
        }
        Self::from_attributes(attributes)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (ty, value)) in self.attributes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{ty}={}", value.replace(',', "\\,"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let a: Subject = "CN=ATM-1, O=Example\\, Inc., C=CZ".parse().unwrap();
        assert_eq!(a.cn(), Some("ATM-1"));
        assert_eq!(a.to_string(), "CN=ATM-1, O=Example\\, Inc., C=CZ");
        let b: Subject = "/cn=ATM-1/serialNumber=42".parse().unwrap();
        assert_eq!(b.to_string(), "CN=ATM-1, serialNumber=42");
    }

    #[test]
    fn refuses_bad_subjects() {
        assert_eq!("".parse::<Subject>(), Err(SubjectError::Empty));
        assert!(matches!(
            "CN".parse::<Subject>(),
            Err(SubjectError::MissingEquals(_))
        ));
        assert!(matches!(
            "XX=1".parse::<Subject>(),
            Err(SubjectError::UnknownType(_))
        ));
        assert!(matches!(
            "CN=".parse::<Subject>(),
            Err(SubjectError::EmptyValue(_))
        ));
        assert!(matches!(
            "C=CZE".parse::<Subject>(),
            Err(SubjectError::BadCountry(_))
        ));
        let long = format!("CN={}", "x".repeat(65));
        assert!(matches!(
            long.parse::<Subject>(),
            Err(SubjectError::TooLong(_))
        ));
    }
}
