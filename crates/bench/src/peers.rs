//! The processes a benchmark run starts and stops itself: `pairgate
//! server` (this same binary) and a throwaway PostgreSQL cluster for the
//! two-instance case (nginx, the peer, is in `nginx.rs`). Each is pinned to the
//! server core when asked, listens on 127.0.0.1 only, and is stopped by
//! PID when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pairgate_pki::SpkiPin;

use super::procs::{Process, pinned};

/// A running `pairgate server`.
pub struct PairgateServer {
    /// The process.
    pub process: Process,
    /// Gate `host:port`.
    pub gate: String,
    /// Master `host:port`.
    pub master: String,
    /// The server's SPKI pin.
    pub pin: SpkiPin,
    /// CAS's base URL (`http://…`).
    pub cas: String,
}

impl PairgateServer {
    /// Starts this binary's `server` with its data in `data` and, when
    /// given, the PostgreSQL database `database_url`; logs go to
    /// `data/server.log`; `settings` are `key=value` overrides.
    pub fn start(
        data: &Path,
        database_url: Option<&str>,
        cpu: Option<usize>,
        settings: &[&str],
    ) -> Result<Self> {
        std::fs::create_dir_all(data)?;
        let log = std::fs::File::create(data.with_extension("log"))?;
        let mut command = pinned(&std::env::current_exe()?, cpu);
        command
            .arg("server")
            .arg("--data")
            .arg(data)
            .args([
                "--gate-listen",
                "127.0.0.1:0",
                "--master-listen",
                "127.0.0.1:0",
                "--cas-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--json",
            ])
            .env("PAIRGATE_LOG", "warn")
            .env_remove("PAIRGATE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        for setting in settings {
            command.arg("--set").arg(setting);
        }
        let mut process = Process::new(
            command.spawn().context("starting pairgate server")?,
            "pairgate server",
        );
        let stdout = process
            .child_mut()
            .stdout
            .take()
            .context("no stdout from pairgate server")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let started: serde_json::Value = serde_json::from_str(&line).with_context(|| {
            format!(
                "pairgate server did not start (see {}): {line:?}",
                data.with_extension("log").display()
            )
        })?;
        let text = |key: &str| -> Result<String> {
            started
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .with_context(|| format!("no {key} in the server's start line"))
        };
        Ok(Self {
            gate: text("gate")?,
            master: text("master")?,
            pin: text("pin")?.parse()?,
            cas: text("cas")?,
            process,
        })
    }
}

/// A throwaway PostgreSQL cluster.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    /// The options `pg_ctl start` passed, for a restart on the same port.
    options: String,
    log: PathBuf,
    cpu: Option<usize>,
    /// `postgres://…/postgres`.
    pub url: String,
}

impl Postgres {
    /// `initdb` and `pg_ctl start` in `dir` with Debian's newest
    /// PostgreSQL, as the postgres user when this process is root
    /// (initdb refuses root), listening on a free loopback port, pinned to
    /// `cpu` when given.
    pub fn start(dir: &Path, cpu: Option<usize>) -> Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|bin| bin.join("initdb").is_file())
            .max_by_key(|bin| {
                bin.parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0)
            })
            .context(
                "PostgreSQL is not installed: apt-get install postgresql, or give --database-url",
            )?;
        std::fs::create_dir_all(dir)?;
        let root = is_root();
        if root {
            let status = Command::new("chown").arg("postgres").arg(dir).status()?;
            if !status.success() {
                bail!("could not give {} to the postgres user", dir.display());
            }
        }
        let data = dir.join("data");
        run_as_postgres(
            root,
            None,
            &bin.join("initdb"),
            &[
                "-D",
                &data.display().to_string(),
                "--auth=trust",
                "--username=pairgate",
                "-E",
                "UTF8",
            ],
        )?;
        // As for nginx: a probed port may be taken before the postmaster
        // binds it.
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let cluster = Self {
                bin: bin.clone(),
                data: data.clone(),
                options: format!(
                    "-k {} -c listen_addresses=127.0.0.1 -p {port} -c max_connections=200",
                    dir.display()
                ),
                log: dir.join("log"),
                cpu,
                url: format!("postgres://pairgate@127.0.0.1:{port}/postgres"),
            };
            match cluster.restart() {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    // Not stopped by Drop: it never started.
                    std::mem::forget(cluster);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("PostgreSQL did not start")))
    }
}

impl Postgres {
    /// Starts the cluster (again), on its port, waiting until it accepts
    /// connections.
    pub fn restart(&self) -> Result<()> {
        run_as_postgres(
            is_root(),
            self.cpu,
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.data.display().to_string(),
                "-l",
                &self.log.display().to_string(),
                "-w",
                "-o",
                &self.options,
                "start",
            ],
        )
    }

    /// Stops the cluster (fast shutdown: open sessions are ended), as a
    /// database outage does.
    pub fn stop(&self) -> Result<()> {
        run_as_postgres(
            is_root(),
            None,
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = run_as_postgres(
            is_root(),
            None,
            &self.bin.join("pg_ctl"),
            &["-D", &self.data.display().to_string(), "-m", "fast", "stop"],
        );
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `program` as the postgres user when root, under `taskset` when
/// `cpu` is given (the postmaster inherits the affinity of pg_ctl).
fn run_as_postgres(root: bool, cpu: Option<usize>, program: &Path, args: &[&str]) -> Result<()> {
    let mut command = if root {
        let mut c = pinned(Path::new("runuser"), cpu);
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        pinned(program, cpu)
    };
    let out = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A loopback port free at this moment.
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until `addr` accepts TCP connections, failing if the process
/// exits first.
pub(crate) fn wait_listening(addr: &str, process: &mut Process, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Err(e) = process.check_running() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{e}: {}", log.trim());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on {addr} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
