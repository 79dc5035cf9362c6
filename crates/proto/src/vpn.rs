//! VPN profiles (docs/protocol.md, "VPN"): a paired terminal makes its VPN
//! key itself and sends only what the server needs to certify or admit
//! it; the server answers with a profile that holds no private key.
//!
//! - `GET /v1/vpn` (gate and master, paired terminals) → [`VpnStatus`];
//! - `POST /v1/vpn` [`VpnEnrolment`] → [`VpnStatus`] with the profile;
//! - the CAS API's [`TerminalVpn`].

/// The kinds of VPN a server may offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VpnType {
    /// OpenVPN with a client certificate the server's VPN CA issues for a
    /// key made in the terminal's key store.
    OpenVpn,
    /// WireGuard with an X25519 key made on the terminal.
    WireGuard,
}

impl VpnType {
    /// The wire name: `openvpn` or `wireguard`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenVpn => "openvpn",
            Self::WireGuard => "wireguard",
        }
    }
}

impl std::fmt::Display for VpnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VpnType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "openvpn" => Ok(Self::OpenVpn),
            "wireguard" => Ok(Self::WireGuard),
            other => Err(format!("unknown VPN type {other:?}: openvpn or wireguard")),
        }
    }
}

/// `POST /v1/vpn`: the terminal's VPN public key, in the form the
/// server's VPN type takes; exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpnEnrolment {
    /// WireGuard: the X25519 public key, base64 (44 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_public_key: Option<String>,
    /// OpenVPN: a PEM CSR signed inside the terminal's key store; the
    /// server keeps only its key and names the certificate after the
    /// serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

/// A terminal's VPN credential and profile.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VpnStatus {
    /// What the server offers.
    #[serde(rename = "type")]
    pub vpn_type: VpnType,
    /// Whether the terminal holds a credential the server admits.
    pub enrolled: bool,
    /// The terminal's address inside the tunnel, with the pool's prefix
    /// (`10.8.0.2/24`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Its IPv6 address, when the server has an IPv6 pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_v6: Option<String>,
    /// The VPN server's address inside the tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_address: Option<String>,
    /// OpenVPN: the client certificate chain (PEM), leaf first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The profile without the private key: a wg-quick configuration with
    /// no `PrivateKey`, or an `.ovpn` naming no key; the agent adds the
    /// key's place when it writes the file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub profile: String,
}

/// A VPN credential as the CAS API shows it (`GET
/// /api/v1/terminals/{serial}/vpn`): what the server admits, never a
/// private key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VpnCredentialView {
    /// `openvpn` or `wireguard`.
    #[serde(rename = "type")]
    pub vpn_type: String,
    /// WireGuard: the public key (base64); OpenVPN: the key's SPKI pin.
    pub public_key: String,
    /// OpenVPN: the certificate's serial number (hex).
    pub certificate_serial: Option<String>,
    /// The tunnel address with the pool's prefix.
    pub address: String,
    /// The IPv6 tunnel address, if any.
    pub address_v6: Option<String>,
    /// When it was issued.
    pub issued_at: crate::Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<crate::Timestamp>,
    /// Why: `unpair`, `suspend`, `repair`, `replaced` or `regenerate`.
    pub revoked_reason: Option<String>,
}

/// A terminal's VPN credentials, newest first: the active one (if any)
/// and those revoked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalVpn {
    /// Newest first.
    pub credentials: Vec<VpnCredentialView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrolment_bodies_read_and_refuse_unknown_fields() {
        let e: VpnEnrolment = serde_json::from_str(r#"{"wireguard_public_key": "abc"}"#).unwrap();
        assert_eq!(e.wireguard_public_key.as_deref(), Some("abc"));
        assert!(serde_json::from_str::<VpnEnrolment>(r#"{"key": "x"}"#).is_err());
        let s: VpnStatus =
            serde_json::from_str(r#"{"type": "openvpn", "enrolled": false}"#).unwrap();
        assert_eq!(s.vpn_type, VpnType::OpenVpn);
        assert_eq!("wireguard".parse::<VpnType>(), Ok(VpnType::WireGuard));
        assert!("ipsec".parse::<VpnType>().is_err());
    }
}
