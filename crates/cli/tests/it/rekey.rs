//! `pairgate terminal rekey` against a real `pairgate server` process, with
//! the terminal's key in the software store and in SoftHSM2: the new key
//! calls the master, the old key is deleted, a restore point taken before
//! the re-key is refused by the master, and the audit log shows the
//! lineage (`terminal.rekey`, then `terminal.rekey.activate`).

use std::path::Path;

use pairgate_testkit::temp_dir;

use crate::support::{ServerProcess, fails, json, ok, pair_through};

/// `pairgate --json terminal --state STATE [--keystore URI] ARGS…`.
fn terminal<'a>(state: &'a str, keystore: Option<&'a str>, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--json", "terminal", "--state", state];
    if let Some(uri) = keystore {
        all.extend(["--keystore", uri]);
    }
    all.extend_from_slice(args);
    all
}

/// Re-keys the paired terminal in `state` and checks what the agent and
/// the master then say; returns the new fingerprint.
fn rekey_and_call(cwd: &Path, state: &str, keystore: Option<&str>, old: &str) -> String {
    let done = json(&ok(cwd, &terminal(state, keystore, &["rekey"])));
    let new = done["fingerprint"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(done["previous_fingerprint"], old);
    assert_eq!(done["alias"], "terminal.k2");
    let me = json(&ok(
        cwd,
        &terminal(state, keystore, &["call", "GET", "/v1/me"]),
    ));
    assert_eq!(me["body"]["fingerprint"], new);
    let status = json(&ok(cwd, &terminal(state, keystore, &["status"])));
    assert_eq!(status["fingerprint"], new);
    assert_eq!(status["alias"], "terminal.k2");
    let keys = json(&ok(cwd, &terminal(state, keystore, &["keys", "list"])));
    let aliases: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alias"].as_str().unwrap())
        .collect();
    assert_eq!(aliases, ["terminal.k2"], "the old key was not deleted");
    let hb = json(&ok(cwd, &terminal(state, keystore, &["heartbeat"])));
    assert_eq!(hb["status"], 200);
    new
}

/// The audit's re-key records of `serial`: (action, fingerprint, previous).
fn lineage(cwd: &Path, server: &ServerProcess, serial: &str) -> Vec<(String, String, String)> {
    let audit = json(&server.admin(cwd, &["--json", "audit"]));
    let mut out: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["subject"] == serial && r["action"].as_str().unwrap().starts_with("terminal.rekey")
        })
        .map(|r| {
            let detail = &r["detail"];
            (
                r["action"].as_str().unwrap().to_owned(),
                detail["fingerprint"].as_str().unwrap().to_owned(),
                detail["previous_fingerprint"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn rekey_with_a_software_key_and_the_old_restore_point_is_refused() {
    let dir = temp_dir();
    let cwd = dir.path();
    let server = ServerProcess::start(cwd, &cwd.join("server"), &["--gate-listen", "127.0.0.1:0"]);
    let data = server.data.display().to_string();
    let paired = pair_through(cwd, &["--data", &data], &server.gate, "ATM-K1");
    let state = paired.state.as_str();
    let passphrase = cwd.join("backup-pass");
    std::fs::write(&passphrase, "a long backup passphrase").unwrap();
    let pass = passphrase.display().to_string();
    let before = cwd.join("before.restore").display().to_string();
    let backup = [
        "backup",
        "--out",
        &before,
        "--backup-passphrase-file",
        &pass,
    ];
    ok(cwd, &terminal(state, None, &backup));

    let new = rekey_and_call(cwd, state, None, &paired.fingerprint);

    // The identity from before the re-key, restored beside it: refused.
    let old_copy = cwd.join("old-copy").display().to_string();
    let restore = [
        "restore",
        "--from",
        &before,
        "--backup-passphrase-file",
        &pass,
    ];
    let restored = json(&ok(cwd, &terminal(&old_copy, None, &restore)));
    assert_eq!(restored["fingerprint"], paired.fingerprint);
    let err = fails(cwd, &terminal(&old_copy, None, &["call", "GET", "/v1/me"]));
    assert!(
        err.contains("403") && err.contains("PG-NOT-PAIRED"),
        "{err}"
    );
    // Nor can it re-key itself back in.
    let err = fails(cwd, &terminal(&old_copy, None, &["rekey"]));
    assert!(err.contains("PG-NOT-PAIRED"), "{err}");

    let records = lineage(cwd, &server, "ATM-K1");
    assert_eq!(
        records,
        [
            (
                "terminal.rekey".to_owned(),
                new.clone(),
                paired.fingerprint.clone()
            ),
            (
                "terminal.rekey.activate".to_owned(),
                new.clone(),
                paired.fingerprint.clone()
            ),
        ]
    );
    // And once more: the lineage grows by one link.
    let third = json(&ok(cwd, &terminal(state, None, &["rekey"])));
    assert_eq!(third["previous_fingerprint"], new);
    assert_eq!(third["alias"], "terminal.k3");
    let me = json(&ok(cwd, &terminal(state, None, &["call", "GET", "/v1/me"])));
    assert_eq!(me["body"]["fingerprint"], third["fingerprint"]);
}

#[test]
fn rekey_with_the_key_in_softhsm() {
    let dir = temp_dir();
    let cwd = dir.path();
    let token = crate::support::softhsm_token_uri(&cwd.join("terminal-pin"));
    let server = ServerProcess::start(cwd, &cwd.join("server"), &["--gate-listen", "127.0.0.1:0"]);
    server.admin(cwd, &["terminal", "add", "ATM-K2"]);
    let created = json(&server.admin(
        cwd,
        &["--json", "operator", "create", "olga", "--role", "operator"],
    ));
    let uri = created["totp_uri"].as_str().unwrap().to_owned();
    let state = cwd.join("terminal").display().to_string();
    let init = json(&ok(cwd, &terminal(&state, Some(&token), &["init"])));
    let old = init["fingerprint"].as_str().unwrap().to_owned();
    let pair = terminal(
        &state,
        Some(&token),
        &["pair", "--gate", &server.gate, "--serial", "ATM-K2"],
    );
    let (mut child, code, id) = crate::agent::start_pair(cwd, &pair);
    crate::agent::approve(cwd, &server, "olga", &uri, &id, &code, 0);
    assert!(child.wait().unwrap().success());

    let new = rekey_and_call(cwd, &state, Some(&token), &old);
    // No software key store was made: both keys lived in the token.
    assert!(!Path::new(&state).join("keys").exists());
    assert_eq!(lineage(cwd, &server, "ATM-K2").len(), 2);
    assert_ne!(new, old);
}

#[test]
fn a_ca_issued_certificate_near_its_end_is_renewed_by_the_heartbeat() {
    let dir = temp_dir();
    let cwd = dir.path();
    let server = ServerProcess::start(cwd, &cwd.join("server"), &["--gate-listen", "127.0.0.1:0"]);
    server.admin(cwd, &["terminal", "add", "ATM-K3"]);
    let created = json(&server.admin(
        cwd,
        &["--json", "operator", "create", "olga", "--role", "operator"],
    ));
    let uri = created["totp_uri"].as_str().unwrap().to_owned();
    let state = cwd.join("terminal").display().to_string();
    let csr_mode = ["init", "--mode", "csr", "--subject", "CN=ATM-K3"];
    let init = json(&ok(cwd, &terminal(&state, None, &csr_mode)));
    std::fs::write(cwd.join("atm.csr"), init["csr"].as_str().unwrap()).unwrap();
    ok(cwd, &["ca", "init", "--dir", "ca"]);
    // Twenty days left: inside the default 30-day renewal window.
    let sign = [
        "--json", "ca", "sign-csr", "--dir", "ca", "--days", "20", "atm.csr",
    ];
    let issued = json(&ok(cwd, &sign));
    std::fs::write(
        cwd.join("leaf.pem"),
        issued["certificate"].as_str().unwrap(),
    )
    .unwrap();
    ok(
        cwd,
        &terminal(&state, None, &["keys", "import-cert", "leaf.pem"]),
    );
    let old = json(&ok(cwd, &terminal(&state, None, &["status"])))["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let pair = terminal(
        &state,
        None,
        &["pair", "--gate", &server.gate, "--serial", "ATM-K3"],
    );
    let (mut child, code, id) = crate::agent::start_pair(cwd, &pair);
    crate::agent::approve(cwd, &server, "olga", &uri, &id, &code, 0);
    assert!(child.wait().unwrap().success());

    // Not due within a 10-day window; due within the default 30 days.
    let not_due = ["rekey", "--if-due", "--renew-before-days", "10"];
    let r = json(&ok(cwd, &terminal(&state, None, &not_due)));
    assert_eq!(r["rekeyed"], false);
    let hb = json(&ok(cwd, &terminal(&state, None, &["heartbeat"])));
    assert_eq!(hb["status"], 200);
    assert_eq!(hb["rekeyed"]["previous_fingerprint"], old);
    let new = hb["rekeyed"]["fingerprint"].as_str().unwrap().to_owned();
    let me = json(&ok(
        cwd,
        &terminal(&state, None, &["call", "GET", "/v1/me"]),
    ));
    assert_eq!(me["body"]["fingerprint"], new);
    // The new certificate has years left: the next heartbeat keeps it.
    let hb = json(&ok(cwd, &terminal(&state, None, &["heartbeat"])));
    assert_eq!(hb["rekeyed"], serde_json::Value::Null);
    assert_eq!(lineage(cwd, &server, "ATM-K3").len(), 2);
}

/// CA mode: the server holds a terminal CA (`admin terminal-ca init`,
/// `terminal_ca_alias`); a re-key sends a CSR, and the new certificate is
/// the CA's, with the subject the server fixed (the serial).
#[test]
fn a_server_with_a_terminal_ca_certifies_the_new_key() {
    let dir = temp_dir();
    let cwd = dir.path();
    let data = cwd.join("server").display().to_string();
    ok(cwd, &["server", "init", "--data", &data]);
    let made = json(&ok(
        cwd,
        &["--json", "admin", "--data", &data, "terminal-ca", "init"],
    ));
    assert_eq!(made["alias"], "pairgate-terminal-ca");
    let again = fails(cwd, &["admin", "--data", &data, "terminal-ca", "init"]);
    assert!(again.contains("already holds"), "{again}");
    let extra = [
        "--gate-listen",
        "127.0.0.1:0",
        "--set",
        "terminal_ca_alias=pairgate-terminal-ca",
    ];
    let server = ServerProcess::start(cwd, Path::new(&data), &extra);
    let paired = pair_through(cwd, &["--data", &data], &server.gate, "ATM-K4");
    let state = paired.state.as_str();
    let done = json(&ok(cwd, &terminal(state, None, &["rekey"])));
    let new = done["fingerprint"].as_str().unwrap().to_owned();
    let me = json(&ok(cwd, &terminal(state, None, &["call", "GET", "/v1/me"])));
    assert_eq!(me["body"]["fingerprint"], new);
    // The chain the agent installed: the CA's leaf for the serial, and
    // the CA.
    let chain = ok(
        cwd,
        &[
            "terminal",
            "--state",
            state,
            "keys",
            "cert",
            "--alias",
            "terminal.k2",
        ],
    );
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");
    std::fs::write(cwd.join("leaf.pem"), &chain).unwrap();
    let shown = std::process::Command::new("openssl")
        .args([
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-subject",
            "-issuer",
            "-ext",
            "extendedKeyUsage",
        ])
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("CN=ATM-K4") || text.contains("CN = ATM-K4"),
        "{text}"
    );
    assert!(text.contains("pairgate terminal CA"), "{text}");
    assert!(text.contains("Client Authentication"), "{text}");
    let audit = server.admin(cwd, &["--json", "audit"]);
    assert!(audit.contains("server.terminal_ca_created"), "{audit}");
}

/// An agent stopped in the middle of a re-key left a new key the master
/// never recorded: the next `rekey` finds the master refusing it, deletes
/// it and re-keys afresh.
#[test]
fn an_interrupted_rekey_the_master_never_recorded_starts_afresh() {
    let dir = temp_dir();
    let cwd = dir.path();
    let server = ServerProcess::start(cwd, &cwd.join("server"), &["--gate-listen", "127.0.0.1:0"]);
    let data = server.data.display().to_string();
    let paired = pair_through(cwd, &["--data", &data], &server.gate, "ATM-K5");
    let state = paired.state.as_str();
    // The half-done re-key: a key and certificate under the next alias,
    // named in the state, unknown to the master.
    let alias = ["--alias", "terminal.k2"];
    ok(
        cwd,
        &terminal(
            state,
            None,
            &[&["keys", "generate"][..], &alias[..]].concat(),
        ),
    );
    let made = json(&ok(
        cwd,
        &terminal(
            state,
            None,
            &[&["keys", "self-signed"][..], &alias[..]].concat(),
        ),
    ));
    let stray = made["certificate"]["fingerprint"]
        .as_str()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    let file = Path::new(state).join("state.json");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    saved["rekey"] = serde_json::json!({ "alias": "terminal.k2" });
    std::fs::write(&file, serde_json::to_vec_pretty(&saved).unwrap()).unwrap();

    let done = json(&ok(cwd, &terminal(state, None, &["rekey"])));
    assert_eq!(done["alias"], "terminal.k2");
    assert_eq!(done["previous_fingerprint"], paired.fingerprint);
    assert_ne!(done["fingerprint"], stray);
    let me = json(&ok(cwd, &terminal(state, None, &["call", "GET", "/v1/me"])));
    assert_eq!(me["body"]["fingerprint"], done["fingerprint"]);
    let status = json(&ok(cwd, &terminal(state, None, &["status"])));
    assert_eq!(status["alias"], "terminal.k2");
}
