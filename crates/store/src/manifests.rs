//! Vendor keys and the manifests they signed: an admin registers a vendor
//! key; a verified manifest registers its terminals and records, per
//! serial, the pin of the key made inside that terminal, all in one
//! transaction with the audit. A manifest vouches only while the vendor
//! key that verified it is registered. [`ApprovalRules`] say whether a
//! revealed request whose key matches is approved without a person.

use std::collections::HashSet;
use std::time::SystemTime;

use pairgate_pki::{SpkiPin, UnverifiedManifest, VendorKey, VerifiedManifest};
use sqlx::{Any, Row, Transaction};

use crate::audit::append;
use crate::network::Network;
use crate::terminals::bounded;
use crate::{AdminAction, Changer, Serial, Store, StoreError, millis};

/// Which requests are approved without a person, and within which
/// bounds.
#[derive(Clone, Debug)]
pub struct ApprovalRules {
    /// Rule `manifest`: a revealed request whose serial and key match a
    /// manifest entry (`auto_approve_manifest`, on by default).
    pub manifest: bool,
    /// Source networks a rule approves requests from; empty: any.
    pub networks: Vec<Network>,
    /// UTC hours `[from, to)` in which a rule approves (`from > to` runs
    /// past midnight); `None`: at any hour.
    pub hours: Option<(u8, u8)>,
    /// Models (as the manifest lists them) a rule approves; empty: any.
    pub models: Vec<String>,
    /// Rule `ca`: the acquirer and vendor CAs whose certificates, issued
    /// to a request's serial, approve it; `None`: the rule is off.
    pub ca: Option<pairgate_pki::FirmwareRoots>,
}

impl Default for ApprovalRules {
    fn default() -> Self {
        Self {
            manifest: true,
            networks: Vec::new(),
            hours: None,
            models: Vec::new(),
            ca: None,
        }
    }
}

impl ApprovalRules {
    /// Why a request from `address` at `at` (Unix milliseconds) for a
    /// terminal of `model` is outside these bounds; `None` when inside.
    pub fn outside(&self, address: &str, at: i64, model: &str) -> Option<String> {
        if !self.networks.is_empty() {
            let ip = address
                .parse::<std::net::SocketAddr>()
                .map(|a| a.ip())
                .or_else(|_| address.parse::<std::net::IpAddr>());
            let inside = ip.is_ok_and(|ip| self.networks.iter().any(|n| n.contains(ip)));
            if !inside {
                return Some(format!("{address} is outside the rule's networks"));
            }
        }
        if let Some((from, to)) = self.hours {
            let hour = u8::try_from(at.div_euclid(3_600_000).rem_euclid(24)).unwrap_or(0);
            let inside = if from <= to {
                (from..to).contains(&hour)
            } else {
                hour >= from || hour < to
            };
            if !inside {
                return Some(format!(
                    "{hour:02}:00 UTC is outside the rule's hours {from:02}-{to:02}"
                ));
            }
        }
        if !self.models.is_empty() && !self.models.iter().any(|m| m == model) {
            return Some(format!("model {model:?} is not among the rule's models"));
        }
        None
    }
}

/// A registered vendor key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vendor {
    /// Its name, as manifests give it.
    pub name: String,
    /// `ed25519` or `p256`.
    pub algorithm: String,
    /// SHA-256 of its SubjectPublicKeyInfo.
    pub key_pin: String,
    /// When it was added (Unix milliseconds).
    pub added_at: i64,
    /// Who added it.
    pub added_by: String,
}

/// An imported manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRecord {
    /// The vendor's manifest id.
    pub id: String,
    /// The vendor that signed it.
    pub vendor: String,
    /// When the vendor issued it (RFC 3339, as written).
    pub issued_at: String,
    /// How many terminals it lists.
    pub terminals: i64,
    /// When it was imported (Unix milliseconds).
    pub imported_at: i64,
    /// Who imported it.
    pub imported_by: String,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The manifest id.
    pub manifest_id: String,
    /// Terminals the manifest vouches for.
    pub terminals: usize,
    /// Of those, terminals that were not registered before.
    pub registered: usize,
    /// The same manifest was imported before: nothing changed.
    pub unchanged: bool,
}

/// A manifest entry that vouches for a serial now.
#[derive(Clone, Debug)]
pub(crate) struct Vouch {
    pub(crate) spki_pin: String,
    pub(crate) manifest_id: String,
    pub(crate) vendor: String,
    pub(crate) model: String,
}

fn check_vendor_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "vendor name {name:?}: 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

impl Store {
    /// The same store with other approval rules.
    pub fn with_approval_rules(mut self, rules: ApprovalRules) -> Self {
        self.rules = rules;
        self
    }

    /// Registers a vendor key (an admin with a fresh second factor);
    /// audited.
    pub async fn add_vendor(
        &self,
        name: &str,
        key: &VendorKey,
        by: &AdminAction,
        now: SystemTime,
    ) -> Result<Vendor, StoreError> {
        check_vendor_name(name)?;
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 AS one FROM vendors WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::AlreadyExists(format!("vendor {name}")));
        }
        let vendor = Vendor {
            name: name.to_owned(),
            algorithm: key.algorithm().as_str().to_owned(),
            key_pin: key.pin().to_hex(),
            added_at: at,
            added_by: by.actor().name().to_owned(),
        };
        sqlx::query(
            "INSERT INTO vendors (name, algorithm, public_key, key_pin, added_at, added_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(name)
        .bind(&vendor.algorithm)
        .bind(key.to_pem())
        .bind(&vendor.key_pin)
        .bind(at)
        .bind(&vendor.added_by)
        .execute(&mut *tx)
        .await?;
        let detail =
            serde_json::json!({ "algorithm": vendor.algorithm, "key_pin": vendor.key_pin });
        append(&mut tx, at, by.actor(), "vendor.add", name, &detail).await?;
        tx.commit().await?;
        Ok(vendor)
    }

    /// Removes a vendor key; its manifests stop vouching at once; audited.
    pub async fn remove_vendor(
        &self,
        name: &str,
        by: &AdminAction,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query("DELETE FROM vendors WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if removed.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("vendor {name}")));
        }
        append(
            &mut tx,
            at,
            by.actor(),
            "vendor.remove",
            name,
            &serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The registered vendor keys, by name.
    pub async fn vendors(&self) -> Result<Vec<Vendor>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, algorithm, key_pin, added_at, added_by FROM vendors ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Vendor {
                    name: r.try_get("name")?,
                    algorithm: r.try_get("algorithm")?,
                    key_pin: r.try_get("key_pin")?,
                    added_at: r.try_get("added_at")?,
                    added_by: r.try_get("added_by")?,
                })
            })
            .collect()
    }

    /// A vendor's key, to verify a manifest it signed.
    pub async fn vendor_key(&self, name: &str) -> Result<VendorKey, StoreError> {
        let row = sqlx::query("SELECT public_key FROM vendors WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "vendor {name}: register its key first (pairgate admin vendor add)"
                ))
            })?;
        let pem: String = row.try_get("public_key")?;
        VendorKey::from_pem(pem.as_bytes())
            .map_err(|e| StoreError::Corrupt(format!("vendor {name}'s stored key: {e}")))
    }

    /// Checks a manifest file's format, then its detached `signature`
    /// with the named vendor's registered key, then imports it. A file
    /// that fails a check is `Invalid` (unknown vendor: `NotFound`) and
    /// imports nothing.
    pub async fn import_signed_manifest(
        &self,
        file: &[u8],
        signature: &[u8],
        by: &Changer,
        now: SystemTime,
    ) -> Result<Imported, StoreError> {
        let invalid = |e: pairgate_pki::ManifestError| StoreError::Invalid(e.to_string());
        let unverified = UnverifiedManifest::parse(file).map_err(invalid)?;
        let key = self.vendor_key(unverified.vendor()).await?;
        let verified = unverified.verify(&key, signature).map_err(invalid)?;
        self.import_manifest(&verified, by, now).await
    }

    /// Imports a verified manifest in one transaction: registers the
    /// terminals it lists that are not registered yet and records each
    /// serial's key. Importing the same file again changes nothing; a
    /// serial or key that an earlier manifest vouches for differently, or
    /// a vendor key removed meanwhile, imports nothing.
    pub async fn import_manifest(
        &self,
        manifest: &VerifiedManifest,
        by: &Changer,
        now: SystemTime,
    ) -> Result<Imported, StoreError> {
        let doc = manifest.document();
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        if let Some(unchanged) = already_imported(&mut tx, manifest).await? {
            return Ok(unchanged);
        }
        record_manifest(&mut tx, manifest, by, at).await?;
        let mut seen = HashSet::new();
        let mut registered = 0;
        for (entry, pin) in manifest.terminals() {
            // Not trimmed: " ATM-1" beside "ATM-1" would be one serial here
            // and two to the format's one-key-per-serial rule.
            let serial = Serial::new(&entry.serial)?;
            bounded("model", &entry.model, 100)?;
            // The format allows a serial twice only with the same key.
            if !seen.insert(serial.as_str().to_owned()) {
                continue;
            }
            let new = vouch_for(&mut tx, &serial, pin, &entry.model, &doc.manifest_id, at).await?;
            if new {
                registered += 1;
            }
            let detail = serde_json::json!({
                "manifest": doc.manifest_id, "vendor": doc.vendor, "spki_pin": pin,
                "model": entry.model, "registered": new,
            });
            append(
                &mut tx,
                at,
                by.actor(),
                "manifest.vouch",
                serial.as_str(),
                &detail,
            )
            .await?;
        }
        let count = i64::try_from(seen.len()).unwrap_or(i64::MAX);
        sqlx::query("UPDATE manifests SET terminals = $1 WHERE id = $2")
            .bind(count)
            .bind(&doc.manifest_id)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({
            "vendor": doc.vendor, "issued_at": doc.issued_at, "terminals": count,
            "registered": registered, "file_sha256": manifest.file_sha256(),
        });
        append(
            &mut tx,
            at,
            by.actor(),
            "manifest.import",
            &doc.manifest_id,
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(Imported {
            manifest_id: doc.manifest_id.clone(),
            terminals: seen.len(),
            registered,
            unchanged: false,
        })
    }

    /// The imported manifests, newest first.
    pub async fn manifests(&self) -> Result<Vec<ManifestRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, vendor, issued_at, terminals, imported_at, imported_by FROM manifests \
             ORDER BY imported_at DESC, id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ManifestRecord {
                    id: r.try_get("id")?,
                    vendor: r.try_get("vendor")?,
                    issued_at: r.try_get("issued_at")?,
                    terminals: r.try_get("terminals")?,
                    imported_at: r.try_get("imported_at")?,
                    imported_by: r.try_get("imported_by")?,
                })
            })
            .collect()
    }
}

/// Records the manifest itself, once its vendor key is checked to be
/// the one registered now (it may have been removed since the check).
async fn record_manifest(
    tx: &mut Transaction<'static, Any>,
    manifest: &VerifiedManifest,
    by: &Changer,
    at: i64,
) -> Result<(), StoreError> {
    let doc = manifest.document();
    let key = sqlx::query("SELECT key_pin FROM vendors WHERE name = $1")
        .bind(&doc.vendor)
        .fetch_optional(&mut **tx)
        .await?;
    let key_pin: Option<String> = key.map(|r| r.try_get("key_pin")).transpose()?;
    if key_pin.as_deref() != Some(manifest.vendor_key().to_hex().as_str()) {
        return Err(StoreError::Conflict(format!(
            "vendor {}'s key changed or was removed while the manifest was checked; import it again",
            doc.vendor
        )));
    }
    sqlx::query(
        "INSERT INTO manifests (id, vendor, vendor_key_pin, issued_at, file_sha256, terminals, imported_at, imported_by) \
         VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
    )
    .bind(&doc.manifest_id)
    .bind(&doc.vendor)
    .bind(manifest.vendor_key().to_hex())
    .bind(&doc.issued_at)
    .bind(manifest.file_sha256())
    .bind(at)
    .bind(by.actor().name())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The answer to a re-import of the same file; `Conflict` for the same id
/// with other contents; `None` for a new manifest.
async fn already_imported(
    tx: &mut Transaction<'static, Any>,
    manifest: &VerifiedManifest,
) -> Result<Option<Imported>, StoreError> {
    let id = &manifest.document().manifest_id;
    let row = sqlx::query("SELECT file_sha256, terminals FROM manifests WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let sha: String = row.try_get("file_sha256")?;
    if sha != manifest.file_sha256() {
        return Err(StoreError::Conflict(format!(
            "manifest {id} was imported before with other contents; a vendor issues a changed manifest under a new id"
        )));
    }
    let terminals: i64 = row.try_get("terminals")?;
    Ok(Some(Imported {
        manifest_id: id.clone(),
        terminals: usize::try_from(terminals).unwrap_or(0),
        registered: 0,
        unchanged: true,
    }))
}

/// Records that `manifest_id` vouches for `serial` with `pin`, registering
/// the terminal if needed (returns whether it did). `Conflict` when an
/// earlier manifest vouches for the serial with another key, or for the
/// key with another serial.
async fn vouch_for(
    tx: &mut Transaction<'static, Any>,
    serial: &Serial,
    pin: &SpkiPin,
    model: &str,
    manifest_id: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let clash = sqlx::query(
        "SELECT serial, spki_pin, manifest_id FROM manifest_entries WHERE serial = $1 OR spki_pin = $2",
    )
    .bind(serial.as_str())
    .bind(pin.to_hex())
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = clash {
        let (s, p, m): (String, String, String) = (
            row.try_get("serial")?,
            row.try_get("spki_pin")?,
            row.try_get("manifest_id")?,
        );
        if s == serial.as_str() && p == pin.to_hex() {
            // An earlier manifest lists the same terminal with the same
            // key (a vendor re-issuing a larger list): nothing new.
            return Ok(false);
        }
        return Err(StoreError::Conflict(if s == serial.as_str() {
            format!("serial {serial} is already vouched for with another key (manifest {m})")
        } else {
            format!("key {pin} is already vouched for as serial {s} (manifest {m})")
        }));
    }
    let exists = sqlx::query("SELECT 1 AS one FROM terminals WHERE serial = $1")
        .bind(serial.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    if !exists {
        sqlx::query(
            "INSERT INTO terminals (serial, name, location, contact_name, contact_phone, state, created_at) \
             VALUES ($1, '', '', '', '', 'registered', $2)",
        )
        .bind(serial.as_str())
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("INSERT INTO manifest_entries (serial, spki_pin, model, manifest_id) VALUES ($1, $2, $3, $4)")
        .bind(serial.as_str())
        .bind(pin.to_hex())
        .bind(model)
        .bind(manifest_id)
        .execute(&mut **tx)
        .await?;
    Ok(!exists)
}

/// The entry that vouches for `serial` now: its manifest's vendor key is
/// still the registered one.
pub(crate) async fn vouch(
    tx: &mut Transaction<'static, Any>,
    serial: &Serial,
) -> Result<Option<Vouch>, StoreError> {
    let row = sqlx::query(
        "SELECT e.spki_pin, e.manifest_id, e.model, m.vendor FROM manifest_entries e \
         JOIN manifests m ON m.id = e.manifest_id \
         JOIN vendors v ON v.name = m.vendor AND v.key_pin = m.vendor_key_pin \
         WHERE e.serial = $1",
    )
    .bind(serial.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(Vouch {
            spki_pin: r.try_get("spki_pin")?,
            manifest_id: r.try_get("manifest_id")?,
            vendor: r.try_get("vendor")?,
            model: r.try_get("model")?,
        })
    })
    .transpose()
}
