//! The second factor at the moments that matter (approve, unpair, token
//! creation, operator changes, the CAS login step): a fresh TOTP code,
//! or a recovery code at login, checked against a lock kept per operator
//! in the database, so that every server instance sees the same count.
//!
//! Every wrong code is an audit record. After [`StepUpLimits::failures`]
//! wrong codes within [`StepUpLimits::window`] that operator's step-ups
//! are refused, the right code included, until the oldest failure leaves
//! the window or an admin clears the lock. A stolen API token therefore
//! buys five guesses at a one-in-a-million code per window, not 3,740 a
//! second.

use std::time::{Duration, SystemTime};

use sqlx::{Any, Row, Transaction};
use zeroize::Zeroizing;

use crate::audit::append;
use crate::operators::{totp, totp_step};
use crate::{Actor, AdminAction, Role, SecondFactor, Store, StoreError, millis};

/// How many wrong second-factor codes lock an operator's step-ups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepUpLimits {
    /// Wrong codes allowed within the window; the next attempt is refused.
    pub failures: u32,
    /// The sliding window.
    pub window: Duration,
}

impl Default for StepUpLimits {
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// An operator's step-up lock, as an admin sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepUpLock {
    /// Wrong codes within the window.
    pub failures: i64,
    /// Whether step-ups are refused now.
    pub locked: bool,
    /// When the lock lifts by itself (Unix ms), if locked.
    pub until: Option<i64>,
}

fn window_ms(limits: StepUpLimits) -> i64 {
    i64::try_from(limits.window.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// The same store with other step-up limits (at least one failure).
    pub fn with_step_up_limits(mut self, limits: StepUpLimits) -> Self {
        self.step_up = StepUpLimits {
            failures: limits.failures.max(1),
            window: limits.window,
        };
        self
    }

    /// The failures of `username` within the window at `at`, in `tx`;
    /// `RateLimited` (nothing written) when they reach the limit.
    async fn step_up_allowed(
        &self,
        tx: &mut Transaction<'static, Any>,
        username: &str,
        at: i64,
    ) -> Result<i64, StoreError> {
        let lock = self.lock_in(tx, username, at).await?;
        if let Some(until) = lock.until {
            let minutes = (until.saturating_sub(at) / 60_000).saturating_add(1);
            return Err(StoreError::RateLimited(format!(
                "{username}: {} wrong second-factor codes; step-ups are refused for {minutes} more minute(s) or until an admin clears the lock",
                lock.failures
            )));
        }
        Ok(lock.failures)
    }

    async fn lock_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        username: &str,
        at: i64,
    ) -> Result<StepUpLock, StoreError> {
        let since = at.saturating_sub(window_ms(self.step_up));
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(at) AS oldest FROM step_up_failures WHERE username = $1 AND at > $2",
        )
        .bind(username)
        .bind(since)
        .fetch_one(&mut **tx)
        .await?;
        let failures: i64 = row.try_get("n")?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        let locked = failures >= i64::from(self.step_up.failures);
        Ok(StepUpLock {
            failures,
            locked,
            until: oldest
                .filter(|_| locked)
                .map(|o| o.saturating_add(window_ms(self.step_up))),
        })
    }

    /// Records a wrong code in `tx` and commits it: the failure counts even
    /// though the caller's action is refused. Audited, without the code.
    async fn step_up_failed(
        &self,
        mut tx: Transaction<'static, Any>,
        username: &str,
        before: i64,
        reason: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM step_up_failures WHERE username = $1 AND at <= $2")
            .bind(username)
            .bind(at.saturating_sub(window_ms(self.step_up)))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO step_up_failures (username, at) VALUES ($1, $2)")
            .bind(username)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        let failures = before.saturating_add(1);
        let limit = i64::from(self.step_up.failures);
        let actor = Actor::new(username);
        append(
            &mut tx,
            at,
            &actor,
            "operator.step_up_failed",
            username,
            &serde_json::json!({ "reason": reason, "failures": failures, "limit": limit }),
        )
        .await?;
        if failures == limit {
            append(
                &mut tx,
                at,
                &actor,
                "operator.step_up_locked",
                username,
                &serde_json::json!({ "window_secs": self.step_up.window.as_secs() }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Checks a fresh TOTP code of `username` and consumes its time step,
    /// so the same code (or an older one) is refused afterwards. Refused
    /// for unknown or disabled operators, accounts without TOTP, and while
    /// the operator's step-up lock holds (`RateLimited`). A wrong or
    /// replayed code is counted and audited.
    pub async fn verify_second_factor(
        &self,
        username: &str,
        code: &str,
        now: SystemTime,
    ) -> Result<SecondFactor, StoreError> {
        let refused = |why: &str| StoreError::Unauthorized(format!("{username}: {why}"));
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refused("a TOTP code is 6 digits"));
        }
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        // Locks the row (PostgreSQL) so two checks of one code cannot both pass.
        let row = sqlx::query(
            "UPDATE operators SET totp_last_step = totp_last_step WHERE username = $1 \
             RETURNING role, totp_secret, totp_last_step, disabled",
        )
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(refused("no such operator"));
        };
        if row.try_get::<i64, _>("disabled")? != 0 {
            return Err(refused("the account is disabled"));
        }
        let failures = self.step_up_allowed(&mut tx, username, at).await?;
        let role: String = row.try_get("role")?;
        let role: Role = role
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("operator role {role:?}")))?;
        let secret: Option<String> = row.try_get("totp_secret")?;
        let Some(secret) = secret.map(Zeroizing::new) else {
            return Err(refused("two-factor authentication is not set up"));
        };
        let raw = totp_rs::Secret::Encoded(secret.to_string())
            .to_bytes()
            .map_err(|_| StoreError::Corrupt(format!("TOTP secret of {username}")))?;
        let totp = totp(&Zeroizing::new(raw), username)?;
        let last: Option<i64> = row.try_get("totp_last_step")?;
        let Some(step) = totp_step(&totp, code, now) else {
            self.step_up_failed(tx, username, failures, "wrong code", at)
                .await?;
            return Err(refused("wrong TOTP code"));
        };
        if last.is_some_and(|last| step <= last) {
            self.step_up_failed(tx, username, failures, "code already used", at)
                .await?;
            return Err(StoreError::Replayed(format!(
                "{username}: this TOTP code was already used; wait for the next one"
            )));
        }
        sqlx::query("UPDATE operators SET totp_last_step = $1 WHERE username = $2")
            .bind(step)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        if failures > 0 {
            sqlx::query("DELETE FROM step_up_failures WHERE username = $1")
                .bind(username)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(SecondFactor {
            username: username.to_owned(),
            role,
        })
    }

    /// Uses up one recovery code of `username` in place of a TOTP code at
    /// login; audited. Refused when wrong or already used (counted and
    /// audited like a wrong TOTP code) and while the step-up lock holds.
    /// Returns how many codes are left.
    pub async fn use_recovery_code(
        &self,
        username: &str,
        code: &str,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        let hash = crate::accounts::recovery_code_hash(code);
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let known = sqlx::query("SELECT disabled FROM operators WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?;
        let refused =
            || StoreError::Unauthorized(format!("{username}: wrong or used recovery code"));
        match known {
            Some(row) if row.try_get::<i64, _>("disabled")? == 0 => {}
            _ => return Err(refused()),
        }
        let failures = self.step_up_allowed(&mut tx, username, at).await?;
        let used = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE username = $2 AND code_hash = $3 AND used_at IS NULL \
             RETURNING code_hash",
        )
        .bind(at)
        .bind(username)
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        if used.is_none() {
            self.step_up_failed(tx, username, failures, "wrong recovery code", at)
                .await?;
            return Err(refused());
        }
        let left = sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE username = $1 AND used_at IS NULL",
        )
        .bind(username)
        .fetch_one(&mut *tx)
        .await?
        .try_get::<i64, _>("n")?;
        append(
            &mut tx,
            at,
            &Actor::new(username),
            "operator.recovery_code",
            username,
            &serde_json::json!({ "left": left }),
        )
        .await?;
        sqlx::query("DELETE FROM step_up_failures WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(usize::try_from(left).unwrap_or(0))
    }

    /// `username`'s step-up lock at `now`.
    pub async fn step_up_lock(
        &self,
        username: &str,
        now: SystemTime,
    ) -> Result<StepUpLock, StoreError> {
        let mut tx = self.begin_write().await?;
        let lock = self.lock_in(&mut tx, username, millis(now)).await?;
        tx.rollback().await?;
        Ok(lock)
    }

    /// Clears `username`'s step-up failures (an admin, after checking
    /// with the operator); audited. `NotFound` for an unknown operator.
    pub async fn clear_step_up_lock(
        &self,
        username: &str,
        by: &AdminAction,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        crate::operator_admin::lock_operator(&mut tx, username).await?;
        let cleared = sqlx::query("DELETE FROM step_up_failures WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        append(
            &mut tx,
            at,
            by.actor(),
            "operator.step_up_cleared",
            username,
            &serde_json::json!({ "failures": cleared }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
