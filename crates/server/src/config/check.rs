//! The checks a loaded [`Settings`] must pass: values that parse but make
//! no sense are refused before anything starts.

use std::net::SocketAddr;

use super::{ConfigError, Settings};

impl Settings {
    /// Rejects values that parse but make no sense.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (name, addr) in [
            ("gate_listen", &self.gate_listen),
            ("master_listen", &self.master_listen),
            ("cas_listen", &self.cas_listen),
        ] {
            addr.parse::<SocketAddr>().map_err(|_| {
                ConfigError::Invalid(format!(
                    "{name} = {addr:?} is not an address like 0.0.0.0:7741"
                ))
            })?;
        }
        if !self.metrics_listen.is_empty() {
            self.metrics_listen.parse::<SocketAddr>().map_err(|_| {
                ConfigError::Invalid(format!(
                    "metrics_listen = {:?} is not an address like 127.0.0.1:7790 (empty: off)",
                    self.metrics_listen
                ))
            })?;
        }
        self.service_set()?;
        self.vpn()?;
        if self.stale_after_secs <= self.reconcile_secs {
            return Err(ConfigError::Invalid(format!(
                "stale_after_secs = {} must be more than reconcile_secs = {}: a master checks \
                 the store that often when nothing changes",
                self.stale_after_secs, self.reconcile_secs
            )));
        }
        self.tls_policy()?;
        if !self.master_url.is_empty() && !self.master_url.starts_with("https://") {
            return Err(ConfigError::Invalid(format!(
                "master_url = {:?} must start with https://",
                self.master_url
            )));
        }
        if !matches!(self.clone_action.as_str(), "alert" | "suspend") {
            return Err(ConfigError::Invalid(format!(
                "clone_action = {:?}: use \"alert\" or \"suspend\"",
                self.clone_action
            )));
        }
        self.approval_rules()?;
        self.check_proxy()?;
        self.check_positive()
    }

    /// The services this instance runs.
    pub fn service_set(&self) -> Result<crate::ServiceSet, ConfigError> {
        crate::ServiceSet::parse(&self.services)
    }

    /// The upstream's URL, its trust and the forwarding header.
    fn check_proxy(&self) -> Result<(), ConfigError> {
        let url = self.upstream_url.as_str();
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "upstream_url = {:?} must start with http:// or https://",
                self.upstream_url
            )));
        }
        if self.upstream_url.starts_with("https://")
            && self.upstream_ca_file.is_empty()
            && self.upstream_pin.is_empty()
        {
            return Err(ConfigError::Invalid(
                "an https:// upstream_url needs upstream_ca_file or upstream_pin to trust it"
                    .into(),
            ));
        }
        if !matches!(
            self.proxy_forwarded.as_str(),
            "x-forwarded-for" | "forwarded" | "none"
        ) {
            return Err(ConfigError::Invalid(format!(
                "proxy_forwarded = {:?}: use \"x-forwarded-for\", \"forwarded\" or \"none\"",
                self.proxy_forwarded
            )));
        }
        Ok(())
    }

    /// Counts and durations that must be above 0.
    fn check_positive(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("max_body_bytes", self.max_body_bytes),
            ("max_open_requests", self.max_open_requests),
            ("pairing_ttl_secs", self.pairing_ttl_secs),
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("header_timeout_secs", self.header_timeout_secs),
            ("paired_poll_ms", self.paired_poll_ms),
            ("reconcile_secs", self.reconcile_secs),
            ("cas_session_idle_secs", self.cas_session_idle_secs),
            ("cas_session_max_secs", self.cas_session_max_secs),
            (
                "login_failures_per_account",
                self.login_failures_per_account,
            ),
            (
                "login_failures_per_address",
                self.login_failures_per_address,
            ),
            ("login_window_secs", self.login_window_secs),
            ("tls_session_cache_bytes", self.tls_session_cache_bytes),
            ("max_client_cert_bytes", self.max_client_cert_bytes),
            ("body_timeout_secs", self.body_timeout_secs),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
            ("reveal_ttl_secs", self.reveal_ttl_secs),
            ("max_open_per_key", self.max_open_per_key),
            ("max_open_per_address", self.max_open_per_address),
            ("supersede_window_secs", self.supersede_window_secs),
            (
                "closed_request_retention_secs",
                self.closed_request_retention_secs,
            ),
            ("password_hash_concurrency", self.password_hash_concurrency),
            ("step_up_failures", self.step_up_failures),
            ("step_up_window_secs", self.step_up_window_secs),
            ("api_token_days", self.api_token_days),
            ("audit_checkpoint_records", self.audit_checkpoint_records),
            ("audit_checkpoint_secs", self.audit_checkpoint_secs),
            ("proxy_timeout_secs", self.proxy_timeout_secs),
            (
                "upstream_connect_timeout_secs",
                self.upstream_connect_timeout_secs,
            ),
            ("upstream_idle_secs", self.upstream_idle_secs),
            ("upstream_max_connections", self.upstream_max_connections),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be above 0")));
            }
        }
        Ok(())
    }
}
