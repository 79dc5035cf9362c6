//! The pairing verbs: open, reveal, approve by code with a fresh TOTP,
//! reject, expire, supersede, unpair, and the paired set they feed.

use std::time::{Duration, SystemTime};

use pairgate_pki::{Nonce, PairingCode, SpkiPin, TerminalFingerprint};
use pairgate_store::{
    Actor, NewTerminal, Opened, PairingAttempt, PairingLimits, PairingRequest, PairingState, Role,
    Serial, Store, StoreError, TerminalState, Wake,
};

pub(crate) const SERIAL: &str = "ATM-7";

pub(crate) fn fp(byte: u8) -> TerminalFingerprint {
    TerminalFingerprint::from_bytes([byte; 32])
}

fn server_pin() -> SpkiPin {
    SpkiPin::from_bytes([0x22; 32])
}

pub(crate) fn attempt(fingerprint: TerminalFingerprint, nonce: &Nonce) -> PairingAttempt {
    PairingAttempt {
        serial: Serial::new(SERIAL).unwrap(),
        fingerprint,
        certificate: vec![0x30, 0x00],
        remote_address: "127.0.0.1:5000".into(),
        model: "X9".into(),
        firmware: "1.2.3".into(),
        commitment: nonce.commitment(),
        server_pin: server_pin(),
    }
}

pub(crate) async fn setup(store: &Store) -> Operator {
    let admin = Actor::new("admin");
    let new = NewTerminal {
        serial: SERIAL.into(),
        ..NewTerminal::default()
    };
    store
        .register_terminal(
            &new,
            &pairgate_store::Changer::local(admin.name()),
            SystemTime::now(),
        )
        .await
        .unwrap();
    Operator::create(store, "olga", Role::Operator).await
}

/// An operator and their authenticator.
pub(crate) struct Operator {
    name: String,
    uri: String,
    /// Each code is taken from a later time step, so none is a replay.
    step: u64,
}

impl Operator {
    pub(crate) async fn create(store: &Store, name: &str, role: Role) -> Self {
        let creds = store
            .create_operator(name, role, &Actor::new("admin"), SystemTime::now())
            .await
            .unwrap();
        assert!(
            creds
                .totp_uri
                .starts_with(&format!("otpauth://totp/pairgate:{name}?secret="))
        );
        Self {
            name: name.into(),
            uri: creds.totp_uri.to_string(),
            step: pairgate_testkit::totp_step_now(),
        }
    }

    /// A fresh (time, code) pair one step after the last.
    pub(crate) fn next(&mut self) -> (SystemTime, String) {
        self.step += 1;
        (
            SystemTime::UNIX_EPOCH + Duration::from_secs(self.step * 30),
            pairgate_testkit::totp_code(&self.uri, self.step),
        )
    }

    /// A (time, code) pair one step after the last whose code is wrong.
    pub(crate) fn wrong(&mut self) -> (SystemTime, String) {
        let (now, code) = self.next();
        let n: u32 = code.parse().unwrap();
        (now, format!("{:06}", (n + 1) % 1_000_000))
    }

    /// Lets `steps` time steps pass.
    pub(crate) fn wait(&mut self, steps: u64) {
        self.step += steps;
    }

    /// The username.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) async fn approve(
        &mut self,
        store: &Store,
        id: &str,
        code: PairingCode,
    ) -> Result<pairgate_store::Terminal, StoreError> {
        let (now, totp) = self.next();
        let proof = store.verify_second_factor(&self.name, &totp, now).await?;
        // Approval happens "now" in wall-clock terms so requests have not expired.
        store
            .approve_pairing(id, &code, &proof, SystemTime::now())
            .await
    }
}

pub(crate) async fn open(
    store: &Store,
    fingerprint: TerminalFingerprint,
    nonce: &Nonce,
) -> PairingRequest {
    match store
        .open_pairing_request(
            &attempt(fingerprint, nonce),
            &PairingLimits::default(),
            SystemTime::now(),
        )
        .await
        .unwrap()
    {
        Opened::Pending(req) => req,
        Opened::Paired(t) => panic!("unexpectedly paired: {t:?}"),
    }
}

/// The code as the terminal computes it from what it saw.
fn terminal_code(
    req: &PairingRequest,
    fingerprint: TerminalFingerprint,
    nonce: &Nonce,
) -> PairingCode {
    PairingCode::derive(&fingerprint, &server_pin(), nonce, &req.server_nonce)
}

async fn full_pairing(store: &Store) {
    let mut olga = setup(store).await;
    let generation = store.paired_generation().await.unwrap();
    let nonce = Nonce::random();
    let req = open(store, fp(1), &nonce).await;
    assert_eq!(req.state, PairingState::AwaitingReveal);
    assert_eq!(req.state.wire_status(), "pending");
    assert!(!req.flagged);
    assert_eq!(req.server_nonce.to_hex().len(), 64);
    // Nothing to approve before the reveal.
    let early = olga
        .approve(store, &req.id, PairingCode::from_value(0).unwrap())
        .await;
    assert!(
        matches!(early, Err(StoreError::NotRevealed(_))),
        "{early:?}"
    );
    let revealed = store
        .reveal_pairing_nonce(&req.id, &fp(1), &nonce, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(revealed.state, PairingState::Pending);
    let code = terminal_code(&req, fp(1), &nonce);
    assert_eq!(revealed.code(), Some(code));
    let terminal = olga.approve(store, &req.id, code).await.unwrap();
    assert_eq!(terminal.state, TerminalState::Paired);
    assert_eq!(terminal.paired_fingerprint, Some(fp(1)));
    assert_eq!(terminal.paired_by.as_deref(), Some("olga"));
    assert_eq!(
        store.pairing_request(&req.id).await.unwrap().unwrap().state,
        PairingState::Approved
    );
    assert_eq!(store.paired_generation().await.unwrap(), generation + 1);
    assert_eq!(
        store.paired_fingerprints().await.unwrap(),
        vec![(fp(1), Serial::new(SERIAL).unwrap())]
    );
    assert_eq!(
        store
            .paired_terminal(&fp(1))
            .await
            .unwrap()
            .unwrap()
            .serial
            .as_str(),
        SERIAL
    );
    // The paired fingerprint asking again gets its terminal at once.
    let again = store
        .open_pairing_request(
            &attempt(fp(1), &Nonce::random()),
            &PairingLimits::default(),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert!(matches!(again, Opened::Paired(_)));
    // Approving twice is refused.
    let twice = olga.approve(store, &req.id, code).await;
    assert!(matches!(twice, Err(StoreError::Closed { .. })), "{twice:?}");
    let actions: Vec<String> = store
        .audit_records(20)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|r| r.action)
        .collect();
    assert_eq!(
        actions,
        [
            "terminal.register",
            "operator.create",
            "pairing.open",
            "pairing.reveal",
            "pairing.approve"
        ]
    );
    assert!(store.verify_audit().await.unwrap().intact());
}

async fn second_factor_is_required_and_single_use(store: &Store) {
    let mut olga = setup(store).await;
    let (now, code) = olga.next();
    assert!(store.verify_second_factor("olga", &code, now).await.is_ok());
    // The same code again, or an older one, is a replay.
    let replay = store.verify_second_factor("olga", &code, now).await;
    assert!(
        matches!(replay, Err(StoreError::Replayed(ref m)) if m.contains("already used")),
        "{replay:?}"
    );
    let (now, _) = olga.next();
    for bad in ["000000", "12345", "abcdef", ""] {
        let r = store.verify_second_factor("olga", bad, now).await;
        assert!(
            matches!(r, Err(StoreError::Unauthorized(_))),
            "{bad:?}: {r:?}"
        );
    }
    let r = store.verify_second_factor("nobody", "123456", now).await;
    assert!(matches!(r, Err(StoreError::Unauthorized(_))));
    // A viewer may prove 2FA but not approve.
    let mut vera = Operator::create(store, "vera", Role::Viewer).await;
    let nonce = Nonce::random();
    let req = open(store, fp(1), &nonce).await;
    store
        .reveal_pairing_nonce(&req.id, &fp(1), &nonce, SystemTime::now())
        .await
        .unwrap();
    let r = vera
        .approve(store, &req.id, terminal_code(&req, fp(1), &nonce))
        .await;
    assert!(matches!(r, Err(StoreError::Forbidden(_))), "{r:?}");
    assert!(store.paired_fingerprints().await.unwrap().is_empty());
    // Without a TOTP seed there is no second factor at all.
    sqlx::query("UPDATE operators SET totp_secret = NULL WHERE username = 'vera'")
        .execute(store.pool())
        .await
        .unwrap();
    let (now, code) = vera.next();
    let r = store.verify_second_factor("vera", &code, now).await;
    assert!(
        matches!(r, Err(StoreError::Unauthorized(ref m)) if m.contains("not set up")),
        "{r:?}"
    );
    assert!(!store.operator("vera").await.unwrap().unwrap().totp_enabled);
    // Passwords.
    assert!(
        store
            .verify_password("olga", "wrong")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .verify_password("nobody", "wrong")
            .await
            .unwrap()
            .is_none()
    );
    let dup = store
        .create_operator("olga", Role::Admin, &Actor::new("admin"), SystemTime::now())
        .await;
    assert!(matches!(dup, Err(StoreError::AlreadyExists(_))));
}

async fn three_wrong_codes_end_the_request(store: &Store) {
    let mut olga = setup(store).await;
    let nonce = Nonce::random();
    let req = open(store, fp(1), &nonce).await;
    store
        .reveal_pairing_nonce(&req.id, &fp(1), &nonce, SystemTime::now())
        .await
        .unwrap();
    let right = terminal_code(&req, fp(1), &nonce);
    let wrong = PairingCode::from_value((right.value() + 1) % 100_000_000).unwrap();
    for remaining in [2, 1, 0] {
        let r = olga.approve(store, &req.id, wrong).await;
        assert!(
            matches!(r, Err(StoreError::WrongCode { remaining: left, .. }) if left == remaining),
            "{r:?}"
        );
    }
    let stored = store.pairing_request(&req.id).await.unwrap().unwrap();
    assert_eq!(stored.state, PairingState::Failed);
    assert_eq!(stored.failed_attempts, 3);
    assert_eq!(stored.state.wire_status(), "rejected");
    // Even the right code is too late now.
    let r = olga.approve(store, &req.id, right).await;
    assert!(matches!(r, Err(StoreError::Closed { .. })), "{r:?}");
    assert!(store.paired_fingerprints().await.unwrap().is_empty());
    assert!(store.verify_audit().await.unwrap().intact());
}

async fn wrong_reveal_ends_the_request(store: &Store) {
    setup(store).await;
    let nonce = Nonce::random();
    let req = open(store, fp(1), &nonce).await;
    // Another fingerprint cannot even see it.
    let r = store
        .reveal_pairing_nonce(&req.id, &fp(2), &nonce, SystemTime::now())
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    let r = store
        .reveal_pairing_nonce(&req.id, &fp(1), &Nonce::random(), SystemTime::now())
        .await;
    assert!(matches!(r, Err(StoreError::RevealMismatch(_))), "{r:?}");
    let r = store
        .reveal_pairing_nonce(&req.id, &fp(1), &nonce, SystemTime::now())
        .await;
    assert!(matches!(r, Err(StoreError::Closed { .. })), "{r:?}");
    assert_eq!(
        store.pairing_request(&req.id).await.unwrap().unwrap().state,
        PairingState::Failed
    );
    let r = store
        .reveal_pairing_nonce("not-an-id", &fp(1), &nonce, SystemTime::now())
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

async fn repeats_renewals_and_supersession(store: &Store) {
    setup(store).await;
    let nonce = Nonce::random();
    let first = open(store, fp(1), &nonce).await;
    // The same fingerprint and commitment: the same request, same nonce.
    let same = open(store, fp(1), &nonce).await;
    assert_eq!(same.id, first.id);
    assert_eq!(same.server_nonce, first.server_nonce);
    // The same fingerprint with a new commitment: same request, fresh
    // server nonce.
    let nonce2 = Nonce::random();
    let renewed = open(store, fp(1), &nonce2).await;
    assert_eq!(renewed.id, first.id);
    assert_ne!(renewed.server_nonce, first.server_nonce);
    assert_eq!(renewed.commitment, nonce2.commitment());
    // Another fingerprint supersedes it and is flagged.
    let other = open(store, fp(2), &Nonce::random()).await;
    assert_ne!(other.id, first.id);
    assert!(other.flagged);
    assert_eq!(other.supersedes.as_deref(), Some(first.id.as_str()));
    let old = store.pairing_request(&first.id).await.unwrap().unwrap();
    assert_eq!(old.state, PairingState::Superseded);
    let open_now = store.pairing_requests(true, 10).await.unwrap();
    assert_eq!(open_now.len(), 1);
    assert_eq!(open_now[0].id, other.id);
    assert_eq!(store.pairing_requests(false, 10).await.unwrap().len(), 2);
}

/// Refused without a write: the gate audits refusals aggregated, so a
/// flood of them cannot grow the database.
async fn unknown_serials_are_refused_without_a_write(store: &Store) {
    setup(store).await;
    let mut a = attempt(fp(1), &Nonce::random());
    a.serial = Serial::new("NOPE-1").unwrap();
    let before = store.audit_records(100).await.unwrap().len();
    let r = store
        .open_pairing_request(&a, &PairingLimits::default(), SystemTime::now())
        .await;
    assert!(
        matches!(r, Err(StoreError::UnknownSerial(ref s)) if s == "NOPE-1"),
        "{r:?}"
    );
    assert_eq!(store.audit_records(100).await.unwrap().len(), before);
    assert!(store.pairing_requests(false, 10).await.unwrap().is_empty());
    // Over-long fields: nothing written.
    let mut a = attempt(fp(1), &Nonce::random());
    a.model = "m".repeat(101);
    let r = store
        .open_pairing_request(&a, &PairingLimits::default(), SystemTime::now())
        .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    assert_eq!(store.audit_records(100).await.unwrap().len(), before);
}

async fn expiry_and_limits(store: &Store) {
    let mut olga = setup(store).await;
    let short = PairingLimits {
        ttl: Duration::from_millis(1),
        max_open: 1,
        ..PairingLimits::default()
    };
    let nonce = Nonce::random();
    let req = match store
        .open_pairing_request(&attempt(fp(1), &nonce), &short, SystemTime::now())
        .await
        .unwrap()
    {
        Opened::Pending(req) => req,
        Opened::Paired(_) => unreachable!(),
    };
    let later = SystemTime::now() + Duration::from_secs(1);
    let r = store
        .reveal_pairing_nonce(&req.id, &fp(1), &nonce, later)
        .await;
    assert!(matches!(r, Err(StoreError::Expired(_))), "{r:?}");
    assert_eq!(
        store.pairing_request(&req.id).await.unwrap().unwrap().state,
        PairingState::Expired
    );
    let r = olga
        .approve(store, &req.id, PairingCode::from_value(1).unwrap())
        .await;
    assert!(matches!(r, Err(StoreError::Closed { .. })), "{r:?}");

    // The open-request cap, across serials; the sweep frees it.
    let new = NewTerminal {
        serial: "ATM-8".into(),
        ..NewTerminal::default()
    };
    store
        .register_terminal(
            &new,
            &pairgate_store::Changer::local("admin"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    let capped = PairingLimits {
        ttl: Duration::from_secs(60),
        max_open: 1,
        ..PairingLimits::default()
    };
    store
        .open_pairing_request(
            &attempt(fp(1), &Nonce::random()),
            &capped,
            SystemTime::now(),
        )
        .await
        .unwrap();
    let mut b = attempt(fp(2), &Nonce::random());
    b.serial = Serial::new("ATM-8").unwrap();
    let audit_before = store.audit_records(100).await.unwrap().len();
    let r = store
        .open_pairing_request(&b, &capped, SystemTime::now())
        .await;
    assert!(matches!(r, Err(StoreError::Limit(_))), "{r:?}");
    assert_eq!(store.audit_records(100).await.unwrap().len(), audit_before);
    let swept = store
        .expire_pairing_requests(SystemTime::now() + Duration::from_secs(61))
        .await
        .unwrap();
    assert_eq!(swept, 1);
    store
        .open_pairing_request(&b, &capped, SystemTime::now())
        .await
        .unwrap();
}

/// Registers [`SERIAL`] and pairs it with `fp(1)` through the protocol
/// and an operator's approval.
pub(crate) async fn attempt_and_pair(store: &Store) {
    let mut olga = setup(store).await;
    let nonce = Nonce::random();
    let req = open(store, fp(1), &nonce).await;
    store
        .reveal_pairing_nonce(&req.id, &fp(1), &nonce, SystemTime::now())
        .await
        .unwrap();
    olga.approve(store, &req.id, terminal_code(&req, fp(1), &nonce))
        .await
        .unwrap();
}

async fn unpair_breaks_trust(store: &Store) {
    attempt_and_pair(store).await;
    let serial = Serial::new(SERIAL).unwrap();
    let beat = store
        .record_heartbeat(
            &serial,
            &fp(1),
            ("10.0.0.1:1", Some("2.0"), None),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(beat, pairgate_store::Heartbeat::Recorded);
    let t = store.terminal(&serial).await.unwrap().unwrap();
    assert_eq!(t.firmware.as_deref(), Some("2.0"));
    assert_eq!(t.last_seen_address.as_deref(), Some("10.0.0.1:1"));
    let generation = store.paired_generation().await.unwrap();
    let t = store
        .unpair(
            &serial,
            &pairgate_store::TrustChange::local("olga"),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(t.state, TerminalState::Unpaired);
    assert!(t.paired_fingerprint.is_none());
    assert_eq!(store.paired_generation().await.unwrap(), generation + 1);
    assert!(store.paired_fingerprints().await.unwrap().is_empty());
    assert!(store.paired_terminal(&fp(1)).await.unwrap().is_none());
    let beat = store
        .record_heartbeat(
            &serial,
            &fp(1),
            ("10.0.0.1:1", None, None),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(beat, pairgate_store::Heartbeat::NotPaired);
    let again = store
        .unpair(
            &serial,
            &pairgate_store::TrustChange::local("olga"),
            SystemTime::now(),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    // The old fingerprint has to ask again; the terminal is no longer
    // paired, so the new request is not flagged as a re-pair.
    let req = open(store, fp(1), &Nonce::random()).await;
    assert!(!req.flagged);
    let audit = store.audit_records(1).await.unwrap();
    assert_eq!(audit[0].action, "pairing.open");
    assert!(store.verify_audit().await.unwrap().intact());
}

async fn watch_wakes_on_change(store: &Store) {
    let mut olga = setup(store).await;
    let mut watch = store
        .watch_paired(Duration::from_millis(50), Duration::from_secs(30))
        .await
        .unwrap();
    let nonce = Nonce::random();
    let req = open(store, fp(1), &nonce).await;
    store
        .reveal_pairing_nonce(&req.id, &fp(1), &nonce, SystemTime::now())
        .await
        .unwrap();
    olga.approve(store, &req.id, terminal_code(&req, fp(1), &nonce))
        .await
        .unwrap();
    // SQLite polls every 50 ms; PostgreSQL is woken by NOTIFY long before
    // its 30 s reconcile.
    let woke = tokio::time::timeout(Duration::from_secs(5), watch.wait())
        .await
        .expect("the watch did not wake after a change");
    assert_eq!(woke, Wake::Check);
}

crate::on_both_backends!(
    full_pairing,
    second_factor_is_required_and_single_use,
    three_wrong_codes_end_the_request,
    wrong_reveal_ends_the_request,
    repeats_renewals_and_supersession,
    unknown_serials_are_refused_without_a_write,
    expiry_and_limits,
    unpair_breaks_trust,
    watch_wakes_on_change,
);
