//! What the benchmark reads about processes and does to them: CPU time and
//! resident memory from `/proc`, pinning to a core with `taskset`, and
//! child processes that are stopped (by PID) when dropped.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Linux's USER_HZ: `/proc/PID/stat` counts CPU time in 1/100 s.
const TICK: Duration = Duration::from_millis(10);

/// CPU time (user + system, all threads) of process `pid`, or of this
/// process when `None`. A vanished process reads as zero.
pub fn cpu_time(pid: Option<u32>) -> Duration {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name may hold spaces and parentheses: fields after the
    // last ')' start at state; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u32>().ok())
            .unwrap_or(0)
    };
    TICK * (ticks(11) + ticks(12))
}

/// CPU time of several processes together.
pub fn cpu_time_of(pids: &[u32]) -> Duration {
    pids.iter().map(|pid| cpu_time(Some(*pid))).sum()
}

/// Resident memory of `pid` in bytes (VmRSS), zero if unknown.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Resident memory of several processes together.
pub fn rss_of(pids: &[u32]) -> u64 {
    pids.iter().map(|pid| rss_bytes(*pid)).sum()
}

/// The direct children of `pid` (nginx's workers, say).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(')')?.1.to_owned();
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// How many CPUs the machine has (not only those this process may use).
pub fn machine_cpus() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| info.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(1)
        .max(1)
}

/// The CPU model, for the report.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// Pins the load generator (this process) to `client` and returns the
/// core for the servers; `None` (no pinning) on one core or when both are
/// the same.
pub fn split_cores(server: usize, client: usize) -> Result<Option<usize>> {
    let cpus = machine_cpus();
    if cpus < 2 || server == client {
        return Ok(None);
    }
    if server.max(client) >= cpus {
        bail!("--server-cpu and --client-cpu must be below {cpus}");
    }
    pin_self(client)?;
    Ok(Some(server))
}

/// Pins this process (and the threads it starts afterwards) to `cpu`.
pub fn pin_self(cpu: usize) -> Result<()> {
    let status = Command::new("taskset")
        .args([
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset could not pin this process to CPU {cpu}");
    }
    Ok(())
}

/// A command run under `taskset -c cpu` when `cpu` is given.
pub fn pinned(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// A child process stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Process {
    child: Child,
    name: &'static str,
}

impl Process {
    /// Wraps `child`.
    pub fn new(child: Child, name: &'static str) -> Self {
        Self { child, name }
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child itself.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Fails if the process has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }

    /// Asks it to stop (SIGTERM) without waiting, so that several
    /// processes stop together; [`Process::stop`] then waits.
    pub fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Stops it: SIGTERM, and SIGKILL after five seconds.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.terminate();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let start = cpu_time(None);
        let mut x = 0u64;
        let until = std::time::Instant::now() + Duration::from_millis(60);
        while std::time::Instant::now() < until {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(cpu_time(None) > start);
        assert!(rss_bytes(std::process::id()) > 1024 * 1024);
        assert!(machine_cpus() >= 1);
    }
}
