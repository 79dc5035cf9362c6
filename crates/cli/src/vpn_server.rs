//! The OpenVPN server's own files, made once by `pairgate vpn
//! server-config`: the VPN CA's certificate, and the VPN server's key
//! (on its machine, 0600) with a certificate the VPN CA issues for the
//! endpoint's host (serverAuth), which terminals check with
//! `remote-cert-tls server`.

use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use pairgate_pki::Subject;
use pairgate_pki::ca::RequestedKey;
use pairgate_server::VpnSettings;
use pairgate_server::terminal_ca::TerminalCa;
use pairgate_server::vpn::sync::write_if_changed;

/// Validity of the VPN server's certificate, in days.
const SERVER_CERT_DAYS: u32 = 825;

/// Writes `ca.pem`, and `server.key` with `server.pem` unless they exist.
pub(crate) fn openvpn_files(vpn: &VpnSettings, ca: &TerminalCa, dir: &Path) -> Result<()> {
    let ca_pem = pairgate_pki::certificate::certificate_pem(ca.certificate());
    write_if_changed(&dir.join("ca.pem"), ca_pem.as_bytes())?;
    let (key_path, cert_path) = (dir.join("server.key"), dir.join("server.pem"));
    if key_path.exists() && cert_path.exists() {
        return Ok(());
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("making the VPN server's key")?;
    let host = vpn
        .endpoint
        .rsplit_once(':')
        .map_or(vpn.endpoint.as_str(), |(h, _)| h)
        .trim_matches(['[', ']']);
    let (names, addresses): (Vec<String>, Vec<IpAddr>) = match host.parse::<IpAddr>() {
        Ok(ip) => (Vec::new(), vec![ip]),
        Err(_) => (vec![host.to_owned()], Vec::new()),
    };
    let subject = Subject::common_name("pairgate VPN server")?;
    let request = RequestedKey::from_spki(
        &rcgen::PublicKeyData::subject_public_key_info(&key),
        &subject,
    )?;
    let authority = ca.authority().map_err(anyhow::Error::msg)?;
    let certificate = authority.issue_server_certificate(
        &request,
        &names,
        &addresses,
        SystemTime::now(),
        SERVER_CERT_DAYS,
    )?;
    pairgate_keystore::write_atomic(&key_path, key.serialize_pem().as_bytes())?;
    let chain = [
        pairgate_pki::certificate::certificate_pem(&certificate),
        pairgate_pki::certificate::certificate_pem(ca.certificate()),
    ]
    .concat();
    pairgate_keystore::write_atomic(&cert_path, chain.as_bytes())?;
    Ok(())
}
