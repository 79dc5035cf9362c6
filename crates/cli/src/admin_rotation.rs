//! `pairgate admin identity rotate | activate`: changing the server key
//! with no terminal pairing again (docs/protocol.md, "Server key
//! rotation"). `rotate` makes the next key in the identity key store, with
//! its self-signed certificate, and announces it in a statement the
//! current key signs inside its key store; terminals learn it at their next
//! heartbeat. `activate` makes it the identity: every running instance
//! presents it within `reconcile_secs`, and a terminal that slept through
//! the announcement follows the chain of statements from the gate. Both are
//! audited; `rotate` deletes the key it made when the announcement is not
//! recorded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use pairgate_keystore::{Alias, KeyStore};
use pairgate_pki::KeyAlgorithm;
use pairgate_pki::rotation::{RotationStatement, SignedRotation, statement_scheme};
use pairgate_proto::server_keys::Rotation;
use pairgate_server::Settings;
use pairgate_server::identity::{self, Creating, SERVER_ALIAS};
use pairgate_store::{Actor, Store};
use serde_json::json;

use pairgate_agent::Output;

/// `identity rotate`.
pub async fn rotate(
    store: &Store,
    settings: &Settings,
    not_before_days: u64,
    actor: &Actor,
    out: &Output,
) -> Result<()> {
    let (uri, pass_file) = (
        settings.identity_keystore(),
        settings.identity_passphrase_file(),
    );
    let recorded = store.recorded_identity().await?.context(
        "the store records no server identity yet: start the server (or `server init`) first",
    )?;
    if let Some(pending) = store
        .rotations()
        .await?
        .iter()
        .find(|r| r.activated_at.is_none())
    {
        bail!(
            "rotation {} is announced and not activated: run `pairgate admin identity activate` first",
            pending.rotation.seq
        );
    }
    let seq = store
        .rotations()
        .await?
        .last()
        .map_or(1, |r| r.rotation.seq + 1);
    let keys = identity::open_existing(&uri, &pass_file)?;
    let current_alias = identity::alias_for(keys.as_ref(), Some(recorded))?;
    let current = keys.public_key(&current_alias)?;
    if current.pin() != recorded {
        bail!(
            "this identity key store holds no key with the recorded pin {recorded}: run the command where the server's identity is"
        );
    }
    let (next_alias, next) = next_server_key(keys.as_ref(), seq)?;
    let now = SystemTime::now();
    let current = (&current_alias, &current);
    let numbering = (seq, not_before_days);
    let announced = announce(store, keys.as_ref(), current, &next, numbering, actor, now).await;
    if let Err(e) = announced {
        let _ = keys.delete(&next_alias);
        return Err(e.context("the rotation was not announced; the key made for it was deleted"));
    }
    drop(keys);
    certify(settings, next.pin(), now)?;
    out.print(
        format!(
            "rotation {seq} announced: server key {} will replace {recorded}\n  terminals learn it at their next heartbeat; then run `pairgate admin identity activate`\n",
            next.pin()
        ),
        json!({ "seq": seq, "pin": recorded.to_hex(), "next_pin": next.pin().to_hex(), "alias": next_alias.to_string() }),
    );
    Ok(())
}

/// The key of rotation `seq`, made in the identity key store under
/// `pairgate-server.r<seq>-<random>`: an alias of its own per attempt, so
/// that two operators rotating at once never touch each other's key (the
/// store records one of their statements, and the other deletes its key).
/// Instances find the identity's key by its pin, not by its alias.
pub(crate) fn next_server_key(
    keys: &dyn KeyStore,
    seq: u64,
) -> Result<(Alias, pairgate_keystore::PublicKeyInfo)> {
    let mut random = [0u8; 4];
    aws_lc_rs::rand::fill(&mut random)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    let alias = Alias::new(&format!("{SERVER_ALIAS}.r{seq}-{}", hex::encode(random)))?;
    let public = keys.generate_key(&alias, KeyAlgorithm::P256)?;
    Ok((alias, public))
}

/// The self-signed certificate of the key `pin`, made now, so that every
/// instance only reads the key store when it switches to it.
pub(crate) fn certify(
    settings: &Settings,
    pin: pairgate_pki::SpkiPin,
    now: SystemTime,
) -> Result<()> {
    let (uri, pass_file) = (
        settings.identity_keystore(),
        settings.identity_passphrase_file(),
    );
    let names = settings.server_names.clone();
    identity::load_pinned(&uri, &pass_file, &names, now, Creating::Refused, Some(pin))?;
    Ok(())
}

/// Signs statement `seq` (its start `not_before_days` from now) with the
/// current key and records it.
async fn announce(
    store: &Store,
    keys: &dyn KeyStore,
    (alias, current): (&Alias, &pairgate_keystore::PublicKeyInfo),
    next: &pairgate_keystore::PublicKeyInfo,
    (seq, not_before_days): (u64, u64),
    actor: &Actor,
    now: SystemTime,
) -> Result<()> {
    let start = now + Duration::from_secs(not_before_days.saturating_mul(86_400));
    let statement = RotationStatement {
        seq,
        previous_spki: current.spki_der.clone(),
        next_spki: next.spki_der.clone(),
        not_before: start.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    let signature = keys.sign(
        alias,
        statement_scheme(current.algorithm),
        &statement.message(),
    )?;
    let signed = SignedRotation {
        statement,
        signature,
    };
    signed
        .verify()
        .context("the statement the current key signed does not verify")?;
    store
        .announce_rotation(&Rotation::from_signed(&signed), actor, now)
        .await?;
    Ok(())
}

/// `identity activate`.
pub async fn activate(store: &Store, actor: &Actor, out: &Output) -> Result<()> {
    let now = SystemTime::now();
    if let Some(pending) = store
        .rotations()
        .await?
        .iter()
        .find(|r| r.activated_at.is_none())
    {
        let start = UNIX_EPOCH + Duration::from_secs(pending.rotation.not_before);
        if now < start {
            bail!(
                "rotation {} may be activated from its statement's start time, Unix second {}, not before",
                pending.rotation.seq,
                pending.rotation.not_before
            );
        }
    }
    let pin = store.activate_rotation(actor, now).await?;
    out.print(
        format!(
            "server key {pin} is the server identity now\n  every instance presents it within reconcile_secs; terminals that missed the announcement follow it from the gate\n"
        ),
        json!({ "pin": pin.to_hex() }),
    );
    Ok(())
}
