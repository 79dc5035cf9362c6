//! VPN credentials (issue 19): what the server admits of a terminal's VPN
//! key — a WireGuard public key, or the client certificate its VPN CA
//! issued — with the terminal's address and profile. Issuing one revokes
//! the one before, and unpair, suspension and re-pairing revoke it in
//! their own transactions ([`revoke_in`]), so a terminal the master no
//! longer serves is never admitted by the VPN server either, once
//! `pairgate vpn sync` has run. The private key is never here.

use std::net::IpAddr;
use std::time::SystemTime;

use pairgate_pki::TerminalFingerprint;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::audit::append;
use crate::paired::bump_generation;
use crate::terminals::Serial;
use crate::vpn::{AddressPool, allocate_in};
use crate::{Actor, Store, StoreError, millis};

/// VPN credentials one terminal may be issued within a day.
pub const MAX_CREDENTIALS_PER_DAY: i64 = 10;
const DAY_MS: i64 = 86_400_000;

/// A terminal's VPN credential, active or revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpnCredential {
    /// Its terminal.
    pub serial: Serial,
    /// `wireguard` or `openvpn`.
    pub kind: String,
    /// WireGuard: the public key (base64); OpenVPN: the SPKI pin (hex).
    pub public_key: String,
    /// OpenVPN: the client certificate (PEM).
    pub certificate: Option<String>,
    /// OpenVPN: the certificate's serial number (hex), for the CRL.
    pub certificate_serial: Option<String>,
    /// The terminal's tunnel address, with the pool's prefix.
    pub address: String,
    /// Its IPv6 tunnel address, when there is an IPv6 pool.
    pub address_v6: Option<String>,
    /// The profile the terminal received (no private key in it).
    pub profile: String,
    /// When it was issued (Unix ms).
    pub issued_at: i64,
    /// When it was revoked (Unix ms), if it was.
    pub revoked_at: Option<i64>,
    /// Why: `unpair`, `suspend`, `repair` or `replaced`.
    pub revoked_reason: Option<String>,
}

/// A credential to record.
#[derive(Clone, Debug)]
pub struct NewVpnCredential<'a> {
    /// `wireguard` or `openvpn`.
    pub kind: &'a str,
    /// See [`VpnCredential::public_key`].
    pub public_key: &'a str,
    /// See [`VpnCredential::certificate`].
    pub certificate: Option<&'a str>,
    /// See [`VpnCredential::certificate_serial`].
    pub certificate_serial: Option<&'a str>,
    /// The IPv4 pool, and the IPv6 one if any, the addresses come from.
    pub pools: (&'a AddressPool, Option<&'a AddressPool>),
}

/// A credential's addresses as the profile writes them, and the profile
/// (no private key in it), made once the addresses are allocated.
#[derive(Clone, Debug)]
pub struct VpnAddressing {
    /// See [`VpnCredential::address`].
    pub address: String,
    /// See [`VpnCredential::address_v6`].
    pub address_v6: Option<String>,
    /// The profile the terminal receives.
    pub profile: String,
}

/// The columns a [`VpnCredential`] is read from.
macro_rules! columns {
    () => {
        "serial, kind, public_key, certificate, certificate_serial, address, address_v6, \
         profile, issued_at, revoked_at, revoked_reason"
    };
}

fn credential(row: &AnyRow) -> Result<VpnCredential, StoreError> {
    let serial: String = row.try_get("serial")?;
    Ok(VpnCredential {
        serial: Serial::new(&serial)?,
        kind: row.try_get("kind")?,
        public_key: row.try_get("public_key")?,
        certificate: row.try_get("certificate")?,
        certificate_serial: row.try_get("certificate_serial")?,
        address: row.try_get("address")?,
        address_v6: row.try_get("address_v6")?,
        profile: row.try_get("profile")?,
        issued_at: row.try_get("issued_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
    })
}

/// Revokes terminal `serial`'s active VPN credential, if it has one,
/// inside the caller's transaction: the profile goes, the audit log says
/// so (`vpn.revoked`), and `release` gives its pool addresses back.
pub(crate) async fn revoke_in(
    tx: &mut Transaction<'static, Any>,
    serial: &Serial,
    reason: &str,
    actor: &Actor,
    at: i64,
    release: bool,
) -> Result<(), StoreError> {
    let revoked = sqlx::query(concat!(
        "UPDATE vpn_credentials SET revoked_at = $1, revoked_reason = $2 \
         WHERE serial = $3 AND revoked_at IS NULL RETURNING ",
        columns!()
    ))
    .bind(at)
    .bind(reason)
    .bind(serial.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    if release {
        sqlx::query("DELETE FROM vpn_leases WHERE serial = $1")
            .bind(serial.as_str())
            .execute(&mut **tx)
            .await?;
    }
    let Some(row) = revoked else {
        return Ok(());
    };
    let old = credential(&row)?;
    sqlx::query("UPDATE terminals SET vpn_profile = '' WHERE serial = $1")
        .bind(serial.as_str())
        .execute(&mut **tx)
        .await?;
    let detail = serde_json::json!({
        "kind": old.kind, "reason": reason, "public_key": old.public_key,
        "certificate_serial": old.certificate_serial, "address": old.address,
        "address_released": release,
    });
    append(tx, at, actor, "vpn.revoked", serial.as_str(), &detail).await?;
    Ok(())
}

impl Store {
    /// Records terminal `serial`'s new VPN credential, presented by its
    /// key `fingerprint` (the paired key or its proven successor), and
    /// its addresses from `new.pools` and the profile `render` makes for
    /// them; the one before is revoked (`replaced`). A key any credential
    /// held before is refused, and so is an eleventh credential within a
    /// day. Addresses, credential and profile are written in one
    /// transaction with their audit records (`vpn.address_allocated`,
    /// `vpn.credential_issued`): a refusal leaves nothing. Every master
    /// learns the new profile through the paired set.
    pub async fn issue_vpn_credential(
        &self,
        serial: &Serial,
        fingerprint: &TerminalFingerprint,
        new: &NewVpnCredential<'_>,
        render: &(dyn Fn(IpAddr, Option<IpAddr>) -> VpnAddressing + Sync),
        by: (&Actor, SystemTime),
    ) -> Result<VpnCredential, StoreError> {
        // Another instance taking the same address first makes the lease
        // collide; the next round sees its lease and takes the next.
        for _ in 0..16 {
            match self.try_issue(serial, fingerprint, new, render, by).await {
                Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {}
                other => return other,
            }
        }
        Err(StoreError::Conflict(format!(
            "VPN pool {} is being allocated from by many instances at once; retry",
            new.pools.0
        )))
    }

    async fn try_issue(
        &self,
        serial: &Serial,
        fingerprint: &TerminalFingerprint,
        new: &NewVpnCredential<'_>,
        render: &(dyn Fn(IpAddr, Option<IpAddr>) -> VpnAddressing + Sync),
        (actor, now): (&Actor, SystemTime),
    ) -> Result<VpnCredential, StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        self.issuable(&mut tx, serial, fingerprint, new.public_key, at)
            .await?;
        let (pool_v4, pool_v6) = new.pools;
        let v4 = allocate_in(&mut tx, pool_v4, serial, actor, at).await?;
        let v6 = match pool_v6 {
            Some(pool) => Some(allocate_in(&mut tx, pool, serial, actor, at).await?),
            None => None,
        };
        let addressing = render(v4, v6);
        revoke_in(&mut tx, serial, "replaced", actor, at, false).await?;
        let id = hex::encode(crate::operators::random_bytes::<16>());
        let row = sqlx::query(concat!(
            "INSERT INTO vpn_credentials (id, ",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL) RETURNING ",
            columns!()
        ))
        .bind(id)
        .bind(serial.as_str())
        .bind(new.kind)
        .bind(new.public_key)
        .bind(new.certificate)
        .bind(new.certificate_serial)
        .bind(&addressing.address)
        .bind(&addressing.address_v6)
        .bind(&addressing.profile)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE terminals SET vpn_profile = $1 WHERE serial = $2")
            .bind(&addressing.profile)
            .bind(serial.as_str())
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({
            "kind": new.kind, "public_key": new.public_key, "fingerprint": fingerprint,
            "certificate_serial": new.certificate_serial, "address": addressing.address,
            "address_v6": addressing.address_v6,
        });
        append(
            &mut tx,
            at,
            actor,
            "vpn.credential_issued",
            serial.as_str(),
            &detail,
        )
        .await?;
        bump_generation(&mut tx, self.backend, serial.as_str(), at).await?;
        tx.commit().await?;
        credential(&row)
    }

    /// Whether terminal `serial` may be issued a credential for
    /// `public_key`, presented by its key `fingerprint`: paired with it
    /// (or its proven successor), not suspended, under its daily number,
    /// and the key never held before.
    async fn issuable(
        &self,
        tx: &mut Transaction<'static, Any>,
        serial: &Serial,
        fingerprint: &TerminalFingerprint,
        public_key: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let terminal = self
            .terminal_in(tx, serial)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("terminal {serial}")))?;
        let presented = Some(*fingerprint);
        if terminal.paired_fingerprint != presented && terminal.successor_fingerprint != presented {
            return Err(StoreError::Conflict(format!(
                "terminal {serial} is not paired with key {fingerprint}"
            )));
        }
        if terminal.suspended_at.is_some() {
            return Err(StoreError::Conflict(format!(
                "terminal {serial} is suspended: no VPN credential until it is resumed"
            )));
        }
        // A terminal making key after key (a compromised one, or a loop)
        // would fill the log and move every master's paired set.
        let recent: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM vpn_credentials WHERE serial = $1 AND issued_at > $2",
        )
        .bind(serial.as_str())
        .bind(at - DAY_MS)
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
        if recent >= MAX_CREDENTIALS_PER_DAY {
            return Err(StoreError::RateLimited(format!(
                "terminal {serial} enrolled {recent} VPN keys in the last day; try again tomorrow"
            )));
        }
        // A key is admitted once: one revoked, or another terminal's,
        // never comes back.
        let seen = sqlx::query("SELECT 1 AS seen FROM vpn_credentials WHERE public_key = $1")
            .bind(public_key)
            .fetch_optional(&mut **tx)
            .await?;
        if seen.is_some() {
            return Err(StoreError::Conflict(
                "this VPN key was presented before: make a new one".into(),
            ));
        }
        Ok(())
    }

    /// Whether any credential, active or revoked, held `public_key`.
    pub async fn vpn_key_seen(&self, public_key: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 AS seen FROM vpn_credentials WHERE public_key = $1")
                .bind(public_key)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Terminal `serial`'s active VPN credential, if any.
    pub async fn vpn_credential(
        &self,
        serial: &Serial,
    ) -> Result<Option<VpnCredential>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM vpn_credentials WHERE serial = $1 AND revoked_at IS NULL"
        ))
        .bind(serial.as_str())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(credential)
        .transpose()
    }

    /// Terminal `serial`'s credentials, newest first.
    pub async fn vpn_history(&self, serial: &Serial) -> Result<Vec<VpnCredential>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM vpn_credentials WHERE serial = $1 ORDER BY issued_at DESC"
        ))
        .bind(serial.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(credential)
        .collect()
    }

    /// An operator revokes terminal `serial`'s VPN credential (with a
    /// fresh second factor), so that the terminal makes a new key and
    /// enrols again; audited (`vpn.revoked`, reason `regenerate`). Refused
    /// when it holds none.
    pub async fn revoke_vpn_credential(
        &self,
        serial: &Serial,
        by: &crate::TrustChange,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let held: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM vpn_credentials WHERE serial = $1 AND revoked_at IS NULL",
        )
        .bind(serial.as_str())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if held == 0 {
            return Err(StoreError::Conflict(format!(
                "terminal {serial} holds no VPN credential"
            )));
        }
        revoke_in(&mut tx, serial, "regenerate", by.actor(), at, false).await?;
        bump_generation(&mut tx, self.backend, serial.as_str(), at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every credential of `kind`, active and revoked, oldest first: what
    /// the VPN server admits, and what its CRL lists.
    pub async fn vpn_credentials(&self, kind: &str) -> Result<Vec<VpnCredential>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM vpn_credentials WHERE kind = $1 ORDER BY issued_at, serial"
        ))
        .bind(kind)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(credential)
        .collect()
    }

    /// The VPN server's public key of `kind` (WireGuard), if recorded.
    pub async fn vpn_server_key(&self, kind: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query("SELECT public_key FROM vpn_server_keys WHERE kind = $1")
                .bind(kind)
                .fetch_optional(&self.pool)
                .await?
                .map(|row| row.try_get("public_key"))
                .transpose()?,
        )
    }

    /// Records the VPN server's public key of `kind`, audited
    /// (`vpn.server_key_created`); refused when one is recorded.
    pub async fn record_vpn_server_key(
        &self,
        kind: &str,
        public_key: &str,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO vpn_server_keys (kind, public_key, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (kind) DO NOTHING",
        )
        .bind(kind)
        .bind(public_key)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "a {kind} VPN server key is already recorded"
            )));
        }
        let detail = serde_json::json!({ "kind": kind, "public_key": public_key });
        append(&mut tx, at, actor, "vpn.server_key_created", kind, &detail).await?;
        tx.commit().await?;
        Ok(())
    }
}
