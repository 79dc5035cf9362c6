//! `pairgate vpn init | server-config | sync`: the VPN server's side of
//! the VPN profiles (issue 19), with the same `--data`, `--database-url`
//! and `--config` as `pairgate admin`. `init` makes the VPN's keys: for
//! OpenVPN a VPN CA inside the identity key store (PKCS#11 allowed), for
//! WireGuard the server's key pair (a 0600 file; its public key recorded
//! in the store). `server-config` prints the VPN server's configuration
//! and writes the files it reads; `sync` keeps them current from the
//! store, on every change it hears of and on a timer, and runs a reload
//! hook when they change.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use pairgate_keystore::wireguard::WireGuardKey;
use pairgate_pki::Subject;
use pairgate_proto::VpnType;
use pairgate_server::terminal_ca::TerminalCa;
use pairgate_server::vpn::sync::VpnKeys;
use pairgate_server::vpn::{INIT, profile, sync};
use pairgate_server::{Settings, VpnSettings};
use pairgate_store::Store;
use serde_json::json;

use crate::server::SettingsArgs;
use pairgate_agent::Output;

#[derive(Args, Debug)]
#[command(after_long_help = pairgate_server::Settings::help())]
pub struct VpnArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(subcommand)]
    command: VpnCommand,
}

#[derive(Subcommand, Debug)]
enum VpnCommand {
    /// Makes the VPN's keys: OpenVPN's VPN CA in the identity key store,
    /// or WireGuard's server key pair; refused when they exist.
    Init {
        /// OpenVPN: the VPN CA's subject.
        #[arg(long, default_value = "CN=pairgate VPN CA")]
        subject: Subject,
        /// OpenVPN: validity of the CA certificate, in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// WireGuard: the server key's file (default
        /// <data>/vpn/wireguard.key).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Prints the VPN server's configuration and writes the files it
    /// reads into DIR (OpenVPN: CA, server key and certificate, CRL,
    /// per-client addresses; WireGuard: the peers).
    ServerConfig {
        /// Directory of the VPN server's files.
        #[arg(long)]
        dir: PathBuf,
        /// WireGuard: the server key's file.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Keeps DIR current from the store: the CRL and per-client files
    /// (OpenVPN) or the peers (WireGuard); runs --hook when they change.
    Sync {
        /// Directory of the VPN server's files.
        #[arg(long)]
        dir: PathBuf,
        /// Shell command run after a change, e.g.
        /// `wg syncconf wg0 DIR/wg-server.conf`; PAIRGATE_VPN_DROPPED
        /// names the terminals (serials = certificate CNs) that lost their
        /// credential, whose live OpenVPN sessions it may end.
        #[arg(long)]
        hook: Option<String>,
        /// Full sync at least this often, in seconds; changes the store
        /// announces are picked up within a second.
        #[arg(long, default_value_t = 30)]
        interval: u64,
        /// Sync once and exit.
        #[arg(long)]
        once: bool,
        /// WireGuard: the server key's file.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

fn wireguard_key_file(settings: &Settings, given: Option<&Path>) -> PathBuf {
    given.map_or_else(
        || settings.data_dir.join("vpn").join("wireguard.key"),
        Path::to_path_buf,
    )
}

/// Runs a VPN command.
pub fn run(args: VpnArgs, out: &Output) -> Result<()> {
    let settings = crate::admin::existing(&args.settings)?;
    let vpn = settings
        .vpn()?
        .context("vpn_type is \"none\": set vpn_type, vpn_endpoint and vpn_pool_v4 first")?;
    crate::admin::runtime()?.block_on(async {
        let store = pairgate_server::open_store(&settings).await?;
        match args.command {
            VpnCommand::Init {
                subject,
                days,
                key_file,
            } => {
                init(
                    &store,
                    &settings,
                    &vpn,
                    (&subject, days, key_file.as_deref()),
                    out,
                )
                .await
            }
            VpnCommand::ServerConfig { dir, key_file } => {
                server_config(&store, &settings, &vpn, &dir, key_file.as_deref(), out).await
            }
            VpnCommand::Sync {
                dir,
                hook,
                interval,
                once,
                key_file,
            } => {
                let keys = vpn_keys(&settings, &vpn, key_file.as_deref())?;
                let every = Duration::from_secs(interval.max(1));
                run_sync(
                    &store,
                    &keys,
                    &vpn,
                    &dir,
                    (hook.as_deref(), every, once),
                    out,
                )
                .await
            }
        }
    })
}

async fn init(
    store: &Store,
    settings: &Settings,
    vpn: &VpnSettings,
    (subject, days, key_file): (&Subject, u32, Option<&Path>),
    out: &Output,
) -> Result<()> {
    let actor = crate::admin::cli_actor();
    match vpn.vpn_type {
        VpnType::OpenVpn => {
            let (certificate, pin, described) = crate::admin_terminal_ca::make_ca(
                store,
                settings,
                (&vpn.ca_alias, subject, days),
                "vpn.ca_created",
                &actor,
            )
            .await?;
            let pem = pairgate_pki::certificate::certificate_pem(&certificate);
            out.print(
                format!("VPN CA {} created in {described}\n{pem}", vpn.ca_alias),
                json!({ "alias": vpn.ca_alias, "certificate": pem, "key_pin": pin }),
            );
        }
        VpnType::WireGuard => {
            if store
                .vpn_server_key(VpnType::WireGuard.as_str())
                .await?
                .is_some()
            {
                bail!("a WireGuard server key is already recorded; nothing was changed");
            }
            let path = wireguard_key_file(settings, key_file);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let key = WireGuardKey::generate(&path)?;
            let public = key.public_base64();
            let recorded = store
                .record_vpn_server_key(
                    VpnType::WireGuard.as_str(),
                    &public,
                    &actor,
                    SystemTime::now(),
                )
                .await;
            if let Err(e) = recorded {
                let _ = std::fs::remove_file(&path);
                return Err(anyhow::Error::from(e).context("the WireGuard server key was not made"));
            }
            out.print(
                format!(
                    "WireGuard server key made in {} (public key {public})",
                    path.display()
                ),
                json!({ "key_file": path, "public_key": public }),
            );
        }
    }
    Ok(())
}

/// What signs or names the VPN server's side: the VPN CA (OpenVPN) or
/// the server's key (WireGuard; refused when the file is missing, not a
/// key, or readable by others).
fn vpn_keys(settings: &Settings, vpn: &VpnSettings, key_file: Option<&Path>) -> Result<VpnKeys> {
    Ok(match vpn.vpn_type {
        VpnType::OpenVpn => VpnKeys::OpenVpn(TerminalCa::open(
            settings,
            &vpn.ca_alias,
            vpn.cert_days,
            INIT,
        )?),
        VpnType::WireGuard => {
            VpnKeys::WireGuard(WireGuardKey::load(&wireguard_key_file(settings, key_file))?)
        }
    })
}

async fn server_config(
    store: &Store,
    settings: &Settings,
    vpn: &VpnSettings,
    dir: &Path,
    key_file: Option<&Path>,
    out: &Output,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let keys = vpn_keys(settings, vpn, key_file)?;
    let text = match &keys {
        VpnKeys::OpenVpn(ca) => {
            crate::vpn_server::openvpn_files(vpn, ca, dir)?;
            profile::openvpn_server(vpn, dir)
        }
        VpnKeys::WireGuard(_) => {
            let credentials = store.vpn_credentials(vpn.vpn_type.as_str()).await?;
            profile::wireguard_server(vpn, &wireguard_key_file(settings, key_file), &credentials)
        }
    };
    let synced = sync::sync_once(vpn, store, &keys, dir, SystemTime::now()).await?;
    out.print(
        text.clone(),
        json!({ "type": vpn.vpn_type, "config": text, "dir": dir, "admitted": synced.admitted }),
    );
    Ok(())
}

async fn run_sync(
    store: &Store,
    keys: &VpnKeys,
    vpn: &VpnSettings,
    dir: &Path,
    (hook, every, once): (Option<&str>, Duration, bool),
    out: &Output,
) -> Result<()> {
    let mut generation = None;
    let mut last_full = Instant::now();
    let mut last: Option<sync::Synced> = None;
    loop {
        let now_generation = store.paired_generation().await.ok();
        let due = last.is_none() || last_full.elapsed() >= every || now_generation != generation;
        if due {
            let synced = sync::sync_once(vpn, store, keys, dir, SystemTime::now()).await?;
            let dropped = last
                .as_ref()
                .map(|l| synced.dropped_since(l))
                .unwrap_or_default();
            if !synced.unnamed.is_empty() {
                eprintln!(
                    "warning: OpenVPN cannot admit {}: a serial starting with '.' names no ccd file",
                    synced.unnamed.join(" ")
                );
            }
            if synced.changed || last.is_none() || !dropped.is_empty() {
                if let Some(command) = hook {
                    run_hook(command, &dropped)?;
                }
                out.print(
                    format!(
                        "synced {}: {} admitted, {} revoked{}",
                        dir.display(),
                        synced.admitted,
                        synced.revoked,
                        match dropped.is_empty() {
                            true => String::new(),
                            false => format!("; dropped {}", dropped.join(" ")),
                        }
                    ),
                    json!({ "synced": synced, "dropped": dropped }),
                );
            }
            generation = now_generation;
            last_full = Instant::now();
            last = Some(synced);
        }
        if once {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs the hook with `PAIRGATE_VPN_DROPPED`: the serials (space
/// separated) that lost their credential since the previous sync.
fn run_hook(command: &str, dropped: &[String]) -> Result<()> {
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .env("PAIRGATE_VPN_DROPPED", dropped.join(" "))
        .status()
        .with_context(|| format!("running the hook {command:?}"))?;
    if !status.success() {
        bail!("the hook {command:?} failed ({status})");
    }
    Ok(())
}
