//! `pairgate bench idle`: many idle paired terminals held at once against
//! masters over one PostgreSQL, and the time for all of them to reconnect
//! after the masters restart.
//!
//! This machine lets one process hold at most 20,000 descriptors, so the
//! terminals are spread over `--masters` master instances (separate
//! `pairgate server --services master` processes sharing one identity)
//! and as many client processes (`pairgate bench idle-client`), each
//! client from its own 127.0.0.x address to its own master. The
//! terminals' keys are made by the clients; their rows are written
//! straight into the store as paired (pairing throughput is `bench
//! onboard`'s figure), before the masters start and load them.
//!
//! The masters run with `header_timeout_secs = 3600` (a real terminal
//! keeps its connection with heartbeats within the default 10 s) and no
//! per-address cap (real terminals come from many addresses).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::output::Output;
use crate::peers::{Postgres, free_port};
use crate::procs::{Process, rss_bytes};

/// `pairgate bench idle`.
#[derive(Args, Debug)]
pub struct IdleArgs {
    /// Idle paired terminals held.
    #[arg(long, default_value_t = 100_000)]
    terminals: usize,
    /// Master instances, and client processes (one per master).
    #[arg(long, default_value_t = 7)]
    masters: usize,
    /// A PostgreSQL to use (default: a throwaway cluster).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

/// Most connections one process may hold here, with room to spare.
const PER_PROCESS: usize = 18_000;

/// A client process and its pipes.
struct Client {
    /// Stopped when dropped.
    _process: Process,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn send(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdin, "{line}").context("writing to an idle client")
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        serde_json::from_str(&line).with_context(|| {
            format!("an idle client stopped (line {line:?}); see idle-client logs")
        })
    }
}

fn command(dir: &Path, name: &str) -> Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env("PAIRGATE_LOG", "warn")
        .env_remove("PAIRGATE_CONFIG")
        .stderr(std::fs::File::create(dir.join(format!("{name}.log")))?);
    Ok(command)
}

/// Starts every master on its ports (`listen`, `metrics`) at once, as an
/// operator restarts a cluster, and waits until each serves.
fn start_masters(dir: &Path, url: &str, ports: &[(String, String)]) -> Result<Vec<Process>> {
    let spawned: Vec<(Process, ChildStdout)> = ports
        .iter()
        .enumerate()
        .map(|(i, (listen, metrics))| spawn_master(dir, url, i, listen, metrics))
        .collect::<Result<_>>()?;
    spawned
        .into_iter()
        .enumerate()
        .map(|(i, (process, stdout))| {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line)?;
            if !line.contains("\"master\"") {
                bail!(
                    "master {i} did not start (see {}/master{i}.log): {line:?}",
                    dir.display()
                );
            }
            Ok(process)
        })
        .collect()
}

/// Spawns master `i` on `listen`, presenting the identity `init` made;
/// its start line comes on the stdout returned.
fn spawn_master(
    dir: &Path,
    url: &str,
    i: usize,
    listen: &str,
    metrics: &str,
) -> Result<(Process, ChildStdout)> {
    let init = dir.join("init");
    let mut command = command(dir, &format!("master{i}"))?;
    command
        .args(["--json", "server", "--services", "master", "--data"])
        .arg(dir.join(format!("master{i}")))
        .args([
            "--database-url",
            url,
            "--master-listen",
            listen,
            "--metrics-listen",
            metrics,
        ])
        .arg("--set")
        .arg(format!(
            "identity_keystore=file:{}",
            init.join("identity").display()
        ))
        .arg("--set")
        .arg(format!(
            "identity_passphrase_file={}",
            init.join("identity.passphrase").display()
        ))
        .args([
            "--set",
            "header_timeout_secs=3600",
            "--set",
            "max_connections_per_address=1000000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut process = Process::new(command.spawn()?, "pairgate server --services master");
    let stdout = process
        .child_mut()
        .stdout
        .take()
        .context("no stdout from a master")?;
    Ok((process, stdout))
}

/// Writes every terminal as paired, many rows per statement.
async fn seed(url: &str, fingerprints: &[String]) -> Result<()> {
    let store = pairgate_store::Store::open(url).await?;
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let mut tx = store.pool().begin().await?;
    for (chunk_no, chunk) in fingerprints.chunks(1_000).enumerate() {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "(${}, 'paired', ${}, $1, 'bench', $1)",
                    2 * i + 2,
                    2 * i + 3
                )
            })
            .collect();
        // Only numbered placeholders are spliced in; the values are bound.
        let sql = format!(
            "INSERT INTO terminals (serial, state, paired_fingerprint, paired_at, paired_by, \
             created_at) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
        for (i, fp) in chunk.iter().enumerate() {
            query = query
                .bind(format!("IDLE-{:07}", chunk_no * 1_000 + i))
                .bind(fp.as_str());
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Sends `command` to every client and reads one report from each.
fn ask_all(clients: &mut [Client], command: &str) -> Result<Vec<Value>> {
    for c in clients.iter_mut() {
        c.send(command)?;
    }
    clients.iter_mut().map(Client::read).collect()
}

fn sum(reports: &[Value], key: &str) -> f64 {
    reports
        .iter()
        .filter_map(|r| r.get(key).and_then(Value::as_f64))
        .sum()
}

fn max(reports: &[Value], key: &str) -> f64 {
    reports
        .iter()
        .filter_map(|r| r[key].as_f64())
        .fold(0.0, f64::max)
}

fn rss_total(masters: &[Process]) -> u64 {
    masters.iter().map(|m| rss_bytes(m.pid())).sum()
}

/// The database and the identity every master presents.
struct Setup {
    /// Kept running (stopped when dropped) unless `--database-url`.
    _cluster: Option<Postgres>,
    url: String,
    pin: String,
}

/// A PostgreSQL (the given one, or a throwaway cluster) and `server init`.
fn setup(dir: &Path, database_url: Option<&str>) -> Result<Setup> {
    let cluster = match database_url {
        Some(_) => None,
        None => Some(Postgres::start(&dir.join("pg"), None).context("starting PostgreSQL")?),
    };
    let url = database_url
        .map(str::to_owned)
        .or_else(|| cluster.as_ref().map(|c| c.url.clone()))
        .context("no database")?;
    let init = command(dir, "init")?
        .args(["--json", "server", "init", "--data"])
        .arg(dir.join("init"))
        .args(["--database-url", &url])
        .output()?;
    anyhow::ensure!(
        init.status.success(),
        "server init failed (see {}/init.log)",
        dir.display()
    );
    let started: Value = serde_json::from_slice(&init.stdout)?;
    let pin = started
        .get("pin")
        .and_then(Value::as_str)
        .context("no pin from server init")?
        .to_owned();
    Ok(Setup {
        _cluster: cluster,
        url,
        pin,
    })
}

/// Starts one client process per master (`ports`), each making its
/// share of the `terminals`' keys; returns them and every fingerprint.
fn spawn_clients(
    dir: &Path,
    terminals: usize,
    ports: &[(String, String)],
    pin: &str,
) -> Result<(Vec<Client>, Vec<String>)> {
    let n = ports.len();
    let mut clients = Vec::with_capacity(n);
    for (i, (listen, _)) in ports.iter().enumerate() {
        let count = terminals / n + usize::from(i < terminals % n);
        let mut child = command(dir, &format!("client{i}"))?
            .args(["bench", "idle-client", "--count", &count.to_string()])
            .args([
                "--prefix",
                &format!("IDLE{i}"),
                "--master",
                listen,
                "--pin",
                pin,
            ])
            .args(["--source", &format!("127.0.0.{}", 10 + i)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        clients.push(Client {
            _process: Process::new(child, "pairgate bench idle-client"),
            stdin,
            stdout,
        });
    }
    let mut fingerprints = Vec::with_capacity(terminals);
    for c in &mut clients {
        let made = c.read()?;
        let list = made
            .get("fingerprints")
            .and_then(Value::as_array)
            .context("no fingerprints")?;
        fingerprints.extend(list.iter().filter_map(|f| f.as_str().map(str::to_owned)));
    }
    Ok((clients, fingerprints))
}

/// What was measured.
struct Measured {
    /// Connections opened between the two memory samples.
    marginal: f64,
    keys_seconds: f64,
    seed_seconds: f64,
    load_seconds: f64,
    rss_before: u64,
    rss_after: u64,
    open_seconds: f64,
    connected: Vec<Value>,
    masters_back: f64,
    reconnect_seconds: f64,
    reconnected: Vec<Value>,
}

/// Lets the masters' memory settle before it is read.
fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}

/// Runs the benchmark.
pub fn run(args: IdleArgs, out: &dyn Output) -> Result<()> {
    let masters_n = args.masters.max(1);
    if args.terminals.div_ceil(masters_n) > PER_PROCESS {
        bail!(
            "{} terminals over {masters_n} masters is more than {PER_PROCESS} connections per process \
             (this machine's limit is 20,000 open files): give more --masters",
            args.terminals
        );
    }
    let dir = tempfile::tempdir()?;
    let m = measure(dir.path(), &args, masters_n)?;
    report(&args, masters_n, &m, out);
    Ok(())
}

/// Sets up, holds every terminal, restarts every master.
fn measure(dir: &Path, args: &IdleArgs, masters_n: usize) -> Result<Measured> {
    let setup = setup(dir, args.database_url.as_deref())?;
    let generated = Instant::now();
    let ports: Vec<(String, String)> = (0..masters_n)
        .map(|_| {
            let port = || Ok::<_, anyhow::Error>(format!("127.0.0.1:{}", free_port()?));
            Ok((port()?, port()?))
        })
        .collect::<Result<_>>()?;
    let (mut clients, fingerprints) = spawn_clients(dir, args.terminals, &ports, &setup.pin)?;
    let keys_seconds = generated.elapsed().as_secs_f64();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let seeded = Instant::now();
    runtime.block_on(seed(&setup.url, &fingerprints))?;
    let seed_seconds = seeded.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut masters = start_masters(dir, &setup.url, &ports)?;
    let load_seconds = started.elapsed().as_secs_f64();
    // Memory per connection is the growth from half the terminals to
    // all of them: the first half reuses what loading the paired set
    // freed and the allocator kept, which would hide their cost.
    let opened = Instant::now();
    let half = ask_all(&mut clients, "connect 50")?;
    settle();
    let rss_before = rss_total(&masters);
    let connected = ask_all(&mut clients, "connect 100")?;
    let open_seconds = opened.elapsed().as_secs_f64();
    settle();
    let rss_after = rss_total(&masters);
    let marginal = sum(&connected, "live") - sum(&half, "live");
    // Every master stops, then starts again; every terminal reconnects.
    let restarted = Instant::now();
    masters.iter_mut().for_each(Process::terminate);
    masters.iter_mut().for_each(Process::stop);
    // Held (and stopped when dropped) until the clients are told to quit.
    let _restarted = start_masters(dir, &setup.url, &ports)?;
    let masters_back = restarted.elapsed().as_secs_f64();
    let reconnected = ask_all(&mut clients, "await")?;
    let reconnect_seconds = restarted.elapsed().as_secs_f64();
    for c in &mut clients {
        let _ = c.send("quit");
    }
    Ok(Measured {
        marginal,
        keys_seconds,
        seed_seconds,
        load_seconds,
        rss_before,
        rss_after,
        open_seconds,
        connected,
        masters_back,
        reconnect_seconds,
        reconnected,
    })
}

/// Prints the figures.
fn report(args: &IdleArgs, masters_n: usize, m: &Measured, out: &dyn Output) {
    let held = sum(&m.connected, "live");
    let held_again = sum(&m.reconnected, "live");
    let kib_each = |bytes: f64, n: f64| if n > 0.0 { bytes / n / 1024.0 } else { 0.0 };
    let master_kib = kib_each(m.rss_after.saturating_sub(m.rss_before) as f64, m.marginal);
    let client_kib = kib_each(sum(&m.connected, "rss_bytes"), held);
    let open_rate = if m.open_seconds > 0.0 {
        held / m.open_seconds
    } else {
        0.0
    };
    let open_failures = sum(&m.connected, "failures");
    let figures = json!({
        "terminals": args.terminals,
        "masters": masters_n,
        "held": held,
        "key_generation_seconds": m.keys_seconds,
        "seed_seconds": m.seed_seconds,
        "master_start_seconds": m.load_seconds,
        "master_rss_half_bytes": m.rss_before,
        "master_rss_all_bytes": m.rss_after,
        "master_kib_per_connection": master_kib,
        "client_kib_per_connection": client_kib,
        "open_seconds": m.open_seconds,
        "open_per_second": open_rate,
        "open_failures": open_failures,
        "restart": {
            "masters_back_seconds": m.masters_back,
            "all_reconnected_seconds": m.reconnect_seconds,
            "reconnected_after_masters_back_seconds": max(&m.reconnected, "seconds"),
            "held_again": held_again,
            "failed_attempts": sum(&m.reconnected, "failures") - open_failures,
        },
    });
    let text = format!(
        "pairgate bench idle: {held} of {} idle paired terminals held by {masters_n} masters over PostgreSQL\n\
         \x20 opened in {:.1} s ({open_rate:.0}/s, {open_failures} failed attempts)\n\
         \x20 master memory per idle connection: {master_kib:.1} KiB (RSS over all masters {:.0} MiB at half the terminals, {:.0} MiB at all; each master holds the whole paired set)\n\
         \x20 client memory per connection: {client_kib:.1} KiB\n\
         \x20 every master stopped and started again: back in {:.1} s, all {held_again} terminals reconnected {:.1} s later ({:.1} s after the stop began; full handshakes: session tickets do not outlive a master)\n\
         \x20 setup: keys {:.1} s, rows written {:.1} s, the masters load the set and start in {:.1} s\n",
        args.terminals,
        m.open_seconds,
        m.rss_before as f64 / 1_048_576.0,
        m.rss_after as f64 / 1_048_576.0,
        m.masters_back,
        max(&m.reconnected, "seconds"),
        m.reconnect_seconds,
        m.keys_seconds,
        m.seed_seconds,
        m.load_seconds,
    );
    out.print(&text, figures);
}
