//! Running the binary.

use std::path::Path;
use std::process::{Command, Output};

pub const PASSPHRASE: &str = "a long terminal passphrase";

/// `pairgate ARGS` with the software store passphrase in the environment.
pub fn pairgate(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pairgate"))
        .args(args)
        .current_dir(cwd)
        .env("PAIRGATE_KEYSTORE_PASSPHRASE", PASSPHRASE)
        .env_remove("PAIRGATE_KEYSTORE")
        .env_remove("PAIRGATE_STATE")
        .env_remove("PAIRGATE_FIRMWARE_ROOTS")
        .output()
        .unwrap()
}

/// Runs and requires success; returns stdout.
pub fn ok(cwd: &Path, args: &[&str]) -> String {
    let out = pairgate(cwd, args);
    assert!(
        out.status.success(),
        "pairgate {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and requires failure; returns stderr.
pub fn fails(cwd: &Path, args: &[&str]) -> String {
    let out = pairgate(cwd, args);
    assert!(
        !out.status.success(),
        "pairgate {} succeeded but should not",
        args.join(" ")
    );
    String::from_utf8(out.stderr).unwrap()
}

/// `pairgate --json terminal --state STATE ARGS…`, required to succeed:
/// its last JSON line (a `pair` prints the code line first).
pub fn terminal_json(cwd: &Path, state: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "terminal", "--state", state];
    all.extend_from_slice(args);
    json(ok(cwd, &all).trim().lines().last().unwrap_or_default())
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A `pairgate server` process on 127.0.0.1 ports of its own (SQLite in
/// `data`), killed when dropped.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub gate: String,
    pub master_url: String,
    pub pin: String,
    /// CAS base URL (`http://127.0.0.1:PORT`).
    pub cas: String,
    /// The first-run admin password, when this start created `admin`.
    pub first_run_password: Option<String>,
    pub data: std::path::PathBuf,
}

impl ServerProcess {
    /// Starts a server on `data` with `extra` arguments.
    pub fn start(cwd: &Path, data: &Path, extra: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_pairgate"))
            .args(["--json", "server", "--data"])
            .arg(data)
            .args([
                "--master-listen",
                "127.0.0.1:0",
                "--cas-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .current_dir(cwd)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started = json(&line);
        Self {
            child,
            gate: started["gate"].as_str().unwrap().to_owned(),
            master_url: started["master_url"].as_str().unwrap().to_owned(),
            pin: started["pin"].as_str().unwrap().to_owned(),
            cas: started["cas"].as_str().unwrap().to_owned(),
            first_run_password: started["first_run_password"].as_str().map(str::to_owned),
            data: data.to_owned(),
        }
    }

    /// `pairgate admin --data DATA ARGS`, required to succeed.
    pub fn admin(&self, cwd: &Path, args: &[&str]) -> String {
        let data = self.data.display().to_string();
        let mut all = vec!["admin", "--data", &data];
        all.extend_from_slice(args);
        ok(cwd, &all)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TOTP code of an `otpauth://` URI for the current step plus `offset`.
pub fn totp_now(uri: &str, offset: i64) -> String {
    let step = pairgate_testkit::totp_step_now()
        .checked_add_signed(offset)
        .unwrap();
    pairgate_testkit::totp_code(uri, step)
}

/// A fresh SoftHSM2 token, provisioned the way an operator would with
/// softhsm2-util; returns its key-store URI (PIN in a file in `dir`).
pub fn softhsm_token_uri(dir: &Path) -> String {
    softhsm_token(dir).0
}

/// A fresh SoftHSM2 token: its key-store URI (PIN in a file in `dir`) and
/// its slot number (for configurations that name the slot, as
/// SunPKCS11's does). The user PIN is 123456.
pub fn softhsm_token(dir: &Path) -> (String, u64) {
    let module = std::env::var("PAIRGATE_TEST_PKCS11_MODULE")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    let mut random = [0u8; 6];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    let label = format!("cli-{}", hex::encode(random));
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            &label,
            "--so-pin",
            "5678",
            "--pin",
            "123456",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "The token has been initialized and is reassigned to slot N"
    let said = String::from_utf8_lossy(&out.stdout);
    let slot = said
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no slot in softhsm2-util's answer: {said}"));
    std::fs::create_dir_all(dir).unwrap();
    let pin = dir.join("pin");
    std::fs::write(&pin, "123456").unwrap();
    let uri = format!(
        "pkcs11:token={label}?module-path={module}&pin-source=file:{}",
        pin.display()
    );
    (uri, slot)
}

/// A plain-HTTP GET to `url` (`http://host:port/path`) with extra headers;
/// returns the status and the body.
pub fn http_get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut tcp = std::net::TcpStream::connect(host).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in headers {
        request.push_str(&format!("{n}: {v}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A rogue database writer edits audit record `seq` and recomputes the
/// chain after it.
pub async fn forge(store: &pairgate_store::Store, seq: i64) {
    pairgate_testkit::forge_audit_record(store.pool(), seq, |f, prev| {
        pairgate_store::record_hash(
            f.seq, f.at, &f.actor, &f.action, &f.subject, &f.detail, prev,
        )
    })
    .await;
}

/// A `pairgate server --services …` process, killed when dropped.
pub struct Node {
    pub child: std::process::Child,
    pub started: serde_json::Value,
}

impl Node {
    /// `pairgate --json server --data DATA --services SERVICES EXTRA` on
    /// ports of its own (unless EXTRA names them), JSON logs to `log`;
    /// reads its start line.
    pub fn start(cwd: &Path, data: &Path, services: &str, extra: &[&str], log: &Path) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_pairgate"))
            .args(["--json", "server", "--data"])
            .arg(data)
            .args(["--services", services])
            .args(
                [
                    "--gate-listen",
                    "--master-listen",
                    "--cas-listen",
                    "--metrics-listen",
                ]
                .into_iter()
                .filter(|flag| !extra.contains(flag))
                .flat_map(|flag| [flag, "127.0.0.1:0"]),
            )
            .args(extra)
            .env("PAIRGATE_LOG_FORMAT", "json")
            .current_dir(cwd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Self {
            child,
            started: json(&line),
        }
    }

    /// Its `/metrics` page.
    pub fn metrics(&self) -> String {
        let addr = self.started["metrics"].as_str().unwrap();
        let (status, body) = http_get(&format!("http://{addr}/metrics"), &[]);
        assert_eq!(status, 200);
        body
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `head` then `tail`: a command's fixed flags and this call's words.
pub fn joined<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter().chain(tail).copied().collect()
}

/// A terminal paired by [`pair_through`].
pub struct PairedTerminal {
    /// Its state directory.
    pub state: String,
    /// Its certificate fingerprint.
    pub fingerprint: String,
    /// The pairing code it showed.
    pub code: String,
}

/// Registers `serial`, creates the operator `olga`, makes a terminal in
/// `cwd/terminal` (software key store) and pairs it through `gate`,
/// approved by olga with `pairgate admin ADMIN…` (the flags naming the
/// server's store).
pub fn pair_through(cwd: &Path, admin: &[&str], gate: &str, serial: &str) -> PairedTerminal {
    let run_admin = |args: &[&str]| {
        let mut all = vec!["admin"];
        all.extend_from_slice(admin);
        all.extend_from_slice(args);
        ok(cwd, &all)
    };
    run_admin(&["terminal", "add", serial, "--name", "Lobby"]);
    let created = json(&run_admin(&[
        "--json", "operator", "create", "olga", "--role", "operator",
    ]));
    let uri = created["totp_uri"].as_str().unwrap().to_owned();
    let state = cwd.join("terminal").display().to_string();
    let init = json(&ok(cwd, &["--json", "terminal", "--state", &state, "init"]));
    let fingerprint = init["fingerprint"].as_str().unwrap().to_owned();
    let pair = [
        "--json", "terminal", "--state", &state, "pair", "--gate", gate, "--serial", serial,
    ];
    let (mut child, code, id) = crate::agent::start_pair(cwd, &pair);
    let totp = totp_now(&uri, 0);
    run_admin(&[
        "approve",
        &id,
        "--code",
        &code,
        "--operator",
        "olga",
        "--totp",
        &totp,
    ]);
    assert!(
        child.wait().unwrap().success(),
        "pair did not exit 0 after approval"
    );
    PairedTerminal {
        state,
        fingerprint,
        code,
    }
}

/// Has `pairgate ca` (in `cwd/ca`) issue the server identity of `data` a
/// certificate for localhost and 127.0.0.1 from the identity's CSR, and
/// writes the chain (leaf, then the CA) to `cwd/chain.pem`.
pub fn issue_identity_chain(cwd: &Path, data: &str) {
    let csr = [
        "admin",
        "--data",
        data,
        "identity",
        "csr",
        "--out",
        "identity.csr",
    ];
    ok(cwd, &csr);
    let sign = [
        "--json",
        "ca",
        "sign-server-cert",
        "--dir",
        "ca",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--csr",
        "identity.csr",
    ];
    let issued = json(&ok(cwd, &sign));
    let ca_pem = std::fs::read_to_string(cwd.join("ca/ca.pem")).unwrap();
    let chain = format!("{}{ca_pem}", issued["certificate"].as_str().unwrap());
    std::fs::write(cwd.join("chain.pem"), &chain).unwrap();
}
