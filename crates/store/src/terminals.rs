//! Terminals: registered by an operator before they may ask to pair,
//! paired to one certificate fingerprint, unpaired to break trust.

use std::fmt;
use std::time::SystemTime;

use sqlx::Row;

use pairgate_pki::TerminalFingerprint;

use crate::audit::append;
use crate::paired::bump_generation;
use crate::{Changer, Store, StoreError, TrustChange, millis};

/// The paired set as read: the terminals, and the rows that did not read.
#[derive(Clone, Debug, Default)]
pub struct PairedRows {
    /// Each paired terminal with its fingerprint.
    pub terminals: Vec<(TerminalFingerprint, Terminal)>,
    /// `serial: why` of each paired row that could not be read.
    pub unreadable: Vec<String>,
}

/// A terminal serial: 1 to 64 of `A-Z a-z 0-9 . _ -`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Serial(String);

impl Serial {
    /// Validates a serial.
    pub fn new(text: &str) -> Result<Self, StoreError> {
        let ok = (1..=64).contains(&text.len())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(StoreError::Invalid(format!(
                "invalid serial {text:?}: use 1 to 64 of A-Z a-z 0-9 . _ -"
            )))
        }
    }

    /// The serial text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Serial {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, StoreError> {
        Self::new(text)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a terminal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TerminalState {
    /// Known, never paired.
    Registered,
    /// Paired to a fingerprint.
    Paired,
    /// Was paired; trust was broken.
    Unpaired,
}

impl TerminalState {
    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Paired => "paired",
            Self::Unpaired => "unpaired",
        }
    }

    /// Reads a state name; unknown names are refused.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "registered" => Ok(Self::Registered),
            "paired" => Ok(Self::Paired),
            "unpaired" => Ok(Self::Unpaired),
            other => Err(StoreError::Invalid(format!(
                "unknown terminal state {other:?}: use registered, paired or unpaired"
            ))),
        }
    }
}

pub use pairgate_proto::cas::NewTerminal;

/// A terminal as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Terminal {
    /// Serial.
    pub serial: Serial,
    /// Display name.
    pub name: String,
    /// Location.
    pub location: String,
    /// Location contact.
    pub contact_name: String,
    /// Contact phone.
    pub contact_phone: String,
    /// State.
    pub state: TerminalState,
    /// Paired certificate fingerprint, when paired.
    pub paired_fingerprint: Option<TerminalFingerprint>,
    /// When paired (Unix ms).
    pub paired_at: Option<i64>,
    /// Who approved the pairing.
    pub paired_by: Option<String>,
    /// Last request seen at the master (Unix ms).
    pub last_seen_at: Option<i64>,
    /// Address of that request.
    pub last_seen_address: Option<String>,
    /// Firmware reported by the terminal.
    pub firmware: Option<String>,
    /// VPN profile handed to the terminal once paired.
    pub vpn_profile: String,
    /// When registered (Unix ms).
    pub created_at: i64,
    /// When it was suspended (Unix milliseconds): the pairing is kept
    /// and the master refuses it until it is resumed.
    pub suspended_at: Option<i64>,
    /// Who suspended it (an operator, or `rule:clone`).
    pub suspended_by: Option<String>,
    /// Its identity was seen used from two places at once.
    pub suspected_clone: bool,
    /// What raised the suspicion (JSON: addresses, times, counters).
    pub clone_evidence: Option<String>,
    /// A new key proven over the master and not used yet: served beside
    /// the paired one until its first use or `successor_until`.
    pub successor_fingerprint: Option<TerminalFingerprint>,
    /// Until when the paired key is served beside the successor (Unix ms).
    pub successor_until: Option<i64>,
}

/// The columns `terminal()` reads, as a literal so queries stay static.
macro_rules! terminal_columns {
    () => {
        "serial, name, location, contact_name, contact_phone, state, paired_fingerprint, \
         paired_at, paired_by, last_seen_at, last_seen_address, firmware, vpn_profile, created_at, \
         suspended_at, suspended_by, suspected_clone, clone_evidence, successor_fingerprint, \
         successor_until"
    };
}

/// The columns the row reader takes, for queries built elsewhere.
pub(crate) const COLUMNS: &str = terminal_columns!();

pub(crate) fn terminal(row: &sqlx::any::AnyRow) -> Result<Terminal, StoreError> {
    let serial: String = row.try_get("serial")?;
    let state: String = row.try_get("state")?;
    Ok(Terminal {
        serial: Serial::new(&serial)
            .map_err(|_| StoreError::Corrupt(format!("serial {serial:?}")))?,
        name: row.try_get("name")?,
        location: row.try_get("location")?,
        contact_name: row.try_get("contact_name")?,
        contact_phone: row.try_get("contact_phone")?,
        state: TerminalState::parse(&state)
            .map_err(|_| StoreError::Corrupt(format!("terminal state {state:?}")))?,
        paired_fingerprint: crate::parsed_opt(row, "paired_fingerprint", || {
            format!("paired fingerprint of {serial}")
        })?,
        paired_at: row.try_get("paired_at")?,
        paired_by: row.try_get("paired_by")?,
        last_seen_at: row.try_get("last_seen_at")?,
        last_seen_address: row.try_get("last_seen_address")?,
        firmware: row.try_get("firmware")?,
        vpn_profile: row.try_get("vpn_profile")?,
        created_at: row.try_get("created_at")?,
        suspended_at: row.try_get("suspended_at")?,
        suspended_by: row.try_get("suspended_by")?,
        suspected_clone: row.try_get::<i64, _>("suspected_clone")? != 0,
        clone_evidence: row.try_get("clone_evidence")?,
        successor_fingerprint: crate::parsed_opt(row, "successor_fingerprint", || {
            format!("successor fingerprint of {serial}")
        })?,
        successor_until: row.try_get("successor_until")?,
    })
}

/// A terminal by serial, on the pool or inside a transaction.
async fn terminal_by_serial<'e, E>(
    executor: E,
    serial: &Serial,
) -> Result<Option<Terminal>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(concat!(
        "SELECT ",
        terminal_columns!(),
        " FROM terminals WHERE serial = $1"
    ))
    .bind(serial.as_str())
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(terminal).transpose()
}

/// Refuses text over `max` characters or with control characters.
pub(crate) fn bounded(name: &str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.chars().count() > max || value.chars().any(hides_text) {
        return Err(StoreError::Invalid(format!(
            "{name} must be at most {max} characters, without control, bidirectional or zero-width characters"
        )));
    }
    Ok(())
}

/// Characters that make text show other than it reads: controls, the
/// bidirectional overrides, embeddings, isolates and marks, and the
/// zero-width ones (an operator compares names and serials by eye).
fn hides_text(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

impl Store {
    /// Registers a terminal so that it may ask to pair; audited.
    pub async fn register_terminal(
        &self,
        new: &NewTerminal,
        by: &Changer,
        now: SystemTime,
    ) -> Result<Terminal, StoreError> {
        let actor = by.actor();
        let serial = Serial::new(new.serial.trim())?;
        bounded("name", &new.name, 200)?;
        bounded("location", &new.location, 200)?;
        bounded("contact_name", &new.contact_name, 200)?;
        bounded("contact_phone", &new.contact_phone, 40)?;
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 AS one FROM terminals WHERE serial = $1")
            .bind(serial.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::AlreadyExists(format!("terminal {serial}")));
        }
        sqlx::query(
            "INSERT INTO terminals (serial, name, location, contact_name, contact_phone, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'registered', $6)",
        )
        .bind(serial.as_str())
        .bind(&new.name)
        .bind(&new.location)
        .bind(&new.contact_name)
        .bind(&new.contact_phone)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({
            "name": new.name, "location": new.location,
            "contact_name": new.contact_name, "contact_phone": new.contact_phone,
        });
        append(
            &mut tx,
            at,
            actor,
            "terminal.register",
            serial.as_str(),
            &detail,
        )
        .await?;
        tx.commit().await?;
        self.terminal(&serial)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("terminal {serial}")))
    }

    /// A terminal by serial, read inside a transaction.
    pub(crate) async fn terminal_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        serial: &Serial,
    ) -> Result<Option<Terminal>, StoreError> {
        terminal_by_serial(&mut **tx, serial).await
    }

    /// A terminal by serial.
    pub async fn terminal(&self, serial: &Serial) -> Result<Option<Terminal>, StoreError> {
        terminal_by_serial(&self.pool, serial).await
    }

    /// Every terminal, by serial.
    pub async fn terminals(&self) -> Result<Vec<Terminal>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            terminal_columns!(),
            " FROM terminals ORDER BY serial"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(terminal).collect()
    }

    /// The terminal paired with `fingerprint`, if any.
    pub async fn paired_terminal(
        &self,
        fingerprint: &TerminalFingerprint,
    ) -> Result<Option<Terminal>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            terminal_columns!(),
            " FROM terminals WHERE paired_fingerprint = $1 AND state = 'paired' AND suspended_at IS NULL"
        ))
        .bind(fingerprint.to_hex())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(terminal).transpose()
    }

    /// The terminal `serial` with its fingerprint while it is paired and
    /// not suspended (what the paired set holds for it), else `None`.
    pub async fn paired_terminal_by_serial(
        &self,
        serial: &Serial,
    ) -> Result<Option<Terminal>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            terminal_columns!(),
            " FROM terminals WHERE serial = $1 AND state = 'paired' \
             AND paired_fingerprint IS NOT NULL AND suspended_at IS NULL"
        ))
        .bind(serial.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(terminal).transpose()
    }

    /// Every paired terminal with its fingerprint. A row that does not
    /// read (a corrupt fingerprint, state or serial) is left out and
    /// named in [`PairedRows::unreadable`]: that terminal is refused, the
    /// others are not held hostage by it.
    pub async fn paired_terminals(&self) -> Result<PairedRows, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            terminal_columns!(),
            " FROM terminals WHERE state = 'paired' AND paired_fingerprint IS NOT NULL \
             AND suspended_at IS NULL"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out = PairedRows::default();
        for row in &rows {
            let read = terminal(row).and_then(|t| {
                let fingerprint = t
                    .paired_fingerprint
                    .ok_or_else(|| StoreError::Corrupt(format!("fingerprint of {}", t.serial)))?;
                Ok((fingerprint, t))
            });
            match read {
                Ok(pair) => out.terminals.push(pair),
                Err(e) => {
                    let serial: String = row.try_get("serial").unwrap_or_default();
                    out.unreadable.push(format!("{serial}: {e}"));
                }
            }
        }
        Ok(out)
    }

    /// The whole paired set: fingerprint and serial of every paired
    /// terminal.
    pub async fn paired_fingerprints(
        &self,
    ) -> Result<Vec<(TerminalFingerprint, Serial)>, StoreError> {
        Ok(self
            .paired_terminals()
            .await?
            .terminals
            .into_iter()
            .map(|(fingerprint, terminal)| (fingerprint, terminal.serial))
            .collect())
    }

    /// Breaks a terminal's trust: it is no longer paired, the paired-set
    /// generation moves on (and PostgreSQL notifies every instance), and
    /// the audit records the fingerprint it had.
    pub async fn unpair(
        &self,
        serial: &Serial,
        by: &TrustChange,
        now: SystemTime,
    ) -> Result<Terminal, StoreError> {
        let actor = by.actor();
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let Some(before) = self.terminal_in(&mut tx, serial).await? else {
            return Err(StoreError::NotFound(format!("terminal {serial}")));
        };
        if before.state != TerminalState::Paired {
            return Err(StoreError::Conflict(format!(
                "terminal {serial} is not paired"
            )));
        }
        sqlx::query(
            "UPDATE terminals SET state = 'unpaired', paired_fingerprint = NULL, suspended_at = NULL, \
             suspended_by = NULL, suspected_clone = 0, clone_evidence = NULL, heartbeat_counter = NULL, \
             successor_fingerprint = NULL, successor_until = NULL WHERE serial = $1",
        )
        .bind(serial.as_str())
        .execute(&mut *tx)
        .await?;
        crate::rekey::retire_lineage(&mut tx, serial, at).await?;
        crate::vpn_credentials::revoke_in(&mut tx, serial, "unpair", actor, at, true).await?;
        append(
            &mut tx,
            at,
            actor,
            "terminal.unpair",
            serial.as_str(),
            &serde_json::json!({
                "fingerprint": before.paired_fingerprint,
                "successor_fingerprint": before.successor_fingerprint,
            }),
        )
        .await?;
        bump_generation(&mut tx, self.backend, serial.as_str(), at).await?;
        tx.commit().await?;
        self.terminal(serial)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("terminal {serial}")))
    }
}
