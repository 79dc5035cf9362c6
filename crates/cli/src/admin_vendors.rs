//! `pairgate admin vendor …` and `manifest …`: vendor keys (an admin with a
//! fresh TOTP adds or removes one) and the signed manifests that register
//! terminals by the thousand and vouch for their keys.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::Subcommand;
use pairgate_agent::Output;
use pairgate_pki::VendorKey;
use pairgate_store::{Actor, Changer, Store};

#[derive(Subcommand, Debug)]
pub enum VendorCommand {
    /// Registers a vendor's public key (Ed25519 or P-256, PEM); admin only,
    /// with a fresh TOTP.
    Add {
        /// The name manifests give as `vendor`.
        name: String,
        /// The public key, PEM (`openssl pkey -pubout`).
        #[arg(long)]
        key: PathBuf,
        /// The admin doing it.
        #[arg(long)]
        operator: String,
        /// The admin's current TOTP code.
        #[arg(long)]
        totp: String,
    },
    /// Lists the vendor keys.
    List,
    /// Removes a vendor key: its manifests stop vouching at once. Admin
    /// only, with a fresh TOTP.
    Remove {
        /// Vendor name.
        name: String,
        /// The admin doing it.
        #[arg(long)]
        operator: String,
        /// The admin's current TOTP code.
        #[arg(long)]
        totp: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ManifestCommand {
    /// Imports a signed manifest: registers its terminals and their keys
    /// in one transaction; a bad signature, an unknown vendor or a
    /// conflicting key imports nothing.
    Import {
        /// The manifest (JSON, docs/protocol.md).
        file: PathBuf,
        /// The detached signature over the file's bytes.
        #[arg(long)]
        signature: PathBuf,
    },
    /// Lists the imported manifests, newest first.
    List,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Runs a vendor command.
pub async fn vendor(store: &Store, command: VendorCommand, out: &Output) -> Result<()> {
    let now = SystemTime::now();
    match command {
        VendorCommand::Add {
            name,
            key,
            operator,
            totp,
        } => {
            let public = VendorKey::from_pem(&read(&key)?)
                .with_context(|| format!("the key in {}", key.display()))?;
            let by = store
                .verify_second_factor(&operator, &totp, now)
                .await?
                .admin()?;
            let vendor = store.add_vendor(&name, &public, &by, now).await?;
            out.print(
                format!(
                    "vendor {name} added ({}, key pin {})",
                    vendor.algorithm, vendor.key_pin
                ),
                vendor.view(),
            );
        }
        VendorCommand::List => {
            let vendors = store.vendors().await?;
            let mut text: Vec<String> = vendors
                .iter()
                .map(|v| {
                    format!(
                        "{:<20} {:<8} {}  added by {}",
                        v.name, v.algorithm, v.key_pin, v.added_by
                    )
                })
                .collect();
            if text.is_empty() {
                text.push("no vendor keys".into());
            }
            let views: Vec<_> = vendors.iter().map(pairgate_store::Vendor::view).collect();
            out.print(text.join("\n"), views);
        }
        VendorCommand::Remove {
            name,
            operator,
            totp,
        } => {
            let by = store
                .verify_second_factor(&operator, &totp, now)
                .await?
                .admin()?;
            store.remove_vendor(&name, &by, now).await?;
            out.print(
                format!("vendor {name} removed; its manifests vouch for nothing now"),
                serde_json::json!({ "vendor": name, "removed": true }),
            );
        }
    }
    Ok(())
}

/// Runs a manifest command as `actor`.
pub async fn manifest(
    store: &Store,
    command: ManifestCommand,
    actor: &Actor,
    out: &Output,
) -> Result<()> {
    match command {
        ManifestCommand::Import { file, signature } => {
            let bytes = read(&file)?;
            let signature = read(&signature)?;
            let by = Changer::local(actor.name());
            let imported = store
                .import_signed_manifest(&bytes, &signature, &by, SystemTime::now())
                .await?;
            let text = if imported.unchanged {
                format!(
                    "manifest {} was imported before; nothing changed",
                    imported.manifest_id
                )
            } else {
                format!(
                    "manifest {} imported: {} terminals vouched for, {} newly registered",
                    imported.manifest_id, imported.terminals, imported.registered
                )
            };
            out.print(text, imported.view());
        }
        ManifestCommand::List => {
            let manifests = store.manifests().await?;
            let mut text: Vec<String> = manifests
                .iter()
                .map(|m| {
                    format!(
                        "{:<24} {:<16} {:>7} terminals  issued {}",
                        m.id, m.vendor, m.terminals, m.issued_at
                    )
                })
                .collect();
            if text.is_empty() {
                text.push("no manifests".into());
            }
            let views: Vec<_> = manifests
                .iter()
                .map(pairgate_store::ManifestRecord::view)
                .collect();
            out.print(text.join("\n"), views);
        }
    }
    Ok(())
}
