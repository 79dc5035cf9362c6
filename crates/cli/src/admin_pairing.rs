//! `pairgate admin terminal …`, `requests`, `approve`, `reject` and
//! `unpair`: the terminal and pairing verbs on the store, each one
//! transaction with its audit record. Their JSON is the CAS API's
//! objects (`pairgate_proto::cas`).

use std::time::SystemTime;

use anyhow::Result;
use clap::Subcommand;
use pairgate_pki::PairingCode;
use pairgate_server::rfc3339;
use pairgate_store::{
    Actor, Changer, NewTerminal, PairingRequest, Serial, Store, Terminal, TrustChange,
};

use pairgate_agent::Output;

#[derive(Subcommand, Debug)]
pub enum TerminalCommand {
    /// Registers a terminal so that it may ask to pair.
    Add {
        /// Serial.
        serial: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Location.
        #[arg(long, default_value = "")]
        location: String,
        /// The location contact who reads the pairing code.
        #[arg(long, default_value = "")]
        contact: String,
        /// Their phone.
        #[arg(long, default_value = "")]
        phone: String,
    },
    /// Lists terminals.
    List,
}

/// The key a terminal is paired with, for people.
fn paired_key(t: &Terminal) -> String {
    t.paired_fingerprint
        .map_or_else(|| "-".into(), |f| f.to_hex())
}

/// Runs a terminal command as `actor`.
pub async fn terminal(
    store: &Store,
    command: TerminalCommand,
    actor: &Actor,
    out: &Output,
) -> Result<()> {
    match command {
        TerminalCommand::Add {
            serial,
            name,
            location,
            contact,
            phone,
        } => {
            let new = NewTerminal {
                serial,
                name,
                location,
                contact_name: contact,
                contact_phone: phone,
            };
            let by = Changer::local(actor.name());
            let t = store
                .register_terminal(&new, &by, SystemTime::now())
                .await?;
            out.print(
                format!("terminal {} registered; it may now ask to pair", t.serial),
                t.view(),
            );
        }
        TerminalCommand::List => {
            let terminals = store.terminals().await?;
            let text: Vec<String> = terminals
                .iter()
                .map(|t| {
                    let (serial, state) = (&t.serial, t.state.as_str());
                    format!("{serial:<20} {state:<10} {} {}", paired_key(t), t.name)
                })
                .collect();
            let views: Vec<_> = terminals.iter().map(Terminal::view).collect();
            out.print(text.join("\n"), views);
        }
    }
    Ok(())
}

/// `pairgate admin requests`: the newest requests, or the open ones.
pub async fn requests(store: &Store, pending: bool, limit: i64, out: &Output) -> Result<()> {
    let requests = store.pairing_requests(pending, limit).await?;
    let text: Vec<String> = requests
        .iter()
        .map(|r| {
            format!(
                "{}  {:<16} {:<15} {}{}  {}",
                r.id,
                r.serial,
                r.state.as_str(),
                if r.flagged { "FLAGGED " } else { "" },
                rfc3339(r.created_at),
                r.fingerprint
            )
        })
        .collect();
    let views: Vec<_> = requests.iter().map(PairingRequest::view).collect();
    out.print(text.join("\n"), views);
    Ok(())
}

/// `pairgate admin approve`: by the code, with the operator's fresh TOTP.
pub async fn approve(
    store: &Store,
    request: &str,
    code: &PairingCode,
    (operator, totp): (&str, &str),
    out: &Output,
) -> Result<()> {
    let now = SystemTime::now();
    let proof = store.verify_second_factor(operator, totp, now).await?;
    let t = store.approve_pairing(request, code, &proof, now).await?;
    out.print(
        format!(
            "terminal {} paired with {} by {operator}",
            t.serial,
            paired_key(&t)
        ),
        t.view(),
    );
    Ok(())
}

/// `pairgate admin reject`.
pub async fn reject(store: &Store, request: &str, actor: &Actor, out: &Output) -> Result<()> {
    let by = Changer::local(actor.name());
    let r = store
        .reject_pairing(request, &by, SystemTime::now())
        .await?;
    out.print(format!("request {} rejected", r.id), r.view());
    Ok(())
}

/// `pairgate admin unpair`.
pub async fn unpair(store: &Store, serial: &str, actor: &Actor, out: &Output) -> Result<()> {
    let serial = Serial::new(serial)?;
    let by = TrustChange::local(actor.name());
    let t = store.unpair(&serial, &by, SystemTime::now()).await?;
    out.print(
        format!(
            "terminal {} unpaired; the master refuses it from now on",
            t.serial
        ),
        t.view(),
    );
    Ok(())
}

/// `pairgate admin suspend`.
pub async fn suspend(store: &Store, serial: &str, actor: &Actor, out: &Output) -> Result<()> {
    let serial = Serial::new(serial)?;
    let by = Changer::local(actor.name());
    let t = store
        .suspend_terminal(&serial, &by, SystemTime::now())
        .await?;
    out.print(
        format!(
            "terminal {} suspended; the master refuses it until it is resumed",
            t.serial
        ),
        t.view(),
    );
    Ok(())
}

/// `pairgate admin resume`: with the operator's fresh TOTP.
pub async fn resume(
    store: &Store,
    serial: &str,
    (operator, totp): (&str, &str),
    out: &Output,
) -> Result<()> {
    let serial = Serial::new(serial)?;
    let now = SystemTime::now();
    let by = store
        .verify_second_factor(operator, totp, now)
        .await?
        .trust_change()?;
    let t = store.resume_terminal(&serial, &by, now).await?;
    out.print(
        format!(
            "terminal {} resumed by {operator}; the master serves it again",
            t.serial
        ),
        t.view(),
    );
    Ok(())
}
