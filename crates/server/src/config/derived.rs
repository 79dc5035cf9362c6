//! Settings read into the terms of the parts that use them: the TLS
//! policy, the connection caps and the host names CAS answers to.

use std::net::SocketAddr;
use std::time::Duration;

use pairgate_tls::{TlsPolicy, VersionPolicy};

use super::{ConfigError, Settings};

impl Settings {
    /// The TLS policy from the settings.
    pub fn tls_policy(&self) -> Result<TlsPolicy, ConfigError> {
        let versions = match self.tls_versions.as_str() {
            "1.2+1.3" => VersionPolicy::default(),
            "1.2" => TlsPolicy::tls12_only().versions,
            "1.3" => TlsPolicy::tls13_only().versions,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "tls_versions = {other:?}: use \"1.2+1.3\", \"1.2\" or \"1.3\""
                )));
            }
        };
        Ok(TlsPolicy {
            versions,
            session_lifetime: Duration::from_secs(self.session_lifetime_secs),
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            session_cache_bytes: usize::try_from(self.tls_session_cache_bytes)
                .unwrap_or(usize::MAX),
            max_client_certificate_bytes: usize::try_from(self.max_client_cert_bytes)
                .unwrap_or(usize::MAX),
            ..TlsPolicy::default()
        })
    }

    /// The connection caps of gate, master and CAS, for a process that may
    /// open `open_files` descriptors; a cap of 0 takes its share of them
    /// ([`crate::conn::default_caps`]).
    pub fn connection_limits(&self, open_files: u64) -> [crate::conn::ConnectionLimits; 3] {
        let shares = crate::conn::default_caps(open_files);
        let per_address = usize::try_from(self.max_connections_per_address).unwrap_or(usize::MAX);
        let set = [
            self.gate_max_connections,
            self.master_max_connections,
            self.cas_max_connections,
        ];
        let mut out = [crate::conn::ConnectionLimits {
            total: 0,
            per_address,
        }; 3];
        for ((limits, set), share) in out.iter_mut().zip(set).zip(shares) {
            limits.total = match set {
                0 => share,
                n => usize::try_from(n).unwrap_or(usize::MAX),
            };
        }
        out
    }

    /// The host names CAS answers to: `cas_hosts`, or else localhost,
    /// the loopback addresses, `server_names` and the address CAS listens
    /// on (unless that is a wildcard).
    pub fn cas_hosts(&self) -> Vec<String> {
        if !self.cas_hosts.is_empty() {
            return self
                .cas_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
        }
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|h| (*h).to_owned())
            .chain(self.server_names.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        if let Ok(addr) = self.cas_listen.parse::<SocketAddr>()
            && !addr.ip().is_unspecified()
        {
            hosts.push(addr.ip().to_string());
        }
        hosts
    }
}
