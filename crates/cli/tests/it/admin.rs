//! `pairgate admin` and `pairgate server` end to end, on SQLite and on
//! PostgreSQL: the whole approval flow from the command line, a crash
//! (SIGKILL) in the middle of approvals, an edited audit row, and the
//! server binary answering a terminal.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use pairgate_pki::{Nonce, PairingCode, SpkiPin, TerminalFingerprint};
use pairgate_store::{
    Actor, NewTerminal, Opened, PairingAttempt, PairingLimits, PairingRequest, PairingState, Role,
    Serial, Store, TerminalState,
};

use crate::support::{ServerProcess, fails, json, ok, pairgate, totp_now};

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

/// A data directory, or a fresh PostgreSQL database, as `admin` flags.
struct Place {
    dir: pairgate_testkit::TempDir,
    flags: Vec<String>,
}

impl Place {
    async fn new(db: Db) -> Self {
        let dir = pairgate_testkit::temp_dir();
        let mut flags = vec![
            "--data".to_owned(),
            dir.path().join("data").display().to_string(),
        ];
        match db {
            Db::Postgres => {
                flags.push("--database-url".into());
                flags.push(pairgate_testkit::fresh_postgres_database().await);
            }
            // As `pairgate server` would at its first start: admin never
            // makes a database.
            Db::Sqlite => {
                Store::open_data_dir(&dir.path().join("data"))
                    .await
                    .unwrap()
                    .pool()
                    .close()
                    .await;
            }
        }
        Self { dir, flags }
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["admin"];
        all.extend(self.flags.iter().map(String::as_str));
        all.extend_from_slice(args);
        all
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(self.dir.path(), &self.args(args))
    }

    fn fails(&self, args: &[&str]) -> String {
        fails(self.dir.path(), &self.args(args))
    }

    async fn store(&self) -> Store {
        match self.flags.get(3) {
            Some(url) => Store::open(url).await.unwrap(),
            None => Store::open_data_dir(&self.dir.path().join("data"))
                .await
                .unwrap(),
        }
    }
}

/// Opens and reveals a request for `serial` as a terminal would through
/// the gate; returns it with the code the terminal shows.
async fn revealed_request(
    store: &Store,
    serial: &str,
    fp_byte: u8,
) -> (PairingRequest, PairingCode) {
    let nonce = Nonce::random();
    let fingerprint = TerminalFingerprint::from_bytes([fp_byte; 32]);
    let pin = SpkiPin::from_bytes([0x42; 32]);
    let attempt = PairingAttempt {
        serial: Serial::new(serial).unwrap(),
        fingerprint,
        certificate: vec![0x30, 0x00],
        remote_address: "127.0.0.1:1".into(),
        model: "X9".into(),
        firmware: "1.0".into(),
        commitment: nonce.commitment(),
        server_pin: pin,
    };
    let Opened::Pending(req) = store
        .open_pairing_request(&attempt, &PairingLimits::default(), SystemTime::now())
        .await
        .unwrap()
    else {
        panic!("already paired")
    };
    let req = store
        .reveal_pairing_nonce(&req.id, &fingerprint, &nonce, SystemTime::now())
        .await
        .unwrap();
    let server_nonce: Nonce = req.server_nonce;
    let code = PairingCode::derive(&fingerprint, &pin, &nonce, &server_nonce);
    (req, code)
}

async fn approval_flow_from_the_command_line(db: Db) {
    let place = Place::new(db).await;
    let created = json(&place.ok(&["--json", "operator", "create", "olga", "--role", "operator"]));
    assert_eq!(created["username"], "olga");
    assert_eq!(created["password"].as_str().unwrap().len(), 20);
    let uri = created["totp_uri"].as_str().unwrap().to_owned();
    assert!(
        uri.starts_with("otpauth://totp/pairgate:olga?secret="),
        "{uri}"
    );
    let err = place.fails(&["operator", "create", "eve", "--role", "root"]);
    assert!(err.contains("root"), "{err}");
    let t = json(&place.ok(&[
        "--json",
        "terminal",
        "add",
        "ATM-1",
        "--name",
        "Lobby",
        "--location",
        "Main St 1",
        "--contact",
        "Jana",
        "--phone",
        "+420 1",
    ]));
    assert_eq!(t["state"], "registered");
    let err = place.fails(&["terminal", "add", "bad serial"]);
    assert!(err.contains("invalid serial"), "{err}");

    let store = place.store().await;
    let (req, code) = revealed_request(&store, "ATM-1", 1).await;
    let listed = json(&place.ok(&["--json", "requests", "--pending"]));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], req.id);
    assert_eq!(listed[0]["serial"], "ATM-1");
    assert_eq!(listed[0]["fingerprint"], req.fingerprint.to_hex());
    assert_eq!(listed[0]["state"], "pending");
    assert!(listed[0]["created_at"].as_str().unwrap().ends_with('Z'));

    let wrong_code = PairingCode::from_value((code.value() + 1) % 100_000_000)
        .unwrap()
        .to_string();
    let right_code = code.to_string();
    // A wrong TOTP: refused, nothing counted.
    let err = place.fails(&[
        "approve",
        &req.id,
        "--code",
        &right_code,
        "--operator",
        "olga",
        "--totp",
        "000000",
    ]);
    assert!(err.contains("wrong TOTP"), "{err}");
    let err = place.fails(&[
        "approve",
        &req.id,
        "--code",
        &right_code,
        "--operator",
        "olga",
    ]);
    assert!(err.contains("--totp"), "{err}");
    // A wrong code counts.
    let err = place.fails(&[
        "approve",
        &req.id,
        "--code",
        &wrong_code,
        "--operator",
        "olga",
        "--totp",
        &totp_now(&uri, -1),
    ]);
    assert!(
        err.contains("wrong pairing code") && err.contains("2 attempt"),
        "{err}"
    );
    // The same TOTP again is a replay.
    let err = place.fails(&[
        "approve",
        &req.id,
        "--code",
        &right_code,
        "--operator",
        "olga",
        "--totp",
        &totp_now(&uri, -1),
    ]);
    assert!(err.contains("already used"), "{err}");
    let paired = json(&place.ok(&[
        "--json",
        "approve",
        &req.id,
        "--code",
        &right_code,
        "--operator",
        "olga",
        "--totp",
        &totp_now(&uri, 0),
    ]));
    assert_eq!(paired["state"], "paired");
    assert_eq!(paired["paired_by"], "olga");
    assert_eq!(paired["paired_fingerprint"], req.fingerprint.to_hex());
    let terminals = json(&place.ok(&["--json", "terminal", "list"]));
    assert_eq!(terminals[0]["state"], "paired");

    let unpaired = json(&place.ok(&["--json", "unpair", "ATM-1"]));
    assert_eq!(unpaired["state"], "unpaired");
    let err = place.fails(&["unpair", "ATM-1"]);
    assert!(err.contains("not paired"), "{err}");

    let (req2, _) = revealed_request(&store, "ATM-1", 2).await;
    let rejected = json(&place.ok(&["--json", "reject", &req2.id]));
    assert_eq!(rejected["state"], "rejected");
    assert!(place.ok(&["--json", "requests", "--pending"]).trim() == "[]");

    let audit = json(&place.ok(&["--json", "audit"]));
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"pairing.approve") && actions.contains(&"terminal.unpair"));
    let verified = json(&place.ok(&["--json", "audit", "verify"]));
    assert_eq!(verified["intact"], true);

    // Someone edits a row behind pairgate's back.
    sqlx::query("UPDATE audit_log SET detail = '{}' WHERE action = 'pairing.approve'")
        .execute(store.pool())
        .await
        .unwrap();
    let broken_at = store.verify_audit().await.unwrap().first_broken.unwrap();
    let err = place.fails(&["audit", "verify"]);
    assert!(
        err.contains(&format!("broken at record {broken_at}")),
        "{err}"
    );
}

/// SIGKILL at staggered moments of `pairgate admin approve`: afterwards
/// every request is either approved with its terminal paired and its audit
/// record, or none of the three; the chain stays intact.
async fn kill_during_approval_is_all_or_nothing(db: Db) {
    let place = Place::new(db).await;
    let store = place.store().await;
    let mut outcomes = (0, 0);
    for i in 0..14u8 {
        let serial = format!("K-{i}");
        let new = NewTerminal {
            serial: serial.clone(),
            ..NewTerminal::default()
        };
        store
            .register_terminal(
                &new,
                &pairgate_store::Changer::local("test"),
                SystemTime::now(),
            )
            .await
            .unwrap();
        let creds = store
            .create_operator(
                &format!("op{i}"),
                Role::Operator,
                &Actor::new("test"),
                SystemTime::now(),
            )
            .await
            .unwrap();
        let (req, code) = revealed_request(&store, &serial, 100 + i).await;
        let code = code.to_string();
        let totp = totp_now(&creds.totp_uri, 0);
        let operator = format!("op{i}");
        let args = place.args(&[
            "approve",
            &req.id,
            "--code",
            &code,
            "--operator",
            &operator,
            "--totp",
            &totp,
        ]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_pairgate"))
            .args(&args)
            .current_dir(place.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Staggered from "before the store is open" to "after the commit"
        // (an approval takes a few milliseconds here).
        tokio::time::sleep(Duration::from_micros(u64::from(i) * 1500)).await;
        let _ = child.kill();
        let _ = child.wait();

        let state = store.pairing_request(&req.id).await.unwrap().unwrap().state;
        let terminal = store
            .terminal(&Serial::new(&serial).unwrap())
            .await
            .unwrap()
            .unwrap();
        let audited = store
            .audit_records(1000)
            .await
            .unwrap()
            .iter()
            .any(|r| r.action == "pairing.approve" && r.detail.contains(&req.id));
        let approved = state == PairingState::Approved;
        let paired = terminal.state == TerminalState::Paired
            && terminal.paired_fingerprint == Some(req.fingerprint);
        assert_eq!(
            (approved, paired, audited),
            (approved, approved, approved),
            "iteration {i}: request {state:?}, terminal {:?}, audit record {audited}",
            terminal.state
        );
        if approved {
            outcomes.1 += 1;
        } else {
            assert_eq!(state, PairingState::Pending, "iteration {i}");
            outcomes.0 += 1;
        }
        assert!(
            store.verify_audit().await.unwrap().intact(),
            "iteration {i}"
        );
    }
    eprintln!(
        "{db:?}: {} killed before the commit, {} after",
        outcomes.0, outcomes.1
    );
    assert_eq!(outcomes.0 + outcomes.1, 14);
}

async fn server_binary_serves_the_gate(db: Db) {
    let place = Place::new(db).await;
    let data = place.dir.path().join("data");
    // --data comes from ServerProcess; the rest (a database URL) from the place.
    let mut extra: Vec<&str> = place.flags.iter().skip(2).map(String::as_str).collect();
    extra.extend(["--gate-listen", "127.0.0.1:0"]);
    let mut server = ServerProcess::start(place.dir.path(), &data, &extra);
    let gate = server.gate.clone();
    let pin: SpkiPin = server.pin.parse().unwrap();
    // A terminal's first contact sees the printed pin, and an unknown
    // serial is refused in the wire's error format.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let policy = pairgate_tls::TlsPolicy::default();
    let identity = pairgate_tls::pem_certified_key(
        &policy.provider(),
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let client = pairgate_tls::https::HttpsClient::new(
        pairgate_tls::client::TlsClient::new(
            Some(identity),
            pairgate_tls::client::ServerTrust::FirstContact,
            &policy,
        )
        .unwrap(),
    );
    let body =
        serde_json::json!({"serial": "NOPE", "commitment": Nonce::random().commitment().to_hex()});
    let r = client
        .request(
            "POST",
            &format!("https://{gate}/v1/pairing"),
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(r.server_pin, Some(pin));
    assert_eq!(r.status, 403);
    let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(answer["error"]["code"], "PG-UNKNOWN-SERIAL");
    // SIGTERM stops it cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(server.child.wait().unwrap().success());
    drop(server);
    // The store is private to its owner.
    if let Db::Sqlite = db {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("pairgate.db")), 0o600);
        assert_eq!(mode(&data.join("identity.passphrase")), 0o600);
    }
    // A restart keeps the identity: the pin terminals hold stays valid.
    let again = ServerProcess::start(place.dir.path(), &data, &extra);
    assert_eq!(again.pin, pin.to_hex());
    drop(again);
    let out = pairgate(place.dir.path(), &["server", "--set", "nonsense=1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonsense"));
}

/// `pairgate server` creates the first-run admin and serves CAS; a token
/// made with `pairgate admin token create` calls the CAS API as its
/// operator until `admin token revoke`.
async fn cas_and_api_tokens_from_the_command_line(db: Db) {
    let place = Place::new(db).await;
    let data = place.dir.path().join("data");
    let mut extra: Vec<&str> = place.flags.iter().skip(2).map(String::as_str).collect();
    extra.extend(["--gate-listen", "127.0.0.1:0"]);
    let server = ServerProcess::start(place.dir.path(), &data, &extra);
    let password = server
        .first_run_password
        .clone()
        .expect("a first-run password");
    assert_eq!(
        std::fs::read_to_string(data.join("initial-admin-password"))
            .unwrap()
            .trim(),
        password
    );
    let (status, page) = crate::support::http_get(&format!("{}/login", server.cas), &[]);
    assert_eq!(status, 200);
    assert!(page.contains("Sign in"));
    ok(
        place.dir.path(),
        &place.args(&["operator", "create", "olga", "--role", "operator"]),
    );
    let made = json(&ok(
        place.dir.path(),
        &place.args(&[
            "--json",
            "token",
            "create",
            "--operator",
            "olga",
            "--name",
            "ci",
        ]),
    ));
    let token = made["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pgt_"));
    let auth = format!("Bearer {token}");
    let (status, body) = crate::support::http_get(
        &format!("{}/api/v1/terminals", server.cas),
        &[("Authorization", &auth)],
    );
    assert_eq!(status, 200, "{body}");
    let listed = json(&ok(
        place.dir.path(),
        &place.args(&["--json", "token", "list"]),
    ));
    assert_eq!(listed[0]["username"], "olga");
    assert!(
        !listed.to_string().contains(&token),
        "the list shows a token"
    );
    let id = made["id"].as_str().unwrap();
    ok(place.dir.path(), &place.args(&["token", "revoke", id]));
    let (status, _) = crate::support::http_get(
        &format!("{}/api/v1/terminals", server.cas),
        &[("Authorization", &auth)],
    );
    assert_eq!(status, 401);
    let err = fails(
        place.dir.path(),
        &place.args(&["token", "create", "--operator", "nobody"]),
    );
    assert!(err.contains("nobody"), "{err}");
}

/// The block list from the command line: a blocked key's open request
/// ends, the key cannot ask again, each change is audited, and bad input
/// changes nothing.
async fn blocking_keys_from_the_command_line(db: Db) {
    let place = Place::new(db).await;
    place.ok(&["terminal", "add", "ATM-1"]);
    let store = place.store().await;
    let (req, _) = revealed_request(&store, "ATM-1", 7).await;
    let fp = req.fingerprint.to_hex();
    let blocked = json(&place.ok(&["--json", "key", "block", &fp, "--reason", "supersede loop"]));
    assert_eq!(blocked["fingerprint"], fp);
    assert!(blocked["blocked_by"].as_str().unwrap().starts_with("cli"));
    let req = store.pairing_request(&req.id).await.unwrap().unwrap();
    assert_eq!(req.state, PairingState::Rejected);
    let listed = json(&place.ok(&["--json", "key", "list"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(place.ok(&["key", "list"]).contains("supersede loop"));
    let audit_before = store.audit_records(1000).await.unwrap().len();
    let err = place.fails(&["key", "block", &fp, "--reason", "again"]);
    assert!(err.contains("already exists"), "{err}");
    let err = place.fails(&["key", "block", "not-hex", "--reason", "x"]);
    assert!(err.contains("not-hex"), "{err}");
    assert_eq!(store.audit_records(1000).await.unwrap().len(), audit_before);
    let attempt = PairingAttempt {
        serial: Serial::new("ATM-1").unwrap(),
        fingerprint: TerminalFingerprint::from_bytes([7; 32]),
        certificate: vec![0x30, 0x00],
        remote_address: "127.0.0.1:1".into(),
        model: String::new(),
        firmware: String::new(),
        commitment: Nonce::random().commitment(),
        server_pin: SpkiPin::from_bytes([0x42; 32]),
    };
    let r = store
        .open_pairing_request(&attempt, &PairingLimits::default(), SystemTime::now())
        .await;
    assert!(
        matches!(r, Err(pairgate_store::StoreError::Blocked(_))),
        "{r:?}"
    );
    place.ok(&["key", "unblock", &fp]);
    let err = place.fails(&["key", "unblock", &fp]);
    assert!(err.contains("not found"), "{err}");
    let actions: Vec<String> = store
        .audit_records(2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(actions, ["key.unblock", "key.block"]);
}

/// Issue 13, finding 4: the running server signs checkpoints; a record
/// edited in SQLite with the chain recomputed is named by `audit verify`
/// online and, on an export, offline (no database, no data directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_audit_record_is_named_online_and_offline() {
    let place = Place::new(Db::Sqlite).await;
    let data = place.dir.path().join("data");
    let server = ServerProcess::start(
        place.dir.path(),
        &data,
        &[
            "--gate-listen",
            "127.0.0.1:0",
            "--set",
            "audit_checkpoint_secs=1",
        ],
    );
    for serial in ["ATM-1", "ATM-2", "ATM-3", "ATM-4"] {
        place.ok(&["terminal", "add", serial]);
    }
    let store = place.store().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (head, anchored) = store.audit_progress().await.unwrap();
        if head >= 4 && anchored == head {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint: {head} {anchored}"
        );
        // The checkpoint is signed by the `pairgate server` process on its
        // own real clock: poll it, with the deadline above.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let intact = json(&place.ok(&["--json", "audit", "verify"]));
    assert_eq!(intact["intact"], true);
    let (_, anchored) = store.audit_progress().await.unwrap();
    drop(server);
    // Record 3 is a terminal registration: the writer edits it and
    // recomputes the chain after it.
    crate::support::forge(&store, 3).await;
    assert!(
        store.verify_audit().await.unwrap().intact(),
        "the chain alone is fooled"
    );
    let err = place.fails(&["audit", "verify"]);
    assert!(
        err.contains("record 3") && err.contains("signed checkpoint"),
        "{err}"
    );
    let file = place.dir.path().join("audit.jsonl");
    let file_arg = file.display().to_string();
    place.ok(&["audit", "export", "--out", &file_arg]);
    assert!(
        place
            .fails(&["audit", "export", "--out", &file_arg])
            .contains("creating")
    );
    // Offline: no --data at all, only the file and the pin.
    let pin = store_pin(&place);
    let err = fails(
        place.dir.path(),
        &[
            "admin",
            "audit",
            "verify",
            "--file",
            &file_arg,
            "--server-pin",
            &pin,
        ],
    );
    assert!(err.contains("record 3"), "{err}");
    let err = fails(
        place.dir.path(),
        &["admin", "audit", "verify", "--file", &file_arg],
    );
    assert!(err.contains("--server-pin"), "{err}");
    assert!(anchored >= 4);
}

/// The server pin from the identity in the data directory.
fn store_pin(place: &Place) -> String {
    let data = place.dir.path().join("data");
    pairgate_server::identity::existing_pin(
        &format!("file:{}", data.join("identity").display()),
        &data.join("identity.passphrase"),
    )
    .unwrap()
    .to_hex()
}

/// Issue 13, finding 7: a mistyped data directory is refused and nothing
/// is created in its place.
#[test]
fn admin_refuses_a_data_directory_without_a_database() {
    let dir = pairgate_testkit::temp_dir();
    let missing = dir.path().join("pairgate-dta");
    let err = fails(
        dir.path(),
        &[
            "admin",
            "--data",
            missing.to_str().unwrap(),
            "terminal",
            "list",
        ],
    );
    assert!(err.contains("holds no pairgate database"), "{err}");
    assert!(!missing.exists(), "admin created {}", missing.display());
    std::fs::create_dir(&missing).unwrap();
    let err = fails(
        dir.path(),
        &["admin", "--data", missing.to_str().unwrap(), "audit"],
    );
    assert!(err.contains("holds no pairgate database"), "{err}");
    assert_eq!(std::fs::read_dir(&missing).unwrap().count(), 0);
}

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Postgres).await;
                }
            )*
        }
    };
}

/// The break-glass account changes from the command line: disable (tokens
/// revoked), enable, role, 2FA reset and the step-up lock, each audited;
/// the last admin stays; an unknown operator changes nothing.
async fn operators_from_the_command_line(db: Db) {
    let place = Place::new(db).await;
    place.ok(&["operator", "create", "boss", "--role", "admin"]);
    place.ok(&["operator", "create", "olga", "--role", "operator"]);
    let made = json(&place.ok(&["--json", "token", "create", "--operator", "olga"]));
    let token = made["token"].as_str().unwrap().to_owned();
    assert!(made["expires_at"].as_str().unwrap().ends_with('Z'));
    let store = place.store().await;
    let now = std::time::SystemTime::now();
    assert!(
        store
            .authenticate_api_token(&token, now)
            .await
            .unwrap()
            .is_some()
    );
    let olga = json(&place.ok(&["--json", "operator", "disable", "olga"]));
    assert_eq!(olga["disabled"], true);
    assert!(
        store
            .authenticate_api_token(&token, now)
            .await
            .unwrap()
            .is_none()
    );
    place.ok(&["operator", "enable", "olga"]);
    let olga = json(&place.ok(&["--json", "operator", "role", "olga", "--role", "viewer"]));
    assert_eq!(olga["role"], "viewer");
    let olga = json(&place.ok(&["--json", "operator", "reset-2fa", "olga"]));
    assert_eq!(olga["totp_enabled"], false);
    place.ok(&["operator", "clear-lock", "olga"]);
    let listed = json(&place.ok(&["--json", "operator", "list"]));
    assert_eq!(listed[1]["step_up"]["locked"], false, "{listed}");
    let err = place.fails(&["operator", "disable", "boss"]);
    assert!(err.contains("last enabled admin"), "{err}");
    let before = store.audit_records(1000).await.unwrap().len();
    let err = place.fails(&["operator", "disable", "nobody"]);
    assert!(err.contains("nobody"), "{err}");
    assert_eq!(store.audit_records(1000).await.unwrap().len(), before);
    let actions: Vec<String> = store
        .audit_records(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    for action in [
        "operator.disable",
        "operator.enable",
        "operator.role",
        "operator.totp_reset",
        "operator.step_up_cleared",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}: {actions:?}");
    }
}

on_both_databases!(
    operators_from_the_command_line,
    blocking_keys_from_the_command_line,
    cas_and_api_tokens_from_the_command_line,
    approval_flow_from_the_command_line,
    kill_during_approval_is_all_or_nothing,
    server_binary_serves_the_gate,
);
