//! Suspension and clone detection. A suspended terminal keeps its pairing
//! but the master refuses it (its connections close, as on unpair) until
//! an operator with a fresh second factor resumes it. The master reports
//! what looks like one identity in two places (live connections from two
//! addresses at once, a heartbeat counter going backwards); the first
//! report marks the terminal `suspected_clone` with its evidence and, when
//! the server says so, suspends it. Each change is one transaction with
//! its audit record.

use std::time::SystemTime;

use pairgate_pki::TerminalFingerprint;
use sqlx::Row;

use crate::audit::append;
use crate::paired::bump_generation;
use crate::{
    Actor, Changer, Serial, Store, StoreError, Terminal, TerminalState, TrustChange, millis,
};

/// What the server does when it suspects a clone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CloneAction {
    /// Mark the terminal and alert operators; keep serving it (default).
    #[default]
    Alert,
    /// Also suspend it: the master refuses every copy until an operator
    /// resumes it.
    Suspend,
}

/// What a heartbeat did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heartbeat {
    /// Recorded.
    Recorded,
    /// Recorded, but its counter was not above the highest seen: a copy
    /// restored beside the original, or a replay.
    CounterBack {
        /// The highest counter seen before.
        highest: i64,
        /// The counter this heartbeat carried.
        got: i64,
    },
    /// The fingerprint is not (or no longer) the serial's paired one.
    NotPaired,
}

impl Store {
    /// Suspends a paired terminal: the master refuses it from the next
    /// request and closes its connections; the pairing is kept.
    pub async fn suspend_terminal(
        &self,
        serial: &Serial,
        by: &Changer,
        now: SystemTime,
    ) -> Result<Terminal, StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let before = self.paired_in(&mut tx, serial).await?;
        if before.suspended_at.is_some() {
            return Err(StoreError::Conflict(format!(
                "terminal {serial} is already suspended"
            )));
        }
        suspend(&mut tx, serial, by.actor(), at).await?;
        let detail = serde_json::json!({ "fingerprint": before.paired_fingerprint });
        append(
            &mut tx,
            at,
            by.actor(),
            "terminal.suspend",
            serial.as_str(),
            &detail,
        )
        .await?;
        bump_generation(&mut tx, self.backend, serial.as_str(), at).await?;
        tx.commit().await?;
        self.reread(serial).await
    }

    /// Resumes a suspended terminal (a fresh second factor) and clears a
    /// clone suspicion with its counter: the master serves it again.
    pub async fn resume_terminal(
        &self,
        serial: &Serial,
        by: &TrustChange,
        now: SystemTime,
    ) -> Result<Terminal, StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let before = self.paired_in(&mut tx, serial).await?;
        if before.suspended_at.is_none() && !before.suspected_clone {
            return Err(StoreError::Conflict(format!(
                "terminal {serial} is neither suspended nor a suspected clone"
            )));
        }
        sqlx::query(
            "UPDATE terminals SET suspended_at = NULL, suspended_by = NULL, suspected_clone = 0, \
             clone_evidence = NULL, heartbeat_counter = NULL WHERE serial = $1",
        )
        .bind(serial.as_str())
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({
            "fingerprint": before.paired_fingerprint, "was_suspended": before.suspended_at.is_some(),
            "was_suspected_clone": before.suspected_clone,
        });
        append(
            &mut tx,
            at,
            by.actor(),
            "terminal.resume",
            serial.as_str(),
            &detail,
        )
        .await?;
        bump_generation(&mut tx, self.backend, serial.as_str(), at).await?;
        tx.commit().await?;
        self.reread(serial).await
    }

    /// The master saw `fingerprint` used from two places: marks its
    /// terminal `suspected_clone` with `evidence` (and suspends it when
    /// `action` says so). Only the first report writes; later ones until
    /// an operator resumes it change nothing. Returns the terminal when
    /// this report marked it.
    pub async fn suspect_clone(
        &self,
        fingerprint: &TerminalFingerprint,
        evidence: &serde_json::Value,
        action: CloneAction,
        now: SystemTime,
    ) -> Result<Option<Terminal>, StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT serial FROM terminals WHERE paired_fingerprint = $1 AND state = 'paired' \
             AND suspected_clone = 0",
        )
        .bind(fingerprint.to_hex())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let serial = Serial::new(&row.try_get::<String, _>("serial")?)?;
        sqlx::query(
            "UPDATE terminals SET suspected_clone = 1, clone_evidence = $1 WHERE serial = $2",
        )
        .bind(evidence.to_string())
        .bind(serial.as_str())
        .execute(&mut *tx)
        .await?;
        let master = Actor::new("master");
        append(
            &mut tx,
            at,
            &master,
            "terminal.suspected_clone",
            serial.as_str(),
            evidence,
        )
        .await?;
        if action == CloneAction::Suspend {
            let rule = Actor::new("rule:clone");
            suspend(&mut tx, &serial, &rule, at).await?;
            let detail =
                serde_json::json!({ "fingerprint": fingerprint, "reason": "suspected_clone" });
            append(
                &mut tx,
                at,
                &rule,
                "terminal.suspend",
                serial.as_str(),
                &detail,
            )
            .await?;
            bump_generation(&mut tx, self.backend, serial.as_str(), at).await?;
        }
        tx.commit().await?;
        self.reread(&serial).await.map(Some)
    }

    /// Records a heartbeat of `serial`'s paired `fingerprint` from
    /// `address`: last seen, firmware, and the terminal's own `counter`,
    /// which must rise from one heartbeat to the next.
    pub async fn record_heartbeat(
        &self,
        serial: &Serial,
        fingerprint: &TerminalFingerprint,
        (address, firmware, counter): (&str, Option<&str>, Option<u64>),
        now: SystemTime,
    ) -> Result<Heartbeat, StoreError> {
        if let Some(firmware) = firmware {
            crate::terminals::bounded("firmware", firmware, 100)?;
        }
        let counter = counter
            .map(|c| {
                i64::try_from(c).map_err(|_| StoreError::Invalid("counter is too large".into()))
            })
            .transpose()?;
        const SEEN: &str = "UPDATE terminals SET last_seen_at = $1, last_seen_address = $2, \
             firmware = COALESCE($3, firmware) WHERE serial = $4 AND paired_fingerprint = $5 AND state = 'paired'";
        let seen = || {
            sqlx::query(SEEN)
                .bind(millis(now))
                .bind(address)
                .bind(firmware)
                .bind(serial.as_str())
                .bind(fingerprint.to_hex())
        };
        let Some(counter) = counter else {
            let done = seen().execute(&self.pool).await?;
            return Ok(if done.rows_affected() == 1 {
                Heartbeat::Recorded
            } else {
                Heartbeat::NotPaired
            });
        };
        let rose = sqlx::query(
            "UPDATE terminals SET last_seen_at = $1, last_seen_address = $2, firmware = COALESCE($3, firmware), \
             heartbeat_counter = $4 WHERE serial = $5 AND paired_fingerprint = $6 AND state = 'paired' \
             AND (heartbeat_counter IS NULL OR heartbeat_counter < $4)",
        )
        .bind(millis(now))
        .bind(address)
        .bind(firmware)
        .bind(counter)
        .bind(serial.as_str())
        .bind(fingerprint.to_hex())
        .execute(&self.pool)
        .await?;
        if rose.rows_affected() == 1 {
            return Ok(Heartbeat::Recorded);
        }
        // Not above the highest seen, or not paired at all.
        if seen().execute(&self.pool).await?.rows_affected() == 0 {
            return Ok(Heartbeat::NotPaired);
        }
        let row = sqlx::query("SELECT heartbeat_counter FROM terminals WHERE serial = $1")
            .bind(serial.as_str())
            .fetch_one(&self.pool)
            .await?;
        let highest: Option<i64> = row.try_get("heartbeat_counter")?;
        Ok(Heartbeat::CounterBack {
            highest: highest.unwrap_or(counter),
            got: counter,
        })
    }

    /// The serial's terminal, which must be paired, locked in `tx`.
    async fn paired_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        serial: &Serial,
    ) -> Result<Terminal, StoreError> {
        let Some(t) = self.terminal_in(tx, serial).await? else {
            return Err(StoreError::NotFound(format!("terminal {serial}")));
        };
        if t.state != TerminalState::Paired {
            return Err(StoreError::Conflict(format!(
                "terminal {serial} is not paired"
            )));
        }
        Ok(t)
    }

    async fn reread(&self, serial: &Serial) -> Result<Terminal, StoreError> {
        self.terminal(serial)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("terminal {serial}")))
    }
}

async fn suspend(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    serial: &Serial,
    by: &Actor,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE terminals SET suspended_at = $1, suspended_by = $2 WHERE serial = $3")
        .bind(at)
        .bind(by.name())
        .bind(serial.as_str())
        .execute(&mut **tx)
        .await?;
    // The VPN server must not admit what the master refuses.
    crate::vpn_credentials::revoke_in(tx, serial, "suspend", by, at, false).await
}
