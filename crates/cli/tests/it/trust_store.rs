//! Trust-store mode (`pairgate terminal pair --trust trust-store`), the
//! seed's model: the terminal accepts the server only when its
//! certificate chains to an entry of the terminal's trust store, admitted
//! under the firmware-roots rule; no pin at first contact. Against a real
//! server serving an acquirer-issued chain, and one that does not.

use std::path::Path;

use pairgate_testkit::temp_dir;

use crate::support::{ServerProcess, fails, joined, json, ok};

/// A server in `cwd/name` whose identity carries a chain `pairgate ca`
/// (in `cwd/ca`) issued for localhost and 127.0.0.1.
fn server_with_issued_chain(cwd: &Path, name: &str) -> ServerProcess {
    let data = cwd.join(name).display().to_string();
    ok(cwd, &["--json", "server", "init", "--data", &data]);
    crate::support::issue_identity_chain(cwd, &data);
    let admin = ["admin", "--data", &data];
    ok(cwd, &joined(&admin, &["identity", "install", "chain.pem"]));
    ServerProcess::start(cwd, Path::new(&data), &["--gate-listen", "127.0.0.1:0"])
}

#[test]
fn a_terminal_in_trust_store_mode_pairs_only_with_a_server_its_store_admits() {
    let dir = temp_dir();
    let cwd = dir.path();
    ok(cwd, &["ca", "init", "--dir", "ca"]);
    let server = server_with_issued_chain(cwd, "server");
    server.admin(cwd, &["terminal", "add", "ATM-T1"]);
    let created = json(&server.admin(
        cwd,
        &["--json", "operator", "create", "olga", "--role", "operator"],
    ));
    let uri = created["totp_uri"].as_str().unwrap().to_owned();

    let state = cwd.join("terminal").display().to_string();
    let terminal = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--json", "terminal", "--state", &state];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect()
    };
    let run = |args: &[&str]| {
        let all = terminal(args);
        ok(cwd, &all.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let run_fails = |args: &[&str]| {
        let all = terminal(args);
        fails(cwd, &all.iter().map(String::as_str).collect::<Vec<_>>())
    };
    run(&["init"]);
    let pair = [
        "pair",
        "--gate",
        &server.gate,
        "--serial",
        "ATM-T1",
        "--trust",
        "trust-store",
    ];
    // An empty trust store trusts nobody.
    let err = run_fails(&pair);
    assert!(err.contains("trust store is empty"), "{err}");
    // The acquirer's CA, which the firmware roots admit.
    run(&["--firmware-roots", "ca/ca.pem", "trust", "add", "ca/ca.pem"]);

    // A server whose certificate does not chain to the store: refused.
    let stranger = ServerProcess::start(
        cwd,
        &cwd.join("stranger"),
        &["--gate-listen", "127.0.0.1:0"],
    );
    stranger.admin(cwd, &["terminal", "add", "ATM-T1"]);
    let to_stranger = [
        "pair",
        "--gate",
        &stranger.gate,
        "--serial",
        "ATM-T1",
        "--trust",
        "trust-store",
    ];
    let err = run_fails(&to_stranger);
    assert!(err.contains("not trusted"), "{err}");
    let pending = json(&stranger.admin(cwd, &["--json", "requests", "--pending"]));
    assert_eq!(pending.as_array().unwrap().len(), 0, "{pending}");

    let all = terminal(&pair);
    let args: Vec<&str> = all.iter().map(String::as_str).collect();
    let (mut child, code, id) = crate::agent::start_pair(cwd, &args);
    crate::agent::approve(cwd, &server, "olga", &uri, &id, &code, 0);
    assert!(child.wait().unwrap().success());
    let status = json(&run(&["status"]));
    assert_eq!(status["paired"]["trust_store"], true);
    let me = json(&run(&["call", "GET", "/v1/me"]));
    assert_eq!(me["body"]["serial"], "ATM-T1");
    // Without the store's entry the master is not trusted either.
    let listed = json(&run(&["trust", "list"]));
    let fingerprint = listed[0]["fingerprint"].as_str().unwrap().to_owned();
    run(&["trust", "remove", &fingerprint]);
    let err = run_fails(&["call", "GET", "/v1/me"]);
    assert!(err.contains("trust store is empty"), "{err}");
}
