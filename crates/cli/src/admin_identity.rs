//! `pairgate admin identity export|import`: moving the server identity to
//! a new machine so that it keeps the pin every terminal holds. The file
//! is encrypted under a passphrase from `PAIRGATE_EXPORT_PASSPHRASE` or
//! `--passphrase-file` (never an argument); a PKCS#11 key is refused for
//! export. Both are audited.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use pairgate_keystore::Passphrase;
use pairgate_server::Settings;
use pairgate_server::identity_export;
use pairgate_store::{Actor, Store};
use serde_json::json;

use pairgate_agent::Output;

/// Where the export passphrase comes from when no file is given.
const PASSPHRASE_ENV: &str = "PAIRGATE_EXPORT_PASSPHRASE";

#[derive(Subcommand, Debug)]
pub enum IdentityCommand {
    /// Writes the server identity (key store and its passphrase) to FILE,
    /// encrypted under the export passphrase. Refused for a PKCS#11 key.
    Export {
        /// The file to write (created; an existing one is refused).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Reads the export passphrase from FILE (else PAIRGATE_EXPORT_PASSPHRASE).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Makes FILE's identity this machine's: its key store must hold no
    /// key yet, and the store must record no other identity.
    Import {
        /// An export written by `identity export`.
        file: PathBuf,
        /// Reads the export passphrase from FILE (else PAIRGATE_EXPORT_PASSPHRASE).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
}

fn export_passphrase(file: Option<&Path>) -> Result<Passphrase> {
    if let Some(file) = file {
        return Ok(Passphrase::from_file(file)?);
    }
    Passphrase::from_env(PASSPHRASE_ENV)?.with_context(|| {
        format!("an identity export needs a passphrase: set {PASSPHRASE_ENV} or give --passphrase-file FILE")
    })
}

pub async fn run(
    store: &Store,
    settings: &Settings,
    command: IdentityCommand,
    actor: &Actor,
    out: &Output,
) -> Result<()> {
    let uri = settings.identity_keystore();
    let pass_file = settings.identity_passphrase_file();
    match command {
        IdentityCommand::Export {
            out: file,
            passphrase_file,
        } => {
            let passphrase = export_passphrase(passphrase_file.as_deref())?;
            let (encrypted, pin) = identity_export::export(&uri, &pass_file, &passphrase)?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut written = options
                .open(&file)
                .with_context(|| format!("creating {}", file.display()))?;
            std::io::Write::write_all(&mut written, &encrypted)
                .and_then(|()| written.sync_all())
                .with_context(|| format!("writing {}", file.display()))?;
            store
                .audit_identity_event("server.identity_exported", pin, actor, SystemTime::now())
                .await?;
            out.print(
                format!(
                    "server identity {pin} exported to {}\n  keep the file and its passphrase apart: together they are the server's key\n",
                    file.display()
                ),
                json!({ "pin": pin.to_hex(), "file": file.display().to_string() }),
            );
        }
        IdentityCommand::Import {
            file,
            passphrase_file,
        } => {
            let passphrase = export_passphrase(passphrase_file.as_deref())?;
            let encrypted =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let opened = identity_export::open(&encrypted, &passphrase)?;
            if let Some(recorded) = store.recorded_identity().await?
                && recorded != opened.pin
            {
                bail!(
                    "the export holds identity {}, but the store records {recorded}, the one terminals pin; nothing was written",
                    opened.pin
                );
            }
            let pin = identity_export::import(&opened, &uri, &pass_file)?;
            store
                .audit_identity_event("server.identity_imported", pin, actor, SystemTime::now())
                .await?;
            out.print(
                format!("server identity {pin} imported into {uri}\n"),
                json!({ "pin": pin.to_hex(), "identity_keystore": uri }),
            );
        }
    }
    Ok(())
}
