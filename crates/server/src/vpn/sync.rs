//! Keeping the VPN server current from the store (`pairgate vpn sync`):
//! the files its configuration reads are rewritten when what the store
//! admits changes. WireGuard: `wg-peers.conf`, one peer per admitted
//! terminal, for `wg syncconf`. OpenVPN: `ccd/<serial>` with each
//! admitted terminal's address (the server admits no one without one),
//! and `crl.pem` listing every revoked certificate, signed by the VPN CA
//! and renewed a day before it runs out. Files are replaced atomically;
//! the caller runs the reload hook when something changed, telling it
//! which terminals lost their credential (OpenVPN re-reads the CRL only
//! at a connect, so the hook may end their live sessions).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use pairgate_store::{Store, VpnCredential};

use super::profile;
use crate::terminal_ca::TerminalCa;
use crate::{ServerError, VpnSettings};

/// How long a CRL is valid; it is signed again when a day of it is left.
const CRL_VALID: Duration = Duration::from_secs(7 * 86_400);
const CRL_RENEW_BEFORE: Duration = Duration::from_secs(86_400);

/// WireGuard's file for `wg syncconf`.
pub const WIREGUARD_SYNC: &str = "wg-server.conf";

/// What signs or names the VPN server's side.
pub enum VpnKeys {
    /// WireGuard: the server's key.
    WireGuard(pairgate_keystore::wireguard::WireGuardKey),
    /// OpenVPN: the VPN CA, which signs the CRL.
    OpenVpn(TerminalCa),
}

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Synced {
    /// Whether any file changed (the hook runs then).
    pub changed: bool,
    /// Terminals the VPN server admits.
    pub admitted: usize,
    /// Revoked credentials (OpenVPN: on the CRL).
    pub revoked: usize,
    /// The admitted terminals' serials, each with its credential's key.
    #[serde(skip)]
    pub admitted_keys: BTreeMap<String, String>,
    /// OpenVPN: terminals whose serial names no file (it starts with
    /// `.`), so the VPN server cannot admit them.
    pub unnamed: Vec<String>,
}

impl Synced {
    /// The terminals `earlier` admitted with a credential this sync no
    /// longer admits (revoked, or replaced by a new key): the ones whose
    /// live sessions a hook may end.
    pub fn dropped_since(&self, earlier: &Synced) -> Vec<String> {
        earlier
            .admitted_keys
            .iter()
            .filter(|(serial, key)| self.admitted_keys.get(*serial) != Some(*key))
            .map(|(serial, _)| serial.clone())
            .collect()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |e| ServerError::Vpn(format!("{}: {e}", path.display()))
}

/// Writes `path` when its content differs; whether it did.
pub fn write_if_changed(path: &Path, content: &[u8]) -> Result<bool, ServerError> {
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    pairgate_keystore::write_atomic(path, content).map_err(|e| ServerError::Vpn(e.to_string()))?;
    Ok(true)
}

/// One sync of `dir` with the store.
pub async fn sync_once(
    vpn: &VpnSettings,
    store: &Store,
    keys: &VpnKeys,
    dir: &Path,
    now: SystemTime,
) -> Result<Synced, ServerError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let credentials = store.vpn_credentials(vpn.vpn_type.as_str()).await?;
    let admitted = credentials
        .iter()
        .filter(|c| c.revoked_at.is_none())
        .count();
    let revoked = credentials.len() - admitted;
    let changed = match keys {
        VpnKeys::WireGuard(key) => {
            let text = profile::wireguard_sync(vpn, &key.private_base64(), &credentials);
            write_if_changed(&dir.join(WIREGUARD_SYNC), text.as_bytes())?
        }
        VpnKeys::OpenVpn(ca) => {
            let clients = sync_ccd(vpn, &credentials, &dir.join("ccd"))?;
            let crl = sync_crl(ca, &credentials, &dir.join("crl.pem"), now)?;
            clients || crl
        }
    };
    let unnamed = match keys {
        VpnKeys::OpenVpn(_) => credentials
            .iter()
            .filter(|c| c.revoked_at.is_none() && c.serial.as_str().starts_with('.'))
            .map(|c| c.serial.as_str().to_owned())
            .collect(),
        VpnKeys::WireGuard(_) => Vec::new(),
    };
    let admitted_keys = credentials
        .iter()
        .filter(|c| c.revoked_at.is_none())
        .map(|c| (c.serial.as_str().to_owned(), c.public_key.clone()))
        .collect();
    Ok(Synced {
        changed,
        admitted,
        revoked,
        admitted_keys,
        unnamed,
    })
}

/// `ccd/<serial>` for every admitted terminal, and no other file.
fn sync_ccd(
    vpn: &VpnSettings,
    credentials: &[VpnCredential],
    ccd: &Path,
) -> Result<bool, ServerError> {
    std::fs::create_dir_all(ccd).map_err(io(ccd))?;
    // A serial such as `..` names no file here: that terminal is not
    // admitted (ccd-exclusive); `unnamed` says so.
    let wanted: BTreeMap<&str, String> = credentials
        .iter()
        .filter(|c| c.revoked_at.is_none() && !c.serial.as_str().starts_with('.'))
        .map(|c| (c.serial.as_str(), profile::openvpn_ccd(vpn, &c.address)))
        .collect();
    let mut changed = false;
    for entry in std::fs::read_dir(ccd).map_err(io(ccd))? {
        let path: PathBuf = entry.map_err(io(ccd))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !wanted.contains_key(name) {
            std::fs::remove_file(&path).map_err(io(&path))?;
            changed = true;
        }
    }
    for (serial, text) in wanted {
        changed |= write_if_changed(&ccd.join(serial), text.as_bytes())?;
    }
    Ok(changed)
}

/// `crl.pem`: rewritten when the revoked serials differ from the ones it
/// lists or it nears its end.
fn sync_crl(
    ca: &TerminalCa,
    credentials: &[VpnCredential],
    path: &Path,
    now: SystemTime,
) -> Result<bool, ServerError> {
    let revoked: Vec<(String, SystemTime)> = credentials
        .iter()
        .filter_map(|c| {
            let serial = c.certificate_serial.clone()?;
            let at = c.revoked_at?;
            let at = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(at).unwrap_or(0));
            Some((serial, at))
        })
        .collect();
    if let Some(current) = read_crl(path)
        && current.serials
            == revoked
                .iter()
                .map(|(s, _)| s.to_ascii_lowercase())
                .collect::<Vec<_>>()
        && current.next_update > now + CRL_RENEW_BEFORE
    {
        return Ok(false);
    }
    let number = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let der = ca
        .authority()
        .and_then(|ca| {
            ca.revocation_list(&revoked, number, now, CRL_VALID)
                .map_err(|e| e.to_string())
        })
        .map_err(|why| ServerError::Identity(format!("signing the VPN CRL: {why}")))?;
    let pem = pairgate_pki::certificate::crl_pem(&der);
    write_if_changed(path, pem.as_bytes())
}

/// What a CRL file lists and until when.
struct CurrentCrl {
    serials: Vec<String>,
    next_update: SystemTime,
}

fn read_crl(path: &Path) -> Option<CurrentCrl> {
    use x509_parser::prelude::*;
    let text = std::fs::read(path).ok()?;
    let (_, pem) = parse_x509_pem(&text).ok()?;
    let (_, crl) = CertificateRevocationList::from_der(&pem.contents).ok()?;
    let next = crl.next_update()?.timestamp();
    Some(CurrentCrl {
        serials: crl
            .iter_revoked_certificates()
            .map(|r| {
                r.raw_serial_as_string()
                    .replace(':', "")
                    .to_ascii_lowercase()
            })
            .collect(),
        next_update: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(next).unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced(admitted: &[(&str, &str)]) -> Synced {
        Synced {
            admitted_keys: admitted
                .iter()
                .map(|(s, k)| ((*s).to_owned(), (*k).to_owned()))
                .collect(),
            ..Synced::default()
        }
    }

    #[test]
    fn dropped_terminals_are_the_revoked_and_the_rekeyed() {
        let before = synced(&[("A", "k1"), ("B", "k2"), ("C", "k3")]);
        let after = synced(&[("A", "k1"), ("C", "k4"), ("D", "k5")]);
        assert_eq!(after.dropped_since(&before), ["B", "C"]);
        assert!(before.dropped_since(&Synced::default()).is_empty());
    }
}
