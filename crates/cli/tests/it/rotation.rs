//! Server key rotation against a real `pairgate server` process: twenty
//! paired terminals; the server rotates its key twice (`pairgate admin
//! identity rotate`, then `activate`) while terminal X is stopped; the
//! other nineteen keep calling the master throughout and never pair
//! again; X, started after both rotations, meets a key it does not pin,
//! follows the chain of statements from the gate and calls the master.

use std::path::Path;
use std::time::{Duration, Instant};

use pairgate_testkit::temp_dir;

use crate::support::{ServerProcess, json, ok};

const TERMINALS: usize = 20;

fn terminal<'a>(state: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--json", "terminal", "--state", state];
    all.extend_from_slice(args);
    all
}

/// Registers and pairs `n` terminals (one approving operator each, so no
/// TOTP code is used twice); returns their state directories.
fn pair_many(cwd: &Path, server: &ServerProcess, n: usize) -> Vec<String> {
    pair_range(cwd, server, 0..n)
}

/// [`pair_many`] for terminals numbered `range`.
fn pair_range(cwd: &Path, server: &ServerProcess, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| {
            let serial = format!("ATM-{i:02}");
            server.admin(cwd, &["terminal", "add", &serial]);
            let operator = format!("op{i}");
            let created = json(&server.admin(
                cwd,
                &[
                    "--json", "operator", "create", &operator, "--role", "operator",
                ],
            ));
            let uri = created["totp_uri"].as_str().unwrap().to_owned();
            let state = cwd.join(format!("t{i}")).display().to_string();
            ok(cwd, &terminal(&state, &["init"]));
            let pair = terminal(
                &state,
                &["pair", "--gate", &server.gate, "--serial", &serial],
            );
            let (mut child, code, id) = crate::agent::start_pair(cwd, &pair);
            crate::agent::approve(cwd, server, &operator, &uri, &id, &code, 0);
            assert!(child.wait().unwrap().success(), "{serial} did not pair");
            state
        })
        .collect()
}

/// The pins a terminal holds.
fn pins(cwd: &Path, state: &str) -> Vec<String> {
    let status = json(&ok(cwd, &terminal(state, &["status"])));
    status["paired"]["server_pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

/// Every terminal sends a heartbeat (a master call, which also follows
/// the server's keys); each must succeed.
fn heartbeats(cwd: &Path, states: &[String]) {
    for state in states {
        let hb = json(&ok(
            cwd,
            &terminal(state, &["heartbeat", "--renew-before-days", "0"]),
        ));
        assert_eq!(hb["status"], 200, "{state}: {hb}");
    }
}

/// Heartbeats until every terminal pins only `pin` (the master presents
/// it once the instance has followed the activation).
fn until_all_pin(cwd: &Path, states: &[String], pin: &str) {
    for state in states {
        let started = Instant::now();
        loop {
            heartbeats(cwd, std::slice::from_ref(state));
            if pins(cwd, state) == [pin] {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{state} still pins {:?}, not only {pin}",
                pins(cwd, state)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

#[test]
fn terminals_follow_two_rotations_and_one_that_slept_follows_the_chain() {
    let dir = temp_dir();
    let cwd = dir.path();
    let extra = [
        "--gate-listen",
        "127.0.0.1:0",
        "--set",
        "reconcile_secs=1",
        "--set",
        "audit_checkpoint_secs=1",
    ];
    let server = ServerProcess::start(cwd, &cwd.join("server"), &extra);
    let data = server.data.display().to_string();
    let states = pair_many(cwd, &server, TERMINALS);
    let (sleeper, awake) = states.split_first().unwrap();
    let original = server.pin.clone();
    assert_eq!(pins(cwd, sleeper), [original.as_str()]);

    let mut current = original.clone();
    for seq in 1..=2 {
        let rotated = json(&ok(
            cwd,
            &["--json", "admin", "--data", &data, "identity", "rotate"],
        ));
        assert_eq!(rotated["seq"], seq);
        assert_eq!(rotated["pin"], current);
        let next = rotated["next_pin"].as_str().unwrap().to_owned();
        // Announced: every awake terminal pins both keys at its heartbeat.
        heartbeats(cwd, awake);
        for state in awake {
            assert_eq!(pins(cwd, state), [current.as_str(), next.as_str()]);
        }
        // GET /v1/me carries both pins and the statements too.
        let me =
            || json(&ok(cwd, &terminal(&awake[0], &["call", "GET", "/v1/me"])))["body"].clone();
        let mut shown = me();
        for _ in 0..20 {
            if shown["rotations"].as_array().map(Vec::len) == Some(seq) {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
            shown = me();
        }
        assert_eq!(
            shown["server_pins"],
            serde_json::json!([current, next]),
            "{shown}"
        );
        assert_eq!(
            shown["rotations"].as_array().map(Vec::len),
            Some(seq),
            "{shown}"
        );
        let activated = json(&ok(
            cwd,
            &["--json", "admin", "--data", &data, "identity", "activate"],
        ));
        assert_eq!(activated["pin"], next);
        // Served within reconcile_secs; calls go on meanwhile.
        until_all_pin(cwd, awake, &next);
        current = next;
    }

    // X slept through both: its pin is the first key's.
    assert_eq!(pins(cwd, sleeper), [original.as_str()]);
    let me = json(&ok(cwd, &terminal(sleeper, &["call", "GET", "/v1/me"])));
    assert_eq!(me["status"], 200);
    assert_eq!(me["body"]["serial"], "ATM-00");
    assert_eq!(pins(cwd, sleeper), [current.as_str()]);
    let status = json(&ok(cwd, &terminal(sleeper, &["status"])));
    assert_eq!(status["paired"]["server_key_seq"], 2);

    // Nobody paired again; the audit shows both rotations.
    let pending = json(&server.admin(cwd, &["--json", "requests", "--pending"]));
    assert_eq!(pending.as_array().unwrap().len(), 0);
    let audit = server.admin(cwd, &["--json", "audit", "--limit", "1000"]);
    assert_eq!(audit.matches("\"server.rotation_announced\"").count(), 2);
    assert_eq!(audit.matches("\"server.rotation_activated\"").count(), 2);
    assert_eq!(audit.matches("\"pairing.approve\"").count(), TERMINALS);

    // Nothing to activate; one announcement at a time.
    let admin = ["admin", "--data", data.as_str(), "identity"];
    let err = crate::support::fails(cwd, &crate::support::joined(&admin, &["activate"]));
    assert!(err.contains("no rotation is announced"), "{err}");
    ok(cwd, &crate::support::joined(&admin, &["rotate"]));
    let err = crate::support::fails(cwd, &crate::support::joined(&admin, &["rotate"]));
    assert!(err.contains("announced and not activated"), "{err}");

    // Restarted, the server presents the rotated key from the start and
    // signs the audit log's checkpoints with it: the log verifies across
    // checkpoints signed by the first key and by the third.
    drop(server);
    let restarted = ServerProcess::start(cwd, Path::new(&data), &extra);
    assert_eq!(restarted.pin, current);
    restarted.admin(cwd, &["terminal", "add", "ATM-AFTER"]);
    until_signed_throughout(cwd, &restarted);
}

/// Waits until the audit log verifies with every record under a signed
/// checkpoint.
fn until_signed_throughout(cwd: &Path, server: &ServerProcess) {
    let started = Instant::now();
    loop {
        let verified = json(&server.admin(cwd, &["--json", "audit", "verify"]));
        assert_eq!(verified["intact"], true, "{verified}");
        if verified["unanchored"] == 0 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{verified}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A server at the terminal's addresses presenting a key no statement from
/// its pin announces (here: another server, as a thief of the addresses
/// would be) is refused at the master and at the gate, and the terminal
/// keeps its pin: it still refuses that server afterwards.
#[test]
fn an_unannounced_key_is_refused_and_the_pin_kept() {
    let dir = temp_dir();
    let cwd = dir.path();
    let server = ServerProcess::start(cwd, &cwd.join("server"), &["--gate-listen", "127.0.0.1:0"]);
    let states = pair_many(cwd, &server, 1);
    let state = &states[0];
    let impostor = ServerProcess::start(
        cwd,
        &cwd.join("impostor"),
        &["--gate-listen", "127.0.0.1:0"],
    );
    let file = Path::new(state).join("state.json");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    saved["paired"]["master_url"] = impostor.master_url.clone().into();
    saved["paired"]["gate"] = impostor.gate.clone().into();
    std::fs::write(&file, serde_json::to_vec_pretty(&saved).unwrap()).unwrap();
    for _ in 0..2 {
        let err = crate::support::fails(cwd, &terminal(state, &["call", "GET", "/v1/me"]));
        assert!(err.contains("not announced by a chain"), "{err}");
        assert!(err.contains(&impostor.pin), "{err}");
        assert_eq!(pins(cwd, state), [server.pin.as_str()]);
    }
}

/// Points a terminal's state at `server`'s addresses (a server restarted
/// on the same machine at the same addresses, which a test cannot pick).
fn point_at(state: &str, server: &ServerProcess) {
    let file = Path::new(state).join("state.json");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    saved["paired"]["master_url"] = server.master_url.clone().into();
    saved["paired"]["gate"] = server.gate.clone().into();
    std::fs::write(&file, serde_json::to_vec_pretty(&saved).unwrap()).unwrap();
}

/// The server key is lost with its key store; the operator's offline
/// recovery key signs a rotation to a new key, and terminals that learned
/// its pin at pairing or at a heartbeat follow it without pairing again.
#[test]
fn a_lost_server_key_is_recovered_with_the_offline_recovery_key() {
    let dir = temp_dir();
    let cwd = dir.path();
    let extra = [
        "--gate-listen",
        "127.0.0.1:0",
        "--set",
        "audit_checkpoint_secs=1",
    ];
    let server = ServerProcess::start(cwd, &cwd.join("server"), &extra);
    let data = server.data.clone();
    let data_arg = data.display().to_string();
    let admin = ["--json", "admin", "--data", data_arg.as_str(), "identity"];
    let earlier = pair_range(cwd, &server, 0..1);
    std::fs::write(cwd.join("pass"), "an offline recovery passphrase").unwrap();
    let create = [
        "recovery-key",
        "--out",
        "recovery.key",
        "--passphrase-file",
        "pass",
    ];
    let made = json(&ok(cwd, &crate::support::joined(&admin, &create)));
    let recovery_pin = made["recovery_pin"].as_str().unwrap().to_owned();
    let later = pair_range(cwd, &server, 1..2);
    let recovery = |state: &str| {
        json(&ok(cwd, &terminal(state, &["status"])))["paired"]["recovery_pins"].clone()
    };
    assert_eq!(recovery(&later[0]), serde_json::json!([recovery_pin]));
    heartbeats(cwd, &earlier);
    assert_eq!(recovery(&earlier[0]), serde_json::json!([recovery_pin]));

    // The key store and its passphrase are gone.
    drop(server);
    std::fs::remove_dir_all(data.join("identity")).unwrap();
    std::fs::remove_file(data.join("identity.passphrase")).unwrap();
    std::fs::write(cwd.join("wrong"), "not the recovery passphrase").unwrap();
    let wrong = [
        "recover",
        "--recovery-key",
        "recovery.key",
        "--passphrase-file",
        "wrong",
    ];
    let err = crate::support::fails(cwd, &crate::support::joined(&admin, &wrong));
    assert!(err.contains("wrong passphrase"), "{err}");
    let recover = [
        "recover",
        "--recovery-key",
        "recovery.key",
        "--passphrase-file",
        "pass",
    ];
    let recovered = json(&ok(cwd, &crate::support::joined(&admin, &recover)));
    let new_pin = recovered["pin"].as_str().unwrap().to_owned();
    let restarted = ServerProcess::start(cwd, &data, &extra);
    assert_eq!(restarted.pin, new_pin);
    for state in earlier.iter().chain(&later) {
        point_at(state, &restarted);
        let me = json(&ok(cwd, &terminal(state, &["call", "GET", "/v1/me"])));
        assert_eq!(me["status"], 200, "{state}: {me}");
        assert_eq!(pins(cwd, state), [new_pin.as_str()]);
    }
    let audit = restarted.admin(cwd, &["--json", "audit"]);
    assert!(
        audit.contains("server.recovery_key_created") && audit.contains("server.recovered"),
        "{audit}"
    );
    let pending = json(&restarted.admin(cwd, &["--json", "requests", "--pending"]));
    assert_eq!(pending.as_array().unwrap().len(), 0);
    // The audit log stays signed across the lost key and the new one.
    until_signed_throughout(cwd, &restarted);
}

/// The same rotation with the server identity in a SoftHSM2 token: the
/// next key is made and the statement signed inside the token.
#[test]
fn a_rotation_with_the_server_key_in_softhsm() {
    let dir = temp_dir();
    let cwd = dir.path();
    let token = crate::support::softhsm_token_uri(&cwd.join("server-pin"));
    let identity = format!("identity_keystore={token}");
    let extra = [
        "--gate-listen",
        "127.0.0.1:0",
        "--set",
        "reconcile_secs=1",
        "--set",
        identity.as_str(),
    ];
    let server = ServerProcess::start(cwd, &cwd.join("server"), &extra);
    let data = server.data.display().to_string();
    let states = pair_many(cwd, &server, 1);
    let admin = |args: &[&str]| {
        let mut all = vec![
            "--json",
            "admin",
            "--data",
            data.as_str(),
            "--set",
            identity.as_str(),
            "identity",
        ];
        all.extend_from_slice(args);
        json(&ok(cwd, &all))
    };
    let rotated = admin(&["rotate"]);
    let next = rotated["next_pin"].as_str().unwrap().to_owned();
    heartbeats(cwd, &states);
    assert_eq!(pins(cwd, &states[0]), [server.pin.as_str(), next.as_str()]);
    // Paired while a rotation is announced: the configuration pins both.
    let late = pair_range(cwd, &server, 1..2);
    assert_eq!(pins(cwd, &late[0]), [server.pin.as_str(), next.as_str()]);
    admin(&["activate"]);
    let all: Vec<String> = states.iter().chain(&late).cloned().collect();
    until_all_pin(cwd, &all, &next);
    // No software key store was made for the server: both keys are in the token.
    assert!(!cwd.join("server/identity").exists());
}
