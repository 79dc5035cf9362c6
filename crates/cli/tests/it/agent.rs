//! The terminal agent against a real `pairgate server` process: init,
//! pair (the code printed), approval through `pairgate admin approve`,
//! calls to the master; on the software store and on SoftHSM2. Also: a
//! killed pairing resumes with the same request, a different key at the
//! pinned gate is refused, a restore point brings the identity back in a
//! new state directory, a CA-issued (CSR mode) identity pairs, and a
//! factory reset ends the pairing.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use pairgate_testkit::temp_dir;

use crate::support::{PASSPHRASE, ServerProcess, fails, json, ok, totp_now};

/// `pairgate --json terminal --state STATE [--keystore URI] ARGS…`.
fn terminal_args<'a>(state: &'a str, keystore: Option<&'a str>, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--json", "terminal", "--state", state];
    if let Some(uri) = keystore {
        all.extend(["--keystore", uri]);
    }
    all.extend_from_slice(args);
    all
}

/// Starts `pairgate ARGS` (a `pair`) in the background and reads the code
/// line it prints.
pub fn start_pair(cwd: &Path, args: &[&str]) -> (Child, String, String) {
    start_pair_with(Path::new(env!("CARGO_BIN_EXE_pairgate")), cwd, args)
}

/// Starts `PROGRAM ARGS` (a `pair`) in the background and reads the code
/// line it prints.
pub fn start_pair_with(program: &Path, cwd: &Path, args: &[&str]) -> (Child, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("PAIRGATE_KEYSTORE_PASSPHRASE", PASSPHRASE)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let shown = json(&line);
    let code = shown["code"].as_str().unwrap().to_owned();
    let id = shown["request_id"].as_str().unwrap().to_owned();
    // Keep draining its output so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    (child, code, id)
}

pub fn approve(
    cwd: &Path,
    server: &ServerProcess,
    operator: &str,
    uri: &str,
    id: &str,
    code: &str,
    step: i64,
) {
    server.admin(
        cwd,
        &[
            "approve",
            id,
            "--code",
            code,
            "--operator",
            operator,
            "--totp",
            &totp_now(uri, step),
        ],
    );
}

/// `keystore`: the terminal's key store (default: software); `server_identity`:
/// the server's (default: software).
fn pair_and_call(keystore: Option<&str>, server_identity: Option<&str>) {
    let dir = temp_dir();
    let cwd = dir.path();
    let identity = server_identity.map(|uri| format!("identity_keystore={uri}"));
    let mut extra = vec!["--gate-listen", "127.0.0.1:0"];
    if let Some(setting) = &identity {
        extra.extend(["--set", setting]);
    }
    let server = ServerProcess::start(cwd, &cwd.join("server"), &extra);
    server.admin(cwd, &["terminal", "add", "ATM-1", "--name", "Lobby"]);
    let created = json(&server.admin(
        cwd,
        &["--json", "operator", "create", "olga", "--role", "operator"],
    ));
    let uri = created["totp_uri"].as_str().unwrap().to_owned();
    let state = cwd.join("terminal").display().to_string();

    let init = json(&ok(cwd, &terminal_args(&state, keystore, &["init"])));
    let fingerprint = init["fingerprint"].as_str().unwrap().to_owned();
    let (mut child, code, id) = start_pair(
        cwd,
        &terminal_args(
            &state,
            keystore,
            &["pair", "--gate", &server.gate, "--serial", "ATM-1"],
        ),
    );
    assert_eq!(code.len(), 9);
    approve(cwd, &server, "olga", &uri, &id, &code, 0);
    assert!(
        child.wait().unwrap().success(),
        "pair did not exit 0 after approval"
    );
    let status = json(&ok(cwd, &terminal_args(&state, keystore, &["status"])));
    assert_eq!(status["paired"]["serial"], "ATM-1");
    assert_eq!(status["server_pin"], server.pin);
    assert_eq!(status["fingerprint"], fingerprint);
    let me = json(&ok(
        cwd,
        &terminal_args(&state, keystore, &["call", "GET", "/v1/me"]),
    ));
    assert_eq!(me["status"], 200);
    assert_eq!(me["body"]["serial"], "ATM-1");
    assert_eq!(me["body"]["fingerprint"], fingerprint);
    let hb = json(&ok(
        cwd,
        &terminal_args(
            &state,
            keystore,
            &[
                "call",
                "POST",
                "/v1/heartbeat",
                "--data",
                r#"{"firmware":"2.0"}"#,
            ],
        ),
    ));
    assert_eq!(hb["body"]["status"], "ok");

    restore_point_talks_to_the_master(cwd, keystore, &state, &fingerprint);

    // Factory reset: no keys, no pins, not paired. A new identity is
    // refused by the master until it pairs again.
    let err = fails(cwd, &terminal_args(&state, keystore, &["factory-reset"]));
    assert!(err.contains("not confirmed"), "{err}");
    ok(
        cwd,
        &terminal_args(&state, keystore, &["factory-reset", "--yes"]),
    );
    let status = json(&ok(cwd, &terminal_args(&state, keystore, &["status"])));
    assert!(
        status["fingerprint"].is_null() && status["paired"].is_null(),
        "{status}"
    );
    let err = fails(
        cwd,
        &terminal_args(&state, keystore, &["call", "GET", "/v1/me"]),
    );
    assert!(err.contains("not paired"), "{err}");
    let init = json(&ok(cwd, &terminal_args(&state, keystore, &["init"])));
    assert_ne!(init["fingerprint"], fingerprint.as_str());
    // Pretend the old configuration survived: the master still refuses.
    let state_file = cwd.join("terminal").join("state.json");
    let mut st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    st["paired"] = status_before_reset(&server);
    std::fs::write(&state_file, st.to_string()).unwrap();
    let err = fails(
        cwd,
        &terminal_args(&state, keystore, &["call", "GET", "/v1/me"]),
    );
    assert!(
        err.contains("403") && err.contains("PG-NOT-PAIRED"),
        "{err}"
    );
}

/// A restore point of the paired terminal at `state`, restored into a new
/// state directory, talks to the master with the same fingerprint and no
/// new pairing. Wrong passphrases, a used state directory and a mismatched
/// key store are refused and leave nothing behind.
fn restore_point_talks_to_the_master(
    cwd: &Path,
    keystore: Option<&str>,
    state: &str,
    fingerprint: &str,
) {
    let passphrase = cwd.join("backup-passphrase");
    std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    let wrong = cwd.join("wrong-passphrase");
    std::fs::write(&wrong, "incorrect horse\n").unwrap();
    let file = cwd.join("terminal.restore");
    let file_arg = file.display().to_string();
    let pass_arg = passphrase.display().to_string();
    let wrong_arg = wrong.display().to_string();

    let err = fails(
        cwd,
        &terminal_args(state, keystore, &["backup", "--out", &file_arg]),
    );
    assert!(err.contains("PAIRGATE_BACKUP_PASSPHRASE"), "{err}");
    let made = json(&ok(
        cwd,
        &terminal_args(
            state,
            keystore,
            &[
                "backup",
                "--out",
                &file_arg,
                "--backup-passphrase-file",
                &pass_arg,
            ],
        ),
    ));
    assert_eq!(made["fingerprint"], fingerprint);
    assert_eq!(made["holds_key"], keystore.is_none());
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(!String::from_utf8_lossy(&bytes).contains("ATM-1"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let fresh = cwd.join("restored").display().to_string();
    // Wrong backup passphrase: nothing is created.
    let err = fails(cwd, &restore_args(&fresh, keystore, &file_arg, &wrong_arg));
    assert!(err.contains("wrong backup passphrase"), "{err}");
    assert!(!cwd.join("restored").exists());
    // The state directory in use is refused.
    let err = fails(cwd, &restore_args(state, keystore, &file_arg, &pass_arg));
    assert!(err.contains("in use"), "{err}");
    if keystore.is_none() {
        // The key store copy is sealed under the key store passphrase.
        let mut args = restore_args(&fresh, None, &file_arg, &pass_arg);
        args.extend(["--passphrase-file", &wrong_arg]);
        let err = fails(cwd, &args);
        assert!(err.contains("wrong passphrase for the key store"), "{err}");
        assert!(!cwd.join("restored").join("state.json").exists());
        assert!(
            !cwd.join("restored")
                .join("keys")
                .join("keystore.json")
                .exists()
        );
    } else {
        // The key stays in the token: a software key store cannot take it.
        let err = fails(cwd, &restore_args(&fresh, None, &file_arg, &pass_arg));
        assert!(err.contains("certificate and state only"), "{err}");
        assert!(!cwd.join("restored").join("state.json").exists());
    }

    let restored = json(&ok(
        cwd,
        &restore_args(&fresh, keystore, &file_arg, &pass_arg),
    ));
    assert_eq!(restored["fingerprint"], fingerprint);
    assert_eq!(restored["paired"]["serial"], "ATM-1");
    let me = json(&ok(
        cwd,
        &terminal_args(&fresh, keystore, &["call", "GET", "/v1/me"]),
    ));
    assert_eq!(me["status"], 200);
    assert_eq!(me["body"]["fingerprint"], fingerprint);
}

fn restore_args<'a>(
    state: &'a str,
    keystore: Option<&'a str>,
    file: &'a str,
    passphrase: &'a str,
) -> Vec<&'a str> {
    terminal_args(
        state,
        keystore,
        &[
            "restore",
            "--from",
            file,
            "--backup-passphrase-file",
            passphrase,
        ],
    )
}

/// A paired configuration pointing at `server`'s master.
fn status_before_reset(server: &ServerProcess) -> serde_json::Value {
    serde_json::json!({
        "serial": "ATM-1", "gate": server.gate,
        "master_url": server.master_url, "server_pins": [server.pin], "vpn_profile": "",
    })
}

#[test]
fn pair_and_call_with_a_software_key() {
    pair_and_call(None, None);
}

#[test]
fn pair_and_call_with_softhsm_keys_on_both_sides() {
    let dir = temp_dir();
    let terminal_token = crate::support::softhsm_token_uri(&dir.path().join("terminal-pin"));
    let server_token = crate::support::softhsm_token_uri(&dir.path().join("server-pin"));
    // Both keys in HSM tokens: the terminal's and the server's identity.
    pair_and_call(Some(&terminal_token), Some(&server_token));
}

#[test]
fn killed_pairing_resumes_the_same_request() {
    let dir = temp_dir();
    let cwd = dir.path();
    let server = ServerProcess::start(cwd, &cwd.join("server"), &["--gate-listen", "127.0.0.1:0"]);
    server.admin(cwd, &["terminal", "add", "ATM-1"]);
    let created = json(&server.admin(
        cwd,
        &["--json", "operator", "create", "olga", "--role", "operator"],
    ));
    let uri = created["totp_uri"].as_str().unwrap().to_owned();
    let state = cwd.join("terminal").display().to_string();
    ok(cwd, &terminal_args(&state, None, &["init"]));
    let args = terminal_args(
        &state,
        None,
        &["pair", "--gate", &server.gate, "--serial", "ATM-1"],
    );
    let (mut first, code, id) = start_pair(cwd, &args);
    first.kill().unwrap();
    first.wait().unwrap();
    // Restarted: the same request and the same code on screen.
    let (mut second, code2, id2) = start_pair(cwd, &args);
    assert_eq!((id2.as_str(), code2.as_str()), (id.as_str(), code.as_str()));
    let pending = json(&server.admin(cwd, &["--json", "requests", "--pending"]));
    assert_eq!(pending.as_array().unwrap().len(), 1);
    approve(cwd, &server, "olga", &uri, &id, &code, 0);
    assert!(second.wait().unwrap().success());
    let me = json(&ok(
        cwd,
        &terminal_args(&state, None, &["call", "GET", "/v1/me"]),
    ));
    assert_eq!(me["body"]["serial"], "ATM-1");
}

#[test]
fn another_key_at_the_pinned_gate_is_refused() {
    let dir = temp_dir();
    let cwd = dir.path();
    let state = cwd.join("terminal").display().to_string();
    ok(cwd, &terminal_args(&state, None, &["init"]));
    let first = ServerProcess::start(cwd, &cwd.join("a"), &["--gate-listen", "127.0.0.1:0"]);
    first.admin(cwd, &["terminal", "add", "ATM-1"]);
    let gate = first.gate.clone();
    // First contact pins the key; stop waiting after a second.
    let args = terminal_args(
        &state,
        None,
        &[
            "pair",
            "--gate",
            &gate,
            "--serial",
            "ATM-1",
            "--timeout",
            "1",
        ],
    );
    let err = fails(cwd, &args);
    assert!(err.contains("still waiting"), "{err}");
    let status = json(&ok(cwd, &terminal_args(&state, None, &["status"])));
    assert_eq!(status["server_pin"], first.pin);
    drop(first);
    // Another server (another key) at the same address.
    let second = ServerProcess::start(cwd, &cwd.join("b"), &["--gate-listen", &gate]);
    assert_ne!(second.pin, status["server_pin"].as_str().unwrap());
    let err = fails(cwd, &args);
    assert!(
        err.contains(&second.pin) || err.contains(&grouped(&second.pin)),
        "{err}"
    );
    assert!(
        err.contains(status["server_pin"].as_str().unwrap())
            || err.contains(&grouped(status["server_pin"].as_str().unwrap())),
        "{err}"
    );
    // Another address needs --forget-pin.
    let other = ServerProcess::start(cwd, &cwd.join("c"), &["--gate-listen", "127.0.0.1:0"]);
    let err = fails(
        cwd,
        &terminal_args(
            &state,
            None,
            &[
                "pair",
                "--gate",
                &other.gate,
                "--serial",
                "ATM-1",
                "--timeout",
                "1",
            ],
        ),
    );
    assert!(err.contains("--forget-pin"), "{err}");
}

fn grouped(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_ca_issued_identity_pairs_and_calls() {
    let dir = temp_dir();
    let cwd = dir.path();
    let server = ServerProcess::start(cwd, &cwd.join("server"), &["--gate-listen", "127.0.0.1:0"]);
    server.admin(cwd, &["terminal", "add", "ATM-7"]);
    let created = json(&server.admin(
        cwd,
        &["--json", "operator", "create", "olga", "--role", "operator"],
    ));
    let uri = created["totp_uri"].as_str().unwrap().to_owned();
    let state = cwd.join("terminal").display().to_string();

    // First boot in CSR mode: a key and a CSR, no certificate yet.
    let init = json(&ok(
        cwd,
        &terminal_args(
            &state,
            None,
            &["init", "--mode", "csr", "--subject", "CN=ATM-7, O=Operator"],
        ),
    ));
    let csr = init["csr"].as_str().unwrap();
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{csr}"
    );
    std::fs::write(cwd.join("atm.csr"), csr).unwrap();
    let err = fails(
        cwd,
        &terminal_args(
            &state,
            None,
            &["pair", "--gate", &server.gate, "--serial", "ATM-7"],
        ),
    );
    assert!(err.contains("no certificate yet"), "{err}");

    // The acquirer's CA signs it; the chain goes in under the alias.
    ok(cwd, &["ca", "init", "--dir", "ca"]);
    let issued = json(&ok(
        cwd,
        &["--json", "ca", "sign-csr", "--dir", "ca", "atm.csr"],
    ));
    let mut chain = issued["certificate"].as_str().unwrap().to_owned();
    chain.push_str(&std::fs::read_to_string(cwd.join("ca/ca.pem")).unwrap());
    std::fs::write(cwd.join("chain.pem"), chain).unwrap();
    ok(
        cwd,
        &terminal_args(&state, None, &["keys", "import-cert", "chain.pem"]),
    );
    let status = json(&ok(cwd, &terminal_args(&state, None, &["status"])));
    let fingerprint = status["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(
        fingerprint,
        issued["fingerprint"]
            .as_str()
            .unwrap()
            .replace(':', "")
            .to_lowercase()
    );

    let (mut child, code, id) = start_pair(
        cwd,
        &terminal_args(
            &state,
            None,
            &["pair", "--gate", &server.gate, "--serial", "ATM-7"],
        ),
    );
    approve(cwd, &server, "olga", &uri, &id, &code, 0);
    assert!(child.wait().unwrap().success());
    let me = json(&ok(
        cwd,
        &terminal_args(&state, None, &["call", "GET", "/v1/me"]),
    ));
    assert_eq!(me["body"]["serial"], "ATM-7");
    assert_eq!(me["body"]["fingerprint"], fingerprint);
}
