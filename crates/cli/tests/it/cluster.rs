//! A cluster as an operator runs one: one gate, two masters and one CAS,
//! separate `pairgate server --services …` processes over one PostgreSQL
//! (a throwaway cluster of its own, so it can be stopped), the masters
//! behind HAProxy in TCP mode with health checks on `/readyz` (and, when
//! no master is ready, on `/healthz`: the masters then apply their own
//! stale-store policy). A terminal pairs through the gate and calls the
//! masters through HAProxy while one master is killed with SIGKILL and
//! while PostgreSQL is stopped and started; an unpair is then refused by
//! both masters.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pairgate_testkit::temp_dir;

use crate::support::{Node, json, ok, pair_through, pairgate};

/// HAProxy in front of the masters, stopped when dropped.
struct Haproxy {
    child: Child,
    port: u16,
}

impl Haproxy {
    /// Ready masters first; when none is ready, live ones.
    fn start(dir: &Path, masters: &[&Node]) -> Self {
        let port = free_port();
        let servers = |check: &str| {
            let mut lines = format!("    balance roundrobin\n    option httpchk GET {check}\n");
            lines += "    default-server inter 200ms fall 2 rise 2\n";
            for (i, m) in masters.iter().enumerate() {
                let master = m.started["master"].as_str().unwrap();
                let metrics = m.started["metrics"].as_str().unwrap();
                let check_port = metrics.rsplit_once(':').unwrap().1;
                lines += &format!("    server m{i} {master} check port {check_port}\n");
            }
            lines
        };
        let config = format!(
            "global\n    maxconn 2000\ndefaults\n    mode tcp\n    timeout connect 2s\n    \
             timeout client 30s\n    timeout server 30s\n    retries 3\n    option redispatch\n\
             frontend masters_in\n    bind 127.0.0.1:{port}\n    \
             use_backend ready if {{ nbsrv(ready) gt 0 }}\n    default_backend live\n\
             backend ready\n{}backend live\n{}",
            servers("/readyz"),
            servers("/healthz"),
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let program = if Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy"
        } else {
            "haproxy"
        };
        let child = Command::new(program)
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
            .spawn()
            .expect("haproxy runs (scripts/test installs it)");
        Self { child, port }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `pairgate --json terminal --state STATE call METHOD PATH [--data BODY]`:
/// the HTTP status (a non-2xx one from the error it prints), or `None`
/// when the call failed before an answer.
fn call(cwd: &Path, state: &str, method: &str, path: &str, body: Option<&str>) -> Option<u16> {
    let mut args = vec!["--json", "terminal", "--state", state, "call", method, path];
    if let Some(body) = body {
        args.extend(["--data", body]);
    }
    let out = pairgate(cwd, &args);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let (_, rest) = err.split_once("the master answered ")?;
        return rest.get(..3)?.parse().ok();
    }
    let answer = json(&String::from_utf8_lossy(&out.stdout));
    answer["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
}

/// Calls until `want` answers (or `within` passes); how long it took.
fn until_status(
    within: Duration,
    mut status: impl FnMut() -> Option<u16>,
    want: u16,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if status() == Some(want) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// `/metrics` counts of `GET /v1/me` answered 200 by `node`.
fn me_served(node: &Node) -> u64 {
    let series = r#"pairgate_http_requests_total{service="master",route="/v1/me",status="200"} "#;
    node.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_cluster_behind_haproxy_survives_a_killed_master_and_a_stopped_database() {
    let dir = temp_dir();
    let cwd = dir.path();
    let pg = pairgate_bench::Postgres::start(&cwd.join("pg"), None).unwrap();
    let data = cwd.join("server");
    let data_arg = data.display().to_string();
    let db = ["--database-url", pg.url.as_str()];
    let mut init = vec!["--json", "server", "init", "--data", &data_arg];
    init.extend(db);
    ok(cwd, &init);
    let policy = ["--set", "reconcile_secs=1", "--set", "stale_after_secs=4"];
    let master_args: Vec<&str> = db.iter().chain(policy.iter()).copied().collect();
    let mut m1 = Node::start(cwd, &data, "master", &master_args, &cwd.join("m1.log"));
    let m2 = Node::start(cwd, &data, "master", &master_args, &cwd.join("m2.log"));
    let haproxy = Haproxy::start(cwd, &[&m1, &m2]);
    let master_url = format!("https://127.0.0.1:{}", haproxy.port);
    let mut gate_args: Vec<&str> = db.to_vec();
    gate_args.extend(["--master-url", &master_url]);
    let front = Node::start(cwd, &data, "gate", &gate_args, &cwd.join("gate.log"));
    let cas = Node::start(cwd, &data, "cas", &db, &cwd.join("cas.log"));
    assert!(cas.started["cas"].is_string() && cas.started["gate"].is_null());
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--data", &data_arg, "--database-url", &pg.url];
        all.extend_from_slice(args);
        ok(cwd, &all)
    };

    // Pair through the gate.
    let gate = front.started["gate"].as_str().unwrap().to_owned();
    let admin_flags = [
        "--data",
        data_arg.as_str(),
        "--database-url",
        pg.url.as_str(),
    ];
    let state = pair_through(cwd, &admin_flags, &gate, "ATM-1").state;

    // Both masters serve the terminal through HAProxy.
    let me = || call(cwd, &state, "GET", "/v1/me", None);
    assert!(
        until_status(Duration::from_secs(10), me, 200).is_some(),
        "no master answered"
    );
    // Round robin over the ready masters: within a few calls, both.
    let both = (0..20).any(|_| {
        assert_eq!(me(), Some(200));
        me_served(&m1) >= 1 && me_served(&m2) >= 1
    });
    assert!(both, "HAProxy did not use both masters");

    // SIGKILL one master while the terminal sends heartbeats: every
    // heartbeat the terminal saw succeed is in the store, and the other
    // master carries on.
    let mut last_ok = None;
    let mut failed = 0;
    for i in 0..30 {
        if i == 8 {
            m1.child.kill().unwrap();
            m1.child.wait().unwrap();
        }
        let body = format!(r#"{{"firmware":"fw-{i}"}}"#);
        match call(cwd, &state, "POST", "/v1/heartbeat", Some(&body)) {
            Some(200) => last_ok = Some(i),
            _ => failed += 1,
        }
    }
    assert_eq!(
        last_ok,
        Some(29),
        "heartbeats stopped after the kill ({failed} failed)"
    );
    assert!(failed <= 2, "{failed} heartbeats failed around the kill");
    let listed = json(&admin(&["--json", "terminal", "list"]));
    assert_eq!(listed[0]["firmware"], "fw-29", "{listed}");

    // PostgreSQL stops: no master is ready, HAProxy falls back to the
    // live one, which serves its last known set until stale_after_secs,
    // then refuses; when PostgreSQL is back it serves again.
    let stopped = Instant::now();
    pg.stop().unwrap();
    until_status(Duration::from_secs(20), me, 503).expect("the master kept serving");
    // Not before stale_after_secs (4) from the last check, at most a
    // second (reconcile_secs) before the stop began.
    let refused_after = stopped.elapsed();
    assert!(
        refused_after >= Duration::from_secs(3),
        "refused after {refused_after:?}"
    );
    pg.restart().unwrap();
    assert!(
        until_status(Duration::from_secs(30), me, 200).is_some(),
        "not served after the database came back"
    );

    // The killed master comes back on its addresses and rejoins.
    let addresses = [
        "--master-listen",
        m1.started["master"].as_str().unwrap(),
        "--metrics-listen",
        m1.started["metrics"].as_str().unwrap(),
    ];
    let again: Vec<&str> = master_args
        .iter()
        .chain(addresses.iter())
        .copied()
        .collect();
    let m1 = Node::start(cwd, &data, "master", &again, &cwd.join("m1-again.log"));
    let rejoined = (0..50).any(|_| {
        // Until HAProxy sees it ready, the other master answers.
        assert_eq!(me(), Some(200));
        me_served(&m1) >= 1
    });
    assert!(rejoined, "the restarted master was not used again");

    // Unpair: refused through HAProxy, by both masters.
    admin(&["unpair", "ATM-1"]);
    assert!(
        until_status(Duration::from_secs(5), me, 403).is_some(),
        "the unpair was not honoured"
    );
    let refused = |m: &Node| {
        let series =
            r#"pairgate_http_requests_total{service="master",route="/v1/me",status="403"} "#;
        m.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let both = (0..20).any(|_| {
        assert_eq!(me(), Some(403));
        refused(&m1) >= 1 && refused(&m2) >= 1
    });
    assert!(both, "not both masters refused the unpaired terminal");
    drop(haproxy);
}
