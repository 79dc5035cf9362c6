//! What the instances of a cluster share through the store besides the
//! data: the pin of the one server identity they all present, and the
//! attempt counters behind the rate limits, so that N instances allow an
//! attacker no more attempts than one. Also what monitoring asks of the
//! store (a ping, the open pairing requests).
//!
//! Counters use fixed windows: a row per (scope, subject) holds the
//! window's start and its count, and the first attempt after the window
//! starts a new one. [`Store::count_attempt`] is one upsert, atomic on
//! both backends, so two instances counting at once never lose a count.

use std::time::{Duration, SystemTime};

use pairgate_pki::SpkiPin;
use sqlx::Row;

use crate::audit::append;
use crate::{Actor, Store, StoreError, millis};

/// What an attempt counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptScope {
    /// Gate requests naming a serial the store does not know, per source
    /// address.
    UnknownSerialAddress,
    /// Failed CAS sign-ins, per account and source address (so an
    /// attacker elsewhere cannot lock an operator out).
    LoginAccountAddress,
    /// Failed CAS sign-ins, per source address.
    LoginAddress,
}

impl AttemptScope {
    fn as_str(self) -> &'static str {
        match self {
            Self::UnknownSerialAddress => "unknown_serial_address",
            Self::LoginAccountAddress => "login_account_address",
            Self::LoginAddress => "login_address",
        }
    }
}

/// Unix ms of `window` before `now`: a window that started then or
/// earlier is over.
fn cut(now: SystemTime, window: Duration) -> i64 {
    millis(now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH))
}

/// A counter's current window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempts {
    /// Attempts in the window.
    pub count: u64,
    /// When the window ends and the count starts again.
    pub resets_at: SystemTime,
}

impl Attempts {
    fn of(row: &sqlx::any::AnyRow, window: Duration) -> Result<Self, StoreError> {
        let count: i64 = row.try_get("count")?;
        let start: i64 = row.try_get("window_start")?;
        let start =
            SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(start).unwrap_or(0));
        Ok(Self {
            count: u64::try_from(count).unwrap_or(0),
            resets_at: start + window,
        })
    }
}

impl Store {
    /// One round trip to the database: whether it answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").fetch_one(self.pool()).await?;
        Ok(())
    }

    /// Pairing requests open (awaiting the reveal or a decision) and not
    /// expired at `now`: a gauge for monitoring.
    pub async fn open_pairing_requests(&self, now: SystemTime) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM pairing_requests \
             WHERE state IN ('awaiting_reveal', 'pending') AND expires_at > $1",
        )
        .bind(millis(now))
        .fetch_one(self.pool())
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The pin of the server identity recorded by the first instance, if
    /// any.
    pub async fn recorded_identity(&self) -> Result<Option<SpkiPin>, StoreError> {
        recorded_identity_in(self.pool()).await
    }

    /// Records `pin` as the server identity, audited, when none is
    /// recorded; the same pin again changes nothing; another pin is a
    /// [`StoreError::Conflict`] (an instance with a different key must
    /// not serve).
    pub async fn record_identity(
        &self,
        pin: SpkiPin,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let at = millis(now);
        // Two first instances at once: the row's key decides, so the one
        // that inserts second finds the other's pin instead of an error.
        let inserted = sqlx::query(
            "INSERT INTO server_identity (id, pin, recorded_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(pin.to_hex())
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let recorded: String = sqlx::query("SELECT pin FROM server_identity WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?
                .try_get("pin")?;
            if recorded == pin.to_hex() {
                return Ok(());
            }
            return Err(StoreError::Conflict(format!(
                "the store's server identity is {recorded}, not {pin}"
            )));
        }
        crate::rotations::remember_identity(&mut tx, &pin.to_hex(), at).await?;
        append(
            &mut tx,
            at,
            actor,
            "server.identity_recorded",
            &pin.to_hex(),
            &serde_json::json!({ "pin": pin.to_hex() }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audits an event of the server identity (`server.identity_exported`,
    /// `server.identity_imported`, `server.certificate_installed`) with its
    /// pin and `detail` (a JSON object; the pin is added).
    pub async fn audit_identity_event(
        &self,
        action: &str,
        pin: SpkiPin,
        mut detail: serde_json::Value,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(map) = detail.as_object_mut() {
            map.insert("pin".into(), pin.to_hex().into());
        }
        append(&mut tx, millis(now), actor, action, &pin.to_hex(), &detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Counts one attempt of `scope` by `subject` in its window of
    /// `window`, and returns the window including it.
    pub async fn count_attempt(
        &self,
        scope: AttemptScope,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Attempts, StoreError> {
        let at = millis(now);
        let expired = cut(now, window);
        let row = sqlx::query(
            "INSERT INTO attempt_counters (scope, subject, window_start, count) \
             VALUES ($1, $2, $3, 1) \
             ON CONFLICT (scope, subject) DO UPDATE SET \
             count = CASE WHEN attempt_counters.window_start <= $4 THEN 1 \
                          ELSE attempt_counters.count + 1 END, \
             window_start = CASE WHEN attempt_counters.window_start <= $4 THEN $3 \
                                 ELSE attempt_counters.window_start END \
             RETURNING count, window_start",
        )
        .bind(scope.as_str())
        .bind(subject)
        .bind(at)
        .bind(expired)
        .fetch_one(self.pool())
        .await?;
        Attempts::of(&row, window)
    }

    /// The attempts of `scope` by `subject` in the current window.
    pub async fn attempts(
        &self,
        scope: AttemptScope,
        subject: &str,
        window: Duration,
        now: SystemTime,
    ) -> Result<Attempts, StoreError> {
        let expired = cut(now, window);
        sqlx::query(
            "SELECT count, window_start FROM attempt_counters \
             WHERE scope = $1 AND subject = $2 AND window_start > $3",
        )
        .bind(scope.as_str())
        .bind(subject)
        .bind(expired)
        .fetch_optional(self.pool())
        .await?
        .map_or(
            Ok(Attempts {
                count: 0,
                resets_at: now,
            }),
            |row| Attempts::of(&row, window),
        )
    }

    /// Forgets the attempts of `scope` by `subject` (a successful sign-in
    /// clears its account's failures).
    pub async fn clear_attempts(
        &self,
        scope: AttemptScope,
        subject: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM attempt_counters WHERE scope = $1 AND subject = $2")
            .bind(scope.as_str())
            .bind(subject)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes counters whose window started more than `longest` ago (no
    /// limit's window is longer); returns how many.
    pub async fn purge_attempts(
        &self,
        longest: Duration,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        let expired = cut(now, longest);
        Ok(
            sqlx::query("DELETE FROM attempt_counters WHERE window_start <= $1")
                .bind(expired)
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }
}

/// The recorded server identity, read with `executor`.
pub(crate) async fn recorded_identity_in<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
) -> Result<Option<SpkiPin>, StoreError> {
    sqlx::query("SELECT pin FROM server_identity WHERE id = 1")
        .fetch_optional(executor)
        .await?
        .map(|row| crate::parsed(&row, "pin", || "recorded server identity".to_owned()))
        .transpose()
}
