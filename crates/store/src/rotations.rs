//! Server key rotation (issue 17): the statements by which the current
//! server key announces the next, and the switch to it. Announcing and
//! activating are each one transaction with their audit record; the
//! activation moves the recorded identity (`server_identity.pin`), which
//! every instance watches and follows without a restart.

use std::time::SystemTime;

use pairgate_pki::SpkiPin;
use pairgate_proto::server_keys::Rotation;
use sqlx::Row;

use crate::audit::append;
use crate::{Actor, Store, StoreError, millis};

/// A stored rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRotation {
    /// The statement as the wire carries it.
    pub rotation: Rotation,
    /// When the next key became the identity (Unix ms).
    pub activated_at: Option<i64>,
}

impl Store {
    /// Every rotation, oldest first.
    pub async fn rotations(&self) -> Result<Vec<StoredRotation>, StoreError> {
        rotations_in(self.pool()).await
    }

    /// What `GET /v1/server-keys` answers from: every rotation, the
    /// recorded identity and the recovery pins, read on one connection
    /// (the endpoint is called at every heartbeat: it holds one of the
    /// pool's connections, not three).
    pub async fn server_keys(
        &self,
    ) -> Result<(Vec<StoredRotation>, Option<SpkiPin>, Vec<SpkiPin>), StoreError> {
        let mut conn = self.pool().acquire().await?;
        let rotations = rotations_in(&mut *conn).await?;
        let recorded = crate::cluster::recorded_identity_in(&mut *conn).await?;
        let recovery = recovery_pins_in(&mut *conn).await?;
        Ok((rotations, recorded, recovery))
    }

    /// Records `rotation`, signed by the recorded identity and numbered one
    /// after the last, as announced; audited (`server.rotation_announced`).
    /// Refused while another rotation waits for activation.
    pub async fn announce_rotation(
        &self,
        rotation: &Rotation,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let signed = rotation.signed().map_err(StoreError::Invalid)?;
        let (previous, next) = (signed.statement.previous_pin(), signed.statement.next_pin());
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        // Serialises announcements with the identity's row.
        let recorded: Option<String> =
            sqlx::query("UPDATE server_identity SET pin = pin WHERE id = 1 RETURNING pin")
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get("pin"))
                .transpose()?;
        if recorded.as_deref() != Some(previous.to_hex().as_str()) {
            return Err(StoreError::Conflict(format!(
                "the statement is signed by {previous}, not by the server identity the store \
                 records ({})",
                recorded.unwrap_or_else(|| "none".into())
            )));
        }
        let row = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) AS last, \
             SUM(CASE WHEN activated_at IS NULL THEN 1 ELSE 0 END) AS pending \
             FROM server_rotations",
        )
        .fetch_one(&mut *tx)
        .await?;
        let last: i64 = row.try_get("last")?;
        let pending: Option<i64> = row.try_get("pending")?;
        if pending.unwrap_or(0) > 0 {
            return Err(StoreError::Conflict(format!(
                "rotation {last} is announced and not activated: activate it first"
            )));
        }
        let seq = insert_rotation(&mut tx, rotation, last, (at, false)).await?;
        let detail = serde_json::json!({
            "seq": seq, "pin": previous, "next_pin": next, "not_before": rotation.not_before,
        });
        append(
            &mut tx,
            at,
            actor,
            "server.rotation_announced",
            &next.to_hex(),
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes the announced key the server identity; audited
    /// (`server.rotation_activated`). Returns the new pin.
    pub async fn activate_rotation(
        &self,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<SpkiPin, StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(
            "SELECT seq, previous_pin, next_pin FROM server_rotations WHERE activated_at IS NULL",
        )
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Err(StoreError::Conflict(
                "no rotation is announced: run `pairgate admin identity rotate` first".into(),
            ));
        };
        let seq: i64 = row.try_get("seq")?;
        let previous: SpkiPin = crate::parsed(&row, "previous_pin", || "previous pin".into())?;
        let next: SpkiPin = crate::parsed(&row, "next_pin", || "next pin".into())?;
        let moved = sqlx::query("UPDATE server_identity SET pin = $1 WHERE id = 1 AND pin = $2")
            .bind(next.to_hex())
            .bind(previous.to_hex())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved != 1 {
            return Err(StoreError::Conflict(format!(
                "the recorded identity is no longer {previous}, which signed rotation {seq}"
            )));
        }
        remember_identity(&mut tx, &next.to_hex(), at).await?;
        sqlx::query("UPDATE server_rotations SET activated_at = $1 WHERE seq = $2")
            .bind(at)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({ "seq": seq, "pin": next, "previous_pin": previous });
        append(
            &mut tx,
            at,
            actor,
            "server.rotation_activated",
            &next.to_hex(),
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(next)
    }
}

impl Store {
    /// The pins of the operator's recovery keys.
    pub async fn recovery_pins(&self) -> Result<Vec<SpkiPin>, StoreError> {
        recovery_pins_in(self.pool()).await
    }

    /// Records a recovery key's pin; audited (`server.recovery_key_created`).
    pub async fn add_recovery_pin(
        &self,
        pin: SpkiPin,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO recovery_keys (pin, created_at) VALUES ($1, $2)")
            .bind(pin.to_hex())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({ "recovery_pin": pin });
        append(
            &mut tx,
            at,
            actor,
            "server.recovery_key_created",
            &pin.to_hex(),
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Recovery: `rotation`, signed by a recorded recovery key, numbered
    /// one after the last, is recorded and activated at once (the server
    /// identity moves to its key); a rotation announced and not activated
    /// is dropped. Audited (`server.recovered`).
    pub async fn recover_identity(
        &self,
        rotation: &Rotation,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<SpkiPin, StoreError> {
        let signed = rotation.signed().map_err(StoreError::Invalid)?;
        let (signer, next) = (signed.statement.previous_pin(), signed.statement.next_pin());
        let at = millis(now);
        let mut tx = self.begin_write().await?;
        let known = sqlx::query("SELECT pin FROM recovery_keys WHERE pin = $1")
            .bind(signer.to_hex())
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(StoreError::Conflict(format!(
                "{signer} is not a recovery key this server recorded"
            )));
        }
        let dropped = sqlx::query("DELETE FROM server_rotations WHERE activated_at IS NULL")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let last: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS last FROM server_rotations")
            .fetch_one(&mut *tx)
            .await?
            .try_get("last")?;
        let seq = insert_rotation(&mut tx, rotation, last, (at, true)).await?;
        let moved: Option<String> =
            sqlx::query("UPDATE server_identity SET pin = $1 WHERE id = 1 RETURNING pin")
                .bind(next.to_hex())
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get("pin"))
                .transpose()?;
        if moved.is_none() {
            return Err(StoreError::Conflict(
                "the store records no server identity".into(),
            ));
        }
        remember_identity(&mut tx, &next.to_hex(), at).await?;
        let detail = serde_json::json!({
            "seq": seq, "pin": next, "recovery_pin": signer, "dropped_announcements": dropped,
        });
        append(
            &mut tx,
            at,
            actor,
            "server.recovered",
            &next.to_hex(),
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(next)
    }
}

/// Keeps `pin` among the keys that have been the server identity.
pub(crate) async fn remember_identity(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    pin: &str,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO server_identity_history (pin, since) VALUES ($1, $2) \
         ON CONFLICT (pin) DO NOTHING",
    )
    .bind(pin)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts `rotation`, which must be numbered one after `last`, recorded
/// at `at` and activated then when `activated`; returns its number.
async fn insert_rotation(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    rotation: &Rotation,
    last: i64,
    (at, activated): (i64, bool),
) -> Result<i64, StoreError> {
    let signed = rotation.signed().map_err(StoreError::Invalid)?;
    let seq = i64::try_from(rotation.seq).unwrap_or(i64::MAX);
    if seq != last + 1 {
        return Err(StoreError::Invalid(format!(
            "the statement is rotation {seq}; the next is {}",
            last + 1
        )));
    }
    let statement =
        serde_json::to_string(rotation).map_err(|e| StoreError::Invalid(e.to_string()))?;
    sqlx::query(
        "INSERT INTO server_rotations (seq, previous_pin, next_pin, statement, created_at, \
         activated_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(seq)
    .bind(signed.statement.previous_pin().to_hex())
    .bind(signed.statement.next_pin().to_hex())
    .bind(&statement)
    .bind(at)
    .bind(activated.then_some(at))
    .execute(&mut **tx)
    .await?;
    Ok(seq)
}

/// Every rotation, oldest first, read with `executor`.
async fn rotations_in<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
) -> Result<Vec<StoredRotation>, StoreError> {
    let rows =
        sqlx::query("SELECT seq, statement, activated_at FROM server_rotations ORDER BY seq")
            .fetch_all(executor)
            .await?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get("seq")?;
            let text: String = row.try_get("statement")?;
            let rotation: Rotation = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("rotation {seq}: {e}")))?;
            Ok(StoredRotation {
                rotation,
                activated_at: row.try_get("activated_at")?,
            })
        })
        .collect()
}

/// The recovery pins, read with `executor`.
async fn recovery_pins_in<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
) -> Result<Vec<SpkiPin>, StoreError> {
    let rows = sqlx::query("SELECT pin FROM recovery_keys ORDER BY created_at, pin")
        .fetch_all(executor)
        .await?;
    rows.iter()
        .map(|row| crate::parsed(row, "pin", || "recovery pin".into()))
        .collect()
}
