//! Server settings: defaults that need no file, then a TOML file (unknown
//! keys refused), then `PAIRGATE_<KEY>` environment variables, then
//! `--set KEY=VALUE` / flags from the command line. [`SETTINGS`] documents
//! every key; `pairgate server --help` prints it.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A setting could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML or a value in it is wrong.
    #[error("{0}")]
    Invalid(String),
}

mod check;
mod derived;
mod keys;
mod rules;
mod vpn;

pub use vpn::VpnSettings;

pub use keys::SETTINGS;

/// The server's settings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// See [`SETTINGS`].
    pub data_dir: PathBuf,
    /// See [`SETTINGS`].
    pub database_url: String,
    /// See [`SETTINGS`].
    pub gate_listen: String,
    /// See [`SETTINGS`].
    pub master_listen: String,
    /// See [`SETTINGS`].
    pub cas_listen: String,
    /// See [`SETTINGS`].
    pub cas_tls: bool,
    /// See [`SETTINGS`].
    pub cas_session_idle_secs: u64,
    /// See [`SETTINGS`].
    pub cas_session_max_secs: u64,
    /// See [`SETTINGS`].
    pub login_failures_per_account: u64,
    /// See [`SETTINGS`].
    pub login_failures_per_address: u64,
    /// See [`SETTINGS`].
    pub login_window_secs: u64,
    /// See [`SETTINGS`].
    pub master_url: String,
    /// See [`SETTINGS`].
    pub services: Vec<String>,
    /// See [`SETTINGS`].
    pub metrics_listen: String,
    /// See [`SETTINGS`].
    pub identity_keystore: String,
    /// See [`SETTINGS`].
    pub identity_passphrase_file: String,
    /// See [`SETTINGS`].
    pub server_names: Vec<String>,
    /// See [`SETTINGS`].
    pub upstream_url: String,
    /// See [`SETTINGS`].
    pub tls_versions: String,
    /// See [`SETTINGS`].
    pub session_lifetime_secs: u64,
    /// See [`SETTINGS`].
    pub handshake_timeout_secs: u64,
    /// See [`SETTINGS`].
    pub header_timeout_secs: u64,
    /// See [`SETTINGS`].
    pub pairing_ttl_secs: u64,
    /// See [`SETTINGS`].
    pub max_open_requests: u64,
    /// See [`SETTINGS`].
    pub unknown_serial_per_minute: u64,
    /// See [`SETTINGS`].
    pub max_body_bytes: u64,
    /// See [`SETTINGS`].
    pub max_proxy_body_bytes: u64,
    /// See [`SETTINGS`].
    pub long_poll_max_secs: u64,
    /// See [`SETTINGS`].
    pub paired_poll_ms: u64,
    /// See [`SETTINGS`].
    pub reconcile_secs: u64,
    /// See [`SETTINGS`].
    pub stale_after_secs: u64,
    /// See [`SETTINGS`].
    pub rekey_overlap_secs: u64,
    /// See [`SETTINGS`].
    pub expired_grace_secs: u64,
    /// See [`SETTINGS`].
    pub terminal_ca_alias: String,
    /// See [`SETTINGS`].
    pub terminal_cert_days: u64,
    /// See [`SETTINGS`].
    pub vpn_type: String,
    /// See [`SETTINGS`].
    pub vpn_endpoint: String,
    /// See [`SETTINGS`].
    pub vpn_pool_v4: String,
    /// See [`SETTINGS`].
    pub vpn_pool_v6: String,
    /// See [`SETTINGS`].
    pub vpn_routes: Vec<String>,
    /// See [`SETTINGS`].
    pub vpn_dns: Vec<String>,
    /// See [`SETTINGS`].
    pub vpn_keepalive_secs: u64,
    /// See [`SETTINGS`].
    pub vpn_ca_alias: String,
    /// See [`SETTINGS`].
    pub vpn_cert_days: u64,
    /// See [`SETTINGS`].
    pub proxy_timeout_secs: u64,
    /// See [`SETTINGS`].
    pub upstream_connect_timeout_secs: u64,
    /// See [`SETTINGS`].
    pub upstream_idle_secs: u64,
    /// See [`SETTINGS`].
    pub upstream_max_idle: u64,
    /// See [`SETTINGS`].
    pub upstream_max_connections: u64,
    /// See [`SETTINGS`].
    pub upstream_ca_file: String,
    /// See [`SETTINGS`].
    pub upstream_pin: String,
    /// See [`SETTINGS`].
    pub proxy_forwarded: String,
    /// See [`SETTINGS`].
    pub tls_session_cache_bytes: u64,
    /// See [`SETTINGS`].
    pub max_client_cert_bytes: u64,
    /// See [`SETTINGS`].
    pub body_timeout_secs: u64,
    /// See [`SETTINGS`].
    pub linger_secs: u64,
    /// See [`SETTINGS`].
    pub max_connections_per_address: u64,
    /// See [`SETTINGS`].
    pub gate_max_connections: u64,
    /// See [`SETTINGS`].
    pub master_max_connections: u64,
    /// See [`SETTINGS`].
    pub cas_max_connections: u64,
    /// See [`SETTINGS`].
    pub reveal_ttl_secs: u64,
    /// See [`SETTINGS`].
    pub max_open_per_key: u64,
    /// See [`SETTINGS`].
    pub max_open_per_address: u64,
    /// See [`SETTINGS`].
    pub supersede_window_secs: u64,
    /// See [`SETTINGS`].
    pub supersedes_per_key: u64,
    /// See [`SETTINGS`].
    pub supersedes_per_address: u64,
    /// See [`SETTINGS`].
    pub supersedes_per_serial: u64,
    /// See [`SETTINGS`].
    pub closed_request_retention_secs: u64,
    /// See [`SETTINGS`].
    pub unknown_serial_per_address_per_minute: u64,
    /// See [`SETTINGS`].
    pub refusal_audit_per_minute: u64,
    /// See [`SETTINGS`].
    pub password_hash_concurrency: u64,
    /// See [`SETTINGS`].
    pub max_renewals: u64,
    /// See [`SETTINGS`].
    pub cas_hosts: Vec<String>,
    /// See [`SETTINGS`].
    pub step_up_failures: u64,
    /// See [`SETTINGS`].
    pub step_up_window_secs: u64,
    /// See [`SETTINGS`].
    pub api_token_days: u64,
    /// See [`SETTINGS`].
    pub audit_checkpoint_records: u64,
    /// See [`SETTINGS`].
    pub audit_checkpoint_secs: u64,
    /// See [`SETTINGS`].
    pub auto_approve_manifest: bool,
    /// See [`SETTINGS`].
    pub auto_approve_networks: Vec<String>,
    /// See [`SETTINGS`].
    pub auto_approve_hours: String,
    /// See [`SETTINGS`].
    pub auto_approve_models: Vec<String>,
    /// See [`SETTINGS`].
    pub auto_approve_ca_file: String,
    /// See [`SETTINGS`].
    pub clone_action: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./pairgate-data"),
            database_url: String::new(),
            gate_listen: "0.0.0.0:7741".into(),
            master_listen: "0.0.0.0:7743".into(),
            cas_listen: "127.0.0.1:7780".into(),
            cas_tls: false,
            cas_session_idle_secs: 1800,
            cas_session_max_secs: 43_200,
            login_failures_per_account: 5,
            login_failures_per_address: 20,
            login_window_secs: 900,
            master_url: String::new(),
            services: vec!["gate".into(), "master".into(), "cas".into()],
            metrics_listen: "127.0.0.1:7790".into(),
            identity_keystore: String::new(),
            identity_passphrase_file: String::new(),
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            upstream_url: String::new(),
            tls_versions: "1.2+1.3".into(),
            session_lifetime_secs: 600,
            handshake_timeout_secs: 10,
            header_timeout_secs: 10,
            pairing_ttl_secs: 86_400,
            max_open_requests: 1000,
            unknown_serial_per_minute: 10,
            max_body_bytes: 16 * 1024,
            max_proxy_body_bytes: 1 << 20,
            long_poll_max_secs: 30,
            paired_poll_ms: 200,
            reconcile_secs: 5,
            stale_after_secs: 30,
            rekey_overlap_secs: 3600,
            expired_grace_secs: 90 * 86_400,
            terminal_ca_alias: String::new(),
            terminal_cert_days: 365,
            vpn_type: "none".into(),
            vpn_endpoint: String::new(),
            vpn_pool_v4: "10.8.0.0/24".into(),
            vpn_pool_v6: String::new(),
            vpn_routes: Vec::new(),
            vpn_dns: Vec::new(),
            vpn_keepalive_secs: 25,
            vpn_ca_alias: "pairgate-vpn-ca".into(),
            vpn_cert_days: 365,
            proxy_timeout_secs: 30,
            upstream_connect_timeout_secs: 5,
            upstream_idle_secs: 60,
            upstream_max_idle: 64,
            upstream_max_connections: 1024,
            upstream_ca_file: String::new(),
            upstream_pin: String::new(),
            proxy_forwarded: "x-forwarded-for".into(),
            tls_session_cache_bytes: 64 * 1024 * 1024,
            max_client_cert_bytes: 16 * 1024,
            body_timeout_secs: 10,
            linger_secs: 2,
            max_connections_per_address: 512,
            gate_max_connections: 0,
            master_max_connections: 0,
            cas_max_connections: 0,
            reveal_ttl_secs: 300,
            max_open_per_key: 2,
            max_open_per_address: 50,
            supersede_window_secs: 3600,
            supersedes_per_key: 2,
            supersedes_per_address: 10,
            supersedes_per_serial: 6,
            closed_request_retention_secs: 30 * 86_400,
            unknown_serial_per_address_per_minute: 100,
            refusal_audit_per_minute: 200,
            password_hash_concurrency: 2,
            max_renewals: 10,
            cas_hosts: Vec::new(),
            step_up_failures: 5,
            step_up_window_secs: 900,
            api_token_days: 90,
            audit_checkpoint_records: 1000,
            audit_checkpoint_secs: 60,
            auto_approve_manifest: true,
            auto_approve_networks: Vec::new(),
            auto_approve_hours: String::new(),
            auto_approve_models: Vec::new(),
            auto_approve_ca_file: String::new(),
            clone_action: "alert".into(),
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(e.to_string())
}

impl Settings {
    /// Defaults, overlaid with `file` (if any), then the environment
    /// (`PAIRGATE_DATA_DIR`, `PAIRGATE_GATE_LISTEN`, …), then `overrides`
    /// (`key=value`, the command line's).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::try_from(Self::default()).map_err(invalid)?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let from_file: toml::Table = toml::from_str(&text)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
            for (key, value) in from_file {
                if !table.contains_key(&key) {
                    return Err(ConfigError::Invalid(format!(
                        "{}: unknown setting {key:?}",
                        path.display()
                    )));
                }
                table.insert(key, value);
            }
        }
        for (name, value) in env {
            let Some(key) = name.strip_prefix("PAIRGATE_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            // Other PAIRGATE_ variables (key-store passphrases, PKCS#11)
            // belong to other parts; only known settings are read here.
            if table.contains_key(&key) {
                set(&mut table, &key, &value, &format!("environment {name}"))?;
            }
        }
        for (key, value) in overrides {
            if !table.contains_key(key) {
                return Err(ConfigError::Invalid(format!(
                    "unknown setting {key:?}; `pairgate server --help` lists them"
                )));
            }
            set(&mut table, key, value, "command line")?;
        }
        let settings: Self = table.try_into().map_err(invalid)?;
        settings.check()?;
        Ok(settings)
    }

    /// The database URL: `database_url`, or SQLite in the data directory.
    pub fn database(&self) -> DatabaseLocation {
        if self.database_url.is_empty() {
            DatabaseLocation::DataDir(self.data_dir.clone())
        } else {
            DatabaseLocation::Url(self.database_url.clone())
        }
    }

    /// The master URL handed to terminals: `master_url`, else
    /// `https://localhost:<port>` with the port the master actually bound
    /// (settings may ask for port 0).
    pub fn master_url(&self, bound_port: u16) -> String {
        if self.master_url.is_empty() {
            format!("https://localhost:{bound_port}")
        } else {
            self.master_url.clone()
        }
    }

    /// The bounds on pairing requests.
    pub fn pairing_limits(&self) -> pairgate_store::PairingLimits {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        pairgate_store::PairingLimits {
            ttl: Duration::from_secs(self.pairing_ttl_secs),
            reveal_ttl: Duration::from_secs(self.reveal_ttl_secs),
            max_open: count(self.max_open_requests),
            max_open_per_key: count(self.max_open_per_key),
            max_open_per_address: count(self.max_open_per_address),
            supersede_window: Duration::from_secs(self.supersede_window_secs),
            supersedes_per_key: count(self.supersedes_per_key),
            supersedes_per_address: count(self.supersedes_per_address),
            supersedes_per_serial: count(self.supersedes_per_serial),
            max_renewals: count(self.max_renewals),
        }
    }

    /// The step-up limits of these settings.
    pub fn step_up_limits(&self) -> pairgate_store::StepUpLimits {
        pairgate_store::StepUpLimits {
            failures: u32::try_from(self.step_up_failures).unwrap_or(u32::MAX),
            window: Duration::from_secs(self.step_up_window_secs),
        }
    }

    /// The lifetime of new API tokens.
    pub fn api_token_lifetime(&self) -> Duration {
        Duration::from_secs(self.api_token_days.saturating_mul(86_400))
    }

    /// The identity key store URI.
    pub fn identity_keystore(&self) -> String {
        if self.identity_keystore.is_empty() {
            format!("file:{}", self.data_dir.join("identity").display())
        } else {
            self.identity_keystore.clone()
        }
    }

    /// The identity passphrase file.
    pub fn identity_passphrase_file(&self) -> PathBuf {
        if self.identity_passphrase_file.is_empty() {
            self.data_dir.join("identity.passphrase")
        } else {
            PathBuf::from(&self.identity_passphrase_file)
        }
    }

    /// `--help` text naming every setting.
    pub fn help() -> String {
        let mut out = String::from(
            "Settings (a TOML file via --config, PAIRGATE_<KEY> in the environment, or --set KEY=VALUE; later wins):\n",
        );
        for (key, what) in SETTINGS {
            out.push_str(&format!("  {key:<26} {what}\n"));
        }
        out
    }
}

/// Where the store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// SQLite in this data directory.
    DataDir(PathBuf),
    /// A database URL.
    Url(String),
}

/// Sets `key` from text, typed like its default.
fn set(table: &mut toml::Table, key: &str, text: &str, from: &str) -> Result<(), ConfigError> {
    let bad = || ConfigError::Invalid(format!("{from}: {key} = {text:?} is not valid"));
    let value = match table.get(key) {
        Some(toml::Value::Integer(_)) => {
            toml::Value::Integer(text.trim().parse().map_err(|_| bad())?)
        }
        Some(toml::Value::Array(_)) => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        Some(toml::Value::String(_)) => toml::Value::String(text.to_owned()),
        Some(toml::Value::Boolean(_)) => match text.trim() {
            "true" | "1" | "yes" => toml::Value::Boolean(true),
            "false" | "0" | "no" => toml::Value::Boolean(false),
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    table.insert(key.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_documented() {
        let table = toml::Table::try_from(Settings::default()).unwrap();
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut documented: Vec<&str> = SETTINGS.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        documented.sort_unstable();
        assert_eq!(keys, documented);
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pairgate.toml");
        std::fs::write(
            &file,
            "gate_listen = \"127.0.0.1:1\"\nmaster_listen = \"127.0.0.1:2\"\nserver_names = [\"a\"]\n",
        )
        .unwrap();
        let env = vec![
            (
                "PAIRGATE_MASTER_LISTEN".to_owned(),
                "127.0.0.1:3".to_owned(),
            ),
            ("PAIRGATE_SERVER_NAMES".to_owned(), "b, c".to_owned()),
            ("PAIRGATE_PKCS11_PIN_FILE".to_owned(), "/x".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        let set = vec![("max_body_bytes".to_owned(), "99".to_owned())];
        let s = Settings::load(Some(&file), env, &set).unwrap();
        assert_eq!(s.gate_listen, "127.0.0.1:1");
        assert_eq!(s.master_listen, "127.0.0.1:3");
        assert_eq!(s.server_names, ["b", "c"]);
        assert_eq!(s.max_body_bytes, 99);
        assert_eq!(s.master_url(3), "https://localhost:3");
        assert_eq!(s.cas_listen, "127.0.0.1:7780");
    }

    #[test]
    fn bad_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pairgate.toml");
        std::fs::write(&file, "gate_port = 1\n").unwrap();
        let e = Settings::load(Some(&file), [], &[]).unwrap_err();
        assert!(e.to_string().contains("gate_port"), "{e}");
        for (k, v) in [
            ("max_body_bytes", "lots"),
            ("gate_listen", "7741"),
            ("tls_versions", "1.1"),
            ("master_url", "http://x"),
            ("max_body_bytes", "0"),
            ("nonsense", "1"),
        ] {
            let r = Settings::load(None, [], &[(k.to_owned(), v.to_owned())]);
            assert!(r.is_err(), "{k}={v}");
        }
        assert_eq!(Settings::load(None, [], &[]).unwrap(), Settings::default());
    }
}
