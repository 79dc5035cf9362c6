//! The VPN's text files, pure: a terminal's profile (wg-quick or
//! `.ovpn`, with no private key: the agent adds the key's place), and the
//! VPN server's side — the WireGuard interface with one peer per admitted
//! terminal, the OpenVPN server configuration with its per-client address
//! files — which `pairgate vpn server-config` and `pairgate vpn sync`
//! write.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use pairgate_store::VpnCredential;

use crate::VpnSettings;

/// The host part of `address/prefix`.
fn host(address: &str) -> &str {
    address.split_once('/').map_or(address, |(host, _)| host)
}

/// `address/prefix` as a one-address network (`/32` or `/128`).
fn single(address: &str) -> String {
    let host = host(address);
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("{host}/128"),
        _ => format!("{host}/32"),
    }
}

/// The IPv4 netmask of a prefix length (`24` → `255.255.255.0`).
fn netmask(prefix: u32) -> String {
    let mask = u32::MAX.checked_shl(32 - prefix.min(32)).unwrap_or(0);
    std::net::Ipv4Addr::from(mask).to_string()
}

fn prefix_of(network: &str) -> u32 {
    network
        .split_once('/')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(32)
}

/// The address terminals give the VPN server's side of the tunnel, with
/// the pool's prefix (`10.8.0.1/24`).
pub fn server_address(vpn: &VpnSettings) -> String {
    format!(
        "{}/{}",
        vpn.pool_v4.server_address(),
        prefix_of(&vpn.pool_v4.to_string())
    )
}

/// A terminal's address in `pool` with the pool's prefix.
pub fn with_prefix(address: IpAddr, pool: &pairgate_store::AddressPool) -> String {
    format!("{address}/{}", prefix_of(&pool.to_string()))
}

/// A terminal's wg-quick profile, without `PrivateKey`: the agent puts
/// its own key under `[Interface]` when it writes the file.
pub fn wireguard_client(
    vpn: &VpnSettings,
    serial: &str,
    server_public_key: &str,
    address: &str,
    address_v6: Option<&str>,
) -> String {
    let mut addresses = vec![address.to_owned()];
    addresses.extend(address_v6.map(str::to_owned));
    let mut out = format!(
        "# pairgate VPN profile of {serial} (wg-quick); the agent adds PrivateKey\n\
         [Interface]\nAddress = {}\n",
        addresses.join(", ")
    );
    if !vpn.dns.is_empty() {
        let dns: Vec<String> = vpn.dns.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "DNS = {}", dns.join(", "));
    }
    let _ = write!(
        out,
        "\n[Peer]\nPublicKey = {server_public_key}\nEndpoint = {}\nAllowedIPs = {}\n\
         PersistentKeepalive = {}\n",
        vpn.endpoint,
        vpn.tunnel_networks().join(", "),
        vpn.keepalive_secs
    );
    out
}

/// A terminal's `.ovpn` profile with the CA and neither its certificate
/// nor its key: the agent names their place on its token (PKCS#11) when
/// it writes the file; the certificate travels beside the profile.
pub fn openvpn_client(vpn: &VpnSettings, serial: &str, ca_pem: &str) -> String {
    let (host, port) = vpn
        .endpoint
        .rsplit_once(':')
        .unwrap_or((&vpn.endpoint, "1194"));
    format!(
        "# pairgate VPN profile of {serial} (OpenVPN); the agent adds the key's place\n\
         client\ndev tun\nproto udp\nremote {host} {port}\nnobind\npersist-tun\n\
         remote-cert-tls server\ntls-version-min 1.2\nhand-window 20\nverb 3\n\
         <ca>\n{}\n</ca>\n",
        ca_pem.trim()
    )
}

/// The active credentials, by serial.
fn active(credentials: &[VpnCredential]) -> impl Iterator<Item = &VpnCredential> {
    credentials.iter().filter(|c| c.revoked_at.is_none())
}

/// One `[Peer]` section per admitted terminal.
fn peer_sections(credentials: &[VpnCredential]) -> String {
    let mut out = String::new();
    for c in active(credentials) {
        let mut allowed = vec![single(&c.address)];
        allowed.extend(c.address_v6.as_deref().map(single));
        let _ = write!(
            out,
            "\n[Peer]\n# {}\nPublicKey = {}\nAllowedIPs = {}\n",
            c.serial,
            c.public_key,
            allowed.join(", ")
        );
    }
    out
}

fn listen_port(vpn: &VpnSettings) -> &str {
    vpn.endpoint.rsplit_once(':').map_or("51820", |(_, p)| p)
}

/// The VPN server's interface in `wg syncconf` form: its key and port and
/// every admitted terminal as a peer. It holds the server's private key,
/// so it is written 0600 on the VPN server's machine.
pub fn wireguard_sync(
    vpn: &VpnSettings,
    private_key: &str,
    credentials: &[VpnCredential],
) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(format!(
        "# pairgate: the VPN server and the admitted terminals, for `wg syncconf`\n\
         [Interface]\nPrivateKey = {private_key}\nListenPort = {}\n{}",
        listen_port(vpn),
        peer_sections(credentials)
    ))
}

/// The VPN server's wg-quick interface: its addresses and port, its key
/// read from `key_file` when it comes up, and every admitted terminal.
pub fn wireguard_server(
    vpn: &VpnSettings,
    key_file: &Path,
    credentials: &[VpnCredential],
) -> String {
    let mut addresses = vec![server_address(vpn)];
    if let Some(v6) = vpn.pool_v6 {
        addresses.push(format!(
            "{}/{}",
            v6.server_address(),
            prefix_of(&v6.to_string())
        ));
    }
    format!(
        "# pairgate VPN server (wg-quick); `pairgate vpn sync` keeps the peers current\n\
         [Interface]\nAddress = {}\nListenPort = {}\nPostUp = wg set %i private-key {}\n{}",
        addresses.join(", "),
        listen_port(vpn),
        key_file.display(),
        peer_sections(credentials)
    )
}

/// The per-client file of an admitted OpenVPN terminal (CN = serial):
/// its fixed address.
pub fn openvpn_ccd(vpn: &VpnSettings, address: &str) -> String {
    format!(
        "ifconfig-push {} {}\n",
        host(address),
        netmask(prefix_of(&vpn.pool_v4.to_string()))
    )
}

/// The OpenVPN server configuration over the files in `dir` (`ca.pem`,
/// `server.pem`, `server.key`, `crl.pem`, `ccd/`): only terminals with a
/// per-client file and a certificate the CRL does not list get in.
pub fn openvpn_server(vpn: &VpnSettings, dir: &Path) -> String {
    let port = vpn.endpoint.rsplit_once(':').map_or("1194", |(_, p)| p);
    let pool = vpn.pool_v4.to_string();
    let mut out = format!(
        "# pairgate VPN server (OpenVPN); `pairgate vpn sync` keeps crl.pem and ccd/ current\n\
         port {port}\nproto udp\ndev tun\nmode server\ntls-server\ntopology subnet\n\
         ifconfig {} {}\npush \"topology subnet\"\npush \"route-gateway {}\"\n",
        vpn.pool_v4.server_address(),
        netmask(prefix_of(&pool)),
        vpn.pool_v4.server_address(),
    );
    for route in &vpn.routes {
        let (network, prefix) = route.split_once('/').unwrap_or((route, "32"));
        let prefix = prefix.parse().unwrap_or(32);
        let _ = writeln!(out, "push \"route {network} {}\"", netmask(prefix));
    }
    for dns in &vpn.dns {
        let _ = writeln!(out, "push \"dhcp-option DNS {dns}\"");
    }
    let d = dir.display();
    let _ = write!(
        out,
        "keepalive {} {}\nca {d}/ca.pem\ncert {d}/server.pem\nkey {d}/server.key\ndh none\n\
         crl-verify {d}/crl.pem\nclient-config-dir {d}/ccd\nccd-exclusive\n\
         remote-cert-tls client\ntls-version-min 1.2\nverb 3\n",
        vpn.keepalive_secs,
        vpn.keepalive_secs * 5
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpn() -> VpnSettings {
        crate::Settings::load(
            None,
            Vec::new(),
            &[
                ("vpn_type".into(), "wireguard".into()),
                ("vpn_endpoint".into(), "192.0.2.1:51820".into()),
                ("vpn_pool_v6".into(), "fd00:8::/112".into()),
                ("vpn_dns".into(), "10.8.0.1".into()),
                ("vpn_routes".into(), "192.168.40.0/24".into()),
            ],
        )
        .unwrap()
        .vpn()
        .unwrap()
        .unwrap()
    }

    #[test]
    fn profiles_hold_no_private_key_and_name_the_tunnel() {
        let v = vpn();
        let wg = wireguard_client(
            &v,
            "ATM-1",
            "U0VSVkVS",
            "10.8.0.2/24",
            Some("fd00:8::2/112"),
        );
        assert!(
            wg.contains("Address = 10.8.0.2/24, fd00:8::2/112\n"),
            "{wg}"
        );
        assert!(wg.contains("AllowedIPs = 10.8.0.0/24, fd00:8::/112, 192.168.40.0/24\n"));
        assert!(wg.contains("Endpoint = 192.0.2.1:51820\nAllowedIPs"));
        assert!(!wg.contains("PrivateKey ="));
        let ovpn = openvpn_client(&v, "ATM-1", "CA");
        assert!(ovpn.contains("remote 192.0.2.1 51820\n") && ovpn.contains("<ca>\nCA\n</ca>"));
        assert!(!ovpn.contains("<key>") && !ovpn.contains("<cert>"));
        assert_eq!(
            openvpn_ccd(&v, "10.8.0.7/24"),
            "ifconfig-push 10.8.0.7 255.255.255.0\n"
        );
        let conf = openvpn_server(&v, Path::new("/etc/pg"));
        assert!(conf.contains("ifconfig 10.8.0.1 255.255.255.0\n"), "{conf}");
        assert!(conf.contains("push \"route 192.168.40.0 255.255.255.0\"\n"));
        assert!(conf.contains("crl-verify /etc/pg/crl.pem\n") && conf.contains("ccd-exclusive\n"));
    }
}
