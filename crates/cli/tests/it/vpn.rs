//! VPN profiles with real tunnels (issue 19): the server in one network
//! namespace, a terminal in another, joined by a veth pair. WireGuard
//! with wireguard-go and OpenVPN with the terminal's key in SoftHSM2:
//! the terminal pairs, gets its profile from the gate, brings the tunnel
//! up and calls the master through it; after unpair, `pairgate vpn sync`
//! removes the WireGuard peer (traffic stops) or lists the certificate
//! on the CRL (OpenVPN refuses the next connect). No private key reaches
//! the server's store or a profile the server gives.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Net;
use crate::support::{json, ok, totp_now};

const PAIRGATE: &str = env!("CARGO_BIN_EXE_pairgate");

/// A pairgate server running in `net.server`, with its VPN's keys made.
struct VpnServer {
    data: String,
    config: String,
    olga: String,
}

impl VpnServer {
    fn start(net: &mut Net, cwd: &Path, vpn: &str) -> Self {
        let (data, config) = (cwd.join("data"), cwd.join("pairgate.toml"));
        std::fs::write(
            &config,
            format!("{vpn}metrics_listen = \"\"\ncas_listen = \"127.0.0.1:0\"\n"),
        )
        .unwrap();
        let (data, config) = (data.display().to_string(), config.display().to_string());
        ok(
            cwd,
            &["server", "init", "--data", &data, "--config", &config],
        );
        ok(cwd, &["vpn", "--data", &data, "--config", &config, "init"]);
        let mut child = Net::command(
            &net.server,
            PAIRGATE,
            &["--json", "server", "--data", &data, "--config", &config],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        json(&line);
        net.keep(child);
        let admin = |args: &[&str]| {
            let mut all = vec!["--json", "admin", "--data", &data];
            all.extend_from_slice(args);
            ok(cwd, &all)
        };
        let olga = json(&admin(&[
            "operator", "create", "olga", "--role", "operator",
        ]));
        Self {
            olga: olga["totp_uri"].as_str().unwrap().to_owned(),
            data: data.clone(),
            config: config.clone(),
        }
    }

    fn vpn(&self, cwd: &Path, args: &[&str]) -> String {
        let mut all = vec!["vpn", "--data", &self.data, "--config", &self.config];
        all.extend_from_slice(args);
        ok(cwd, &all)
    }

    fn admin(&self, cwd: &Path, args: &[&str]) -> String {
        let mut all = vec!["admin", "--data", &self.data];
        all.extend_from_slice(args);
        ok(cwd, &all)
    }

    /// `pairgate vpn sync` every 2 s, running `hook` after a change.
    fn sync(&self, net: &mut Net, dir: &Path, hook: Option<&str>) {
        let dir = dir.display().to_string();
        let mut args = vec![
            "vpn",
            "--data",
            &self.data,
            "--config",
            &self.config,
            "sync",
            "--dir",
            &dir,
            "--interval",
            "2",
        ];
        if let Some(hook) = hook {
            args.extend(["--hook", hook]);
        }
        net.keep(
            Command::new(PAIRGATE)
                .args(&args)
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }

    /// Registers `serial` and pairs the terminal of `state` (the
    /// `keystore` arguments naming its key store) from `net.terminal`.
    fn pair(&self, net: &Net, cwd: &Path, (state, keystore): (&str, &[&str]), serial: &str) {
        self.admin(cwd, &["terminal", "add", serial, "--name", "Lobby"]);
        let mut init = keystore.to_vec();
        init.extend(["--state", state, "init"]);
        let mut all = vec!["terminal"];
        all.extend(&init);
        Net::run(&net.terminal, PAIRGATE, &all);
        let gate = format!("{}:7741", net.server_ip);
        let mut pair = vec![
            "netns",
            "exec",
            &net.terminal,
            PAIRGATE,
            "--json",
            "terminal",
        ];
        pair.extend(keystore);
        pair.extend([
            "--state", state, "pair", "--gate", &gate, "--serial", serial,
        ]);
        let (mut child, code, id) = crate::agent::start_pair_with(Path::new("ip"), cwd, &pair);
        let totp = totp_now(&self.olga, 0);
        self.admin(
            cwd,
            &[
                "approve",
                &id,
                "--code",
                &code,
                "--operator",
                "olga",
                "--totp",
                &totp,
            ],
        );
        assert!(child.wait().unwrap().success(), "pair failed");
    }
}

/// The WireGuard interface `server-config` describes, up in `net.server`
/// (wireguard-go), and `pairgate vpn sync` with `wg syncconf` as its
/// hook; returns the interface's name.
fn wireguard_server(net: &mut Net, cwd: &Path, server: &VpnServer, vpn_dir: &Path) -> String {
    let interface = format!("pgs{}", std::process::id() % 10_000);
    let conf = vpn_dir.join(format!("{interface}.conf"));
    let config = server.vpn(
        cwd,
        &["server-config", "--dir", &vpn_dir.display().to_string()],
    );
    std::fs::write(&conf, &config).unwrap();
    let conf_arg = conf.display().to_string();
    Net::run(&net.server, "wg-quick", &["up", &conf_arg]);
    net.on_drop(&[
        "ip",
        "netns",
        "exec",
        &net.server.clone(),
        "wg-quick",
        "down",
        &conf_arg,
    ]);
    let hook = format!(
        "ip netns exec {} wg syncconf {interface} {}/wg-server.conf",
        net.server,
        vpn_dir.display()
    );
    server.sync(net, vpn_dir, Some(&hook));
    interface
}

/// The OpenVPN server `server-config` describes, running in `net.server`
/// with a management port, and `pairgate vpn sync` with a hook that ends
/// a dropped terminal's live session there (OpenVPN checks the CRL only
/// at a connect); returns the server's log file.
fn openvpn_server(net: &mut Net, cwd: &Path, server: &VpnServer, vpn_dir: &Path) -> String {
    let d = vpn_dir.display().to_string();
    let config = server.vpn(cwd, &["server-config", "--dir", &d]);
    std::fs::write(vpn_dir.join("server.conf"), &config).unwrap();
    let (conf, pid, log) = (
        format!("{d}/server.conf"),
        format!("{d}/server.pid"),
        format!("{d}/server.log"),
    );
    // Its management port lets the sync's hook end a dropped terminal's
    // live session (OpenVPN checks the CRL only at a connect).
    Net::run(
        &net.server,
        "openvpn",
        &[
            "--config",
            &conf,
            "--daemon",
            "pgvpn-test",
            "--writepid",
            &pid,
            "--log",
            &log,
            "--management",
            "127.0.0.1",
            "7505",
        ],
    );
    net.kill_on_drop(Path::new(&pid));
    let hook = format!(
        "for s in $PAIRGATE_VPN_DROPPED; do ip netns exec {} bash -c \
         'exec 3<>/dev/tcp/127.0.0.1/7505; echo \"kill '$s'\" >&3; sleep 0.3'; done",
        net.server
    );
    server.sync(net, vpn_dir, Some(&hook));
    log
}

/// The terminal's state file.
fn state_json(state: &str) -> serde_json::Value {
    json(&std::fs::read_to_string(Path::new(state).join("state.json")).unwrap())
}

/// Waits up to `within` for `check`.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    check()
}

/// Neither the store nor any profile the server gave holds a private key.
fn no_private_key_on_the_server(data: &str, private: Option<&str>) {
    for name in ["pairgate.db", "pairgate.db-wal"] {
        let Ok(bytes) = std::fs::read(Path::new(data).join(name)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("PrivateKey ="),
            "{name}"
        );
        if let Some(private) = private {
            assert!(
                !text.contains(private),
                "the terminal's private key is in {name}"
            );
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

#[test]
fn wireguard_tunnel_carries_the_master_and_unpair_removes_the_peer() {
    if !Net::available() {
        return;
    }
    let dir = pairgate_testkit::temp_dir();
    let cwd = dir.path();
    let mut net = Net::new("w", 201);
    let vpn = format!(
        "vpn_type = \"wireguard\"\nvpn_endpoint = \"{}:51820\"\nvpn_pool_v4 = \"10.79.201.0/24\"\n\
         master_url = \"https://10.79.201.1:7743\"\n",
        net.server_ip
    );
    let server = VpnServer::start(&mut net, cwd, &vpn);
    let vpn_dir = cwd.join("vpn");
    let interface = wireguard_server(&mut net, cwd, &server, &vpn_dir);

    let state = cwd.join("terminal").display().to_string();
    server.pair(&net, cwd, (&state, &[]), "ATM-V1");
    // The gate gave the profile right after pairing.
    let held = state_json(&state)["vpn"].clone();
    assert_eq!(held["address"], "10.79.201.2/24", "{held}");
    let given = held["profile"].as_str().unwrap();
    assert!(!given.contains("PrivateKey ="), "{given}");
    let key_file = Path::new(&state).join("vpn-wireguard.key");
    assert_eq!(mode(&key_file), 0o600);
    let private = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();

    let ns = net.terminal.clone();
    let terminal = |args: &[&str]| {
        let mut all = vec!["--json", "terminal", "--state", &state];
        all.extend_from_slice(args);
        Net::run(&ns, PAIRGATE, &all)
    };
    terminal(&["vpn", "up"]);
    let wg_conf = format!("{state}/vpn/pgvpn0.conf");
    net.on_drop(&[
        "ip",
        "netns",
        "exec",
        &net.terminal.clone(),
        "wg-quick",
        "down",
        &wg_conf,
    ]);
    assert_eq!(mode(Path::new(&wg_conf)), 0o600);
    assert!(
        std::fs::read_to_string(&wg_conf)
            .unwrap()
            .contains(&format!("PrivateKey = {private}"))
    );
    // The master, reachable only through the tunnel.
    let me = json(&terminal(&["call", "GET", "/v1/me"]));
    assert_eq!(me["body"]["serial"], "ATM-V1");
    // The profile the master gives, written by the agent.
    let out = format!("{state}/written.conf");
    terminal(&["vpn", "profile", "--out", &out]);
    assert_eq!(mode(Path::new(&out)), 0o600);
    no_private_key_on_the_server(&server.data, Some(&private));

    // A new enrolment makes a new key; after the sync the VPN server
    // knows only it, and the tunnel comes up again with it.
    let before = std::fs::read_to_string(&key_file).unwrap();
    let enrolled = json(&terminal(&["vpn", "enrol"]));
    assert_eq!(enrolled["vpn"]["address"], "10.79.201.2/24", "{enrolled}");
    let after = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(before, after, "the same key again");
    let new_public = {
        let key = pairgate_keystore::wireguard::WireGuardKey::load(&key_file).unwrap();
        key.public_base64()
    };
    let peers = || Net::run(&net.server, "wg", &["show", &interface, "peers"]);
    assert!(
        eventually(Duration::from_secs(10), || peers().trim() == new_public),
        "peers: {}",
        peers()
    );
    terminal(&["vpn", "down"]);
    terminal(&["vpn", "up"]);
    let me = json(&terminal(&["call", "GET", "/v1/me"]));
    assert_eq!(me["body"]["serial"], "ATM-V1");
    let private = after.trim().to_owned();
    no_private_key_on_the_server(&server.data, Some(&private));

    server.admin(cwd, &["unpair", "ATM-V1"]);
    assert!(
        eventually(Duration::from_secs(10), || peers().trim().is_empty()),
        "peer still there"
    );
    assert!(
        !Net::connects(&net.terminal, "10.79.201.1", 7743),
        "traffic still flows"
    );
    let audit = server.admin(cwd, &["audit", "--limit", "5"]);
    assert!(audit.contains("vpn.revoked"), "{audit}");
    // A factory reset leaves no VPN key or profile behind.
    terminal(&["vpn", "down"]);
    terminal(&["factory-reset", "--yes"]);
    assert!(!key_file.exists() && !Path::new(&format!("{state}/vpn")).exists());
}

#[test]
fn openvpn_with_the_key_in_softhsm_is_refused_after_unpair() {
    if !Net::available() {
        return;
    }
    let dir = pairgate_testkit::temp_dir();
    let cwd = dir.path();
    let mut net = Net::new("o", 202);
    let vpn = format!(
        "vpn_type = \"openvpn\"\nvpn_endpoint = \"{}:1194\"\nvpn_pool_v4 = \"10.80.202.0/24\"\n\
         master_url = \"https://10.80.202.1:7743\"\n",
        net.server_ip
    );
    let server = VpnServer::start(&mut net, cwd, &vpn);
    let vpn_dir = cwd.join("vpn");
    let d = vpn_dir.display().to_string();
    let log = openvpn_server(&mut net, cwd, &server, &vpn_dir);

    let keystore = crate::support::softhsm_token_uri(&cwd.join("hsm"));
    let state = cwd.join("terminal").display().to_string();
    let ks: [&str; 2] = ["--keystore", &keystore];
    server.pair(&net, cwd, (&state, &ks), "ATM-O1");
    let held = state_json(&state)["vpn"].clone();
    assert_eq!(held["address"], "10.80.202.2/24", "{held}");
    // The VPN CA certified the key made on the token: CN = serial,
    // clientAuth.
    let certificate = held["certificate"].as_str().unwrap();
    let shown = openssl_x509(certificate);
    assert!(
        shown.contains("subject=CN = ATM-O1") && shown.contains("issuer=CN = pairgate VPN CA"),
        "{shown}"
    );
    assert!(shown.contains("TLS Web Client Authentication"), "{shown}");

    let ns = net.terminal.clone();
    let terminal = |args: &[&str]| -> std::process::Output {
        let mut all = vec![
            "--json",
            "terminal",
            "--keystore",
            &keystore,
            "--state",
            &state,
        ];
        all.extend_from_slice(args);
        Net::command(&ns, PAIRGATE, &all).output().unwrap()
    };
    // Admitted once the sync has written its per-client file.
    let ccd = PathBuf::from(format!("{d}/ccd/ATM-O1"));
    assert!(
        eventually(Duration::from_secs(10), || ccd.exists()),
        "no {}",
        ccd.display()
    );
    let up = terminal(&["vpn", "up"]);
    assert!(
        up.status.success(),
        "vpn up: {}\n{}",
        String::from_utf8_lossy(&up.stderr),
        std::fs::read_to_string(format!("{state}/vpn/openvpn.log")).unwrap_or_default()
    );
    let client_pid = PathBuf::from(format!("{state}/vpn/openvpn.pid"));
    net.kill_on_drop(&client_pid);
    let profile = std::fs::read_to_string(format!("{state}/vpn/pairgate.ovpn")).unwrap();
    assert!(
        profile.contains("pkcs11-id '")
            && !profile.contains("PRIVATE KEY")
            && !profile.contains("<key>")
    );
    let me = terminal(&["call", "GET", "/v1/me"]);
    assert!(
        me.status.success(),
        "{}",
        String::from_utf8_lossy(&me.stderr)
    );
    assert_eq!(
        json(&String::from_utf8_lossy(&me.stdout))["body"]["serial"],
        "ATM-O1"
    );
    no_private_key_on_the_server(&server.data, None);

    // A new enrolment makes a new key on the token, under `vpn.1` while
    // `vpn` is in use; the replaced certificate goes on the CRL, and the
    // tunnel comes up again with the new one.
    assert_eq!(state_json(&state)["vpn_alias"], "vpn");
    assert!(terminal(&["vpn", "enrol"]).status.success());
    assert_eq!(state_json(&state)["vpn_alias"], "vpn.1");
    let replaced = openssl_serial(certificate);
    let crl_lists = |serial: &str| {
        let out = Command::new("openssl")
            .args(["crl", "-noout", "-text", "-in", &format!("{d}/crl.pem")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(serial)
    };
    assert!(eventually(Duration::from_secs(10), || crl_lists(&replaced)));
    let certificate = state_json(&state)["vpn"]["certificate"]
        .as_str()
        .unwrap()
        .to_owned();
    let certificate = certificate.as_str();
    assert!(terminal(&["vpn", "down"]).status.success());
    let up = terminal(&["vpn", "up"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(terminal(&["call", "GET", "/v1/me"]).status.success());

    assert!(Net::connects(&ns, "10.80.202.1", 7743));

    server.admin(cwd, &["unpair", "ATM-O1"]);
    let serial = openssl_serial(certificate);
    assert!(
        eventually(Duration::from_secs(10), || crl_lists(&serial)),
        "the CRL does not list {serial}"
    );
    assert!(!ccd.exists());
    // The hook ended the live session: the master is out of reach.
    assert!(
        eventually(Duration::from_secs(10), || !Net::connects(
            &ns,
            "10.80.202.1",
            7743
        )),
        "the revoked terminal's tunnel still carries traffic"
    );
    assert!(terminal(&["vpn", "down"]).status.success());
    // The master is out of reach with the tunnel down: `vpn up` uses the
    // profile it holds, and the VPN server refuses it.
    let again = terminal(&["vpn", "up"]);
    assert!(
        !again.status.success(),
        "the VPN server admitted a revoked terminal"
    );
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("refused"), "{said}");
    let server_log = std::fs::read_to_string(&log).unwrap();
    assert!(server_log.contains("certificate revoked"), "{server_log}");
    assert!(
        server_log.contains("MANAGEMENT: CMD 'kill ATM-O1'"),
        "{server_log}"
    );
}

fn openssl_x509(pem: &str) -> String {
    openssl(
        &[
            "x509",
            "-noout",
            "-subject",
            "-issuer",
            "-ext",
            "extendedKeyUsage",
        ],
        pem,
    )
}

fn openssl_serial(pem: &str) -> String {
    let out = openssl(&["x509", "-noout", "-serial"], pem);
    out.trim().trim_start_matches("serial=").to_owned()
}

fn openssl(args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// `pairgate vpn` refuses what it cannot do, clearly, and changes nothing:
/// no VPN configured, its keys made twice, a key file others may read, a
/// server that does not know its VPN's keys.
#[test]
fn vpn_commands_refuse_what_they_cannot_do() {
    let dir = pairgate_testkit::temp_dir();
    let cwd = dir.path();
    let data = cwd.join("data").display().to_string();
    crate::support::ok(cwd, &["server", "init", "--data", &data]);
    let wg = [
        "--set",
        "vpn_type=wireguard",
        "--set",
        "vpn_endpoint=192.0.2.1:51820",
    ];
    let with = |args: &[&str]| {
        let mut all = vec!["vpn", "--data", &data];
        all.extend(wg);
        all.extend_from_slice(args);
        all.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::support::pairgate(cwd, &refs)
    };
    let said = crate::support::fails(cwd, &["vpn", "--data", &data, "init"]);
    assert!(said.contains("vpn_type is \"none\""), "{said}");
    // The server refuses to start with a VPN whose keys were never made.
    let started = crate::support::pairgate(
        cwd,
        &[
            "server",
            "--data",
            &data,
            "--set",
            "vpn_type=wireguard",
            "--set",
            "vpn_endpoint=192.0.2.1:51820",
            "--gate-listen",
            "127.0.0.1:0",
            "--master-listen",
            "127.0.0.1:0",
            "--cas-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "",
        ],
    );
    assert!(!started.status.success());
    assert!(String::from_utf8_lossy(&started.stderr).contains("pairgate vpn init"));
    assert!(run(with(&["init"])).status.success());
    let again = run(with(&["init"]));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already recorded"));
    let key = cwd.join("data/vpn/wireguard.key");
    let open = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644);
    std::fs::set_permissions(&key, open).unwrap();
    let out_dir = cwd.join("vpn").display().to_string();
    let refused = run(with(&["server-config", "--dir", &out_dir]));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("may be read by others"));
    let bad_pool = crate::support::fails(
        cwd,
        &[
            "vpn",
            "--data",
            &data,
            "--set",
            "vpn_type=wireguard",
            "--set",
            "vpn_endpoint=x:1",
            "--set",
            "vpn_pool_v4=10.0.0.1/24",
            "init",
        ],
    );
    assert!(bad_pool.contains("vpn_pool_v4"), "{bad_pool}");
}
