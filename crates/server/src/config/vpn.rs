//! The VPN settings (issue 19), read into [`VpnSettings`] and refused at
//! load when they do not make sense: a type, a public endpoint, an IPv4
//! pool (and an IPv6 one if wanted), routes, DNS, keepalive, and the VPN
//! CA's alias and certificate lifetime for OpenVPN.

use std::net::IpAddr;

use pairgate_proto::VpnType;
use pairgate_store::AddressPool;

use super::{ConfigError, Settings};

/// The VPN a server offers its paired terminals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpnSettings {
    /// OpenVPN or WireGuard.
    pub vpn_type: VpnType,
    /// Where terminals reach the VPN server: `host:port`.
    pub endpoint: String,
    /// The IPv4 pool: its first host address is the VPN server's.
    pub pool_v4: AddressPool,
    /// The IPv6 pool, if any.
    pub pool_v6: Option<AddressPool>,
    /// Networks routed through the tunnel besides the pools (CIDR).
    pub routes: Vec<String>,
    /// DNS servers pushed to terminals.
    pub dns: Vec<IpAddr>,
    /// Keepalive interval in seconds.
    pub keepalive_secs: u64,
    /// OpenVPN: the VPN CA's alias in the identity key store.
    pub ca_alias: String,
    /// OpenVPN: lifetime of the client certificates, in days.
    pub cert_days: u32,
}

impl VpnSettings {
    /// Every network the terminal routes through the tunnel: the pools
    /// and `vpn_routes`.
    pub fn tunnel_networks(&self) -> Vec<String> {
        let mut networks = vec![self.pool_v4.to_string()];
        networks.extend(self.pool_v6.map(|p| p.to_string()));
        networks.extend(self.routes.iter().cloned());
        networks
    }
}

fn bad(key: &str, value: &str, why: &str) -> ConfigError {
    ConfigError::Invalid(format!("{key} = {value:?}: {why}"))
}

/// A route: `ADDRESS/PREFIX` with no host bits past the prefix.
fn check_route(text: &str) -> Result<(), ConfigError> {
    let why = "give a network as ADDRESS/PREFIX, e.g. 192.168.40.0/24";
    let (address, prefix) = text
        .split_once('/')
        .ok_or_else(|| bad("vpn_routes", text, why))?;
    let address: IpAddr = address.parse().map_err(|_| bad("vpn_routes", text, why))?;
    let prefix: u32 = prefix.parse().map_err(|_| bad("vpn_routes", text, why))?;
    let (value, bits) = match address {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    if prefix > bits {
        return Err(bad(
            "vpn_routes",
            text,
            "the prefix is longer than the address",
        ));
    }
    let host_mask = 1u128
        .checked_shl(bits - prefix)
        .map_or(u128::MAX, |m| m - 1);
    if value & host_mask != 0 {
        return Err(bad(
            "vpn_routes",
            text,
            "host bits are set: give the network address",
        ));
    }
    Ok(())
}

impl Settings {
    /// The VPN these settings offer; `None` when `vpn_type = "none"`.
    pub fn vpn(&self) -> Result<Option<VpnSettings>, ConfigError> {
        let vpn_type = match self.vpn_type.as_str() {
            "none" => return Ok(None),
            other => other.parse::<VpnType>().map_err(|_| {
                bad(
                    "vpn_type",
                    other,
                    "use \"openvpn\", \"wireguard\" or \"none\"",
                )
            })?,
        };
        let endpoint = self.vpn_endpoint.trim();
        // The host goes into profiles line by line: nothing that could
        // end a line or split a directive.
        let port_ok = endpoint.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '#')
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            return Err(bad(
                "vpn_endpoint",
                endpoint,
                "give the address terminals reach the VPN server at, as host:port",
            ));
        }
        let (pool_v4, pool_v6) = self.vpn_pools(vpn_type)?;
        for route in &self.vpn_routes {
            check_route(route)?;
        }
        let dns = self
            .vpn_dns
            .iter()
            .map(|d| {
                d.parse()
                    .map_err(|_| bad("vpn_dns", d, "not an IP address"))
            })
            .collect::<Result<_, _>>()?;
        if self.vpn_keepalive_secs == 0 || self.vpn_keepalive_secs > 3600 {
            return Err(bad(
                "vpn_keepalive_secs",
                &self.vpn_keepalive_secs.to_string(),
                "give 1 to 3600 seconds",
            ));
        }
        let cert_days = u32::try_from(self.vpn_cert_days)
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| {
                bad(
                    "vpn_cert_days",
                    &self.vpn_cert_days.to_string(),
                    "give 1 to 3650 days",
                )
            })?;
        Ok(Some(VpnSettings {
            vpn_type,
            endpoint: endpoint.to_owned(),
            pool_v4,
            pool_v6,
            routes: self.vpn_routes.clone(),
            dns,
            keepalive_secs: self.vpn_keepalive_secs,
            ca_alias: self.vpn_ca_alias.clone(),
            cert_days,
        }))
    }

    /// The IPv4 pool and the IPv6 one, if any (WireGuard only).
    fn vpn_pools(
        &self,
        vpn_type: VpnType,
    ) -> Result<(AddressPool, Option<AddressPool>), ConfigError> {
        let pool_v4: AddressPool =
            self.vpn_pool_v4
                .parse()
                .map_err(|e: pairgate_store::StoreError| {
                    bad("vpn_pool_v4", &self.vpn_pool_v4, &e.to_string())
                })?;
        if !pool_v4.server_address().is_ipv4() {
            return Err(bad("vpn_pool_v4", &self.vpn_pool_v4, "not an IPv4 network"));
        }
        let pool_v6 = match self.vpn_pool_v6.trim() {
            "" => None,
            text => {
                let pool: AddressPool = text.parse().map_err(|e: pairgate_store::StoreError| {
                    bad("vpn_pool_v6", text, &e.to_string())
                })?;
                if !pool.server_address().is_ipv6() {
                    return Err(bad("vpn_pool_v6", text, "not an IPv6 network"));
                }
                if vpn_type == VpnType::OpenVpn {
                    return Err(bad(
                        "vpn_pool_v6",
                        text,
                        "IPv6 tunnel addresses are offered with WireGuard; OpenVPN profiles carry IPv4",
                    ));
                }
                Some(pool)
            }
        };
        Ok((pool_v4, pool_v6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let overrides: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load(None, Vec::new(), &overrides)
    }

    #[test]
    fn vpn_settings_read_and_refuse_what_makes_no_sense() {
        assert_eq!(with(&[]).unwrap().vpn().unwrap(), None);
        let s = with(&[
            ("vpn_type", "wireguard"),
            ("vpn_endpoint", "vpn.example.net:51820"),
            ("vpn_pool_v6", "fd00:8::/112"),
            ("vpn_routes", "192.168.40.0/24"),
            ("vpn_dns", "10.8.0.1"),
        ])
        .unwrap();
        let vpn = s.vpn().unwrap().unwrap();
        assert_eq!(vpn.vpn_type, VpnType::WireGuard);
        assert_eq!(
            vpn.tunnel_networks(),
            ["10.8.0.0/24", "fd00:8::/112", "192.168.40.0/24"]
        );
        for bad in [
            vec![("vpn_type", "ipsec")],
            vec![("vpn_type", "openvpn")],
            vec![("vpn_type", "openvpn"), ("vpn_endpoint", "vpn:0")],
            vec![
                ("vpn_type", "openvpn"),
                ("vpn_endpoint", "vpn\nup /bin/sh:1194"),
            ],
            vec![("vpn_type", "openvpn"), ("vpn_endpoint", "v pn:1194")],
            vec![
                ("vpn_type", "openvpn"),
                ("vpn_endpoint", "vpn:1194"),
                ("vpn_pool_v4", "fd00::/64"),
            ],
            vec![
                ("vpn_type", "wireguard"),
                ("vpn_endpoint", "vpn:1194"),
                ("vpn_pool_v6", "10.9.0.0/24"),
            ],
            vec![
                ("vpn_type", "openvpn"),
                ("vpn_endpoint", "vpn:1194"),
                ("vpn_pool_v6", "fd00::/112"),
            ],
            vec![
                ("vpn_type", "openvpn"),
                ("vpn_endpoint", "vpn:1194"),
                ("vpn_routes", "10.1.2.3/16"),
            ],
            vec![
                ("vpn_type", "openvpn"),
                ("vpn_endpoint", "vpn:1194"),
                ("vpn_dns", "dns"),
            ],
            vec![
                ("vpn_type", "openvpn"),
                ("vpn_endpoint", "vpn:1194"),
                ("vpn_keepalive_secs", "0"),
            ],
            vec![
                ("vpn_type", "openvpn"),
                ("vpn_endpoint", "vpn:1194"),
                ("vpn_cert_days", "0"),
            ],
        ] {
            assert!(with(&bad).is_err(), "{bad:?}");
        }
    }
}
