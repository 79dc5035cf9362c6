//! `pairgate server`: gate (7741) and master (7743) in one process, on the
//! settings' store and identity, until SIGINT or SIGTERM. Also the
//! settings arguments `pairgate admin` shares, so both commands find the
//! same data directory or database.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use pairgate_server::{Server, Settings};
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
#[command(after_long_help = Settings::help())]
pub struct ServerArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    /// The gate_listen setting (default 0.0.0.0:7741).
    #[arg(long, value_name = "ADDR")]
    gate_listen: Option<String>,
    /// The master_listen setting (default 0.0.0.0:7743).
    #[arg(long, value_name = "ADDR")]
    master_listen: Option<String>,
    /// The cas_listen setting (default 127.0.0.1:7780).
    #[arg(long, value_name = "ADDR")]
    cas_listen: Option<String>,
    /// The master_url setting: the master URL handed to paired terminals.
    #[arg(long, value_name = "URL")]
    master_url: Option<String>,
}

/// Logs to stderr; `PAIRGATE_LOG` = error, warn, info (default) or debug.
fn init_logging() {
    let level = match std::env::var("PAIRGATE_LOG").as_deref() {
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn run(args: ServerArgs, out: &Output) -> Result<()> {
    let mut extra = Vec::new();
    for (key, value) in [
        ("gate_listen", &args.gate_listen),
        ("master_listen", &args.master_listen),
        ("cas_listen", &args.cas_listen),
        ("master_url", &args.master_url),
    ] {
        if let Some(value) = value {
            extra.push((key.to_owned(), value.clone()));
        }
    }
    let settings = args.settings.load(extra)?;
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let server = Server::start(&settings).await?;
        let store = match settings.database() {
            pairgate_server::DatabaseLocation::DataDir(dir) => {
                format!("SQLite {}", dir.join("pairgate.db").display())
            }
            pairgate_server::DatabaseLocation::Url(_) => "PostgreSQL (database_url)".to_owned(),
        };
        let first_run = server.first_run_password.as_ref().map_or_else(String::new, |p| {
            format!(
                "\nFIRST RUN: operator admin was created with the one-time password\n    {}\n  (also in {}, deleted at the first password change).\n  Sign in at {}: you will choose a password and set up TOTP.\n",
                p.reveal(),
                settings.data_dir.join(pairgate_server::cas::FIRST_RUN_FILE).display(),
                server.cas_url,
            )
        });
        out.print(
            format!(
                "pairgate server\n  gate      https://{}\n  master    https://{} (terminals are told {})\n  CAS       {}\n  store     {store}\n  identity  {}\n  server SPKI pin (terminals pin this):\n    {}\n    {}\n{first_run}",
                server.gate_addr,
                server.master_addr,
                server.master_url,
                server.cas_url,
                server.identity_keystore,
                server.pin.to_hex(),
                server.pin.grouped(),
            ),
            json!({
                "gate": server.gate_addr.to_string(),
                "master": server.master_addr.to_string(),
                "master_url": server.master_url,
                "pin": server.pin.to_hex(),
                "identity_keystore": server.identity_keystore,
                "cas": server.cas_url,
                "first_run_password": server.first_run_password.as_ref().map(|p| p.reveal()),
            }),
        );
        wait_for_signal().await?;
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(())
    })
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
