//! The approval rules a revealed request meets before it waits for an
//! operator: rule `manifest` pairs a terminal whose serial and key a
//! vendor's manifest vouches for (a serial a manifest lists with another
//! key is flagged and never approved by any rule); rule `ca` pairs a
//! terminal whose certificate a configured acquirer or vendor CA issued
//! to its serial. Either only within the rules' bounds (networks, hours,
//! model); a request a rule passes over says why in the audit log.

use std::time::{Duration, SystemTime};

use pairgate_pki::SpkiPin;
use pairgate_pki::issued::issued_for;
use sqlx::{Any, Transaction};

use super::{PairingRequest, reread};
use crate::audit::append;
use crate::manifests;
use crate::{Actor, Store, StoreError};

impl Store {
    /// Applies the rules to a request just revealed; returns it as it
    /// stands after (approved, flagged, or unchanged).
    pub(super) async fn apply_rules(
        &self,
        tx: &mut Transaction<'static, Any>,
        req: PairingRequest,
        at: i64,
    ) -> Result<PairingRequest, StoreError> {
        let Some(vouch) = manifests::vouch(tx, &req.serial).await? else {
            return self.rule_ca(tx, req, at).await;
        };
        let presented = SpkiPin::of_certificate(&req.certificate).map(|p| p.to_hex());
        if presented.as_deref().ok() != Some(vouch.spki_pin.as_str()) {
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
            return reread(tx, &req.id).await;
        }
        if !self.rules.manifest {
            return Ok(req);
        }
        let why = serde_json::json!({
            "rule": "manifest", "manifest": vouch.manifest_id, "vendor": vouch.vendor,
            "spki_pin": vouch.spki_pin,
        });
        self.approve_by_rule(tx, req, at, &vouch.model, why).await
    }

    /// Rule `ca`, for a serial no manifest lists.
    async fn rule_ca(
        &self,
        tx: &mut Transaction<'static, Any>,
        req: PairingRequest,
        at: i64,
    ) -> Result<PairingRequest, StoreError> {
        let Some(cas) = &self.rules.ca else {
            return Ok(req);
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(at).unwrap_or(0));
        match issued_for(cas, &req.certificate, req.serial.as_str(), now) {
            Ok(ca) => {
                let why = serde_json::json!({ "rule": "ca", "ca": ca });
                let model = req.model.clone();
                self.approve_by_rule(tx, req, at, &model, why).await
            }
            Err(e) => {
                // Only a certificate one of the CAs issued is news to the
                // operators; any other is an ordinary request.
                if matches!(e, pairgate_pki::issued::IssuedError::OtherSerial { .. }) {
                    self.not_applied(tx, &req, at, "ca", &e.to_string()).await?;
                }
                Ok(req)
            }
        }
    }

    /// Pairs by rule (one audit record naming it, with `why`), unless the
    /// request is outside the rules' bounds.
    async fn approve_by_rule(
        &self,
        tx: &mut Transaction<'static, Any>,
        req: PairingRequest,
        at: i64,
        model: &str,
        why: serde_json::Value,
    ) -> Result<PairingRequest, StoreError> {
        let rule = why
            .get("rule")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("rule")
            .to_owned();
        if let Some(reason) = self.rules.outside(&req.remote_address, at, model) {
            self.not_applied(tx, &req, at, &rule, &reason).await?;
            return Ok(req);
        }
        let actor = Actor::new(format!("rule:{rule}"));
        self.pair(tx, &req, (&actor, model), at, Some(why)).await?;
        reread(tx, &req.id).await
    }

    async fn not_applied(
        &self,
        tx: &mut Transaction<'static, Any>,
        req: &PairingRequest,
        at: i64,
        rule: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let detail = serde_json::json!({ "request": req.id, "rule": rule, "reason": reason });
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
        Ok(())
    }
}
