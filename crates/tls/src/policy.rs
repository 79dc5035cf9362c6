//! The TLS policy: which versions, suites, key exchanges and signature
//! schemes a connection may use, and how long a session may be resumed.
//!
//! rustls already lacks SSLv3, TLS 1.0/1.1, RC4, CBC, MD5/SHA-1 signature
//! schemes, renegotiation and compression; the policy states them anyway
//! by building its provider from an allow-list, so a future rustls default
//! cannot widen what pairgate accepts.

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::{NamedGroup, SignatureScheme, SupportedProtocolVersion};

/// Which TLS versions a connection may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VersionPolicy {
    /// TLS 1.3, falling back to TLS 1.2 (the default).
    #[default]
    Tls12And13,
    /// Exactly TLS 1.2, for acquirers that demand it ("forced TLSv1.2").
    Tls12Only,
    /// Exactly TLS 1.3.
    Tls13Only,
}

impl std::str::FromStr for VersionPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1.2+1.3" | "tls12+tls13" | "default" => Ok(Self::Tls12And13),
            "1.2" | "tls12" => Ok(Self::Tls12Only),
            "1.3" | "tls13" => Ok(Self::Tls13Only),
            other => Err(format!(
                "unknown TLS version policy {other:?}: use 1.2, 1.3 or 1.2+1.3"
            )),
        }
    }
}

/// Which key exchanges a connection offers (client) and accepts (server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyExchange {
    /// The post-quantum hybrid X25519MLKEM768 first, then X25519, P-256
    /// and P-384 (the default): recorded traffic stays confidential even
    /// against a later quantum computer, at about one more millisecond of
    /// CPU per full handshake.
    #[default]
    HybridFirst,
    /// X25519, P-256 and P-384 only: for peers without ML-KEM, and for
    /// like-for-like comparisons with stacks that lack it.
    Classical,
}

impl std::str::FromStr for KeyExchange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hybrid" | "default" => Ok(Self::HybridFirst),
            "classical" => Ok(Self::Classical),
            other => Err(format!(
                "unknown key exchange policy {other:?}: use hybrid or classical"
            )),
        }
    }
}

/// A TLS policy shared by clients and servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPolicy {
    /// Allowed versions.
    pub versions: VersionPolicy,
    /// Allowed key exchanges.
    pub key_exchange: KeyExchange,
    /// How long a session may be resumed after its full handshake.
    pub session_lifetime: Duration,
    /// How long a peer may take to finish a handshake.
    pub handshake_timeout: Duration,
    /// How many resumable sessions a server keeps (oldest evicted first).
    pub session_cache_size: usize,
    /// How many bytes a server's session cache may hold in all (each
    /// session holds the client's certificate chain).
    pub session_cache_bytes: usize,
    /// The largest client certificate chain (leaf and intermediates, DER
    /// bytes) a server accepts; larger ones are refused before anything
    /// of them is stored.
    pub max_client_certificate_bytes: usize,
    /// What time it is, for session lifetimes.
    pub clock: pairgate_clock::Clock,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        Self {
            versions: VersionPolicy::default(),
            key_exchange: KeyExchange::default(),
            session_lifetime: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(10),
            session_cache_size: 100_000,
            session_cache_bytes: 64 * 1024 * 1024,
            max_client_certificate_bytes: 16 * 1024,
            clock: pairgate_clock::Clock::system(),
        }
    }
}

/// The signature schemes pairgate accepts and offers, strongest-first. No
/// SHA-1, no MD5, no legacy RSA-PKCS#1 with SHA-1.
pub(crate) const SIGNATURE_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
];

impl TlsPolicy {
    /// A policy forcing exactly TLS 1.2.
    pub fn tls12_only() -> Self {
        Self {
            versions: VersionPolicy::Tls12Only,
            ..Self::default()
        }
    }

    /// A policy forcing exactly TLS 1.3.
    pub fn tls13_only() -> Self {
        Self {
            versions: VersionPolicy::Tls13Only,
            ..Self::default()
        }
    }

    /// The protocol versions for rustls's builders.
    pub fn protocol_versions(&self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS12: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self.versions {
            VersionPolicy::Tls12And13 => &BOTH,
            VersionPolicy::Tls12Only => &TLS12,
            VersionPolicy::Tls13Only => &TLS13,
        }
    }

    /// The crypto provider: aws-lc-rs with AEAD, forward-secret suites
    /// only, AES-128-GCM first (fastest with AES-NI, and enough), and
    /// verification algorithms without SHA-1.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        use aws_lc_rs::cipher_suite as cs;
        let base = aws_lc_rs::default_provider();
        let cipher_suites = vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ];
        let mut verify = base.signature_verification_algorithms;
        verify.mapping = static_mapping(verify.mapping);
        let kx_groups = match self.key_exchange {
            KeyExchange::HybridFirst => base.kx_groups.clone(),
            KeyExchange::Classical => base
                .kx_groups
                .iter()
                .copied()
                .filter(|g| {
                    matches!(
                        g.name(),
                        NamedGroup::X25519 | NamedGroup::secp256r1 | NamedGroup::secp384r1
                    )
                })
                .collect(),
        };
        Arc::new(CryptoProvider {
            cipher_suites,
            kx_groups,
            signature_verification_algorithms: verify,
            ..base
        })
    }
}

/// Keeps only the verification schemes in [`SIGNATURE_SCHEMES`].
fn static_mapping(
    mapping: &'static [(
        SignatureScheme,
        &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
    )],
) -> &'static [(
    SignatureScheme,
    &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
)] {
    use std::sync::OnceLock;
    type Mapping = Vec<(
        SignatureScheme,
        &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
    )>;
    static FILTERED: OnceLock<Mapping> = OnceLock::new();
    FILTERED.get_or_init(|| {
        mapping
            .iter()
            .filter(|(s, _)| SIGNATURE_SCHEMES.contains(s))
            .cloned()
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_states_the_policy() {
        let provider = TlsPolicy::default().provider();
        for suite in &provider.cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(name.contains("GCM") || name.contains("CHACHA20"), "{name}");
            assert!(
                !name.contains("CBC") && !name.contains("RC4") && !name.contains("SHA1"),
                "{name}"
            );
            if name.starts_with("TLS_") {
                assert!(name.contains("ECDHE"), "{name}");
            }
        }
        assert!(format!("{:?}", provider.cipher_suites[0].suite()).contains("AES_128_GCM"));
        for scheme in provider
            .signature_verification_algorithms
            .supported_schemes()
        {
            let name = format!("{scheme:?}");
            assert!(!name.contains("SHA1") && !name.contains("MD5"), "{name}");
        }
        assert_eq!(TlsPolicy::tls12_only().protocol_versions().len(), 1);
        let hybrid: Vec<_> = provider.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            hybrid.first(),
            Some(&NamedGroup::X25519MLKEM768),
            "{hybrid:?}"
        );
        let classical = TlsPolicy {
            key_exchange: KeyExchange::Classical,
            ..TlsPolicy::default()
        }
        .provider();
        let classical: Vec<_> = classical.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            classical,
            [
                NamedGroup::X25519,
                NamedGroup::secp256r1,
                NamedGroup::secp384r1
            ]
        );
        assert_eq!(
            "1.3".parse::<VersionPolicy>().unwrap(),
            VersionPolicy::Tls13Only
        );
    }
}
