//! The approval rules a revealed request meets before it waits for an
//! operator: rule `manifest` pairs a terminal whose serial and key a
//! vendor's manifest vouches for; a serial a manifest lists with another
//! key is flagged and never approved by rule.

use pairgate_pki::SpkiPin;
use sqlx::{Any, Transaction};

use super::{PairingRequest, reread};
use crate::audit::append;
use crate::manifests;
use crate::{Actor, Store, StoreError};

impl Store {
    /// After a reveal: a request whose serial and key match a manifest
    /// entry is approved by rule `manifest` (when on); one whose serial a
    /// manifest lists with another key is flagged and never approved by
    /// rule. Anything else waits for an operator.
    pub(super) async fn apply_rules(
        &self,
        tx: &mut Transaction<'static, Any>,
        req: PairingRequest,
        at: i64,
    ) -> Result<PairingRequest, StoreError> {
        let Some(vouch) = manifests::vouch(tx, &req.serial).await? else {
            return Ok(req);
        };
        let presented = SpkiPin::of_certificate(&req.certificate).map(|p| p.to_hex());
        if presented.as_deref().ok() == Some(vouch.spki_pin.as_str()) {
            if !self.rules.manifest {
                return Ok(req);
            }
            if let Some(reason) = self.rules.outside(&req.remote_address, at, &vouch.model) {
                let detail = serde_json::json!({
                    "request": req.id, "rule": "manifest", "manifest": vouch.manifest_id, "reason": reason,
                });
                let gate = Actor::new("gate");
                append(
                    tx,
                    at,
                    &gate,
                    "pairing.rule_not_applied",
                    req.serial.as_str(),
                    &detail,
                )
                .await?;
                return Ok(req);
            }
            let rule = Actor::new("rule:manifest");
            self.pair(tx, &req, &rule, at, Some(&vouch)).await?;
            return reread(tx, &req.id).await;
        }
        sqlx::query("UPDATE pairing_requests SET flagged = 1 WHERE id = $1")
            .bind(&req.id)
            .execute(&mut **tx)
            .await?;
        let detail = serde_json::json!({
            "request": req.id, "reason": "manifest_key_mismatch",
            "manifest": vouch.manifest_id, "vendor": vouch.vendor,
            "manifest_spki_pin": vouch.spki_pin, "presented_spki_pin": presented.ok(),
        });
        let gate = Actor::new("gate");
        append(tx, at, &gate, "pairing.flag", req.serial.as_str(), &detail).await?;
        reread(tx, &req.id).await
    }
}
