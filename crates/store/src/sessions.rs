//! CAS sessions and API tokens. Both are random secrets handed out once
//! and stored only as SHA-256 hashes. A session moves through stages
//! (forced password change → TOTP enrolment → TOTP check → full) and ends
//! after an idle or an absolute timeout; a token belongs to an operator
//! and acts with that operator's current role until it expires or is
//! revoked (by hand, or with every other token of its operator when their
//! password changes, their two-factor is reset or they are disabled).
//! Tokens are made only behind a fresh second factor, or by `pairgate
//! admin` on the server.

use std::time::{Duration, SystemTime};

use sqlx::Row;
use zeroize::Zeroizing;

use crate::accounts::secret_hash;
use crate::audit::append;
use crate::operators::random_bytes;
use crate::{Actor, AdminAction, Operator, SecondFactor, Store, StoreError, millis};

/// How far a session got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStage {
    /// Password checked; the one-time password must be changed.
    PasswordChange,
    /// Password checked; TOTP must be enrolled.
    Enrol,
    /// Password checked; a TOTP (or recovery) code is due.
    Totp,
    /// Signed in.
    Full,
}

impl SessionStage {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordChange => "password_change",
            Self::Enrol => "enrol",
            Self::Totp => "totp",
            Self::Full => "full",
        }
    }

    /// The stage after `step` succeeded at this stage, for `operator` as
    /// stored now; `None` when the step does not belong to this stage
    /// (the caller refuses it). The whole login machine is this table.
    pub fn after(self, step: SessionStep, operator: &Operator) -> Option<Self> {
        match (self, step) {
            // A forced change proves the password again; the second factor
            // (or its enrolment) is still due.
            (Self::PasswordChange, SessionStep::PasswordChanged) => {
                Some(if operator.totp_enabled {
                    Self::Totp
                } else {
                    Self::Enrol
                })
            }
            (Self::Full, SessionStep::PasswordChanged)
            | (Self::Enrol, SessionStep::Enrolled)
            | (Self::Totp, SessionStep::SecondFactorPassed) => Some(Self::Full),
            _ => None,
        }
    }

    /// The stage a session starts at once `operator`'s password was
    /// checked at login.
    pub fn next_for(operator: &Operator) -> Self {
        if operator.must_change_password {
            Self::PasswordChange
        } else if !operator.totp_enabled {
            Self::Enrol
        } else {
            Self::Totp
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "password_change" => Ok(Self::PasswordChange),
            "enrol" => Ok(Self::Enrol),
            "totp" => Ok(Self::Totp),
            "full" => Ok(Self::Full),
            other => Err(StoreError::Corrupt(format!("session stage {other:?}"))),
        }
    }
}

/// A step a session completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStep {
    /// The password was changed (forced, or at will once signed in).
    PasswordChanged,
    /// TOTP enrolment was confirmed with a first code.
    Enrolled,
    /// A TOTP or recovery code was accepted.
    SecondFactorPassed,
}

/// Session lifetimes.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// Ends after this long without a request.
    pub idle: Duration,
    /// Ends this long after login, whatever happens.
    pub absolute: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
        }
    }
}

/// A live session.
#[derive(Clone, Debug)]
pub struct Session {
    /// The operator, as stored now.
    pub operator: Operator,
    /// How far it got.
    pub stage: SessionStage,
    /// The CSRF token its forms carry.
    pub csrf: String,
    /// Login time (Unix ms).
    pub created_at: i64,
}

/// An API token's record (never the token).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ApiToken {
    /// Public id (the token's prefix).
    pub id: String,
    /// Its operator.
    pub username: String,
    /// What it is for.
    pub name: String,
    /// Created (Unix ms).
    pub created_at: i64,
    /// Last used (Unix ms, updated at most once a minute).
    pub last_used_at: Option<i64>,
    /// Revoked (Unix ms).
    pub revoked_at: Option<i64>,
    /// Stops working at (Unix ms).
    pub expires_at: i64,
}

/// How long new API tokens work unless the server says otherwise.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 86_400);

/// Revokes every active token of `username` in `tx`; how many.
pub(crate) async fn revoke_tokens_of(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    username: &str,
    at: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE api_tokens SET revoked_at = $1 WHERE username = $2 AND revoked_at IS NULL",
    )
    .bind(at)
    .bind(username)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// Token prefix, so leaked tokens are recognisable by secret scanners.
const TOKEN_PREFIX: &str = "pgt_";
/// How often `last_seen_at` / `last_used_at` are written.
const TOUCH_EVERY_MS: i64 = 60_000;

fn random_hex<const N: usize>() -> Zeroizing<String> {
    Zeroizing::new(hex::encode(random_bytes::<N>()))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn api_token(row: &sqlx::any::AnyRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.unwrap_or(0),
    })
}

impl Store {
    /// Starts a session for `operator` (whose password was just checked)
    /// at `stage`; returns the secret cookie value, shown once.
    pub async fn create_session(
        &self,
        operator: &Operator,
        stage: SessionStage,
        address: &str,
        now: SystemTime,
    ) -> Result<Zeroizing<String>, StoreError> {
        let token = random_hex::<32>();
        let csrf = random_hex::<32>();
        let at = millis(now);
        sqlx::query(
            "INSERT INTO sessions (token_hash, username, stage, csrf, address, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(secret_hash(&token))
        .bind(&operator.username)
        .bind(stage.as_str())
        .bind(csrf.as_str())
        .bind(address.chars().take(128).collect::<String>())
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// The live session for a cookie value, touched; `None` (and the
    /// session deleted) when unknown, idle too long, too old, or its
    /// operator is disabled.
    pub async fn session(
        &self,
        token: &str,
        limits: SessionLimits,
        now: SystemTime,
    ) -> Result<Option<Session>, StoreError> {
        let hash = secret_hash(token);
        let row = sqlx::query(
            "SELECT username, stage, csrf, created_at, last_seen_at FROM sessions WHERE token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let at = millis(now);
        let created_at: i64 = row.try_get("created_at")?;
        let last_seen_at: i64 = row.try_get("last_seen_at")?;
        let username: String = row.try_get("username")?;
        let operator = self.operator(&username).await?;
        let expired = at.saturating_sub(last_seen_at) > ms(limits.idle)
            || at.saturating_sub(created_at) > ms(limits.absolute);
        let Some(operator) = operator.filter(|o| !o.disabled && !expired) else {
            self.end_session(token).await?;
            return Ok(None);
        };
        if at.saturating_sub(last_seen_at) > TOUCH_EVERY_MS {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(at)
                .bind(&hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Session {
            operator,
            stage: SessionStage::parse(&row.try_get::<String, _>("stage")?)?,
            csrf: row.try_get("csrf")?,
            created_at,
        }))
    }

    /// Moves a session to `stage` and gives it a new secret (the old
    /// cookie value stops working), returned once.
    pub async fn advance_session(
        &self,
        token: &str,
        stage: SessionStage,
    ) -> Result<Zeroizing<String>, StoreError> {
        let fresh = random_hex::<32>();
        let done =
            sqlx::query("UPDATE sessions SET stage = $1, token_hash = $2 WHERE token_hash = $3")
                .bind(stage.as_str())
                .bind(secret_hash(&fresh))
                .bind(secret_hash(token))
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("session".into()));
        }
        Ok(fresh)
    }

    /// Ends a session (logout).
    pub async fn end_session(&self, token: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(secret_hash(token))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends every session of `username` but the one with `keep`.
    pub async fn end_other_sessions(&self, username: &str, keep: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE username = $1 AND token_hash <> $2")
            .bind(username)
            .bind(secret_hash(keep))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The same store giving new API tokens `lifetime`.
    pub fn with_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Creates an API token for the operator who just passed `factor`;
    /// audited. Returns the record and the token, shown once.
    pub async fn create_api_token(
        &self,
        factor: &SecondFactor,
        name: &str,
        now: SystemTime,
    ) -> Result<(ApiToken, Zeroizing<String>), StoreError> {
        let actor = factor.actor();
        self.insert_api_token(actor.name(), name, &actor, now).await
    }

    /// Creates an API token for `username` on an admin's authority;
    /// audited. Returns the record and the token, shown once.
    pub async fn create_api_token_for(
        &self,
        username: &str,
        name: &str,
        by: &AdminAction,
        now: SystemTime,
    ) -> Result<(ApiToken, Zeroizing<String>), StoreError> {
        self.insert_api_token(username, name, by.actor(), now).await
    }

    async fn insert_api_token(
        &self,
        username: &str,
        name: &str,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<(ApiToken, Zeroizing<String>), StoreError> {
        let name = name.trim().to_owned();
        crate::terminals::bounded("token name", &name, 64)?;
        if name.is_empty() {
            return Err(StoreError::Invalid("a token needs a name".into()));
        }
        let id = hex::encode(random_bytes::<8>());
        let secret = random_hex::<32>();
        let token = Zeroizing::new(format!("{TOKEN_PREFIX}{id}_{}", secret.as_str()));
        let at = millis(now);
        let expires_at = at.saturating_add(ms(self.token_lifetime));
        let mut tx = self.begin_write().await?;
        let operator = sqlx::query("SELECT disabled FROM operators WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("operator {username}")))?;
        if operator.try_get::<i64, _>("disabled")? != 0 {
            return Err(StoreError::Forbidden(format!("{username} is disabled")));
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, username, name, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(username)
        .bind(&name)
        .bind(secret_hash(&token))
        .bind(at)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        append(
            &mut tx,
            at,
            actor,
            "api_token.create",
            username,
            &serde_json::json!({ "id": id, "name": name, "expires_at": expires_at }),
        )
        .await?;
        tx.commit().await?;
        let record = ApiToken {
            id,
            username: username.to_owned(),
            name,
            created_at: at,
            last_used_at: None,
            revoked_at: None,
            expires_at,
        };
        Ok((record, token))
    }

    /// The operator a bearer token acts for; `None` when the token is
    /// malformed, unknown, expired, revoked, or its operator is disabled.
    pub async fn authenticate_api_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Option<Operator>, StoreError> {
        let Some(id) = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT username, token_hash, last_used_at, revoked_at, expires_at FROM api_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let stored: String = row.try_get("token_hash")?;
        let matches = aws_lc_rs::constant_time::verify_slices_are_equal(
            stored.as_bytes(),
            secret_hash(token).as_bytes(),
        )
        .is_ok();
        let revoked: Option<i64> = row.try_get("revoked_at")?;
        let expires_at: Option<i64> = row.try_get("expires_at")?;
        let at = millis(now);
        if !matches || revoked.is_some() || expires_at.is_none_or(|e| at >= e) {
            return Ok(None);
        }
        let username: String = row.try_get("username")?;
        let Some(operator) = self.operator(&username).await?.filter(|o| !o.disabled) else {
            return Ok(None);
        };
        let last: Option<i64> = row.try_get("last_used_at")?;
        if last.is_none_or(|l| at.saturating_sub(l) > TOUCH_EVERY_MS) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(operator))
    }

    /// API tokens, newest first; of one operator when `username` is given.
    pub async fn api_tokens(&self, username: Option<&str>) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, username, name, created_at, last_used_at, revoked_at, expires_at FROM api_tokens \
             WHERE $1 IS NULL OR username = $1 ORDER BY created_at DESC",
        )
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(api_token).collect()
    }

    /// Revokes a token; audited. `owner`, when given, must own it.
    pub async fn revoke_api_token(
        &self,
        id: &str,
        owner: Option<&str>,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             AND ($3 IS NULL OR username = $3) RETURNING username",
        )
        .bind(at)
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = done else {
            return Err(StoreError::NotFound(format!("active API token {id}")));
        };
        let username: String = row.try_get("username")?;
        append(
            &mut tx,
            at,
            actor,
            "api_token.revoke",
            &username,
            &serde_json::json!({ "id": id }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn operator(totp_enabled: bool, must_change_password: bool) -> Operator {
        Operator {
            username: "olga".into(),
            role: Role::Operator,
            totp_enabled,
            must_change_password,
            disabled: false,
            created_at: 0,
        }
    }

    #[test]
    fn the_login_table() {
        use SessionStage as S;
        use SessionStep as E;
        let fresh = operator(false, true);
        assert_eq!(S::next_for(&fresh), S::PasswordChange);
        let changed = operator(false, false);
        assert_eq!(
            S::PasswordChange.after(E::PasswordChanged, &changed),
            Some(S::Enrol)
        );
        assert_eq!(
            S::PasswordChange.after(E::PasswordChanged, &operator(true, false)),
            Some(S::Totp)
        );
        assert_eq!(
            S::Enrol.after(E::Enrolled, &operator(true, false)),
            Some(S::Full)
        );
        assert_eq!(
            S::Totp.after(E::SecondFactorPassed, &changed),
            Some(S::Full)
        );
        assert_eq!(S::Full.after(E::PasswordChanged, &changed), Some(S::Full));
        // No step skips the second factor.
        for (stage, step) in [
            (S::PasswordChange, E::SecondFactorPassed),
            (S::PasswordChange, E::Enrolled),
            (S::Enrol, E::PasswordChanged),
            (S::Enrol, E::SecondFactorPassed),
            (S::Totp, E::PasswordChanged),
            (S::Totp, E::Enrolled),
        ] {
            assert_eq!(stage.after(step, &changed), None, "{stage:?} {step:?}");
        }
    }
}
