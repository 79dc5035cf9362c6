//! Running the services apart, as an operator's cluster does: `server
//! init`, then a master and a gate with CAS as separate `pairgate server
//! --services …` processes on one data directory; a terminal pairs
//! through the one and calls the other; each process answers `/metrics`
//! for its own services; `PAIRGATE_LOG_FORMAT=json` logs carry the
//! request's span.

use std::path::Path;

use pairgate_testkit::temp_dir;

use crate::support::{Node, PASSPHRASE, ServerProcess, fails, joined, json, ok, pair_through};

#[test]
fn services_run_apart_after_init() {
    let dir = temp_dir();
    let cwd = dir.path();
    let data = cwd.join("server");
    let data_arg = data.display().to_string();
    // Before init, an instance of some services refuses to start.
    let why = fails(
        cwd,
        &[
            "server",
            "--data",
            &data_arg,
            "--services",
            "master",
            "--master-listen",
            "127.0.0.1:0",
        ],
    );
    assert!(why.contains("pairgate server init"), "{why}");
    let init = json(&ok(cwd, &["--json", "server", "init", "--data", &data_arg]));
    let pin = init["pin"].as_str().unwrap().to_owned();
    assert!(init["first_run_password"].is_string());
    let master = Node::start(cwd, &data, "master", &[], &cwd.join("master.log"));
    assert_eq!(master.started["pin"], pin);
    assert!(master.started["gate"].is_null() && master.started["cas"].is_null());
    let master_url = format!("https://{}", master.started["master"].as_str().unwrap());
    let front = Node::start(
        cwd,
        &data,
        "gate,cas",
        &["--master-url", &master_url],
        &cwd.join("front.log"),
    );
    assert_eq!(front.started["pin"], pin);
    assert!(front.started["master"].is_null());
    let gate = front.started["gate"].as_str().unwrap().to_owned();
    let paired = pair_through(cwd, &["--data", &data_arg], &gate, "ATM-1");
    let (state, fingerprint, code) = (paired.state, paired.fingerprint, paired.code);
    // The terminal was told the master's URL, and the master serves it.
    let me = json(&ok(
        cwd,
        &[
            "--json", "terminal", "--state", &state, "call", "GET", "/v1/me",
        ],
    ));
    assert_eq!(me["status"], 200, "{me}");
    assert_eq!(me["body"]["serial"], "ATM-1");
    // Each process counts its own services.
    let m = master.metrics();
    assert!(m.contains(r#"pairgate_info{services="master""#), "{m}");
    assert!(
        m.contains(
            r#"pairgate_http_requests_total{service="master",route="/v1/me",status="200"} 1"#
        ),
        "{m}"
    );
    assert!(m.contains("pairgate_paired_terminals 1"), "{m}");
    let f = front.metrics();
    assert!(f.contains(r#"pairgate_info{services="gate,cas""#), "{f}");
    assert!(
        f.contains(r#"service="gate",route="/v1/pairing",status="202""#),
        "{f}"
    );
    assert!(!f.contains(r#"route="/v1/me""#), "{f}");
    // The gate's JSON log names the request's terminal in its span.
    drop(front);
    let log = std::fs::read_to_string(cwd.join("front.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let opened = lines
        .iter()
        .find(|l| l["fields"]["message"] == "pairing request opened")
        .unwrap_or_else(|| panic!("no pairing log line in\n{log}"));
    assert_eq!(
        opened["span"]["fingerprint"],
        fingerprint.as_str(),
        "{opened}"
    );
    assert_eq!(opened["span"]["service"], "gate");
    assert!(opened["span"]["id"].is_u64());
    assert!(!log.contains(PASSPHRASE) && !log.contains(&code));
}

/// `pairgate admin identity export|import`: a new machine keeps the pin
/// (a master started there passes the store's identity check); a wrong
/// passphrase, a machine with an identity already, a store that records
/// another identity and a PKCS#11 key are refused, writing nothing.
#[test]
fn the_identity_moves_to_a_new_machine() {
    let dir = temp_dir();
    let cwd = dir.path();
    let old = cwd.join("old").display().to_string();
    let init = json(&ok(cwd, &["--json", "server", "init", "--data", &old]));
    let pin = init["pin"].as_str().unwrap().to_owned();
    let secret_file = cwd.join("export.pass");
    std::fs::write(&secret_file, "a long export passphrase").unwrap();
    let secret = secret_file.display().to_string();
    let file = cwd.join("identity.age").display().to_string();
    let export = [
        "admin",
        "--data",
        &old,
        "identity",
        "export",
        "--out",
        &file,
        "--passphrase-file",
        &secret,
    ];
    ok(cwd, &export);
    assert!(
        !std::fs::read(&file)
            .unwrap()
            .windows(pin.len())
            .any(|w| w == pin.as_bytes())
    );
    // The new machine shares the old one's database (moved, or shared).
    let database = format!("sqlite:{old}/pairgate.db");
    let new = cwd.join("new").display().to_string();
    let admin_new = ["admin", "--data", &new, "--database-url", &database];
    let wrong = cwd.join("wrong.pass");
    std::fs::write(&wrong, "not the passphrase").unwrap();
    let wrong = wrong.display().to_string();
    let why = fails(
        cwd,
        &joined(
            &admin_new,
            &["identity", "import", &file, "--passphrase-file", &wrong],
        ),
    );
    assert!(why.contains("wrong passphrase"), "{why}");
    assert!(!Path::new(&new).join("identity.passphrase").exists());
    let imported = ok(
        cwd,
        &joined(
            &admin_new,
            &[
                "--json",
                "identity",
                "import",
                &file,
                "--passphrase-file",
                &secret,
            ],
        ),
    );
    assert_eq!(json(&imported)["pin"], pin.as_str());
    let why = fails(
        cwd,
        &joined(
            &admin_new,
            &["identity", "import", &file, "--passphrase-file", &secret],
        ),
    );
    assert!(why.contains("has an identity already"), "{why}");
    // A master on the new machine presents the recorded identity.
    let master = Node::start(
        cwd,
        Path::new(&new),
        "master",
        &["--database-url", &database],
        &cwd.join("new-master.log"),
    );
    assert_eq!(master.started["pin"], pin.as_str());
    drop(master);
    // A store that records another identity refuses this one.
    let other = cwd.join("other").display().to_string();
    ok(cwd, &["server", "init", "--data", &other]);
    let elsewhere = cwd.join("elsewhere").display().to_string();
    let other_db = format!("sqlite:{other}/pairgate.db");
    let import_elsewhere = [
        "admin",
        "--data",
        &elsewhere,
        "--database-url",
        &other_db,
        "identity",
        "import",
        &file,
        "--passphrase-file",
        &secret,
    ];
    let why = fails(cwd, &import_elsewhere);
    assert!(why.contains("the store records"), "{why}");
    assert!(!Path::new(&elsewhere).join("identity.passphrase").exists());
    // A key in a token never leaves it.
    let token = "identity_keystore=pkcs11:token=pairgate?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/nonexistent";
    let export_token = [
        "admin",
        "--data",
        &old,
        "--set",
        token,
        "identity",
        "export",
        "--out",
        &cwd.join("t.age").display().to_string(),
        "--passphrase-file",
        &secret,
    ];
    let why = fails(cwd, &export_token);
    assert!(why.contains("PKCS#11"), "{why}");
    // Both moves are in the audit log.
    let audit = ok(cwd, &["admin", "--data", &old, "--json", "audit"]);
    assert!(
        audit.contains("server.identity_exported") && audit.contains("server.identity_imported"),
        "{audit}"
    );
}

/// `pairgate admin identity csr|install`: the identity's key signs a
/// request, a CA (here `pairgate ca`) issues the chain, and the server
/// serves it as given (`openssl s_client -showcerts` shows it); a chain
/// for another key is refused; the install is audited.
#[test]
fn an_acquirer_issued_chain_is_installed_and_served() {
    let dir = temp_dir();
    let cwd = dir.path();
    let data = cwd.join("server").display().to_string();
    let init = json(&ok(cwd, &["--json", "server", "init", "--data", &data]));
    ok(cwd, &["ca", "init", "--dir", "ca"]);
    let admin = ["admin", "--data", &data];
    crate::support::issue_identity_chain(cwd, &data);
    // A chain for another key is refused.
    let other = [
        "ca",
        "sign-server-cert",
        "--dir",
        "ca",
        "--dns",
        "localhost",
        "--key-out",
        "other.key",
    ];
    std::fs::write(cwd.join("other.pem"), ok(cwd, &other)).unwrap();
    let why = fails(cwd, &joined(&admin, &["identity", "install", "other.pem"]));
    assert!(why.contains("is not the key of alias"), "{why}");
    ok(cwd, &joined(&admin, &["identity", "install", "chain.pem"]));
    // Served as given: the CA's certificate follows the identity's.
    let server = ServerProcess::start(cwd, Path::new(&data), &["--gate-listen", "127.0.0.1:0"]);
    assert_eq!(server.pin, init["pin"].as_str().unwrap());
    pairgate_testkit::openssl_self_signed(cwd, "t", "probe", "sha256");
    let shown = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &server.gate,
            "-showcerts",
            "-cert",
            "t.pem",
            "-key",
            "t.key",
        ])
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("pairgate development CA"), "{text}");
    assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 2, "{text}");
    let audit = ok(cwd, &joined(&admin, &["--json", "audit"]));
    assert!(audit.contains("server.certificate_installed"), "{audit}");
}
