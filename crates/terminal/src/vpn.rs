//! The terminal's VPN (issue 19): its VPN key is made here and never
//! sent. WireGuard: an X25519 key in `vpn-wireguard.key` in the state
//! directory (0600); only its public key goes to the server. OpenVPN: a
//! key under alias `vpn` (or `vpn.1`, in turn) in the key store and a
//! CSR signed inside it;
//! the server's VPN CA certifies it and the certificate is kept beside
//! the key. Each enrolment makes a new key, which replaces the old one
//! once the server accepted it: the server refuses a key it saw before.
//! The server answers with a profile holding no private key; the agent
//! completes it where it writes the file: WireGuard's `PrivateKey`, or
//! OpenVPN's `pkcs11-providers`/`pkcs11-id`, which name the key on the
//! token without taking it off.

use std::path::{Path, PathBuf};

use pairgate_keystore::wireguard::WireGuardKey;
use pairgate_keystore::{Alias, KeyStoreError};
use pairgate_pki::KeyAlgorithm;
use pairgate_proto::{VpnEnrolment, VpnStatus, VpnType};
use zeroize::Zeroizing;

use crate::{Agent, TerminalError};

/// The key-store alias of the OpenVPN key.
pub const VPN_ALIAS: &str = "vpn";
/// The alias a new OpenVPN key waits under while `vpn` is in use; the
/// two take turns (the state names the one in use).
pub const VPN_ALIAS_NEXT: &str = "vpn.1";
/// The directory in the state directory where `vpn up` writes profiles.
pub const VPN_DIR: &str = "vpn";
/// The WireGuard key's file in the state directory.
pub const WIREGUARD_KEY_FILE: &str = "vpn-wireguard.key";

/// How long `vpn_profile` waits for the master before it falls back.
const MASTER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What `vpn_profile` may use instead of the master's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// Nothing: the master answers or the call fails.
    None,
    /// The profile the server gave last, when the master cannot be
    /// reached (not when it refuses).
    Held,
    /// Only the profile the server gave last, without asking.
    Only,
}

/// Where to enrol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The gate, right after pairing (the master may be reachable only
    /// through the VPN).
    Gate,
    /// The master.
    Master,
}

/// A key made for an enrolment, not yet in use.
enum NewKey {
    /// WireGuard: the file it waits in.
    WireGuard(PathBuf),
    /// OpenVPN: its alias.
    OpenVpn(Alias),
}

/// A profile ready to be written: the server's text with the key's place.
pub struct VpnProfile {
    /// OpenVPN or WireGuard.
    pub vpn_type: VpnType,
    /// The terminal's tunnel address.
    pub address: String,
    /// The VPN server's tunnel address.
    pub server_address: String,
    /// The file's text; for WireGuard it holds the private key.
    pub text: Zeroizing<String>,
    /// OpenVPN on a token: the token, whose PIN `vpn up` gives OpenVPN
    /// when it asks.
    pub token: Option<pairgate_keystore::Pkcs11Reference>,
}

impl Agent {
    fn wireguard_key_path(&self) -> PathBuf {
        self.state.dir().join(WIREGUARD_KEY_FILE)
    }

    /// `method /v1/vpn` at the gate or the master.
    async fn vpn_request(
        &self,
        via: Via,
        method: &str,
        body: Option<Vec<u8>>,
    ) -> Result<VpnStatus, TerminalError> {
        let r = match via {
            Via::Master => self.call(method, "/v1/vpn", body).await?,
            Via::Gate => {
                let (paired, trust) = self.paired()?;
                let url = format!("https://{}/v1/vpn", paired.gate);
                let headers: &[(&str, &str)] = match body {
                    Some(_) => &[("content-type", "application/json")],
                    None => &[],
                };
                self.https(trust)?
                    .request(method, &url, headers, body)
                    .await?
            }
        };
        crate::rekey::read(&r)
    }

    /// The server's view of this terminal's VPN (`GET /v1/vpn`).
    pub async fn vpn_status(&self, via: Via) -> Result<VpnStatus, TerminalError> {
        self.vpn_request(via, "GET", None).await
    }

    /// Makes a new VPN key and sends its public half (or a CSR) to the
    /// server, which answers with the profile and revokes the credential
    /// it replaces; OpenVPN's certificate is stored beside the key. The
    /// new key takes the old one's place only once the server accepted
    /// it; the profile is kept in the state.
    pub async fn vpn_enrol(&self, via: Via) -> Result<VpnStatus, TerminalError> {
        let (paired, _) = self.paired()?;
        let vpn_type = paired.vpn.ok_or_else(|| {
            TerminalError::Io("the server offers no VPN (its configuration names none)".into())
        })?;
        let (new, body) = self.new_vpn_key(vpn_type, &paired.serial)?;
        let json = serde_json::to_vec(&body).map_err(|e| TerminalError::Io(e.to_string()))?;
        let answered = self.vpn_request(via, "POST", Some(json)).await;
        let status =
            match answered.and_then(|status| self.keep_vpn_key(&new, &status).map(|()| status)) {
                Ok(status) => status,
                Err(e) => {
                    self.drop_vpn_key(&new);
                    return Err(e);
                }
            };
        let mut state = self.state.load()?;
        if let Some(p) = state.paired.as_mut() {
            p.vpn_profile.clone_from(&status.profile);
        }
        let old = match &new {
            NewKey::OpenVpn(alias) => state.vpn_alias.replace(alias.to_string()),
            NewKey::WireGuard(_) => None,
        };
        state.vpn = Some(status.clone());
        self.state.save(&state)?;
        if let Some(old) = old.and_then(|a| Alias::new(&a).ok()) {
            let _ = self.store.delete(&old);
        }
        Ok(status)
    }

    /// A new key: WireGuard's in `vpn-wireguard.key.new`, OpenVPN's under
    /// `vpn` or `vpn.1`, whichever is not in use; and the body that
    /// presents it.
    fn new_vpn_key(
        &self,
        vpn_type: VpnType,
        serial: &str,
    ) -> Result<(NewKey, VpnEnrolment), TerminalError> {
        Ok(match vpn_type {
            VpnType::WireGuard => {
                let path = self.wireguard_key_path().with_extension("key.new");
                let _ = std::fs::remove_file(&path);
                let key = WireGuardKey::generate(&path)?;
                let body = VpnEnrolment {
                    wireguard_public_key: Some(key.public_base64()),
                    csr: None,
                };
                (NewKey::WireGuard(path), body)
            }
            VpnType::OpenVpn => {
                // `vpn`, or `vpn.1` while `vpn` is the key in use: the
                // old key stays until the server has accepted the new.
                let in_use = self.state.load()?.vpn_alias;
                let name = match in_use.as_deref() {
                    Some(VPN_ALIAS) => VPN_ALIAS_NEXT,
                    _ => VPN_ALIAS,
                };
                let alias = Alias::new(name)?;
                // A key left there by an enrolment that never finished.
                match self.store.delete(&alias) {
                    Ok(()) | Err(KeyStoreError::NoSuchAlias(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                self.store.generate_key(&alias, KeyAlgorithm::P256)?;
                let csr = pairgate_pki::Subject::common_name(serial)
                    .map_err(|e| TerminalError::Io(e.to_string()))
                    .and_then(|subject| {
                        Ok(pairgate_keystore::certificate_request(
                            self.store.as_ref(),
                            &alias,
                            &subject,
                        )?)
                    });
                let csr = match csr {
                    Ok(csr) => csr,
                    Err(e) => {
                        let _ = self.store.delete(&alias);
                        return Err(e);
                    }
                };
                let body = VpnEnrolment {
                    wireguard_public_key: None,
                    csr: Some(pairgate_pki::certificate::csr_pem(&csr)),
                };
                (NewKey::OpenVpn(alias), body)
            }
        })
    }

    /// The server accepted the new key: it takes the old one's place.
    fn keep_vpn_key(&self, new: &NewKey, status: &VpnStatus) -> Result<(), TerminalError> {
        match new {
            NewKey::WireGuard(path) => std::fs::rename(path, self.wireguard_key_path())
                .map_err(|e| TerminalError::Io(format!("keeping the WireGuard key: {e}"))),
            NewKey::OpenVpn(alias) => {
                let certificate = status.certificate.as_deref().ok_or_else(|| {
                    TerminalError::Io("the server's OpenVPN answer has no certificate".into())
                })?;
                // Refused unless it certifies the key made here.
                pairgate_keystore::import_certificate_chain(
                    self.store.as_ref(),
                    alias,
                    certificate.as_bytes(),
                )?;
                Ok(())
            }
        }
    }

    fn drop_vpn_key(&self, new: &NewKey) {
        let _ = match new {
            NewKey::WireGuard(path) => std::fs::remove_file(path).map_err(|_| ()),
            NewKey::OpenVpn(alias) => self.store.delete(alias).map_err(|_| ()),
        };
    }

    /// Whether the key the held profile needs is here (a restore point
    /// carries no VPN key).
    fn holds_vpn_key(&self, vpn_type: VpnType) -> Result<bool, TerminalError> {
        Ok(match vpn_type {
            VpnType::WireGuard => self.wireguard_key_path().exists(),
            VpnType::OpenVpn => match self.state.load()?.vpn_alias {
                Some(alias) => match self.store.public_key(&Alias::new(&alias)?) {
                    Ok(_) => true,
                    Err(KeyStoreError::NoSuchAlias(_)) => false,
                    Err(e) => return Err(e.into()),
                },
                None => false,
            },
        })
    }

    /// Deletes the VPN keys and files this module keeps outside the key
    /// store (factory reset): the WireGuard key and the written profiles.
    pub(crate) fn forget_vpn_files(&self) -> Result<(), TerminalError> {
        let key = self.wireguard_key_path();
        for path in [key.with_extension("key.new"), key] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(TerminalError::Io(format!(
                        "removing {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        let dir = self.state.dir().join(VPN_DIR);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(TerminalError::Io(format!(
                "removing {}: {e}",
                dir.display()
            ))),
        }
    }

    /// The profile to write, completed with the key's place. Asked of
    /// the master (enrolling again when the server no longer admits the
    /// terminal's credential: regenerated, or revoked by a suspension
    /// since lifted); with `fallback`, the profile the server gave last
    /// when the master cannot be reached within a few seconds — it may be
    /// reachable only through the VPN. A refusal by the master is never
    /// bypassed.
    pub async fn vpn_profile(&self, fallback: Fallback) -> Result<VpnProfile, TerminalError> {
        let held = self.state.load()?.vpn.filter(|s| s.enrolled);
        if let (Fallback::Only, Some(held)) = (fallback, &held) {
            return self.complete(held.clone());
        }
        let asked = tokio::time::timeout(MASTER_WAIT, self.vpn_status(Via::Master)).await;
        let status = match (asked, held, fallback) {
            (Ok(Ok(status)), _, _) => status,
            (Ok(Err(e @ TerminalError::Master { .. })), _, _) => return Err(e),
            (Err(_) | Ok(Err(_)), Some(held), Fallback::Held) => return self.complete(held),
            (Err(_), _, _) => {
                return Err(TerminalError::Io(format!(
                    "the master did not answer within {MASTER_WAIT:?}"
                )));
            }
            (Ok(Err(e)), _, _) => return Err(e),
        };
        let status = match status.enrolled && self.holds_vpn_key(status.vpn_type)? {
            true => status,
            false => self.vpn_enrol(Via::Master).await?,
        };
        self.complete(status)
    }

    fn complete(&self, status: VpnStatus) -> Result<VpnProfile, TerminalError> {
        crate::vpn_check::check(status.vpn_type, &status.profile)?;
        let address = status.address.clone().unwrap_or_default();
        let server_address = status.server_address.clone().unwrap_or_default();
        let (text, token) = match status.vpn_type {
            VpnType::WireGuard => {
                let key = WireGuardKey::load(&self.wireguard_key_path())?;
                (
                    with_private_key(&status.profile, &key.private_base64())?,
                    None,
                )
            }
            VpnType::OpenVpn => {
                let alias = self.state.load()?.vpn_alias.ok_or_else(|| {
                    TerminalError::Io("no OpenVPN key: run `pairgate terminal vpn enrol`".into())
                })?;
                let reference = self
                    .store
                    .pkcs11_reference(&Alias::new(&alias)?)?
                    .ok_or_else(|| {
                        TerminalError::Io(
                        "OpenVPN reaches the VPN key only on a PKCS#11 token: this terminal's key \
                         store is software (docs/operations.md, VPN, says what to do)"
                            .into(),
                    )
                    })?;
                let text = format!(
                    "{}pkcs11-providers {}\npkcs11-id '{}'\n",
                    status.profile,
                    reference.module.display(),
                    reference.serialized_id
                );
                (Zeroizing::new(text), Some(reference))
            }
        };
        Ok(VpnProfile {
            vpn_type: status.vpn_type,
            address,
            server_address,
            text,
            token,
        })
    }
}

/// The wg-quick profile with `PrivateKey` under `[Interface]`; refused
/// when the server's text already names a key or has no interface.
fn with_private_key(profile: &str, key: &str) -> Result<Zeroizing<String>, TerminalError> {
    if profile.lines().any(|l| {
        l.trim_start()
            .to_ascii_lowercase()
            .starts_with("privatekey")
    }) {
        return Err(TerminalError::Io(
            "the server's WireGuard profile names a private key: refused".into(),
        ));
    }
    let (head, tail) = profile.split_once("[Interface]\n").ok_or_else(|| {
        TerminalError::Io("the server's WireGuard profile has no [Interface]".into())
    })?;
    Ok(Zeroizing::new(format!(
        "{head}[Interface]\nPrivateKey = {key}\n{tail}"
    )))
}

/// Writes a profile to `path`, mode 0600, replacing it atomically.
pub fn write_profile(path: &Path, profile: &VpnProfile) -> Result<(), TerminalError> {
    pairgate_keystore::write_atomic(path, profile.text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_key_goes_under_the_interface_and_only_there() {
        let text = "# p\n[Interface]\nAddress = 10.8.0.2/24\n\n[Peer]\nPublicKey = S\n";
        let done = with_private_key(text, "K").unwrap();
        assert_eq!(
            done.as_str(),
            "# p\n[Interface]\nPrivateKey = K\nAddress = 10.8.0.2/24\n\n[Peer]\nPublicKey = S\n"
        );
        assert!(with_private_key("[Interface]\nPrivateKey = X\n", "K").is_err());
        assert!(with_private_key("[Peer]\n", "K").is_err());
    }
}
