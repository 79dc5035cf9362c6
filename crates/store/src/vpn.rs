//! VPN address pools (issue 19): a CIDR range, IPv4 or IPv6, whose first
//! host address is the VPN server's and whose next ones go to terminals,
//! one each. [`AddressPool`] is the pure arithmetic; the store hands out
//! the next free address in one transaction with its audit record.
//! Allocations from one pool queue on the pool's row, and should two ever
//! pick the same address, the lease's key makes one of them take the next.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::SystemTime;

use sqlx::{Any, Row, Transaction};

use crate::audit::append;
use crate::terminals::Serial;
use crate::{Actor, Store, StoreError, millis};

/// Addresses handed out from one pool at most (the index is a BIGINT and
/// a lease a row: an IPv6 /64 is not meant to be filled).
const MAX_LEASES: u128 = 1 << 32;

/// A pool, e.g. `10.8.0.0/24` or `fd00:8::/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPool {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for AddressPool {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Invalid(format!("VPN pool {text:?}: {why}"));
        let (address, prefix) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("write it as ADDRESS/PREFIX"))?;
        let network: IpAddr = address.parse().map_err(|_| bad("not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix is not a number"))?;
        let bits = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        // At least the server and two terminals.
        if prefix > bits - 2 {
            return Err(bad(&format!("a /{prefix} holds no room for terminals")));
        }
        let pool = Self { network, prefix };
        if pool.host_bits(network) != 0 {
            return Err(bad("host bits are set: give the network address"));
        }
        Ok(pool)
    }
}

impl std::fmt::Display for AddressPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl AddressPool {
    fn size_bits(&self) -> u32 {
        let bits = match self.network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        bits - u32::from(self.prefix)
    }

    fn host_bits(&self, ip: IpAddr) -> u128 {
        let mask = 1u128
            .checked_shl(self.size_bits())
            .map_or(u128::MAX, |m| m - 1);
        to_u128(ip) & mask
    }

    fn at(&self, offset: u128) -> IpAddr {
        let value = to_u128(self.network) + offset;
        match self.network {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(0))),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }

    /// How many terminals the pool holds: every host address but the
    /// network's, the server's and (IPv4) the broadcast address.
    pub fn capacity(&self) -> u64 {
        let size = 1u128.checked_shl(self.size_bits()).unwrap_or(u128::MAX);
        let reserved = match self.network {
            IpAddr::V4(_) => 3,
            IpAddr::V6(_) => 2,
        };
        u64::try_from(size.saturating_sub(reserved).min(MAX_LEASES)).unwrap_or(u64::MAX)
    }

    /// The VPN server's address: the first host address.
    pub fn server_address(&self) -> IpAddr {
        self.at(1)
    }

    /// The terminal address number `index` (from 0), if the pool has it.
    pub fn address(&self, index: u64) -> Option<IpAddr> {
        (index < self.capacity()).then(|| self.at(u128::from(index) + 2))
    }
}

impl Store {
    /// Terminal `serial`'s address in `pool`: the one it holds, else the
    /// next never handed out, else (the pool's top taken) the lowest one
    /// given back; recorded with its audit record
    /// (`vpn.address_allocated`). A full pool is [`StoreError::Limit`].
    pub async fn allocate_vpn_address(
        &self,
        pool: &AddressPool,
        serial: &Serial,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<IpAddr, StoreError> {
        // Another instance taking the same index first makes this insert
        // collide; the next round sees its lease and takes the next.
        for _ in 0..16 {
            match self.try_allocate(pool, serial, actor, now).await {
                Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {}
                other => return other,
            }
        }
        Err(StoreError::Conflict(format!(
            "VPN pool {pool} is being allocated from by many instances at once; retry"
        )))
    }

    async fn try_allocate(
        &self,
        pool: &AddressPool,
        serial: &Serial,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<IpAddr, StoreError> {
        let mut tx = self.begin_write().await?;
        let address = allocate_in(&mut tx, pool, serial, actor, millis(now)).await?;
        tx.commit().await?;
        Ok(address)
    }
}

/// Terminal `serial`'s address in `pool` inside the caller's
/// transaction: the one it holds, else the next never handed out, else
/// (the pool's top taken) the lowest one given back, with its audit record
/// (`vpn.address_allocated`). Two transactions taking one index collide
/// on the lease's key; the caller retries.
pub(crate) async fn allocate_in(
    tx: &mut Transaction<'static, Any>,
    pool: &AddressPool,
    serial: &Serial,
    actor: &Actor,
    at: i64,
) -> Result<IpAddr, StoreError> {
    let name = pool.to_string();
    // The pool's row lock: allocations from one pool queue here.
    sqlx::query(
        "INSERT INTO vpn_pools (pool) VALUES ($1) \
         ON CONFLICT (pool) DO UPDATE SET pool = excluded.pool",
    )
    .bind(&name)
    .execute(&mut **tx)
    .await?;
    let held = sqlx::query("SELECT address FROM vpn_leases WHERE pool = $1 AND serial = $2")
        .bind(&name)
        .bind(serial.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(row) = held {
        let text: String = row.try_get("address")?;
        return text
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("VPN address {text:?}")));
    }
    // The index after the highest lease (one index lookup), or, once
    // the pool's top is taken, the lowest one free: an address given
    // back is handed out again only when the pool has no fresh one,
    // as DHCP servers do, so it does not name another terminal at
    // once in logs and firewall rules.
    let top: Option<i64> = sqlx::query("SELECT MAX(idx) AS top FROM vpn_leases WHERE pool = $1")
        .bind(&name)
        .fetch_one(&mut **tx)
        .await?
        .try_get("top")?;
    let next = top.map_or(0, |t| t.saturating_add(1));
    let free = if u64::try_from(next).is_ok_and(|n| n < pool.capacity()) {
        next
    } else {
        sqlx::query(
            "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM vpn_leases WHERE pool = $1 AND idx = 0) \
             THEN 0 ELSE (SELECT MIN(l.idx) + 1 FROM vpn_leases l WHERE l.pool = $1 AND NOT EXISTS \
             (SELECT 1 FROM vpn_leases n WHERE n.pool = $1 AND n.idx = l.idx + 1)) END AS free",
        )
        .bind(&name)
        .fetch_one(&mut **tx)
        .await?
        .try_get("free")?
    };
    let index = u64::try_from(free).unwrap_or(u64::MAX);
    let Some(address) = pool.address(index) else {
        return Err(StoreError::Limit(format!(
            "VPN pool {pool} is full: all {} terminal addresses are in use; widen vpn_pool",
            pool.capacity()
        )));
    };
    sqlx::query(
        "INSERT INTO vpn_leases (pool, idx, serial, address, allocated_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&name)
    .bind(free)
    .bind(serial.as_str())
    .bind(address.to_string())
    .bind(at)
    .execute(&mut **tx)
    .await?;
    let detail = serde_json::json!({ "pool": name, "address": address.to_string() });
    append(
        tx,
        at,
        actor,
        "vpn.address_allocated",
        serial.as_str(),
        &detail,
    )
    .await?;
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_reserve_the_network_the_server_and_the_broadcast() {
        let v4: AddressPool = "10.8.0.0/29".parse().unwrap();
        assert_eq!(v4.capacity(), 5);
        assert_eq!(v4.server_address().to_string(), "10.8.0.1");
        assert_eq!(v4.address(0).unwrap().to_string(), "10.8.0.2");
        assert_eq!(v4.address(4).unwrap().to_string(), "10.8.0.6");
        assert_eq!(v4.address(5), None);
        let v6: AddressPool = "fd00:8::/120".parse().unwrap();
        assert_eq!(v6.capacity(), 254);
        assert_eq!(v6.address(0).unwrap().to_string(), "fd00:8::2");
        let wide: AddressPool = "fd00::/64".parse().unwrap();
        assert_eq!(u128::from(wide.capacity()), MAX_LEASES);
        for bad in [
            "10.8.0.1/24",
            "10.8.0.0",
            "10.8.0.0/31",
            "x/24",
            "10.8.0.0/a",
            "fd00::/127",
        ] {
            assert!(bad.parse::<AddressPool>().is_err(), "{bad}");
        }
    }
}
