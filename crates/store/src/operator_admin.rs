//! Changing other operators' accounts: disable and enable, role changes,
//! two-factor resets and clearing a step-up lock. Each takes an
//! [`AdminAction`]: proof that an admin passed a fresh second factor just
//! now, or the break-glass path of `pairgate admin` (whoever can run it
//! can write the database anyway). Each change is one transaction with
//! its audit record. The last enabled admin can be neither disabled nor
//! demoted, so the fleet never ends up without one.

use std::time::SystemTime;

use sqlx::{Any, Row, Transaction};

use crate::audit::append;
use crate::{Actor, Role, SecondFactor, Store, StoreError, millis};

/// Proof that an admin may change accounts now: made from a fresh
/// [`SecondFactor`] of an admin, or [`AdminAction::local`] for the
/// command line on the server itself.
#[derive(Clone, Debug)]
pub struct AdminAction {
    actor: Actor,
}

impl AdminAction {
    /// The command line on the server (`pairgate admin`): it reads the
    /// database directly, so a second factor would protect nothing.
    pub fn local(name: impl Into<String>) -> Self {
        Self {
            actor: Actor::new(name),
        }
    }

    /// Who acts, for the audit log.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
}

impl SecondFactor {
    /// The admin proof of this second factor; `Forbidden` unless its
    /// operator is an admin.
    pub fn admin(&self) -> Result<AdminAction, StoreError> {
        if self.role == Role::Admin {
            Ok(AdminAction {
                actor: self.actor(),
            })
        } else {
            Err(StoreError::Forbidden(format!(
                "{} is not an admin; only admins change operators, tokens and vendor keys",
                self.username
            )))
        }
    }
}

/// Locks `username`'s row in `tx`; returns its role and whether it is
/// disabled. `NotFound` when unknown.
pub(crate) async fn lock_operator(
    tx: &mut Transaction<'static, Any>,
    username: &str,
) -> Result<(Role, bool), StoreError> {
    let row = sqlx::query(
        "UPDATE operators SET disabled = disabled WHERE username = $1 RETURNING role, disabled",
    )
    .bind(username)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("operator {username}")))?;
    let role: String = row.try_get("role")?;
    let role = role
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("operator role {role:?}")))?;
    Ok((role, row.try_get::<i64, _>("disabled")? != 0))
}

/// Refuses a change that would leave no enabled admin besides `username`.
async fn keep_an_admin(
    tx: &mut Transaction<'static, Any>,
    username: &str,
    what: &str,
) -> Result<(), StoreError> {
    let others = sqlx::query(
        "SELECT COUNT(*) AS n FROM operators WHERE role = 'admin' AND disabled = 0 AND username <> $1",
    )
    .bind(username)
    .fetch_one(&mut **tx)
    .await?
    .try_get::<i64, _>("n")?;
    if others == 0 {
        return Err(StoreError::Conflict(format!(
            "{username} is the last enabled admin: make another admin before you {what}"
        )));
    }
    Ok(())
}

/// Ends every CAS session of `username`.
async fn end_sessions(
    tx: &mut Transaction<'static, Any>,
    username: &str,
) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM sessions WHERE username = $1")
        .bind(username)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

impl Store {
    /// Disables (`disabled`) or enables an operator; audited. Disabling
    /// ends their sessions and revokes their API tokens (enabling brings
    /// neither back); refused for the last enabled admin.
    pub async fn set_operator_disabled(
        &self,
        username: &str,
        disabled: bool,
        by: &AdminAction,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let (role, was) = lock_operator(&mut tx, username).await?;
        if was == disabled {
            return Err(StoreError::Conflict(format!(
                "{username} is already {}",
                if disabled { "disabled" } else { "enabled" }
            )));
        }
        let mut detail = serde_json::json!({});
        if disabled {
            if role == Role::Admin {
                keep_an_admin(&mut tx, username, "disable this one").await?;
            }
            let sessions = end_sessions(&mut tx, username).await?;
            let tokens = crate::sessions::revoke_tokens_of(&mut tx, username, at).await?;
            detail = serde_json::json!({ "sessions_ended": sessions, "tokens_revoked": tokens });
        }
        sqlx::query("UPDATE operators SET disabled = $1 WHERE username = $2")
            .bind(i64::from(disabled))
            .bind(username)
            .execute(&mut *tx)
            .await?;
        let action = if disabled {
            "operator.disable"
        } else {
            "operator.enable"
        };
        append(&mut tx, at, by.actor(), action, username, &detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes an operator's role; audited. Refused when it would demote
    /// the last enabled admin. Sessions and tokens act with the new role
    /// from their next request.
    pub async fn set_operator_role(
        &self,
        username: &str,
        role: Role,
        by: &AdminAction,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let (was, disabled) = lock_operator(&mut tx, username).await?;
        if was == role {
            return Err(StoreError::Conflict(format!(
                "{username} already has the {} role",
                role.as_str()
            )));
        }
        if was == Role::Admin && !disabled {
            keep_an_admin(&mut tx, username, "change this one's role").await?;
        }
        sqlx::query("UPDATE operators SET role = $1 WHERE username = $2")
            .bind(role.as_str())
            .bind(username)
            .execute(&mut *tx)
            .await?;
        append(
            &mut tx,
            at,
            by.actor(),
            "operator.role",
            username,
            &serde_json::json!({ "from": was.as_str(), "to": role.as_str() }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Resets an operator's two-factor authentication (a lost phone): the
    /// seed, the recovery codes and the step-up lock go, their sessions
    /// end and their API tokens are revoked; the next login enrols anew.
    /// Audited.
    pub async fn reset_operator_totp(
        &self,
        username: &str,
        by: &AdminAction,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        lock_operator(&mut tx, username).await?;
        sqlx::query(
            "UPDATE operators SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL \
             WHERE username = $1",
        )
        .bind(username)
        .execute(&mut *tx)
        .await?;
        for delete in [
            "DELETE FROM recovery_codes WHERE username = $1",
            "DELETE FROM step_up_failures WHERE username = $1",
        ] {
            sqlx::query(delete).bind(username).execute(&mut *tx).await?;
        }
        let sessions = end_sessions(&mut tx, username).await?;
        let tokens = crate::sessions::revoke_tokens_of(&mut tx, username, at).await?;
        append(
            &mut tx,
            at,
            by.actor(),
            "operator.totp_reset",
            username,
            &serde_json::json!({ "sessions_ended": sessions, "tokens_revoked": tokens }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
