//! Operators: the people who register terminals and approve pairings.
//! Passwords are Argon2id hashes; the second factor is TOTP (RFC 6238,
//! SHA-1, 6 digits, 30 s) with replay protection: a code's time step must
//! be later than the last one accepted for that operator. Approving a
//! pairing takes a [`SecondFactor`], which only
//! [`Store::verify_second_factor`] can make.

use std::fmt;
use std::time::SystemTime;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sqlx::Row;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use crate::audit::append;
use crate::{Actor, Store, StoreError, millis};

/// TOTP period in seconds.
const PERIOD: u64 = 30;
/// Accepted clock skew, in steps either side.
const SKEW_STEPS: i64 = 1;
/// TOTP issuer shown in authenticator apps.
const ISSUER: &str = "pairgate";

/// What an operator may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including managing operators.
    Admin,
    /// Terminals and pairings.
    Operator,
    /// Read only.
    Viewer,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }

    /// Whether this role may change trust (approve, reject, unpair).
    pub fn may_change_trust(self) -> bool {
        matches!(self, Self::Admin | Self::Operator)
    }
}

impl std::str::FromStr for Role {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, StoreError> {
        match text {
            "admin" => Ok(Self::Admin),
            "operator" => Ok(Self::Operator),
            "viewer" => Ok(Self::Viewer),
            other => Err(StoreError::Invalid(format!(
                "unknown role {other:?}: use admin, operator or viewer"
            ))),
        }
    }
}

/// An operator as stored, without secrets.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Operator {
    /// Login name.
    pub username: String,
    /// Role.
    pub role: Role,
    /// Whether TOTP is set up.
    pub totp_enabled: bool,
    /// Whether the one-time password must still be changed.
    pub must_change_password: bool,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// When created (Unix ms).
    pub created_at: i64,
}

/// The one-time credentials of a new operator. Shown once; the password
/// is only stored as a hash.
pub struct NewOperatorCredentials {
    /// The operator.
    pub operator: Operator,
    /// The one-time password.
    pub password: Zeroizing<String>,
    /// `otpauth://totp/…` for an authenticator app (holds the TOTP seed).
    pub totp_uri: Zeroizing<String>,
}

impl fmt::Debug for NewOperatorCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewOperatorCredentials")
            .field("operator", &self.operator)
            .finish_non_exhaustive()
    }
}

/// Proof that an operator passed a fresh TOTP check just now. Only
/// [`Store::verify_second_factor`] makes one.
#[derive(Clone, Debug)]
pub struct SecondFactor {
    pub(crate) username: String,
    pub(crate) role: Role,
}

impl SecondFactor {
    /// The operator who proved it.
    pub fn actor(&self) -> Actor {
        Actor::new(self.username.clone())
    }

    /// Their role.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// Validates a username: 1 to 64 of `a-z 0-9 . _ -`, starting with a
/// letter or digit.
fn check_username(name: &str) -> Result<(), StoreError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid username {name:?}: use 1 to 64 of a-z 0-9 . _ -"
        )))
    }
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // aws-lc aborts the process rather than return weak randomness.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes
}

/// A one-time password: 20 characters from an alphabet without look-alikes
/// (about 112 bits).
pub(crate) fn one_time_password() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = Zeroizing::new(String::with_capacity(20));
    while out.len() < 20 {
        for b in random_bytes::<32>() {
            // Rejection sampling keeps the choice uniform.
            let limit = 256 - 256 % ALPHABET.len();
            if usize::from(b) < limit
                && out.len() < 20
                && let Some(c) = ALPHABET.get(usize::from(b) % ALPHABET.len())
            {
                out.push(char::from(*c));
            }
        }
    }
    out
}

impl Store {
    /// Runs Argon2 work on the blocking thread pool, at most the store's
    /// hashing concurrency at once: a flood of logins then waits its turn
    /// instead of stalling the async workers that serve the terminals.
    pub(crate) async fn argon2<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| StoreError::Io("password hashing has stopped".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| StoreError::Io(format!("password hashing failed: {e}")))
    }
}

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, t=2).
pub(crate) fn hash_password(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| StoreError::Invalid(format!("password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Invalid(format!("hashing the password: {e}")))
}

/// An Argon2id hash of a random password, made once: unknown accounts
/// are checked against it so they cost what a known one costs.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let password = one_time_password();
        hash_password(&password).unwrap_or_default()
    })
}

/// Checks a password against a stored Argon2id hash.
pub(crate) fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The `otpauth://` URI of an encoded (base32) seed.
pub(crate) fn totp_uri(username: &str, encoded: &str) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "otpauth://totp/{ISSUER}:{username}?secret={encoded}&issuer={ISSUER}&algorithm=SHA1&digits=6&period={PERIOD}"
    ))
}

pub(crate) fn totp(secret: &[u8], username: &str) -> Result<TOTP, StoreError> {
    TOTP::new(Algorithm::SHA1, 6, 1, PERIOD, secret.to_vec())
        .map_err(|e| StoreError::Corrupt(format!("TOTP secret of {username}: {e}")))
}

/// The time step a 6-digit `code` belongs to, within the accepted skew of
/// `now`, or `None`. Every candidate is compared in constant time.
pub(crate) fn totp_step(totp: &TOTP, code: &str, now: SystemTime) -> Option<i64> {
    let seconds = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .ok()?;
    let current = i64::try_from(seconds / PERIOD).ok()?;
    let mut found = None;
    for step in current - SKEW_STEPS..=current + SKEW_STEPS {
        let Ok(at) = u64::try_from(step) else {
            continue;
        };
        let expected = totp.generate(at * PERIOD);
        if aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), code.as_bytes())
            .is_ok()
        {
            found = Some(step);
        }
    }
    found
}

/// The columns `operator()` reads.
macro_rules! operator_columns {
    () => {
        "username, role, totp_secret, must_change_password, disabled, created_at"
    };
}

fn operator(row: &sqlx::any::AnyRow) -> Result<Operator, StoreError> {
    let role: String = row.try_get("role")?;
    let secret: Option<String> = row.try_get("totp_secret")?;
    Ok(Operator {
        username: row.try_get("username")?,
        role: role
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("operator role {role:?}")))?,
        totp_enabled: secret.is_some(),
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Creates an operator with a one-time password and a fresh TOTP seed;
    /// audited (without either secret).
    pub async fn create_operator(
        &self,
        username: &str,
        role: Role,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<NewOperatorCredentials, StoreError> {
        let secret = Zeroizing::new(random_bytes::<20>().to_vec());
        let encoded = Zeroizing::new(
            totp_rs::Secret::Raw(secret.to_vec())
                .to_encoded()
                .to_string(),
        );
        // Validates the seed length before anything is stored.
        totp(&secret, username)?;
        let (operator, password) = self
            .insert_operator(username, role, Some(&encoded), false, actor, now)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("operator {username}")))?;
        Ok(NewOperatorCredentials {
            operator,
            password,
            totp_uri: totp_uri(username, &encoded),
        })
    }

    /// Creates an operator with a one-time password and no TOTP yet: the
    /// first login forces a new password and TOTP enrolment. Audited.
    pub async fn create_operator_enrolling(
        &self,
        username: &str,
        role: Role,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<(Operator, Zeroizing<String>), StoreError> {
        self.insert_operator(username, role, None, false, actor, now)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("operator {username}")))
    }

    /// First run: when the store has no operator at all, creates `admin`
    /// (role admin) with a one-time password and no TOTP; `None` when any
    /// operator exists. Safe when several servers start at once.
    pub async fn first_run_admin(
        &self,
        now: SystemTime,
    ) -> Result<Option<(Operator, Zeroizing<String>)>, StoreError> {
        self.insert_operator(
            "admin",
            Role::Admin,
            None,
            true,
            &Actor::new("first-run"),
            now,
        )
        .await
    }

    async fn insert_operator(
        &self,
        username: &str,
        role: Role,
        totp_secret: Option<&str>,
        only_if_first: bool,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<Option<(Operator, Zeroizing<String>)>, StoreError> {
        check_username(username)?;
        let password = one_time_password();
        let hash = {
            let password = password.clone();
            self.argon2(move || hash_password(&password)).await??
        };
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        if only_if_first {
            // Serialises concurrent first runs on PostgreSQL (SQLite's
            // write transaction already does).
            sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
                .execute(&mut *tx)
                .await?;
            let any = sqlx::query("SELECT 1 AS one FROM operators LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
            if any.is_some() {
                return Ok(None);
            }
        }
        let exists = sqlx::query("SELECT 1 AS one FROM operators WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::AlreadyExists(format!("operator {username}")));
        }
        sqlx::query(
            "INSERT INTO operators (username, password_hash, role, totp_secret, must_change_password, disabled, created_at) \
             VALUES ($1, $2, $3, $4, 1, 0, $5)",
        )
        .bind(username)
        .bind(&hash)
        .bind(role.as_str())
        .bind(totp_secret)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        append(
            &mut tx,
            at,
            actor,
            "operator.create",
            username,
            &serde_json::json!({ "role": role.as_str(), "totp": totp_secret.is_some() }),
        )
        .await?;
        tx.commit().await?;
        let operator = self
            .operator(username)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("operator {username}")))?;
        Ok(Some((operator, password)))
    }

    /// An operator by username.
    pub async fn operator(&self, username: &str) -> Result<Option<Operator>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            operator_columns!(),
            " FROM operators WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(operator).transpose()
    }

    /// Every operator, by username.
    pub async fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            operator_columns!(),
            " FROM operators ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operator).collect()
    }

    /// Checks `username`'s password; `Ok(None)` when it does not match or
    /// the account is disabled or unknown (one answer for all three).
    pub async fn verify_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Operator>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT password_hash, ",
            operator_columns!(),
            " FROM operators WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        let password = Zeroizing::new(password.to_owned());
        let Some(row) = row else {
            // Spend the same work as a real check: a verification against
            // a hash with the same parameters, so timing does not tell
            // unknown accounts from known ones.
            self.argon2(move || password_matches(&password, dummy_hash()))
                .await?;
            return Ok(None);
        };
        let stored: String = row.try_get("password_hash")?;
        let op = operator(&row)?;
        let matches = self
            .argon2(move || password_matches(&password, &stored))
            .await?;
        Ok((matches && !op.disabled).then_some(op))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// RFC 6238 appendix B, SHA-1 seed, truncated to 6 digits.
    #[test]
    fn rfc6238_vectors() {
        let totp = totp(b"12345678901234567890", "rfc").unwrap();
        for (t, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(totp.generate(t), code, "t={t}");
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(t);
            assert_eq!(totp_step(&totp, code, now), Some((t / 30) as i64));
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(59);
        assert_eq!(totp_step(&totp, "287083", now), None);
        // Three steps later the code is stale.
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(59 + 90);
        assert_eq!(totp_step(&totp, "287082", later), None);
    }

    #[test]
    fn passwords() {
        let pw = one_time_password();
        assert_eq!(pw.len(), 20);
        assert_ne!(*pw, *one_time_password());
        let hash = hash_password(&pw).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(password_matches(&pw, &hash));
        assert!(!password_matches("nope", &hash));
        assert!(!password_matches(&pw, "garbage"));
    }

    #[test]
    fn usernames() {
        assert!(check_username("alice.o-1").is_ok());
        for bad in ["", "Alice", "-x", "a b", &"a".repeat(65)] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
    }
}
