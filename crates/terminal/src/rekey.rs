//! Re-key over the master (docs/protocol.md, "Re-key"): the terminal makes
//! a new key inside its key store with a self-signed certificate, asks the
//! master for a challenge with its current key, signs the re-key statement
//! with the new key, and sends both over the current mutual-TLS session.
//! Once the master has recorded the new key, the agent switches to it,
//! proves it works with `GET /v1/me` (which retires the old key at the
//! master), and deletes the old key.
//!
//! The new key is named in the state before anything is sent, so an agent
//! stopped half-way finds out at its next re-key whether the master has
//! recorded it (it is served: switch to it) or not (refused: delete it
//! and start again).

use std::time::{Duration, SystemTime};

use base64::Engine;
use pairgate_keystore::{Alias, KeyStoreError};
use pairgate_pki::rekey::{CHALLENGE_LEN, proof_scheme};
use pairgate_pki::{KeyAlgorithm, RekeyStatement, TerminalFingerprint};
use pairgate_proto::{RekeyAnswer, RekeyChallenge, RekeyRequest};
use pairgate_tls::client::ServerTrust;
use pairgate_tls::https::{HttpsClient, HttpsResponse};

use crate::state::PendingRekey;
use crate::{Agent, TerminalError};

/// What a re-key did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Rekeyed {
    /// The alias of the key now in use.
    pub alias: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// The fingerprint it replaced.
    pub previous_fingerprint: String,
    /// The alias of the replaced key, deleted from the key store.
    pub previous_alias: String,
}

/// The master's refusal, with its code and message.
pub(crate) fn refusal(r: &HttpsResponse) -> TerminalError {
    let (code, message) = crate::gate::error_body(r);
    TerminalError::Master {
        status: r.status,
        code,
        message,
    }
}

/// A 200 answer of the agent's own protocol read as `T`, or the
/// server's refusal.
pub(crate) fn read<T: serde::de::DeserializeOwned>(r: &HttpsResponse) -> Result<T, TerminalError> {
    if r.status != 200 {
        return Err(refusal(r));
    }
    serde_json::from_slice(&r.body).map_err(|e| {
        TerminalError::Io(format!(
            "the server's answer is not what the protocol says: {e}"
        ))
    })
}

/// The next alias for a new key: `<base>.k<n>` with the first free `n`.
fn next_alias(current: &Alias, taken: &[String]) -> Result<Alias, TerminalError> {
    let name = current.as_str();
    let base = match name.rsplit_once(".k") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    };
    let base = &base[..base.len().min(48)];
    for n in 2u32.. {
        let candidate = format!("{base}.k{n}");
        if !taken.contains(&candidate) {
            return Ok(Alias::new(&candidate)?);
        }
    }
    Err(TerminalError::Io("no free alias for the new key".into()))
}

/// When a certificate valid until `not_after` is due for renewal: within
/// `renew_before` of its end, less a jitter of up to a quarter of that
/// window fixed by its fingerprint, so a fleet whose certificates were
/// issued together does not re-key in the same minute (and a terminal
/// asked again after a restart finds the same time).
pub fn renewal_due_at(
    not_after: SystemTime,
    renew_before: Duration,
    fingerprint: &TerminalFingerprint,
) -> SystemTime {
    let mut first = [0u8; 8];
    first.copy_from_slice(&fingerprint.as_bytes()[..8]);
    let spread = renew_before.as_secs() / 4 + 1;
    let jitter = Duration::from_secs(u64::from_be_bytes(first) % spread);
    // (SystemTime goes before 1970 on Unix: counted from the epoch, so a
    // window longer than the certificate's age since then starts at it.)
    let end = not_after
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    SystemTime::UNIX_EPOCH + end.saturating_sub(renew_before) + jitter
}

impl Agent {
    /// Re-keys when the certificate is due for renewal (see
    /// [`renewal_due_at`]); `None` when it is not yet.
    pub async fn rekey_if_due(
        &self,
        now: SystemTime,
        renew_before: Duration,
    ) -> Result<Option<Rekeyed>, TerminalError> {
        let alias = self.alias();
        let chain = self.store.certificate_chain(&alias)?;
        let leaf = chain
            .first()
            .ok_or_else(|| TerminalError::NoCertificate(alias.to_string()))?;
        let (_, not_after) = pairgate_pki::CertificateInfo::parse(leaf)?.validity();
        let fingerprint = TerminalFingerprint::of_certificate(leaf);
        if now < renewal_due_at(not_after, renew_before, &fingerprint) {
            return Ok(None);
        }
        self.rekey(now).await.map(Some)
    }

    /// Replaces the terminal's key over the master (see the module doc).
    pub async fn rekey(&self, now: SystemTime) -> Result<Rekeyed, TerminalError> {
        let (paired, trust) = self.paired()?;
        let old_alias = self.alias();
        let old = self.fingerprint_of(&old_alias)?;
        let master = paired.master_url.trim_end_matches('/').to_owned();
        let pending = self.state.load()?.rekey;
        if let Some(pending) = pending
            && let Some(done) = self.resume(&pending, &master, &trust).await?
        {
            return self.switch(done, &old_alias, old, &master, &trust).await;
        }
        let taken: Vec<String> = self
            .store
            .aliases()?
            .into_iter()
            .map(|e| e.alias.to_string())
            .collect();
        let new_alias = next_alias(&old_alias, &taken)?;
        self.store.generate_key(&new_alias, KeyAlgorithm::P256)?;
        let mut state = self.state.load()?;
        state.rekey = Some(PendingRekey {
            alias: new_alias.to_string(),
        });
        self.state.save(&state)?;

        let current = self.https_as(&old_alias, trust.clone())?;
        let sent = self
            .send_rekey(&current, &master, (&paired.serial, &old), &new_alias, now)
            .await;
        if let Err(e) = sent {
            // Refused: nothing was recorded, the new key goes. A lost
            // answer may have been recorded: the pending key stays for
            // the next re-key to find out.
            if matches!(e, TerminalError::Master { .. }) {
                self.discard(&new_alias)?;
            }
            return Err(e);
        }
        self.switch(new_alias, &old_alias, old, &master, &trust)
            .await
    }

    /// Challenge, the new key's certificate (self-signed, or a CSR the
    /// server's terminal CA certifies when the challenge says it does),
    /// proof, and the re-key request.
    async fn send_rekey(
        &self,
        current: &HttpsClient,
        master: &str,
        (serial, old): (&str, &TerminalFingerprint),
        new_alias: &Alias,
        now: SystemTime,
    ) -> Result<RekeyAnswer, TerminalError> {
        let r = current
            .request("POST", &format!("{master}/v1/rekey/challenge"), &[], None)
            .await?;
        let challenge: RekeyChallenge = read(&r)?;
        let mut bytes = [0u8; CHALLENGE_LEN];
        hex::decode_to_slice(&challenge.challenge, &mut bytes)
            .map_err(|_| TerminalError::Io("the master's challenge is not 64 hex digits".into()))?;
        let (new, certificate, csr) = if challenge.issues_certificates {
            let subject = pairgate_pki::Subject::common_name(serial)
                .map_err(|e| TerminalError::Io(e.to_string()))?;
            let csr =
                pairgate_keystore::certificate_request(self.store.as_ref(), new_alias, &subject)?;
            let digest = TerminalFingerprint::of_certificate(&csr);
            (digest, None, Some(pairgate_pki::certificate::csr_pem(&csr)))
        } else {
            let cert = self.self_sign(new_alias, now)?;
            let pem = pairgate_pki::certificate::certificate_pem(&cert);
            (TerminalFingerprint::of_certificate(&cert), Some(pem), None)
        };
        let statement = RekeyStatement {
            serial,
            old,
            new: &new,
            challenge: &bytes,
        };
        let proof = self.store.sign(
            new_alias,
            proof_scheme(KeyAlgorithm::P256),
            &statement.message(),
        )?;
        let body = RekeyRequest {
            challenge: challenge.challenge,
            certificate,
            csr,
            proof: base64::engine::general_purpose::STANDARD.encode(proof),
        };
        let json = serde_json::to_vec(&body).map_err(|e| TerminalError::Io(e.to_string()))?;
        let r = current
            .request(
                "POST",
                &format!("{master}/v1/rekey"),
                &[("content-type", "application/json")],
                Some(json),
            )
            .await?;
        let answer: RekeyAnswer = read(&r)?;
        if let Some(chain) = &answer.certificate_chain {
            // Refused unless the leaf certifies the new key.
            pairgate_keystore::import_certificate_chain(
                self.store.as_ref(),
                new_alias,
                chain.as_bytes(),
            )?;
        }
        if answer.fingerprint != self.fingerprint_of(new_alias)?.to_hex() {
            return Err(TerminalError::Io(format!(
                "the master recorded key {}, not this terminal's new one",
                answer.fingerprint
            )));
        }
        Ok(answer)
    }

    /// A pending key from an interrupted re-key: `Some` when the master
    /// serves it, `None` (deleted) when it refuses it (403) or it has no
    /// certificate; an error, keeping it, when the master cannot say.
    async fn resume(
        &self,
        pending: &PendingRekey,
        master: &str,
        trust: &ServerTrust,
    ) -> Result<Option<Alias>, TerminalError> {
        let alias = Alias::new(&pending.alias)?;
        let served = match self.https_as(&alias, trust.clone()) {
            Ok(client) => {
                let r = client
                    .request("GET", &format!("{master}/v1/me"), &[], None)
                    .await?;
                match r.status {
                    200 => true,
                    // The master does not know this key: it goes.
                    403 => false,
                    // Not an answer about the key (the master cannot reach
                    // its store, say): the key stays for the next try.
                    _ => return Err(refusal(&r)),
                }
            }
            Err(TerminalError::NotInitialised | TerminalError::NoCertificate(_)) => false,
            Err(e) => return Err(e),
        };
        if served {
            return Ok(Some(alias));
        }
        self.discard(&alias)?;
        Ok(None)
    }

    /// Moves the identity to `new_alias`, uses it once at the master (the
    /// master then retires the old key), and deletes the old key.
    async fn switch(
        &self,
        new_alias: Alias,
        old_alias: &Alias,
        old: TerminalFingerprint,
        master: &str,
        trust: &ServerTrust,
    ) -> Result<Rekeyed, TerminalError> {
        let new = self.fingerprint_of(&new_alias)?;
        let mut state = self.state.load()?;
        state.alias = Some(new_alias.to_string());
        state.rekey = None;
        self.state.save(&state)?;
        self.set_alias(new_alias.clone());
        let r = self
            .https_as(&new_alias, trust.clone())?
            .request("GET", &format!("{master}/v1/me"), &[], None)
            .await?;
        if r.status != 200 {
            return Err(refusal(&r));
        }
        match self.store.delete(old_alias) {
            Ok(()) | Err(KeyStoreError::NoSuchAlias(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Rekeyed {
            alias: new_alias.to_string(),
            fingerprint: new.to_hex(),
            previous_fingerprint: old.to_hex(),
            previous_alias: old_alias.to_string(),
        })
    }

    /// Deletes a new key that will not be used, and forgets it.
    fn discard(&self, alias: &Alias) -> Result<(), TerminalError> {
        match self.store.delete(alias) {
            Ok(()) | Err(KeyStoreError::NoSuchAlias(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut state = self.state.load()?;
        state.rekey = None;
        self.state.save(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_in_the_first_quarter_of_the_window_by_fingerprint() {
        let end = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let window = Duration::from_secs(30 * 86_400);
        let a = TerminalFingerprint::from_bytes([1; 32]);
        let b = TerminalFingerprint::from_bytes([9; 32]);
        for fp in [&a, &b] {
            let due = renewal_due_at(end, window, fp);
            assert!(
                due >= end - window && due <= end - window + window / 4,
                "{due:?}"
            );
            assert_eq!(due, renewal_due_at(end, window, fp));
        }
        assert_ne!(
            renewal_due_at(end, window, &a),
            renewal_due_at(end, window, &b)
        );
        let early = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        assert!(renewal_due_at(early, window, &a) >= SystemTime::UNIX_EPOCH);
    }

    #[test]
    fn new_aliases_count_up_from_the_base() {
        let a = |s: &str| Alias::new(s).unwrap();
        assert_eq!(next_alias(&a("terminal"), &[]).unwrap(), a("terminal.k2"));
        assert_eq!(
            next_alias(&a("terminal.k2"), &["terminal.k2".into()]).unwrap(),
            a("terminal.k3")
        );
        let taken = vec!["t.k2".to_string(), "t.k3".to_string()];
        assert_eq!(next_alias(&a("t"), &taken).unwrap(), a("t.k4"));
        assert_eq!(next_alias(&a("x.kz"), &[]).unwrap(), a("x.kz.k2"));
        let long = "a".repeat(64);
        assert!(next_alias(&a(&long), &[]).unwrap().as_str().len() <= 64);
    }
}
