//! An operator's own credentials after creation: the forced change of the
//! one-time password, TOTP enrolment (a pending seed confirmed by a first
//! code, then one-time recovery codes), and login with a recovery code.
//! Each change is one transaction with its audit record, which never holds
//! a secret.

use std::time::SystemTime;

use sqlx::Row;
use zeroize::Zeroizing;

use crate::audit::append;
use crate::operators::{hash_password, password_matches, random_bytes, totp, totp_step, totp_uri};
use crate::{Actor, Store, StoreError, millis};

/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Shortest new password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (Argon2 input is bounded anyway; this bounds
/// the request).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// SHA-256 of a secret, hex: how sessions, tokens and recovery codes are
/// stored.
pub(crate) fn secret_hash(secret: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        secret.as_bytes(),
    ))
}

/// A recovery code: 12 characters in three groups, about 60 bits.
fn recovery_code() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut out = Zeroizing::new(String::with_capacity(14));
    let mut n = 0;
    while n < 12 {
        for b in random_bytes::<32>() {
            let limit = 256 - 256 % ALPHABET.len();
            if usize::from(b) < limit
                && n < 12
                && let Some(c) = ALPHABET.get(usize::from(b) % ALPHABET.len())
            {
                if n > 0 && n % 4 == 0 {
                    out.push('-');
                }
                out.push(char::from(*c));
                n += 1;
            }
        }
    }
    out
}

/// How a typed recovery code is stored: normalised, then hashed.
pub(crate) fn recovery_code_hash(code: &str) -> String {
    secret_hash(&normalise_recovery_code(code))
}

/// Normalises a typed recovery code: case and separators do not matter.
fn normalise_recovery_code(code: &str) -> String {
    let chars: Vec<char> = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Checks a new password against the rules; the reason when refused.
pub fn check_new_password(username: &str, new: &str) -> Result<(), StoreError> {
    let chars = new.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(StoreError::Invalid(format!(
            "the new password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(StoreError::Invalid(format!(
            "the new password may have at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    if new.eq_ignore_ascii_case(username) {
        return Err(StoreError::Invalid(
            "the new password must not be the username".into(),
        ));
    }
    Ok(())
}

/// Locks an enabled operator without TOTP for enrolment and returns the
/// pending seed, if any; refused when the operator is unknown, disabled, or
/// already has TOTP.
async fn lock_enrolment(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    username: &str,
) -> Result<Option<Zeroizing<String>>, StoreError> {
    let row = sqlx::query(
        "UPDATE operators SET totp_pending = totp_pending WHERE username = $1 AND disabled = 0 \
         RETURNING totp_secret, totp_pending",
    )
    .bind(username)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("operator {username}")))?;
    let secret: Option<String> = row.try_get("totp_secret")?;
    if secret.is_some() {
        return Err(StoreError::Conflict(format!(
            "{username} already has two-factor authentication"
        )));
    }
    let pending: Option<String> = row.try_get("totp_pending")?;
    Ok(pending.map(Zeroizing::new))
}

impl Store {
    /// Changes `username`'s password after checking the current one,
    /// clears the forced change and revokes the operator's API tokens. Refused when the current password is
    /// wrong or the new one breaks the rules or equals the current one.
    pub async fn change_password(
        &self,
        username: &str,
        current: &str,
        new: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        check_new_password(username, new)?;
        if current == new {
            return Err(StoreError::Invalid(
                "the new password must differ from the current one".into(),
            ));
        }
        let hash = {
            let new = Zeroizing::new(new.to_owned());
            self.argon2(move || hash_password(&new)).await??
        };
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE operators SET password_hash = password_hash WHERE username = $1 AND disabled = 0 \
             RETURNING password_hash",
        )
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
        let stored: Option<String> = row.map(|r| r.try_get("password_hash")).transpose()?;
        let current = Zeroizing::new(current.to_owned());
        let matches = match stored {
            Some(s) => self.argon2(move || password_matches(&current, &s)).await?,
            None => false,
        };
        if !matches {
            return Err(StoreError::Unauthorized(
                "the current password is wrong".into(),
            ));
        }
        sqlx::query(
            "UPDATE operators SET password_hash = $1, must_change_password = 0 WHERE username = $2",
        )
        .bind(&hash)
        .bind(username)
        .execute(&mut *tx)
        .await?;
        // A token made under the old password may be what leaked.
        let revoked = crate::sessions::revoke_tokens_of(&mut tx, username, at).await?;
        append(
            &mut tx,
            at,
            &Actor::new(username),
            "operator.password",
            username,
            &serde_json::json!({ "tokens_revoked": revoked }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts (or continues) TOTP enrolment: a pending seed, returned as an
    /// `otpauth://` URI for the authenticator app. Refused when TOTP is
    /// already set up.
    pub async fn begin_totp_enrolment(
        &self,
        username: &str,
    ) -> Result<Zeroizing<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let pending = lock_enrolment(&mut tx, username).await?;
        let encoded = match pending {
            Some(p) => p,
            None => {
                let raw = random_bytes::<20>();
                let encoded =
                    Zeroizing::new(totp_rs::Secret::Raw(raw.to_vec()).to_encoded().to_string());
                sqlx::query("UPDATE operators SET totp_pending = $1 WHERE username = $2")
                    .bind(encoded.as_str())
                    .bind(username)
                    .execute(&mut *tx)
                    .await?;
                encoded
            }
        };
        tx.commit().await?;
        Ok(totp_uri(username, &encoded))
    }

    /// Confirms enrolment with a first code from the app: the pending seed
    /// becomes the TOTP seed (the code's step is consumed) and
    /// [`RECOVERY_CODES`] one-time recovery codes are made, returned once.
    pub async fn confirm_totp_enrolment(
        &self,
        username: &str,
        code: &str,
        now: SystemTime,
    ) -> Result<Vec<Zeroizing<String>>, StoreError> {
        let mut tx = self.begin_write().await?;
        let pending = lock_enrolment(&mut tx, username).await?;
        let Some(pending) = pending else {
            return Err(StoreError::Invalid("start the enrolment first".into()));
        };
        let raw = Zeroizing::new(
            totp_rs::Secret::Encoded(pending.to_string())
                .to_bytes()
                .map_err(|_| StoreError::Corrupt(format!("pending TOTP seed of {username}")))?,
        );
        let totp = totp(&raw, username)?;
        let Some(step) = totp_step(&totp, code.trim(), now) else {
            return Err(StoreError::Unauthorized(
                "wrong code: type the 6 digits the app shows now".into(),
            ));
        };
        sqlx::query(
            "UPDATE operators SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = $1 \
             WHERE username = $2",
        )
        .bind(step)
        .bind(username)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        let codes: Vec<Zeroizing<String>> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        for code in &codes {
            sqlx::query("INSERT INTO recovery_codes (username, code_hash) VALUES ($1, $2)")
                .bind(username)
                .bind(secret_hash(code))
                .execute(&mut *tx)
                .await?;
        }
        let at = millis(now);
        append(
            &mut tx,
            at,
            &Actor::new(username),
            "operator.totp_enrol",
            username,
            &serde_json::json!({ "recovery_codes": RECOVERY_CODES }),
        )
        .await?;
        tx.commit().await?;
        Ok(codes)
    }

    /// Records a login event of `username` (`signed_in`,
    /// `password_failed`, `second_factor_failed`) in the audit log.
    pub async fn audit_login(
        &self,
        username: &str,
        outcome: &str,
        address: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        append(
            &mut tx,
            millis(now),
            &Actor::new(username),
            "operator.login",
            username,
            &serde_json::json!({ "outcome": outcome, "address": address }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_grouped_and_normalised() {
        let code = recovery_code();
        assert_eq!(code.len(), 14);
        assert_eq!(code.matches('-').count(), 2);
        assert_eq!(
            normalise_recovery_code(&code.to_uppercase().replace('-', " ")),
            *code
        );
        assert_ne!(*code, *recovery_code());
    }

    #[test]
    fn password_rules() {
        assert!(check_new_password("olga", "short").is_err());
        assert!(check_new_password("olga-the-operator", "OLGA-THE-OPERATOR").is_err());
        assert!(check_new_password("olga", &"x".repeat(300)).is_err());
        assert!(check_new_password("olga", "a long enough passphrase").is_ok());
    }
}
