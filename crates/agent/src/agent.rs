//! `pairgate terminal init | pair | status | call | heartbeat | rekey | backup |
//! restore | factory-reset`: the
//! terminal agent (`crates/terminal`) on a state directory, for firmware
//! engineers trying it and operators simulating a terminal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use pairgate_keystore::Passphrase;
use pairgate_pki::{PairingCode, Subject};
use pairgate_terminal::{
    Agent, IdentityMode, Init, KeyCopy, PairOptions, PairingDisplay, Rekeyed, RestorePoint,
};
use pairgate_tls::TlsPolicy;
use serde_json::json;

use crate::output::Output;
use crate::terminal::TerminalArgs;

/// How `pair` trusts the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Trust {
    /// Pin the server key at first contact, confirmed by the pairing code.
    #[default]
    Pins,
    /// The trust store: the server's certificate is there or chains to an
    /// entry (each admitted under the firmware-roots rule); no pin.
    TrustStore,
}

/// How `init` certifies the key.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    /// A self-signed client certificate.
    SelfSigned,
    /// A CSR for a CA (then `keys import-cert`).
    Csr,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// First boot: a key inside the key store and a self-signed
    /// certificate (or a CSR with --mode csr).
    Init {
        /// self-signed (default) or csr.
        #[arg(long, value_enum, default_value = "self-signed")]
        mode: Mode,
        /// CSR subject (csr mode), e.g. "CN=ATM-0042, O=Operator".
        #[arg(long)]
        subject: Option<Subject>,
    },
    /// Pairs with the server through its gate; prints the code to read out
    /// and exits 0 once an operator approved it.
    Pair {
        /// Gate address, host:port (port 7741 by default).
        #[arg(long)]
        gate: String,
        /// The serial the operator registered.
        #[arg(long)]
        serial: String,
        /// Reported model.
        #[arg(long, default_value = "")]
        model: String,
        /// Reported firmware.
        #[arg(long, default_value = "")]
        firmware: String,
        /// Unpin the server key learned at another gate address.
        #[arg(long)]
        forget_pin: bool,
        /// Give up waiting for approval after this many seconds (the
        /// request stays open; pair again to resume it).
        #[arg(long)]
        timeout: Option<u64>,
        /// pins (default: the key seen at first contact, confirmed by the
        /// code) or trust-store.
        #[arg(long, value_enum, default_value = "pins")]
        trust: Trust,
    },
    /// Identity, pin and pairing state.
    Status,
    /// Calls the master: METHOD PATH, e.g. `call GET /v1/me`.
    Call {
        /// HTTP method.
        method: String,
        /// Path on the master.
        path: String,
        /// JSON body.
        #[arg(long)]
        data: Option<String>,
    },
    /// Sends a heartbeat to the master (firmware, and the terminal's
    /// heartbeat counter when the server takes one).
    Heartbeat {
        /// Firmware now running.
        #[arg(long)]
        firmware: Option<String>,
        /// Re-key first when the certificate ends within this many days
        /// (less a jitter fixed by its fingerprint); 0: never.
        #[arg(long, default_value_t = 30)]
        renew_before_days: u64,
    },
    /// Writes a restore point (identity and state, age-encrypted with
    /// PAIRGATE_BACKUP_PASSPHRASE or --backup-passphrase-file). With a
    /// PKCS#11 key it holds the certificate and state only.
    Backup {
        /// The file to write (replaced atomically, mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// File holding the backup passphrase.
        #[arg(long)]
        backup_passphrase_file: Option<PathBuf>,
    },
    /// Restores a restore point into a fresh state directory: the same
    /// fingerprint, pins and pairing.
    Restore {
        /// The restore point.
        #[arg(long)]
        from: PathBuf,
        /// File holding the backup passphrase.
        #[arg(long)]
        backup_passphrase_file: Option<PathBuf>,
    },
    /// Replaces the terminal's key over the master: a new key in the key
    /// store, proven to the master with the current one; the old key is
    /// then refused by the master and deleted here.
    Rekey {
        /// Only when the certificate is due for renewal (within
        /// --renew-before-days of its end, less a jitter fixed by its
        /// fingerprint).
        #[arg(long)]
        if_due: bool,
        /// The renewal window in days.
        #[arg(long, default_value_t = 30)]
        renew_before_days: u64,
    },
    /// The terminal's VPN: its profile, and the tunnel.
    #[command(subcommand)]
    Vpn(crate::vpn::VpnCommand),
    /// Wipes keys, certificates, trust store, pins and pairing state.
    FactoryReset {
        /// Answer the confirmation question with yes.
        #[arg(long)]
        yes: bool,
    },
}

/// Prints the code as soon as it is known, in JSON mode as its own line.
struct Printer {
    json: bool,
}

impl PairingDisplay for Printer {
    fn show_code(&self, request_id: &str, code: &PairingCode) {
        if self.json {
            println!(
                "{}",
                json!({ "request_id": request_id, "code": code.to_string() })
            );
        } else {
            println!("pairing code: {code}  (request {request_id})");
            println!("read it to the operator; waiting for approval…");
        }
        let _ = std::io::stdout().flush();
    }

    fn progress(&self, message: &str) {
        eprintln!("{message}");
    }
}

fn agent(args: &TerminalArgs) -> Result<Agent> {
    let state = args
        .state
        .as_ref()
        .context("the agent needs a state directory: give --state DIR")?;
    let (store, uri) = args.open(true)?;
    let alias = uri.alias(None)?;
    Ok(Agent::new(
        state,
        Arc::from(store),
        alias,
        TlsPolicy::default(),
    )?)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    // Multi-threaded: HSM signing runs under block_in_place.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Environment variable holding the restore-point passphrase.
const BACKUP_PASSPHRASE_ENV: &str = "PAIRGATE_BACKUP_PASSPHRASE";

fn backup_passphrase(file: Option<&Path>) -> Result<Passphrase> {
    if let Some(file) = file {
        return Ok(Passphrase::from_file(file)?);
    }
    Passphrase::from_env(BACKUP_PASSPHRASE_ENV)?.with_context(|| {
        format!("a restore point needs a passphrase: set {BACKUP_PASSPHRASE_ENV} or give --backup-passphrase-file FILE")
    })
}

fn restore(
    args: &TerminalArgs,
    from: &Path,
    passphrase_file: Option<&Path>,
    out: &Output,
) -> Result<()> {
    let state = args
        .state
        .as_ref()
        .context("restore needs a state directory: give --state DIR")?;
    let encrypted = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    let point = RestorePoint::open(&encrypted, &backup_passphrase(passphrase_file)?)?;
    let uri = args.uri()?;
    let keystore_passphrase = match point.key {
        KeyCopy::Software { .. } => args.passphrase()?,
        KeyCopy::Token { .. } => None,
    };
    let (restored, fingerprint) = pairgate_terminal::restore(
        state,
        &uri,
        keystore_passphrase,
        &point,
        TlsPolicy::default(),
    )?;
    let status = restored.status()?;
    out.print(
        format!(
            "restored the terminal identity\nfingerprint: {}\n             {fingerprint}\npaired: {}",
            fingerprint.grouped(),
            status.paired.as_ref().map_or("no".to_owned(), |p| format!("{} via {}", p.serial, p.master_url)),
        ),
        json!({ "fingerprint": fingerprint, "holds_key": point.holds_key(), "paired": status.paired }),
    );
    Ok(())
}

/// Runs one agent command.
pub fn run(args: &TerminalArgs, command: &AgentCommand, out: &Output) -> Result<()> {
    // Opened per command: a restore must not create an empty key store
    // before it writes one.
    let agent = || agent(args);
    match command {
        AgentCommand::Init { mode, subject } => init(&agent()?, *mode, subject.as_ref(), out),
        AgentCommand::Pair {
            gate,
            serial,
            model,
            firmware,
            forget_pin,
            timeout,
            trust,
        } => {
            let options = PairOptions {
                gate: with_gate_port(gate),
                serial: serial.clone(),
                model: model.clone(),
                firmware: firmware.clone(),
                forget_pin: *forget_pin,
                poll_wait: Duration::from_secs(25),
                give_up_after: timeout.map(Duration::from_secs),
                trust_store: *trust == Trust::TrustStore,
            };
            pair(&agent()?, &options, out)
        }
        AgentCommand::Status => status(&agent()?, out),
        AgentCommand::Heartbeat {
            firmware,
            renew_before_days,
        } => heartbeat(&agent()?, firmware.as_deref(), *renew_before_days, out),
        AgentCommand::Call { method, path, data } => {
            call(&agent()?, method, path, data.as_deref(), out)
        }
        AgentCommand::Backup {
            out: file,
            backup_passphrase_file,
        } => backup(&agent()?, file, backup_passphrase_file.as_deref(), out),
        AgentCommand::Restore {
            from,
            backup_passphrase_file,
        } => restore(args, from, backup_passphrase_file.as_deref(), out),
        AgentCommand::Rekey {
            if_due,
            renew_before_days,
        } => rekey(&agent()?, if_due.then(|| days(*renew_before_days)), out),
        AgentCommand::Vpn(command) => {
            let state = args.state.as_deref().context("give --state DIR")?;
            crate::vpn::run(&agent()?, state, command, out)
        }
        AgentCommand::FactoryReset { yes } => factory_reset(agent, *yes, out),
    }
}

/// `host` alone means the gate's default port, 7741.
fn with_gate_port(gate: &str) -> String {
    if gate.contains(':') {
        gate.to_owned()
    } else {
        format!("{gate}:7741")
    }
}

fn init(agent: &Agent, mode: Mode, subject: Option<&Subject>, out: &Output) -> Result<()> {
    let mode = match (mode, subject) {
        (Mode::SelfSigned, None) => IdentityMode::SelfSigned,
        (Mode::SelfSigned, Some(_)) => bail!("--subject is for --mode csr"),
        (Mode::Csr, Some(s)) => IdentityMode::Csr(s.clone()),
        (Mode::Csr, None) => bail!("--mode csr needs --subject"),
    };
    match agent.init(&mode, SystemTime::now())? {
        Init::Certified(fp) => out.print(
            format!(
                "terminal identity ready\nfingerprint: {}\n             {fp}",
                fp.grouped()
            ),
            json!({ "fingerprint": fp }),
        ),
        Init::Csr(pem) => out.print(pem.clone(), json!({ "csr": pem })),
    }
    Ok(())
}

fn pair(agent: &Agent, options: &PairOptions, out: &Output) -> Result<()> {
    let printer = Printer {
        json: out.is_json(),
    };
    let rt = runtime()?;
    let paired = rt.block_on(agent.pair(options, &printer))?;
    // The VPN profile, from the gate: the master may be reachable only
    // through it. A failure leaves the pairing; `vpn profile` retries.
    let vpn = match paired.vpn {
        Some(_) if paired.vpn_profile.is_empty() => Some(
            rt.block_on(agent.vpn_enrol(pairgate_terminal::vpn::Via::Gate))
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };
    let vpn_text = match &vpn {
        Some(Ok(s)) => format!(
            "\nVPN: {} address {}",
            s.vpn_type,
            s.address.as_deref().unwrap_or("-")
        ),
        Some(Err(e)) => {
            format!("\nVPN: not enrolled ({e}); run `pairgate terminal vpn enrol --gate`")
        }
        None => String::new(),
    };
    out.print(
        format!(
            "paired as {}\nmaster: {}\nserver pins: {}{vpn_text}",
            paired.serial,
            paired.master_url,
            paired.server_pins.join(", ")
        ),
        json!({
            "status": "paired", "config": paired,
            "vpn": vpn.map(|r| r.map_or_else(|e| json!({ "error": e }), |s| json!(s))),
        }),
    );
    Ok(())
}

fn status(agent: &Agent, out: &Output) -> Result<()> {
    let status = agent.status()?;
    out.print(
        format!(
            "fingerprint: {}\ngate: {} (pin {})\npending request: {}\npaired: {}",
            status.fingerprint.as_deref().unwrap_or("none (run init)"),
            status.gate.as_deref().unwrap_or("-"),
            status.server_pin.as_deref().unwrap_or("-"),
            status.pending_request.as_deref().unwrap_or("-"),
            status.paired.as_ref().map_or("no".to_owned(), |p| format!(
                "{} via {}",
                p.serial, p.master_url
            )),
        ),
        json!(status),
    );
    Ok(())
}

fn call(agent: &Agent, method: &str, path: &str, data: Option<&str>, out: &Output) -> Result<()> {
    let body = match data {
        Some(text) => {
            serde_json::from_str::<serde_json::Value>(text).context("--data is not valid JSON")?;
            Some(text.as_bytes().to_vec())
        }
        None => None,
    };
    let r = runtime()?.block_on(agent.call(method, path, body))?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let value: serde_json::Value =
        serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::String(text.clone()));
    if !(200..300).contains(&r.status) {
        bail!("the master answered {}: {text}", r.status);
    }
    out.print(text, json!({ "status": r.status, "body": value }));
    Ok(())
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(86_400))
}

fn rekeyed_text(done: &Rekeyed) -> String {
    format!(
        "re-keyed: key {} ({}) replaces {} ({}), which the master now refuses and which was deleted",
        done.alias, done.fingerprint, done.previous_alias, done.previous_fingerprint
    )
}

/// `rekey`, or with `if_due` only when the certificate is due.
fn rekey(agent: &Agent, if_due: Option<Duration>, out: &Output) -> Result<()> {
    let now = SystemTime::now();
    let done = match if_due {
        Some(window) => runtime()?.block_on(agent.rekey_if_due(now, window))?,
        None => Some(runtime()?.block_on(agent.rekey(now))?),
    };
    match done {
        Some(done) => out.print(rekeyed_text(&done), json!(done)),
        None => out.print(
            "not due: the certificate is not yet within the renewal window",
            json!({ "rekeyed": false }),
        ),
    }
    Ok(())
}

fn heartbeat(
    agent: &Agent,
    firmware: Option<&str>,
    renew_before_days: u64,
    out: &Output,
) -> Result<()> {
    let runtime = runtime()?;
    // A failed renewal does not hold the heartbeat back: the old key
    // works until it expires, and the next heartbeat tries again.
    let rekeyed = match renew_before_days {
        0 => None,
        n => match runtime.block_on(agent.rekey_if_due(SystemTime::now(), days(n))) {
            Ok(done) => done,
            Err(e) => {
                eprintln!(
                    "renewing the terminal key failed ({e}); sending the heartbeat with the current key"
                );
                None
            }
        },
    };
    if let Some(done) = &rekeyed {
        eprintln!("{}", rekeyed_text(done));
    }
    let r = runtime.block_on(agent.heartbeat(firmware))?;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    if !(200..300).contains(&r.status) {
        bail!("the master answered {}: {text}", r.status);
    }
    // A server that announces its next key has the terminal pin it now. A
    // refusal keeps the pins (the server is trusted no further) and is
    // shown, since it means a statement that does not verify.
    let pins_changed = match runtime.block_on(agent.follow_server_keys()) {
        Ok(changed) => changed,
        Err(e) => {
            eprintln!("the server's announced keys were not followed: {e}");
            false
        }
    };
    let counter = agent.status()?.heartbeat_counter;
    out.print(
        format!("heartbeat sent (counter {counter})"),
        json!({
            "status": r.status, "counter": counter, "rekeyed": rekeyed,
            "server_pins_changed": pins_changed,
        }),
    );
    Ok(())
}

fn backup(agent: &Agent, file: &Path, passphrase_file: Option<&Path>, out: &Output) -> Result<()> {
    let passphrase = backup_passphrase(passphrase_file)?;
    let (encrypted, point) = agent.backup(&passphrase, SystemTime::now())?;
    pairgate_keystore::write_atomic(file, &encrypted)
        .with_context(|| format!("writing {}", file.display()))?;
    let (key, key_store) = match &point.key {
        KeyCopy::Software { .. } => (
            "included, still sealed under the key store passphrase (a restore needs both passphrases)".to_owned(),
            "software".to_owned(),
        ),
        KeyCopy::Token { store } => (
            format!(
                "NOT included: it cannot leave {store}; this restore point holds the certificate and state only and restores onto that token"
            ),
            store.clone(),
        ),
    };
    out.print(
        format!(
            "restore point written to {}\nfingerprint: {}\nkey: {key}",
            file.display(),
            point.fingerprint
        ),
        json!({
            "file": file,
            "fingerprint": point.fingerprint,
            "holds_key": point.holds_key(),
            "key_store": key_store,
        }),
    );
    Ok(())
}

fn factory_reset(agent: impl Fn() -> Result<Agent>, yes: bool, out: &Output) -> Result<()> {
    if !yes {
        eprint!(
            "This wipes the terminal's keys, certificates, trust store, pins and pairing. Type yes to continue: "
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            bail!("factory reset not confirmed; nothing changed");
        }
    }
    agent()?.factory_reset()?;
    out.print(
        "factory reset done: no keys, no pins, not paired",
        json!({ "status": "reset" }),
    );
    Ok(())
}
