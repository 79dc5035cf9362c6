//! VPN profiles for paired terminals (issue 19; docs/protocol.md, "VPN").
//! The terminal makes its VPN key itself — an X25519 key for WireGuard, a
//! key in its key store for OpenVPN — and sends only the public half
//! (WireGuard) or a CSR (OpenVPN), which the VPN CA certifies with
//! CN = serial and clientAuth. The server allocates the terminal's tunnel
//! address from the pool, records the credential with its audit record,
//! and answers with a profile that holds no private key. The gate serves
//! `GET`/`POST /v1/vpn` to paired terminals (so a terminal that reaches
//! the master only through the VPN gets its profile right after pairing),
//! and so does the master.

pub mod profile;
pub(crate) mod routes;
pub mod sync;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::StatusCode;
use base64::Engine;
use pairgate_pki::TerminalFingerprint;
use pairgate_pki::ca::RequestedKey;
use pairgate_proto::{ErrorCode, VpnEnrolment, VpnStatus, VpnType};
use pairgate_store::{
    Actor, NewVpnCredential, Store, StoreError, Terminal, VpnAddressing, VpnCredential,
};

use crate::terminal_ca::TerminalCa;
use crate::{ApiError, ServerError, Settings, VpnSettings};

/// The VPN the server offers, with what signs or names its credentials.
pub struct Vpn {
    settings: VpnSettings,
    /// WireGuard: the server's public key.
    server_key: Option<String>,
    /// OpenVPN: the VPN CA.
    ca: Option<Arc<TerminalCa>>,
}

impl std::fmt::Debug for Vpn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vpn")
            .field("type", &self.settings.vpn_type)
            .finish_non_exhaustive()
    }
}

/// The command that makes the VPN's keys.
pub const INIT: &str = "vpn init";

impl Vpn {
    /// The VPN `settings` offer, or `None`; refused when its keys are
    /// missing (`pairgate vpn init` makes them).
    pub async fn load(settings: &Settings, store: &Store) -> Result<Option<Self>, ServerError> {
        let Some(vpn) = settings.vpn()? else {
            return Ok(None);
        };
        let (server_key, ca) = match vpn.vpn_type {
            VpnType::WireGuard => {
                let key = store
                    .vpn_server_key(VpnType::WireGuard.as_str())
                    .await?
                    .ok_or_else(|| {
                        ServerError::Identity(format!(
                            "vpn_type = \"wireguard\" but no WireGuard server key is recorded: \
                             run `pairgate {INIT}`"
                        ))
                    })?;
                (Some(key), None)
            }
            VpnType::OpenVpn => {
                let ca = TerminalCa::open(settings, &vpn.ca_alias, vpn.cert_days, INIT)?;
                (None, Some(Arc::new(ca)))
            }
        };
        Ok(Some(Self {
            settings: vpn,
            server_key,
            ca,
        }))
    }

    /// The settings.
    pub fn settings(&self) -> &VpnSettings {
        &self.settings
    }

    /// Terminal `terminal`'s VPN state and profile.
    pub(crate) async fn status(
        &self,
        store: &Store,
        terminal: &Terminal,
    ) -> Result<VpnStatus, ApiError> {
        let credential = store.vpn_credential(&terminal.serial).await?;
        Ok(self.answer(credential.as_ref()))
    }

    fn answer(&self, credential: Option<&VpnCredential>) -> VpnStatus {
        VpnStatus {
            vpn_type: self.settings.vpn_type,
            enrolled: credential.is_some(),
            address: credential.map(|c| c.address.clone()),
            address_v6: credential.and_then(|c| c.address_v6.clone()),
            server_address: Some(profile::server_address(&self.settings)),
            certificate: credential.and_then(|c| c.certificate.clone()),
            profile: credential.map_or_else(String::new, |c| c.profile.clone()),
        }
    }

    /// Records terminal `terminal`'s VPN key, presented by its key
    /// `fingerprint`, and answers with its profile. The same key again
    /// answers the profile it has; another replaces it.
    pub(crate) async fn enrol(
        &self,
        store: &Store,
        terminal: &Terminal,
        fingerprint: &TerminalFingerprint,
        body: VpnEnrolment,
        (actor, now): (&Actor, SystemTime),
    ) -> Result<VpnStatus, ApiError> {
        let key = self.key(&body)?;
        let held = store.vpn_credential(&terminal.serial).await?;
        if let Some(held) = held.as_ref().filter(|h| h.public_key == key.public) {
            return Ok(self.answer(Some(held)));
        }
        // Refused before the VPN CA signs (its key may be in an HSM); the
        // store checks both again in the credential's transaction.
        if terminal.suspended_at.is_some() {
            return Err(StoreError::Conflict(format!(
                "terminal {} is suspended: no VPN credential until it is resumed",
                terminal.serial
            ))
            .into());
        }
        if store.vpn_key_seen(&key.public).await? {
            return Err(StoreError::Conflict(
                "this VPN key was presented before: make a new one".into(),
            )
            .into());
        }
        let serial = &terminal.serial;
        let certified = match (&key.spki, &self.ca) {
            (Some(spki), Some(ca)) => {
                let chain = issue(ca.clone(), spki.clone(), serial.as_str(), now).await?;
                let leaf = pairgate_pki::CertificateInfo::parse(&chain[0])
                    .map_err(|e| internal(&e.to_string()))?;
                Some((
                    pairgate_pki::certificate::certificate_pem(&chain[0]),
                    leaf.serial,
                    pairgate_pki::certificate::certificate_pem(&chain[1]),
                ))
            }
            _ => None,
        };
        let settings = &self.settings;
        let server_key = self.server_key.as_deref().unwrap_or_default();
        let ca_pem = certified.as_ref().map(|(_, _, ca)| ca.as_str());
        // The profile names the addresses, which the store allocates in
        // the credential's transaction.
        let render = |v4: IpAddr, v6: Option<IpAddr>| {
            let address = profile::with_prefix(v4, &settings.pool_v4);
            let address_v6 = v6
                .zip(settings.pool_v6.as_ref())
                .map(|(a, p)| profile::with_prefix(a, p));
            let profile = match ca_pem {
                Some(ca) => profile::openvpn_client(settings, serial.as_str(), ca),
                None => profile::wireguard_client(
                    settings,
                    serial.as_str(),
                    server_key,
                    &address,
                    address_v6.as_deref(),
                ),
            };
            VpnAddressing {
                address,
                address_v6,
                profile,
            }
        };
        let new = NewVpnCredential {
            kind: settings.vpn_type.as_str(),
            public_key: &key.public,
            certificate: certified.as_ref().map(|(leaf, _, _)| leaf.as_str()),
            certificate_serial: certified.as_ref().map(|(_, serial, _)| serial.as_str()),
            pools: (&settings.pool_v4, settings.pool_v6.as_ref()),
        };
        let recorded = store
            .issue_vpn_credential(serial, fingerprint, &new, &render, (actor, now))
            .await
            .map_err(pool_error)?;
        Ok(self.answer(Some(&recorded)))
    }

    /// The key a body presents, checked against the server's VPN type.
    fn key(&self, body: &VpnEnrolment) -> Result<PresentedKey, ApiError> {
        let invalid = |why: &str| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::Invalid, why);
        match (
            self.settings.vpn_type,
            &body.wireguard_public_key,
            &body.csr,
        ) {
            (VpnType::WireGuard, Some(key), None) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(key.trim())
                    .ok()
                    .filter(|b| b.len() == 32 && b.iter().any(|x| *x != 0))
                    .ok_or_else(|| {
                        invalid(
                            "wireguard_public_key is not a WireGuard public key (32 bytes, base64)",
                        )
                    })?;
                let public = base64::engine::general_purpose::STANDARD.encode(bytes);
                if Some(public.as_str()) == self.server_key.as_deref() {
                    return Err(invalid("wireguard_public_key is the server's own key"));
                }
                Ok(PresentedKey { public, spki: None })
            }
            (VpnType::OpenVpn, None, Some(pem)) => {
                let csr = pairgate_pki::certificate::parse_csr(pem.as_bytes())
                    .map_err(|e| invalid(&e.to_string()))?;
                let spki = RequestedKey::proven_spki(&csr).map_err(|e| invalid(&e.to_string()))?;
                Ok(PresentedKey {
                    public: pairgate_pki::SpkiPin::of_spki(&spki).to_hex(),
                    spki: Some(spki),
                })
            }
            (kind, _, _) => Err(invalid(&format!(
                "this server's VPN is {kind}: send exactly {}",
                match kind {
                    VpnType::WireGuard => "wireguard_public_key",
                    VpnType::OpenVpn => "csr",
                }
            ))),
        }
    }
}

/// A terminal's VPN public key as the store records it.
struct PresentedKey {
    /// WireGuard: the key (base64); OpenVPN: the SPKI pin (hex).
    public: String,
    /// OpenVPN: the SubjectPublicKeyInfo to certify.
    spki: Option<Vec<u8>>,
}

fn internal(why: &str) -> ApiError {
    tracing::error!(error = %why, "the VPN CA could not issue");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "internal error; the server log has details",
    )
}

/// A full pool is the operator's to fix: 503 with the store's message.
fn pool_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Limit(why) => {
            tracing::warn!(%why, "VPN pool exhausted");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Limit, why)
        }
        other => other.into(),
    }
}

/// The VPN CA certifies `spki` for `serial`, off the async workers (its
/// key may be in an HSM).
async fn issue(
    ca: Arc<TerminalCa>,
    spki: Vec<u8>,
    serial: &str,
    now: SystemTime,
) -> Result<[pairgate_pki::CertificateDer<'static>; 2], ApiError> {
    let owner = serial.to_owned();
    tokio::task::spawn_blocking(move || ca.issue(&spki, &owner, now))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|why| internal(&why))
}
