//! `pairgate terminal vpn profile | up | down | status`: the terminal's
//! VPN for terminals without a VPN client of their own. The profile comes
//! from the master (enrolling first when needed) and is completed here
//! with the key's place; `up` runs Debian's `wg-quick` (with
//! `wireguard-go` where the kernel has no WireGuard) or `openvpn`, which
//! asks for the token's PIN over its management socket, answered from the
//! key store's PIN file.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use pairgate_proto::VpnType;
use pairgate_terminal::Agent;
use pairgate_terminal::vpn::{Fallback, Via, VpnProfile, write_profile};
use serde_json::json;
use zeroize::Zeroizing;

use crate::output::Output;

/// The tunnel's interface (and wg-quick file) name.
const INTERFACE: &str = "pgvpn0";
/// How long `up` waits for OpenVPN to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

#[derive(Subcommand, Debug)]
pub enum VpnCommand {
    /// Writes the VPN profile (mode 0600), enrolling first when the
    /// terminal holds no VPN credential the server admits.
    Profile {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Enrols (again): sends the VPN key's public half or a CSR and
    /// keeps the profile the server answers with.
    Enrol {
        /// Through the gate, as right after pairing (the master may be
        /// reachable only through the VPN), instead of the master.
        #[arg(long)]
        gate: bool,
    },
    /// Brings the tunnel up (wg-quick or openvpn) with the profile the
    /// master gives (enrolling again when it no longer admits the
    /// terminal's credential), or the one it gave last when it cannot be
    /// reached: it may be reachable only through the tunnel.
    Up {
        /// Use the profile the server gave last without asking.
        #[arg(long)]
        offline: bool,
    },
    /// Takes the tunnel down.
    Down,
    /// The server's view and the tunnel's.
    Status,
}

/// The profile's file in the state directory.
fn profile_path(state: &Path, vpn_type: VpnType) -> PathBuf {
    let dir = state.join(pairgate_terminal::vpn::VPN_DIR);
    match vpn_type {
        VpnType::WireGuard => dir.join(format!("{INTERFACE}.conf")),
        VpnType::OpenVpn => dir.join("pairgate.ovpn"),
    }
}

fn run_tool(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (is it installed?)"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs one VPN command.
pub fn run(agent: &Agent, state: &Path, command: &VpnCommand, out: &Output) -> Result<()> {
    let rt = crate::agent::runtime()?;
    match command {
        VpnCommand::Profile { out: file } => {
            let profile = rt.block_on(agent.vpn_profile(Fallback::None))?;
            write_profile(file, &profile)?;
            print_profile(&profile, file, out);
        }
        VpnCommand::Enrol { gate } => {
            let via = if *gate { Via::Gate } else { Via::Master };
            let status = rt.block_on(agent.vpn_enrol(via))?;
            out.print(
                format!(
                    "enrolled: {} address {}",
                    status.vpn_type,
                    status.address.as_deref().unwrap_or("-")
                ),
                json!({ "vpn": status }),
            );
        }
        VpnCommand::Up { offline } => {
            let fallback = if *offline {
                Fallback::Only
            } else {
                Fallback::Held
            };
            let profile = rt.block_on(agent.vpn_profile(fallback))?;
            let file = profile_path(state, profile.vpn_type);
            let dir = file.parent().unwrap_or(state);
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            write_profile(&file, &profile)?;
            match profile.vpn_type {
                VpnType::WireGuard => {
                    run_tool("wg-quick", &["up", &file.to_string_lossy()])?;
                }
                VpnType::OpenVpn => openvpn_up(&profile, &file, dir)?,
            }
            print_profile(&profile, &file, out);
        }
        VpnCommand::Down => {
            let (paired, vpn_type) = paired_vpn(agent)?;
            let file = profile_path(state, vpn_type);
            match vpn_type {
                VpnType::WireGuard => {
                    run_tool("wg-quick", &["down", &file.to_string_lossy()])?;
                }
                VpnType::OpenVpn => openvpn_down(file.parent().unwrap_or(state))?,
            }
            out.print(
                format!("VPN of {} is down", paired),
                json!({ "status": "down" }),
            );
        }
        VpnCommand::Status => {
            let status = rt.block_on(agent.vpn_status(Via::Master))?;
            let tunnel = tunnel_state(status.vpn_type);
            out.print(
                format!(
                    "{} enrolled: {} address: {} tunnel: {}",
                    status.vpn_type,
                    status.enrolled,
                    status.address.as_deref().unwrap_or("-"),
                    tunnel.as_deref().unwrap_or("down")
                ),
                json!({ "vpn": status, "tunnel": tunnel }),
            );
        }
    }
    Ok(())
}

fn paired_vpn(agent: &Agent) -> Result<(String, VpnType)> {
    let paired = agent.status()?.paired.context("not paired")?;
    let vpn_type = paired.vpn.context("the server offers no VPN")?;
    Ok((paired.serial, vpn_type))
}

fn print_profile(profile: &VpnProfile, file: &Path, out: &Output) {
    out.print(
        format!(
            "{} profile written to {} (address {}, server {})",
            profile.vpn_type,
            file.display(),
            profile.address,
            profile.server_address
        ),
        json!({
            "type": profile.vpn_type, "file": file, "address": profile.address,
            "server_address": profile.server_address,
        }),
    );
}

/// The tunnel interface's addresses, when it is up.
fn tunnel_state(vpn_type: VpnType) -> Option<String> {
    let device = match vpn_type {
        VpnType::WireGuard => INTERFACE,
        VpnType::OpenVpn => "tun0",
    };
    run_tool("ip", &["-brief", "address", "show", "dev", device])
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Starts `openvpn` as a daemon holding on its management socket, then
/// releases it and answers its PIN request until it says it connected.
fn openvpn_up(profile: &VpnProfile, file: &Path, dir: &Path) -> Result<()> {
    let socket = dir.join("openvpn.sock");
    let _ = std::fs::remove_file(&socket);
    let socket_arg = socket.to_string_lossy().into_owned();
    let pid = dir.join("openvpn.pid").to_string_lossy().into_owned();
    let log = dir.join("openvpn.log").to_string_lossy().into_owned();
    run_tool(
        "openvpn",
        &[
            "--config",
            &file.to_string_lossy(),
            "--daemon",
            "pairgate-vpn",
            "--writepid",
            &pid,
            "--log",
            &log,
            "--management",
            &socket_arg,
            "unix",
            "--management-hold",
            "--management-query-passwords",
        ],
    )?;
    let started = Instant::now();
    let stream = loop {
        match UnixStream::connect(&socket) {
            Ok(s) => break s,
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => bail!(
                "openvpn's management socket {}: {e} (see {log})",
                socket.display()
            ),
        }
    };
    let managed = manage(stream, profile.token.as_ref(), started);
    if managed.is_err() {
        // Not left retrying in the background.
        let _ = openvpn_down(dir);
    }
    managed.with_context(|| format!("openvpn (see {log})"))
}

/// Speaks OpenVPN's management protocol until `>STATE:…,CONNECTED`.
fn manage(
    stream: UnixStream,
    token: Option<&pairgate_keystore::Pkcs11Reference>,
    started: Instant,
) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut writer = stream.try_clone()?;
    writer.write_all(b"state on\nhold release\n")?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while started.elapsed() < CONNECT_TIMEOUT {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => bail!("openvpn closed its management socket before connecting"),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        if line.starts_with(">STATE:") && line.contains(",CONNECTED,") {
            return Ok(());
        }
        // A refusal (a revoked certificate fails the handshake) makes
        // OpenVPN start over: stop it rather than let it retry for ever.
        if line.starts_with(">STATE:")
            && (line.contains(",RECONNECTING,") || line.contains(",EXITING,"))
        {
            writer.write_all(b"signal SIGTERM\n")?;
            bail!("the VPN server refused the connection ({})", line.trim());
        }
        if let Some(rest) = line.strip_prefix(">PASSWORD:Need '") {
            let what = rest.split('\'').next().unwrap_or_default();
            let Some(token) = token else {
                bail!("openvpn asks for {what:?}, which this key store cannot answer");
            };
            let pin = token.pin()?;
            let escaped = Zeroizing::new(pin.replace('\\', "\\\\").replace('"', "\\\""));
            let answer = Zeroizing::new(format!("password \"{what}\" \"{}\"\n", escaped.as_str()));
            writer.write_all(answer.as_bytes())?;
        }
        if line.starts_with(">PASSWORD:Verification Failed: 'Auth'") {
            bail!("the VPN server refused this terminal (AUTH_FAILED)");
        }
        if line.starts_with(">PASSWORD:Verification Failed") {
            bail!("the token refused the PIN: {}", line.trim());
        }
    }
    bail!("openvpn did not connect within {CONNECT_TIMEOUT:?}")
}

/// Stops the daemon `up` started.
fn openvpn_down(dir: &Path) -> Result<()> {
    let pid_file = dir.join("openvpn.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {}: is the VPN up?", pid_file.display()))?;
    let pid = pid.trim();
    pid.parse::<u32>().context("the pid file holds no pid")?;
    // Gone already (it exited on its own) is down too.
    if Path::new("/proc").join(pid).exists() {
        run_tool("kill", &["-TERM", pid])?;
    }
    let _ = std::fs::remove_file(&pid_file);
    Ok(())
}
