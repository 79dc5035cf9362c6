//! `pairgate admin identity …`: the server identity's certificate from the
//! operator's or acquirer's CA (`csr`, then `install` the chain it
//! issued), and moving the identity to a new machine so that it keeps the
//! pin every terminal holds (`export`, `import`: the file is encrypted
//! under a passphrase from `PAIRGATE_EXPORT_PASSPHRASE` or
//! `--passphrase-file`, never an argument; a PKCS#11 key is refused for
//! export). Installs and moves are audited.

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
    /// Writes a PKCS#10 request for the identity's key, signed inside its
    /// key store, for your CA (which sets the names it certifies).
    Csr {
        /// The file to write (created; an existing one is refused).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The subject asked for.
        #[arg(long, default_value = "CN=pairgate server")]
        subject: pairgate_pki::Subject,
    },
    /// Installs the chain your CA issued for the identity (PEM, leaf
    /// first): served as given from the next start, and never replaced by
    /// a self-signed certificate on its own. Refused unless the leaf
    /// certifies the identity's key and is valid now.
    Install {
        /// The chain.
        chain: PathBuf,
    },
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
    /// Announces a new server key: made in the identity key store and
    /// signed for by the current key. Terminals pin it at their next
    /// heartbeat; `activate` then switches to it, with no new pairing.
    Rotate {
        /// Days from now before it may be activated (the statement's start).
        #[arg(long, default_value_t = 0)]
        not_before_days: u64,
    },
    /// Makes the announced key the server identity: every instance
    /// presents it within reconcile_secs.
    Activate,
    /// Makes the operator's offline recovery key and writes it to FILE,
    /// encrypted under the export passphrase; terminals carry its pin.
    RecoveryKey {
        /// The file to write (created; an existing one is refused).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Reads the passphrase from FILE (else PAIRGATE_EXPORT_PASSPHRASE).
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// After the server key was lost or stolen: a new server key, made the
    /// identity at once by a rotation the recovery key signs.
    Recover {
        /// The recovery key file `recovery-key` wrote.
        #[arg(long, value_name = "FILE")]
        recovery_key: PathBuf,
        /// Reads the passphrase from FILE (else PAIRGATE_EXPORT_PASSPHRASE).
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

pub(crate) fn export_passphrase(file: Option<&Path>) -> Result<Passphrase> {
    if let Some(file) = file {
        return Ok(Passphrase::from_file(file)?);
    }
    Passphrase::from_env(PASSPHRASE_ENV)?.with_context(|| {
        format!("an identity export needs a passphrase: set {PASSPHRASE_ENV} or give --passphrase-file FILE")
    })
}

/// `identity install`: the chain checked (the leaf certifies the key and
/// is valid now), set, and audited.
async fn install(
    store: &Store,
    uri: &str,
    pass_file: &Path,
    chain: &Path,
    actor: &Actor,
    out: &Output,
) -> Result<()> {
    let input = std::fs::read(chain).with_context(|| format!("reading {}", chain.display()))?;
    let certs = pairgate_pki::certificate::parse_certificates(&input)?;
    let leaf = certs.first().context("the file holds no certificate")?;
    let info = pairgate_pki::CertificateInfo::parse(leaf)?;
    info.check_validity(SystemTime::now())
        .context("the chain's leaf is not valid now")?;
    let keys = pairgate_server::identity::open_existing(uri, pass_file)?;
    let recorded = store.recorded_identity().await?;
    let alias = pairgate_server::identity::alias_for(keys.as_ref(), recorded)?;
    let pin = keys.public_key(&alias)?.pin();
    let previous = keys.certificate_chain(&alias)?;
    pairgate_keystore::import_certificate_chain(keys.as_ref(), &alias, &input)?;
    let detail = json!({
        "issuer": info.issuer, "subject": info.subject, "not_after": info.not_after,
        "certificates": certs.len(),
    });
    let audited = store
        .audit_identity_event(
            "server.certificate_installed",
            pin,
            detail,
            actor,
            SystemTime::now(),
        )
        .await;
    // No change without its audit record: the previous chain goes back.
    if let Err(e) = audited {
        keys.set_certificate_chain(&alias, &previous)?;
        return Err(e)
            .context("the audit log could not be written, so the chain was not installed");
    }
    out.print(
        format!(
            "installed a chain of {} certificate(s) from {} for the server identity {pin}, valid until {}\n  served from the next start of each instance\n",
            certs.len(),
            info.issuer,
            info.not_after
        ),
        json!({ "pin": pin.to_hex(), "issuer": info.issuer, "not_after": info.not_after }),
    );
    Ok(())
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
        IdentityCommand::Csr { out: file, subject } => {
            let recorded = store.recorded_identity().await?;
            let keys = pairgate_server::identity::open_existing(&uri, &pass_file)?;
            let alias = pairgate_server::identity::alias_for(keys.as_ref(), recorded)?;
            let csr = pairgate_keystore::certificate_request(keys.as_ref(), &alias, &subject)?;
            let pem = pairgate_pki::certificate::csr_pem(&csr);
            crate::ca::write_private(&file, pem.as_bytes())?;
            out.print(
                format!(
                    "certificate request for the server identity written to {}
",
                    file.display()
                ),
                json!({ "file": file.display().to_string(), "csr": pem }),
            );
        }
        IdentityCommand::Rotate { not_before_days } => {
            crate::admin_rotation::rotate(store, settings, not_before_days, actor, out).await?
        }
        IdentityCommand::Activate => crate::admin_rotation::activate(store, actor, out).await?,
        IdentityCommand::RecoveryKey {
            out: file,
            passphrase_file,
        } => {
            crate::admin_recovery::create(store, &file, passphrase_file.as_deref(), actor, out)
                .await?
        }
        IdentityCommand::Recover {
            recovery_key,
            passphrase_file,
        } => {
            let pass = passphrase_file.as_deref();
            crate::admin_recovery::recover(store, settings, &recovery_key, pass, actor, out).await?
        }
        IdentityCommand::Install { chain } => {
            install(store, &uri, &pass_file, &chain, actor, out).await?
        }
        IdentityCommand::Export {
            out: file,
            passphrase_file,
        } => {
            let passphrase = export_passphrase(passphrase_file.as_deref())?;
            let recorded = store.recorded_identity().await?;
            let (encrypted, pin) =
                identity_export::export(&uri, &pass_file, &passphrase, recorded)?;
            crate::ca::write_private(&file, &encrypted)?;
            store
                .audit_identity_event(
                    "server.identity_exported",
                    pin,
                    json!({}),
                    actor,
                    SystemTime::now(),
                )
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
            let pass = passphrase_file.as_deref();
            import(store, (&uri, &pass_file), (&file, pass), actor, out).await?
        }
    }
    Ok(())
}

/// `identity import`: refused when the export holds another identity than
/// the one the store records; audited.
async fn import(
    store: &Store,
    (uri, pass_file): (&str, &Path),
    (file, passphrase_file): (&Path, Option<&Path>),
    actor: &Actor,
    out: &Output,
) -> Result<()> {
    let passphrase = export_passphrase(passphrase_file)?;
    let encrypted = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let opened = identity_export::open(&encrypted, &passphrase)?;
    if let Some(recorded) = store.recorded_identity().await?
        && recorded != opened.pin
    {
        bail!(
            "the export holds identity {}, but the store records {recorded}, the one terminals pin; nothing was written",
            opened.pin
        );
    }
    let pin = identity_export::import(&opened, uri, pass_file)?;
    store
        .audit_identity_event(
            "server.identity_imported",
            pin,
            json!({}),
            actor,
            SystemTime::now(),
        )
        .await?;
    out.print(
        format!("server identity {pin} imported into {uri}\n"),
        json!({ "pin": pin.to_hex(), "identity_keystore": uri }),
    );
    Ok(())
}
