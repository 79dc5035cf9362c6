//! `pairgate admin key block|unblock|list`: the operators' block list of
//! terminal keys. A blocked certificate fingerprint can no longer ask to
//! pair at the gate, and the requests it holds end; each change is
//! audited.

use std::time::SystemTime;

use anyhow::Result;
use clap::Subcommand;
use pairgate_pki::TerminalFingerprint;
use pairgate_proto::cas::Unblocked;
use pairgate_server::rfc3339;
use pairgate_store::{Actor, BlockedKey, Store};

use pairgate_agent::Output;

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Blocks a terminal key (certificate fingerprint, 64 hex digits):
    /// it can no longer ask to pair, and its open requests end.
    Block {
        /// The certificate fingerprint.
        fingerprint: TerminalFingerprint,
        /// Why, for the audit log and the other operators.
        #[arg(long)]
        reason: String,
    },
    /// Takes a key off the block list.
    Unblock {
        /// The certificate fingerprint.
        fingerprint: TerminalFingerprint,
    },
    /// The blocked keys, newest first.
    List,
}

pub async fn run(store: &Store, command: KeyCommand, actor: &Actor, out: &Output) -> Result<()> {
    let now = SystemTime::now();
    match command {
        KeyCommand::Block {
            fingerprint,
            reason,
        } => {
            let k = store.block_key(&fingerprint, &reason, actor, now).await?;
            out.print(
                format!(
                    "key {} blocked; its open pairing requests ended",
                    k.fingerprint
                ),
                k.view(),
            );
        }
        KeyCommand::Unblock { fingerprint } => {
            store.unblock_key(&fingerprint, actor, now).await?;
            out.print(
                format!("key {fingerprint} unblocked"),
                Unblocked {
                    fingerprint,
                    blocked: false,
                },
            );
        }
        KeyCommand::List => {
            let keys = store.blocked_keys().await?;
            let text: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}  {}  {:<12} {}",
                        k.fingerprint,
                        rfc3339(k.blocked_at),
                        k.blocked_by,
                        k.reason
                    )
                })
                .collect();
            out.print(
                if text.is_empty() {
                    "no blocked keys".to_owned()
                } else {
                    text.join("\n")
                },
                keys.iter().map(BlockedKey::view).collect::<Vec<_>>(),
            );
        }
    }
    Ok(())
}
