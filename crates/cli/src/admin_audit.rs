//! `pairgate admin audit …`: the audit log, newest first; `verify`, which
//! checks every record against the server's signed checkpoints (online,
//! or `--file` for an export, offline: no database is opened); and
//! `export`, which writes records and checkpoints as JSON lines.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use pairgate_pki::SpkiPin;
use pairgate_server::{Settings, rfc3339, unix_millis};
use pairgate_store::{AuditRecord, AuditVerification, Store};
use serde_json::json;

use pairgate_agent::Output;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Checks every record against the server's signed checkpoints; fails
    /// naming the first record edited, removed or reordered.
    Verify {
        /// An export to check offline instead of the database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The server's SPKI pin (64 hex digits); needed with --file,
        /// otherwise read from the server identity.
        #[arg(long)]
        server_pin: Option<SpkiPin>,
    },
    /// Writes the records and their checkpoints as JSON lines.
    Export {
        /// The file to write (created; an existing file is refused).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `verify --file`: runs before any database is looked for.
pub fn verify_file(file: &Path, pin: Option<SpkiPin>, out: &Output) -> Result<()> {
    let Some(pin) = pin else {
        bail!(
            "--file needs --server-pin: the pin terminals were given (pairgate server prints it)"
        );
    };
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let result = pairgate_store::verify_export(BufReader::new(input), &pin)?;
    report(&result, &format!("export {}", file.display()), out)
}

fn report(v: &AuditVerification, what: &str, out: &Output) -> Result<()> {
    if let Some(seq) = v.first_broken {
        bail!(
            "the audit log ({what}) is broken at record {seq}: {} ({} records checked)",
            v.reason
                .as_deref()
                .unwrap_or("edited, removed or reordered"),
            v.records
        );
    }
    out.print(
        format!(
            "audit log ({what}) intact: {} records; signed checkpoints cover records through {}; {} newer record(s) not yet signed",
            v.records, v.anchored_through, v.unanchored
        ),
        v.view(),
    );
    Ok(())
}

/// Runs an audit command against the store.
pub async fn run(
    store: &Store,
    settings: &Settings,
    command: Option<AuditCommand>,
    limit: i64,
    out: &Output,
) -> Result<()> {
    match command {
        Some(AuditCommand::Verify {
            file: Some(file),
            server_pin,
        }) => verify_file(&file, server_pin, out),
        Some(AuditCommand::Verify {
            file: None,
            server_pin,
        }) => verify_database(store, settings, server_pin, out).await,
        Some(AuditCommand::Export { out: path }) => export(store, &path, out).await,
        None => {
            let records = store.audit_records(limit).await?;
            let text: Vec<String> = records
                .iter()
                .map(|r| {
                    format!(
                        "{:>6} {} {:<16} {:<24} {:<16} {}",
                        r.seq,
                        rfc3339(r.at),
                        r.actor,
                        r.action,
                        r.subject,
                        r.detail
                    )
                })
                .collect();
            let rows: Vec<_> = records.iter().map(AuditRecord::view).collect();
            out.print(text.join("\n"), rows);
            Ok(())
        }
    }
}

/// Verifies the database's chain and its checkpoints against the server
/// identity's pin (given, or read from the identity here).
async fn verify_database(
    store: &Store,
    settings: &Settings,
    server_pin: Option<SpkiPin>,
    out: &Output,
) -> Result<()> {
    // The identity the store records (after a rotation, the current key);
    // checkpoints of earlier identities verify under it too.
    let pin = match server_pin.or(store.recorded_identity().await?) {
        Some(pin) => pin,
        None => match pairgate_server::identity::existing_pin(
            &settings.identity_keystore(),
            &settings.identity_passphrase_file(),
        ) {
            Ok(pin) => pin,
            // No server has run here yet, so nothing was signed: the chain
            // is all there is to check.
            Err(_) if store.audit_anchor().await?.is_none() => {
                let v = store.verify_audit().await?;
                return report(
                    &v,
                    "database, chain only: no server identity and no signed checkpoints yet",
                    out,
                );
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("reading the server identity's pin (or pass --server-pin)"));
            }
        },
    };
    let v = store.verify_audit_anchored(&pin).await?;
    report(&v, "database", out)
}

/// Writes the records and their checkpoints to a new file.
async fn export(store: &Store, path: &Path, out: &Output) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut writer = BufWriter::new(file);
    let n = store
        .export_audit(&mut writer, unix_millis(SystemTime::now()))
        .await?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    out.print(
        format!(
            "{n} audit records with their checkpoints written to {}",
            path.display()
        ),
        json!({ "records": n, "file": path.display().to_string() }),
    );
    Ok(())
}
