//! `pairgate admin terminal-ca init`: the server's terminal CA (CA mode of
//! the re-key), a key made inside the identity key store (PKCS#11
//! allowed) under `terminal_ca_alias` and its self-signed CA certificate.
//! With `terminal_ca_alias` set, the master certifies re-key CSRs with
//! it. Audited.

use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use pairgate_keystore::{Alias, KeyStoreError, StoreSigner};
use pairgate_pki::{CertificateAuthority, KeyAlgorithm, Subject};
use pairgate_server::Settings;
use pairgate_store::{Actor, Store};
use serde_json::json;

use pairgate_agent::Output;

/// The alias used when `terminal_ca_alias` is not set.
const DEFAULT_ALIAS: &str = "pairgate-terminal-ca";

#[derive(Subcommand, Debug)]
pub enum TerminalCaCommand {
    /// Makes the terminal CA's key in the identity key store and its
    /// self-signed CA certificate; refused when the alias holds a key.
    Init {
        /// The CA's subject.
        #[arg(long, default_value = "CN=pairgate terminal CA")]
        subject: Subject,
        /// Validity of the CA certificate, in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
}

/// Runs a terminal-CA command.
pub async fn run(
    store: &Store,
    settings: &Settings,
    command: TerminalCaCommand,
    actor: &Actor,
    out: &Output,
) -> Result<()> {
    let TerminalCaCommand::Init { subject, days } = command;
    let name = match settings.terminal_ca_alias.as_str() {
        "" => DEFAULT_ALIAS,
        set => set,
    };
    let (certificate, pin, described) = make_ca(
        store,
        settings,
        (name, &subject, days),
        "server.terminal_ca_created",
        actor,
    )
    .await?;
    let pem = pairgate_pki::certificate::certificate_pem(&certificate);
    out.print(
        format!(
            "terminal CA {name} created in {}\n  set terminal_ca_alias = \"{name}\" and restart: re-keying terminals then get certificates it issues\n{pem}",
            described
        ),
        json!({ "alias": name, "certificate": pem, "key_pin": pin }),
    );
    Ok(())
}

/// Makes a CA key `alias` in the identity key store (PKCS#11 allowed) and
/// its self-signed CA certificate, audited as `action`; refused when the
/// alias holds a key. On any failure the key is deleted. Returns the
/// certificate, the key's pin (hex) and where the key is.
pub(crate) async fn make_ca(
    store: &Store,
    settings: &Settings,
    (name, subject, days): (&str, &Subject, u32),
    action: &str,
    actor: &Actor,
) -> Result<(pairgate_pki::CertificateDer<'static>, String, String)> {
    let alias = Alias::new(name)?;
    let keys = pairgate_server::identity::open_existing(
        &settings.identity_keystore(),
        &settings.identity_passphrase_file(),
    )
    .context("opening the identity key store (start the server or run `server init` first)")?;
    match keys.public_key(&alias) {
        Err(KeyStoreError::NoSuchAlias(_)) => {}
        Ok(_) => bail!("the identity key store already holds {alias}; nothing was changed"),
        Err(e) => return Err(e.into()),
    }
    let public = keys.generate_key(&alias, KeyAlgorithm::P256)?;
    let made = StoreSigner::new(keys.as_ref(), &alias)
        .map_err(anyhow::Error::from)
        .and_then(|signer| {
            Ok(
                CertificateAuthority::new_root(signer, subject, SystemTime::now(), days)?
                    .certificate()
                    .clone(),
            )
        })
        .and_then(|certificate| {
            keys.set_certificate_chain(&alias, std::slice::from_ref(&certificate))?;
            Ok(certificate)
        });
    let detail = json!({ "alias": name, "subject": subject.to_string(), "days": days });
    let audited = match &made {
        Ok(_) => store
            .audit_identity_event(action, public.pin(), detail, actor, SystemTime::now())
            .await
            .map_err(anyhow::Error::from),
        Err(_) => Ok(()),
    };
    // No CA without its audit record.
    let certificate = match (made, audited) {
        (Ok(certificate), Ok(())) => certificate,
        (Err(e), _) | (Ok(_), Err(e)) => {
            let _ = keys.delete(&alias);
            return Err(e.context("the CA was not created"));
        }
    };
    Ok((certificate, public.pin().to_hex(), keys.describe()))
}
