//! Two network namespaces joined by a veth pair, made by a test: the VPN
//! server's side and a terminal's. Processes started in them are stopped
//! and the namespaces deleted when it is dropped. Needs root, `ip` and
//! `/dev/net/tun` (scripts/test runs as root).

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A server namespace and a terminal namespace on 172.31.`net`.0/24.
pub struct Net {
    pub server: String,
    pub terminal: String,
    pub server_ip: String,
    children: Vec<Child>,
    /// Commands run before the namespaces go (wg-quick down, kill).
    cleanups: Vec<Vec<String>>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// Whether this process may make namespaces (root). CI runs as root
    /// and must; elsewhere a test without it says it was skipped.
    pub fn available() -> bool {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI runs as root and must make network namespaces"
            );
            eprintln!("skipped: network namespaces need root");
        }
        root
    }

    /// Namespaces `pg<tag>s` and `pg<tag>t` (this process's id in the
    /// name, so parallel runs do not meet).
    pub fn new(tag: &str, net: u8) -> Self {
        let id = std::process::id() % 10_000;
        let (server, terminal) = (format!("pg{tag}{id}s"), format!("pg{tag}{id}t"));
        let (a, b) = (format!("pg{tag}{id}a"), format!("pg{tag}{id}b"));
        ip(&["netns", "add", &server]);
        ip(&["netns", "add", &terminal]);
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &a, "netns", &server]);
        ip(&["link", "set", &b, "netns", &terminal]);
        let server_ip = format!("172.31.{net}.1");
        ip(&[
            "-n",
            &server,
            "addr",
            "add",
            &format!("{server_ip}/24"),
            "dev",
            &a,
        ]);
        ip(&[
            "-n",
            &terminal,
            "addr",
            "add",
            &format!("172.31.{net}.2/24"),
            "dev",
            &b,
        ]);
        for (ns, dev) in [(&server, &a), (&terminal, &b)] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        Self {
            server,
            terminal,
            server_ip,
            children: Vec::new(),
            cleanups: Vec::new(),
        }
    }

    /// `PROGRAM ARGS` in namespace `ns`.
    pub fn command(ns: &str, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, program]).args(args);
        command
    }

    /// Runs `PROGRAM ARGS` in `ns` and requires success; its stdout.
    pub fn run(ns: &str, program: &str, args: &[&str]) -> String {
        let out = Self::command(ns, program, args)
            .env("PAIRGATE_KEYSTORE_PASSPHRASE", crate::support::PASSPHRASE)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {} in {ns} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Whether a TCP connection from `ns` to `addr` opens within 3 s.
    pub fn connects(ns: &str, addr: &str, port: u16) -> bool {
        Self::command(
            ns,
            "timeout",
            &["3", "bash", "-c", &format!("echo > /dev/tcp/{addr}/{port}")],
        )
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    }

    /// Keeps `child` to stop when the test ends.
    pub fn keep(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Runs `args` (in the root namespace) when the test ends.
    pub fn on_drop(&mut self, args: &[&str]) {
        self.cleanups
            .push(args.iter().map(|a| (*a).to_owned()).collect());
    }

    /// Stops the daemon whose pid is in `file` when the test ends.
    pub fn kill_on_drop(&mut self, file: &Path) {
        self.on_drop(&[
            "sh",
            "-c",
            &format!("kill $(cat {}) 2>/dev/null", file.display()),
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for args in self.cleanups.iter().rev() {
            let _ = Command::new(&args[0])
                .args(&args[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.server])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.terminal])
            .status();
    }
}
