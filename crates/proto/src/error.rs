//! The error body every pairgate service answers with:
//! `{"error": {"code": "PG-…", "message": "…"}}`. Codes are stable; the
//! message is for people.

/// Defines [`ErrorCode`] from `Variant => "PG-…"` pairs.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)+) => {
        /// A stable error code. docs/protocol.md lists each with its
        /// status. A reader keeps a code it does not know as
        /// [`ErrorCode::Other`].
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* #[doc = $text] $variant,)+
            /// A code this version does not know (a newer peer's).
            Other(String),
        }

        impl ErrorCode {
            /// Every code this version knows.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The wire form, `PG-…`.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(text) => text,
                }
            }

            /// Reads a wire form; unknown codes are [`ErrorCode::Other`].
            pub fn parse(text: &str) -> Self {
                match text {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }
    };
}

error_codes! {
    BadBody => "PG-BAD-BODY",
    BadChallenge => "PG-BAD-CHALLENGE",
    BadCode => "PG-BAD-CODE",
    BadCommitment => "PG-BAD-COMMITMENT",
    BadFingerprint => "PG-BAD-FINGERPRINT",
    BadJson => "PG-BAD-JSON",
    BadNonce => "PG-BAD-NONCE",
    BadPath => "PG-BAD-PATH",
    BadProof => "PG-BAD-PROOF",
    BadQuery => "PG-BAD-QUERY",
    BadSerial => "PG-BAD-SERIAL",
    Blocked => "PG-BLOCKED",
    BodyTimeout => "PG-BODY-TIMEOUT",
    CertExpired => "PG-CERT-EXPIRED",
    Closed => "PG-CLOSED",
    Conflict => "PG-CONFLICT",
    ContentType => "PG-CONTENT-TYPE",
    Exists => "PG-EXISTS",
    Expired => "PG-EXPIRED",
    Forbidden => "PG-FORBIDDEN",
    Host => "PG-HOST",
    Internal => "PG-INTERNAL",
    Invalid => "PG-INVALID",
    KeyReplaced => "PG-KEY-REPLACED",
    Limit => "PG-LIMIT",
    Method => "PG-METHOD",
    NoRoute => "PG-NO-ROUTE",
    NoUpstream => "PG-NO-UPSTREAM",
    NotFound => "PG-NOT-FOUND",
    NotPaired => "PG-NOT-PAIRED",
    NotRevealed => "PG-NOT-REVEALED",
    RateLimited => "PG-RATE-LIMITED",
    RevealMismatch => "PG-REVEAL-MISMATCH",
    StoreUnavailable => "PG-STORE-UNAVAILABLE",
    Timeout => "PG-TIMEOUT",
    TooLarge => "PG-TOO-LARGE",
    Unauthorized => "PG-UNAUTHORIZED",
    UnknownSerial => "PG-UNKNOWN-SERIAL",
    Upstream => "PG-UPSTREAM",
    UpstreamTimeout => "PG-UPSTREAM-TIMEOUT",
    WrongCode => "PG-WRONG-CODE",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Self::parse(&text))
    }
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error's code and message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorDetail {
    /// Stable, `PG-…` (listed in docs/protocol.md).
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

impl ErrorBody {
    /// An error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_itself() {
        for code in ErrorCode::ALL {
            assert!(code.as_str().starts_with("PG-"), "{code}");
            assert_eq!(&ErrorCode::parse(code.as_str()), code);
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(&serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let distinct: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(ErrorCode::as_str).collect();
        assert_eq!(distinct.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn an_unknown_code_is_kept_as_other() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"PG-NEWER","message":"m"}}"#).unwrap();
        assert_eq!(body.error.code, ErrorCode::Other("PG-NEWER".into()));
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"code":"PG-NEWER","message":"m"}}"#
        );
        let known = ErrorBody::new(ErrorCode::NotPaired, "no");
        assert_eq!(
            serde_json::to_value(&known).unwrap()["error"]["code"],
            "PG-NOT-PAIRED"
        );
    }
}
