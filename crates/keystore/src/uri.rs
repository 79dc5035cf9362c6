//! Key store URIs: `file:/path/to/dir` for the software store and RFC 7512
//! PKCS#11 URIs for a token, e.g.
//! `pkcs11:token=terminal;object=identity?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pairgate/pin`.
//! A PIN in the URI itself (`pin-value`) is refused: URIs end up on command
//! lines and in logs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::KeyStoreError;

/// Where a key store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyStoreUri {
    /// A software store in a directory.
    File(PathBuf),
    /// A PKCS#11 token.
    Pkcs11(Pkcs11Uri),
}

impl KeyStoreUri {
    /// The alias an operation uses: `given`, else the URI's `object=`,
    /// else `terminal`.
    pub fn alias(&self, given: Option<&str>) -> Result<crate::Alias, KeyStoreError> {
        let default = match self {
            Self::Pkcs11(p) => p.object.as_deref(),
            Self::File(_) => None,
        };
        crate::Alias::new(given.or(default).unwrap_or("terminal"))
    }
}

/// The parts of an RFC 7512 URI that pairgate uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// Token label (`token=`), required.
    pub token: String,
    /// Object label (`object=`): the default alias.
    pub object: Option<String>,
    /// Token manufacturer to match, if given.
    pub manufacturer: Option<String>,
    /// Token model to match, if given.
    pub model: Option<String>,
    /// Token serial to match, if given.
    pub serial: Option<String>,
    /// Path of the PKCS#11 module (`module-path=`); otherwise
    /// `PAIRGATE_PKCS11_MODULE`.
    pub module_path: Option<PathBuf>,
    /// File holding the user PIN (`pin-source=file:…`); otherwise
    /// `PAIRGATE_PKCS11_PIN_FILE`.
    pub pin_source: Option<PathBuf>,
}

fn invalid(uri: &str, reason: impl Into<String>) -> KeyStoreError {
    // Never echo a pin-value back.
    let shown = match uri.find("pin-value") {
        Some(i) => format!("{}…", uri.get(..i).unwrap_or_default()),
        None => uri.to_owned(),
    };
    KeyStoreError::InvalidUri {
        uri: shown,
        reason: reason.into(),
    }
}

fn percent_decode(uri: &str, text: &str) -> Result<String, KeyStoreError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(uri, "bad percent-encoding"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(uri, "percent-encoding is not UTF-8"))
}

impl FromStr for Pkcs11Uri {
    type Err = KeyStoreError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let body = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| invalid(uri, "does not start with pkcs11:"))?;
        let (path, query) = body.split_once('?').unwrap_or((body, ""));
        let mut parsed = Pkcs11Uri {
            token: String::new(),
            object: None,
            manufacturer: None,
            model: None,
            serial: None,
            module_path: None,
            pin_source: None,
        };
        let mut token = None;
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| invalid(uri, format!("attribute {attr:?} has no value")))?;
            let value = percent_decode(uri, value)?;
            let slot = match name {
                "token" => &mut token,
                "object" => &mut parsed.object,
                "manufacturer" => &mut parsed.manufacturer,
                "model" => &mut parsed.model,
                "serial" => &mut parsed.serial,
                // The object type is implied by the operation.
                "type" => continue,
                other => {
                    return Err(invalid(
                        uri,
                        format!("unsupported path attribute {other:?}"),
                    ));
                }
            };
            if slot.replace(value).is_some() {
                return Err(invalid(uri, format!("attribute {name:?} given twice")));
            }
        }
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| invalid(uri, format!("query attribute {attr:?} has no value")))?;
            match name {
                "module-path" => {
                    parsed.module_path = Some(PathBuf::from(percent_decode(uri, value)?))
                }
                "pin-source" => {
                    let value = percent_decode(uri, value)?;
                    let path = value.strip_prefix("file:").unwrap_or(&value);
                    let path = path.strip_prefix("//").unwrap_or(path);
                    parsed.pin_source = Some(PathBuf::from(path));
                }
                "pin-value" => {
                    return Err(invalid(
                        uri,
                        "pin-value puts the PIN where others can read it; use pin-source=file:PATH",
                    ));
                }
                other => {
                    return Err(invalid(
                        uri,
                        format!("unsupported query attribute {other:?}"),
                    ));
                }
            }
        }
        parsed.token = token.ok_or_else(|| invalid(uri, "token= is required"))?;
        Ok(parsed)
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pkcs11:token={}", self.token)?;
        if let Some(object) = &self.object {
            write!(f, ";object={object}")?;
        }
        if let Some(module) = &self.module_path {
            write!(f, "?module-path={}", module.display())?;
        }
        Ok(())
    }
}

impl FromStr for KeyStoreUri {
    type Err = KeyStoreError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        if uri.starts_with("pkcs11:") {
            return uri.parse().map(Self::Pkcs11);
        }
        if let Some(path) = uri.strip_prefix("file:") {
            // file:///abs and file:/abs both name /abs.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(invalid(uri, "no directory after file:"));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        Err(invalid(uri, "use file:/path/to/dir or pkcs11:token=…"))
    }
}

impl fmt::Display for KeyStoreUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::Pkcs11(uri) => uri.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_and_pkcs11() {
        assert_eq!(
            "file:/var/lib/t/keys".parse::<KeyStoreUri>().unwrap(),
            KeyStoreUri::File("/var/lib/t/keys".into())
        );
        assert_eq!(
            "file:///var/k".parse::<KeyStoreUri>().unwrap(),
            KeyStoreUri::File("/var/k".into())
        );
        let uri: Pkcs11Uri =
            "pkcs11:token=My%20Token;object=id;type=private?module-path=/usr/lib/x.so&pin-source=file:/run/pin"
                .parse()
                .unwrap();
        assert_eq!(uri.token, "My Token");
        assert_eq!(uri.object.as_deref(), Some("id"));
        assert_eq!(
            uri.module_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/x.so"))
        );
        assert_eq!(
            uri.pin_source.as_deref(),
            Some(std::path::Path::new("/run/pin"))
        );
    }

    #[test]
    fn the_alias_is_the_given_one_then_the_object_then_terminal() {
        let token: KeyStoreUri = "pkcs11:token=t;object=id".parse().unwrap();
        let file: KeyStoreUri = "file:/k".parse().unwrap();
        assert_eq!(token.alias(Some("vpn")).unwrap().as_str(), "vpn");
        assert_eq!(token.alias(None).unwrap().as_str(), "id");
        assert_eq!(file.alias(None).unwrap().as_str(), "terminal");
        assert!(file.alias(Some("no spaces allowed?")).is_err());
    }

    #[test]
    fn refuses_pin_value_without_echoing_it() {
        let err = "pkcs11:token=t?pin-value=123456"
            .parse::<KeyStoreUri>()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("pin-source"), "{text}");
        assert!(!text.contains("123456"), "{text}");
    }

    #[test]
    fn refuses_bad_uris() {
        for bad in [
            "/plain/path",
            "file:",
            "pkcs11:object=x",
            "pkcs11:token=a;token=b",
            "pkcs11:token=%zz",
            "pkcs11:slot=1;token=a",
        ] {
            assert!(bad.parse::<KeyStoreUri>().is_err(), "{bad}");
        }
    }
}
