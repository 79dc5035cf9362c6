//! `pairgate server`: gate (7741), master (7743) and CAS (7780) in one
//! process, or the ones `--services` names, on the settings' store and
//! identity, until SIGINT or SIGTERM; `pairgate server init` sets up the
//! identity and the first admin without serving. Also the settings
//! arguments `pairgate admin` shares, so both commands find the same data
//! directory or database.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use pairgate_server::{Instance, Settings};
use serde_json::json;

use pairgate_agent::Output;

/// Where the settings come from; the same for `server` and `admin`.
#[derive(Args, Debug, Clone)]
pub struct SettingsArgs {
    /// TOML settings file (unknown keys are refused).
    #[arg(long, value_name = "FILE", env = "PAIRGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (the data_dir setting).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The database_url setting: postgres://… (default: SQLite in the data directory).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Any setting as KEY=VALUE (repeatable); see the list below.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl SettingsArgs {
    /// Defaults < file < PAIRGATE_* environment < flags.
    pub fn load(&self, extra: Vec<(String, String)>) -> Result<Settings> {
        let mut overrides = Vec::new();
        if let Some(dir) = &self.data {
            overrides.push(("data_dir".to_owned(), dir.display().to_string()));
        }
        if let Some(url) = &self.database_url {
            overrides.push(("database_url".to_owned(), url.clone()));
        }
        for pair in &self.set {
            let Some((key, value)) = pair.split_once('=') else {
                bail!("--set takes KEY=VALUE, not {pair:?}");
            };
            overrides.push((key.trim().to_owned(), value.to_owned()));
        }
        overrides.extend(extra);
        Ok(Settings::load(
            self.config.as_deref(),
            std::env::vars(),
            &overrides,
        )?)
    }
}

#[derive(Args, Debug)]
#[command(after_long_help = Settings::help(), args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    command: Option<ServerCommand>,
    #[command(flatten)]
    settings: SettingsArgs,
    /// The services setting: which of gate, master and cas this instance
    /// runs, comma-separated (default all three).
    #[arg(long, value_name = "LIST")]
    services: Option<String>,
    /// The gate_listen setting (default 0.0.0.0:7741).
    #[arg(long, value_name = "ADDR")]
    gate_listen: Option<String>,
    /// The master_listen setting (default 0.0.0.0:7743).
    #[arg(long, value_name = "ADDR")]
    master_listen: Option<String>,
    /// The cas_listen setting (default 127.0.0.1:7780).
    #[arg(long, value_name = "ADDR")]
    cas_listen: Option<String>,
    /// The metrics_listen setting (default 127.0.0.1:7790; empty: off).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// The master_url setting: the master URL handed to paired terminals.
    #[arg(long, value_name = "URL")]
    master_url: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ServerCommand {
    /// Create the server identity (or check it against the store's) and
    /// record its pin in the store, and create the first admin; serves
    /// nothing. Run once before starting instances with `--services`.
    Init(InitArgs),
}

#[derive(Args, Debug)]
struct InitArgs {
    #[command(flatten)]
    settings: SettingsArgs,
}

/// Logs to stderr; `PAIRGATE_LOG` = error, warn, info (default) or debug;
/// `PAIRGATE_LOG_FORMAT=json` writes one JSON object per line, with the
/// request's span (request number, service, client fingerprint).
fn init_logging() -> Result<()> {
    let level = match std::env::var("PAIRGATE_LOG").as_deref() {
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let logs = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    let _ = match std::env::var("PAIRGATE_LOG_FORMAT").as_deref() {
        Ok("json") => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        Ok("text") | Err(std::env::VarError::NotPresent) => logs.try_init(),
        Ok(other) => bail!("PAIRGATE_LOG_FORMAT={other:?}: use text (default) or json"),
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("PAIRGATE_LOG_FORMAT is not UTF-8: use text (default) or json")
        }
    };
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// The one-time password's paragraph for the console, or nothing.
fn first_run_text(
    password: Option<&pairgate_server::cas::FirstRunPassword>,
    settings: &Settings,
    cas_url: Option<&str>,
) -> String {
    password.map_or_else(String::new, |p| {
        let sign_in = cas_url.map_or_else(
            || "Sign in at CAS".to_owned(),
            |url| format!("Sign in at {url}"),
        );
        format!(
            "\nFIRST RUN: operator admin was created with the one-time password\n    {}\n  (also in {}, deleted at the first password change).\n  {sign_in}: you will choose a password and set up TOTP.\n",
            p.reveal(),
            settings.data_dir.join(pairgate_server::cas::FIRST_RUN_FILE).display(),
        )
    })
}

fn init(args: InitArgs, out: &Output) -> Result<()> {
    let settings = args.settings.load(Vec::new())?;
    init_logging()?;
    runtime()?.block_on(async {
        let done = pairgate_server::init(&settings, &pairgate_server::Clock::system()).await?;
        out.print(
            format!(
                "server identity recorded in the store\n  identity  {}\n  server SPKI pin (terminals pin this):\n    {}\n    {}\n{}",
                done.identity_keystore,
                done.pin.to_hex(),
                done.pin.grouped(),
                first_run_text(done.first_run_password.as_ref(), &settings, None),
            ),
            json!({
                "pin": done.pin.to_hex(),
                "identity_keystore": done.identity_keystore,
                "first_run_password": done.first_run_password.as_ref().map(|p| p.reveal()),
            }),
        );
        Ok(())
    })
}

pub fn run(args: ServerArgs, out: &Output) -> Result<()> {
    if let Some(ServerCommand::Init(init_args)) = args.command {
        return init(init_args, out);
    }
    let mut extra = Vec::new();
    for (key, value) in [
        ("services", &args.services),
        ("gate_listen", &args.gate_listen),
        ("master_listen", &args.master_listen),
        ("cas_listen", &args.cas_listen),
        ("metrics_listen", &args.metrics_listen),
        ("master_url", &args.master_url),
    ] {
        if let Some(value) = value {
            extra.push((key.to_owned(), value.clone()));
        }
    }
    let settings = args.settings.load(extra)?;
    init_logging()?;
    let services = settings.service_set()?;
    runtime()?.block_on(async {
        let instance =
            Instance::start(&settings, services, pairgate_server::Clock::system()).await?;
        print_started(&instance, &settings, out);
        wait_for_signal().await?;
        tracing::info!("shutting down");
        instance.shutdown().await;
        Ok(())
    })
}

/// What is listening where, and the pin.
fn print_started(instance: &Instance, settings: &Settings, out: &Output) {
    let store = match settings.database() {
        pairgate_server::DatabaseLocation::DataDir(dir) => {
            format!("SQLite {}", dir.join("pairgate.db").display())
        }
        pairgate_server::DatabaseLocation::Url(_) => "PostgreSQL (database_url)".to_owned(),
    };
    let cas_url = instance.cas.as_ref().map(|(_, url)| url.as_str());
    let mut lines = format!("pairgate server ({})\n", instance.services);
    if let Some(gate) = instance.gate_addr {
        lines += &format!("  gate      https://{gate}\n");
    }
    if let Some(master) = instance.master_addr {
        lines += &format!(
            "  master    https://{master} (terminals are told {})\n",
            instance.master_url
        );
    }
    if let Some(url) = cas_url {
        lines += &format!("  CAS       {url}\n");
    }
    if let Some(addr) = instance.metrics_addr {
        lines += &format!("  metrics   http://{addr}/metrics (/healthz, /readyz)\n");
    }
    lines += &format!(
        "  store     {store}\n  identity  {}\n  server SPKI pin (terminals pin this):\n    {}\n    {}\n{}",
        instance.identity_keystore,
        instance.pin.to_hex(),
        instance.pin.grouped(),
        first_run_text(instance.first_run_password.as_ref(), settings, cas_url),
    );
    out.print(
        lines,
        json!({
            "services": instance.services.to_string(),
            "gate": instance.gate_addr.map(|a| a.to_string()),
            "master": instance.master_addr.map(|a| a.to_string()),
            "master_url": instance.master_url,
            "pin": instance.pin.to_hex(),
            "identity_keystore": instance.identity_keystore,
            "cas": cas_url,
            "metrics": instance.metrics_addr.map(|a| a.to_string()),
            "first_run_password": instance.first_run_password.as_ref().map(|p| p.reveal()),
        }),
    );
}

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
