//! The terminal side as firmware uses it, against a real `pairgate server`
//! process with approvals through `pairgate admin approve`: the lean
//! `pairgate-agent` binary (same commands and JSON as `pairgate terminal`,
//! no server, database or web crate in its dependency tree), C programs
//! built with gcc against libpairgate (shared and static), and Java programs built with the
//! JDK's javac against the Java SDK (`sdk/java`), their keys in SoftHSM2.

use std::path::{Path, PathBuf};
use std::process::Command;

use pairgate_testkit::temp_dir;

use crate::agent::{approve, start_pair_with};
use crate::support::{PASSPHRASE, ServerProcess, json, ok, softhsm_token, softhsm_token_uri};

/// An artifact built beside the `pairgate` binary: `cargo test
/// --workspace --all-targets` builds `pairgate-agent`, and scripts/test
/// builds `pairgate-ffi` (the C library) before the tests.
pub fn built(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_pairgate")).parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p pairgate-agent -p pairgate-ffi` (scripts/test does)",
        path.display()
    );
    path
}

/// `PROGRAM ARGS` with the software store passphrase; required to succeed.
fn run_ok(program: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("PAIRGATE_KEYSTORE_PASSPHRASE", PASSPHRASE)
        .env_remove("PAIRGATE_KEYSTORE")
        .env_remove("PAIRGATE_STATE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {} failed:\n{}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A server with terminal `serial` registered and operator `olga`; returns
/// the server and olga's TOTP URI.
pub fn server_with_terminal(cwd: &Path, serial: &str) -> (ServerProcess, String) {
    let server = ServerProcess::start(cwd, &cwd.join("server"), &["--gate-listen", "127.0.0.1:0"]);
    server.admin(cwd, &["terminal", "add", serial, "--name", "Lobby"]);
    let created = json(&server.admin(
        cwd,
        &["--json", "operator", "create", "olga", "--role", "operator"],
    ));
    let uri = created["totp_uri"].as_str().unwrap().to_owned();
    (server, uri)
}

/// As [`server_with_terminal`], with OpenVPN profiles on offer (the VPN
/// CA made by `pairgate vpn init` before the server starts).
fn server_with_vpn(cwd: &Path, serial: &str) -> (ServerProcess, String) {
    let data = cwd.join("server").display().to_string();
    let vpn = [
        "--set",
        "vpn_type=openvpn",
        "--set",
        "vpn_endpoint=127.0.0.1:1194",
    ];
    let mut init = vec!["server", "init", "--data", &data];
    init.extend(vpn);
    crate::support::ok(cwd, &init);
    let mut make = vec!["vpn", "--data", &data];
    make.extend(vpn);
    make.push("init");
    crate::support::ok(cwd, &make);
    let mut extra = vec!["--gate-listen", "127.0.0.1:0"];
    extra.extend(vpn);
    let server = ServerProcess::start(cwd, &cwd.join("server"), &extra);
    server.admin(cwd, &["terminal", "add", serial, "--name", "Lobby"]);
    let created = json(&server.admin(
        cwd,
        &["--json", "operator", "create", "olga", "--role", "operator"],
    ));
    (server, created["totp_uri"].as_str().unwrap().to_owned())
}

#[test]
fn the_lean_agent_pairs_and_calls_like_pairgate_terminal() {
    let dir = temp_dir();
    let cwd = dir.path();
    let agent = built("pairgate-agent");
    let (server, uri) = server_with_terminal(cwd, "ATM-7");
    let state = cwd.join("terminal").display().to_string();
    let lean = |args: &[&str]| {
        let mut all = vec!["--json", "--state", state.as_str()];
        all.extend_from_slice(args);
        json(&run_ok(&agent, cwd, &all))
    };

    let init = lean(&["init"]);
    let fingerprint = init["fingerprint"].as_str().unwrap().to_owned();
    let (mut child, code, id) = start_pair_with(
        &agent,
        cwd,
        &[
            "--json",
            "--state",
            &state,
            "pair",
            "--gate",
            &server.gate,
            "--serial",
            "ATM-7",
        ],
    );
    approve(cwd, &server, "olga", &uri, &id, &code, 0);
    assert!(
        child.wait().unwrap().success(),
        "pairgate-agent pair failed"
    );

    let me = lean(&["call", "GET", "/v1/me"]);
    assert_eq!(me["status"], 200);
    assert_eq!(me["body"]["serial"], "ATM-7");
    assert_eq!(me["body"]["fingerprint"], fingerprint);
    // The same state read by both binaries gives the same JSON.
    let full = json(&ok(
        cwd,
        &["--json", "terminal", "--state", &state, "status"],
    ));
    assert_eq!(lean(&["status"]), full);
    assert_eq!(full["paired"]["serial"], "ATM-7");
    assert_eq!(
        lean(&["fingerprint"]),
        json(&ok(
            cwd,
            &["--json", "terminal", "--state", &state, "fingerprint"]
        ))
    );
}

#[test]
fn the_lean_agent_depends_on_no_server_database_or_web_crate() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "pairgate-agent",
            "--locked",
            "--offline",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains(&"pairgate-terminal"), "{tree}");
    for forbidden in [
        "pairgate-server",
        "pairgate-store",
        "pairgate-bench",
        "sqlx",
        "sqlx-core",
        "libsqlite3-sys",
        "axum",
        "maud",
        "tower-http",
        "totp-rs",
    ] {
        assert!(
            !names.contains(&forbidden),
            "pairgate-agent pulls in {forbidden}:\n{tree}"
        );
    }
}

/// How a C program links libpairgate.
#[derive(Clone, Copy, Debug)]
enum Link {
    /// `-lpairgate` (libpairgate.so), its directory as the run path.
    Shared,
    /// `libpairgate.a` with the system libraries the header names.
    Static,
}

/// Compiles C `source` into `out` with gcc against the built libpairgate.
fn gcc(source: &Path, out: &Path, link: Link) {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ffi/include");
    let mut command = Command::new("gcc");
    command
        .args(["-Wall", "-Wextra", "-Werror", "-I"])
        .arg(&include)
        .arg(source);
    match link {
        Link::Shared => {
            let lib = built("libpairgate.so");
            let lib_dir = lib.parent().unwrap();
            command
                .arg("-L")
                .arg(lib_dir)
                .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
                .arg("-lpairgate");
        }
        Link::Static => {
            command
                .arg(built("libpairgate.a"))
                .args(["-lpthread", "-ldl", "-lm"]);
        }
    }
    let status = command.arg("-o").arg(out).status().unwrap();
    assert!(status.success(), "gcc failed on {source:?} ({link:?})");
}

/// The id of the open pairing request for `serial`.
pub fn pending_request(server: &ServerProcess, cwd: &Path, serial: &str) -> String {
    let listed = json(&server.admin(cwd, &["--json", "requests", "--pending"]));
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["serial"] == serial)
        .unwrap_or_else(|| panic!("no open request for {serial}: {listed}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Reads `program`'s output up to its `code NNNN-NNNN` line; returns the
/// code and the rest of its standard output.
pub fn code_line(
    child: &mut std::process::Child,
) -> (String, std::io::BufReader<std::process::ChildStdout>) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let code = line
        .strip_prefix("code ")
        .unwrap_or_else(|| panic!("the first line is not the code: {line:?}"))
        .trim()
        .to_owned();
    assert!(
        code.len() == 9 && code.as_bytes().get(4) == Some(&b'-'),
        "{code:?}"
    );
    (code, reader)
}

#[test]
fn a_c_program_pairs_and_calls_with_its_key_in_softhsm() {
    use std::io::Read;
    let dir = temp_dir();
    let cwd = dir.path();
    let example = cwd.join("pair_and_call");
    gcc(
        &repo().join("examples/c/pair_and_call.c"),
        &example,
        Link::Shared,
    );
    let checks = cwd.join("paired_terminal");
    gcc(
        &repo().join("crates/ffi/tests/c/paired_terminal.c"),
        &checks,
        Link::Static,
    );

    let (server, uri) = server_with_vpn(cwd, "ATM-C");
    let keystore = softhsm_token_uri(&cwd.join("token"));
    let state = cwd.join("terminal");
    let mut child = Command::new(&example)
        .arg(&state)
        .args([keystore.as_str(), server.gate.as_str(), "ATM-C"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (code, mut rest) = code_line(&mut child);
    let id = pending_request(&server, cwd, "ATM-C");
    approve(cwd, &server, "olga", &uri, &id, &code, 0);
    assert!(child.wait().unwrap().success(), "pair_and_call failed");
    let mut me = String::new();
    rest.read_to_string(&mut me).unwrap();
    let me = json(&me);
    assert_eq!(me["serial"], "ATM-C");
    // The key never left the token: the agent's state and the server's
    // record name the same fingerprint, and the state holds no key.
    let status = json(&run_ok(
        &built("pairgate-agent"),
        cwd,
        &[
            "--json",
            "--state",
            &state.display().to_string(),
            "--keystore",
            &keystore,
            "status",
        ],
    ));
    assert_eq!(status["fingerprint"], me["fingerprint"]);
    assert!(!state.join("keys").exists());

    let out = Command::new(&checks)
        .arg(&state)
        .arg(&keystore)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\ndone\n"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ok the stream carried GET /v1/me"), "{text}");
    assert!(text.contains("ok GET /v1/me with the new key"), "{text}");
    // The re-key from C is in the server's audit log, key to key.
    let audit = json(&server.admin(cwd, &["--json", "audit"]));
    let rekeyed = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "terminal.rekey.activate")
        .unwrap_or_else(|| panic!("no terminal.rekey.activate in {audit}"));
    assert_eq!(rekeyed["detail"]["previous_fingerprint"], me["fingerprint"]);
    assert!(text.contains("\"serial\":\"ATM-C\""), "{text}");
    // The VPN profile C wrote: 0600, the VPN CA, the key named on the
    // token and no key in it; the server issued the certificate.
    assert!(text.contains("ok VPN profile written"), "{text}");
    let profile_path = state.join("vpn.ovpn");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&profile_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let profile = std::fs::read_to_string(&profile_path).unwrap();
    assert!(
        profile.contains("<ca>") && profile.contains("pkcs11-id '"),
        "{profile}"
    );
    assert!(
        !profile.contains("PRIVATE KEY") && !profile.contains("<key>"),
        "{profile}"
    );
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "vpn.credential_issued")
    );
}

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Compiles the Java SDK (as Java 8, the level Android apps can use) and
/// `extra` sources against it into `cwd/classes`; returns that directory.
fn javac(cwd: &Path, extra: &[PathBuf]) -> PathBuf {
    let classes = cwd.join("classes");
    let mut sdk = Vec::new();
    for dir in ["sdk/java/src/io/pairgate", "sdk/java/test/io/pairgate"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            sdk.push(entry.unwrap().path());
        }
    }
    let status = Command::new("javac")
        .args(["--release", "8", "-Xlint:all", "-Werror", "-d"])
        .arg(&classes)
        .args(&sdk)
        .status()
        .unwrap();
    assert!(status.success(), "javac --release 8 failed on the SDK");
    if !extra.is_empty() {
        let status = Command::new("javac")
            .args(["-Xlint:all", "-Werror", "-cp"])
            .arg(&classes)
            .arg("-d")
            .arg(&classes)
            .args(extra)
            .status()
            .unwrap();
        assert!(status.success(), "javac failed on {extra:?}");
    }
    classes
}

#[test]
fn the_java_sdk_passes_its_unit_tests_and_the_repository_vectors() {
    let dir = temp_dir();
    let classes = javac(dir.path(), &[]);
    let out = Command::new("java")
        .arg("-cp")
        .arg(&classes)
        .arg("io.pairgate.SdkTest")
        .arg(repo().join("crates/pki/tests/vectors/pairing-code-v1.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ok testPairingCodeVectorsFromTheRepository"),
        "{text}"
    );
    assert!(text.contains(" 0 failed"), "{text}");
}

#[test]
fn a_java_program_pairs_with_a_non_extractable_softhsm_key_and_calls_over_tls12_and_tls13() {
    use std::io::Read;
    let dir = temp_dir();
    let cwd = dir.path();
    let classes = javac(
        cwd,
        &[
            repo().join("examples/java/PairAndCall.java"),
            repo().join("sdk/java/test/MasterChecks.java"),
        ],
    );
    let (server, uri) = server_with_terminal(cwd, "ATM-J");
    let (_, slot) = softhsm_token(&cwd.join("token"));
    let module = std::env::var("PAIRGATE_TEST_PKCS11_MODULE")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    let config = cwd.join("pkcs11.cfg");
    std::fs::write(
        &config,
        format!(
            "name = pairgate\nlibrary = {module}\nslot = {slot}\n\
             attributes(generate, CKO_PRIVATE_KEY, *) = {{\n  CKA_SENSITIVE = true\n  CKA_EXTRACTABLE = false\n}}\n"
        ),
    )
    .unwrap();
    let state = cwd.join("terminal");
    let java = |class: &str, args: &[&std::ffi::OsStr]| {
        let mut command = Command::new("java");
        command
            .arg("-cp")
            .arg(&classes)
            .arg(class)
            .args(args)
            .env("PAIRGATE_PKCS11_PIN", "123456");
        command
    };
    let pair = || {
        java(
            "PairAndCall",
            &[
                state.as_os_str(),
                config.as_os_str(),
                server.gate.as_ref(),
                "ATM-J".as_ref(),
            ],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    // Killed while it waits, it resumes the same request: the same code.
    let mut first = pair();
    let (first_code, _) = code_line(&mut first);
    first.kill().unwrap();
    first.wait().unwrap();
    let mut child = pair();
    let (code, mut rest) = code_line(&mut child);
    assert_eq!(code, first_code);
    let id = pending_request(&server, cwd, "ATM-J");
    approve(cwd, &server, "olga", &uri, &id, &code, 0);
    assert!(child.wait().unwrap().success(), "PairAndCall failed");
    let mut me = String::new();
    rest.read_to_string(&mut me).unwrap();
    let me = json(&me);
    assert_eq!(me["serial"], "ATM-J");
    // The server recorded the key the token holds: its fingerprint is the
    // one the gate saw, and the pairing names it.
    let terminals = json(&server.admin(cwd, &["--json", "terminal", "list"]));
    let row = terminals
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["serial"] == "ATM-J")
        .unwrap();
    assert_eq!(row["paired_fingerprint"], me["fingerprint"], "{row}");

    let other = ServerProcess::start(
        cwd,
        &cwd.join("other-server"),
        &["--gate-listen", "127.0.0.1:0"],
    );
    assert_ne!(other.pin, server.pin);
    let out = java(
        "MasterChecks",
        &[state.as_os_str(), config.as_os_str(), other.gate.as_ref()],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.ends_with("done\n"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ok TLSv1.2 negotiated TLSv1.2"), "{text}");
    assert!(text.contains("ok TLSv1.3 negotiated TLSv1.3"), "{text}");
    // The refusal names both keys: the one seen and the one pinned.
    assert!(
        text.contains(&other.pin) && text.contains(&server.pin),
        "{text}"
    );
}
