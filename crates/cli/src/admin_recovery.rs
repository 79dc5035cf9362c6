//! `pairgate admin identity recovery-key` and `recover`: the operator's
//! offline recovery key. Its pin goes to every terminal (in the pairing
//! configuration, and at each heartbeat); the key itself is written once,
//! age-encrypted under a passphrase, to a file the operator keeps offline.
//! When the server key is lost (or stolen), `recover` makes a new server
//! key and a rotation statement the recovery key signs, activated at once:
//! terminals follow it from the pin they hold, with no new pairing.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use pairgate_pki::SpkiPin;
use pairgate_pki::rotation::{RotationStatement, SignedRotation};
use pairgate_proto::server_keys::Rotation;
use pairgate_server::Settings;
use pairgate_server::identity;
use pairgate_server::identity_export::{seal, unseal};
use pairgate_store::{Actor, Store};
use rcgen::PublicKeyData;
use serde_json::json;

use pairgate_agent::Output;

/// A recovery key in memory: the signer and its SubjectPublicKeyInfo.
struct RecoveryKey {
    pair: EcdsaKeyPair,
    spki: Vec<u8>,
}

impl RecoveryKey {
    fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
            .map_err(|_| anyhow::anyhow!("the recovery key file does not hold a P-256 key"))?;
        let spki = rcgen::KeyPair::try_from(pkcs8)
            .context("reading the recovery key")?
            .subject_public_key_info();
        Ok(Self { pair, spki })
    }

    fn pin(&self) -> SpkiPin {
        SpkiPin::of_spki(&self.spki)
    }
}

/// `identity recovery-key --out FILE`.
pub async fn create(
    store: &Store,
    file: &Path,
    passphrase_file: Option<&Path>,
    actor: &Actor,
    out: &Output,
) -> Result<()> {
    let passphrase = crate::admin_identity::export_passphrase(passphrase_file)?;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
        .map_err(|_| anyhow::anyhow!("making the recovery key failed"))?;
    let key = RecoveryKey::from_pkcs8(pkcs8.as_ref())?;
    crate::ca::write_private(file, &seal(pkcs8.as_ref(), &passphrase)?)?;
    if let Err(e) = store
        .add_recovery_pin(key.pin(), actor, SystemTime::now())
        .await
    {
        let _ = std::fs::remove_file(file);
        return Err(anyhow::Error::new(e)
            .context("the recovery key was not recorded; its file was removed"));
    }
    out.print(
        format!(
            "recovery key {} written to {}\n  terminals carry its pin from their next heartbeat (and from pairing); keep the file and its passphrase offline, apart\n",
            key.pin(),
            file.display()
        ),
        json!({ "recovery_pin": key.pin().to_hex(), "file": file.display().to_string() }),
    );
    Ok(())
}

/// `identity recover --recovery-key FILE`.
pub async fn recover(
    store: &Store,
    settings: &Settings,
    file: &Path,
    passphrase_file: Option<&Path>,
    actor: &Actor,
    out: &Output,
) -> Result<()> {
    let passphrase = crate::admin_identity::export_passphrase(passphrase_file)?;
    let encrypted = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let key = RecoveryKey::from_pkcs8(&unseal(&encrypted, &passphrase, "recovery key")?)?;
    if !store.recovery_pins().await?.contains(&key.pin()) {
        bail!(
            "{} is not a recovery key this server recorded; nothing was changed",
            key.pin()
        );
    }
    let seq = store
        .rotations()
        .await?
        .iter()
        .filter(|r| r.activated_at.is_some())
        .map(|r| r.rotation.seq)
        .max()
        .unwrap_or(0)
        + 1;
    let (uri, pass_file) = (
        settings.identity_keystore(),
        settings.identity_passphrase_file(),
    );
    let keys = identity::open_or_create(&uri, &pass_file)?;
    let (alias, next) = crate::admin_rotation::next_server_key(keys.as_ref(), seq)?;
    let now = SystemTime::now();
    let statement = RotationStatement {
        seq,
        previous_spki: key.spki.clone(),
        next_spki: next.spki_der.clone(),
        not_before: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    let signature = key
        .pair
        .sign(&SystemRandom::new(), &statement.message())
        .map_err(|_| anyhow::anyhow!("signing with the recovery key failed"))?;
    let signed = SignedRotation {
        statement,
        signature: signature.as_ref().to_vec(),
    };
    let recorded = match signed.verify() {
        Ok(()) => store
            .recover_identity(&Rotation::from_signed(&signed), actor, now)
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = recorded {
        let _ = keys.delete(&alias);
        return Err(
            e.context("the server identity was not recovered; the key made for it was deleted")
        );
    }
    drop(keys);
    crate::admin_rotation::certify(settings, next.pin(), now)?;
    out.print(
        format!(
            "server identity recovered: key {} (rotation {seq}, signed by recovery key {})\n  running instances present it within reconcile_secs; terminals follow it from the gate\n",
            next.pin(),
            key.pin()
        ),
        json!({ "pin": next.pin().to_hex(), "seq": seq, "recovery_pin": key.pin().to_hex() }),
    );
    Ok(())
}
