//! `pairgate admin …`: the operator's verbs on the server's data directory
//! or database, over the same store code as the gate, master and CAS. Every
//! trust change is one transaction with its audit record; approval takes
//! the operator's fresh TOTP.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use pairgate_pki::PairingCode;
use pairgate_store::{Actor, Store};

use crate::server::SettingsArgs;
use pairgate_agent::Output;

#[derive(Args, Debug)]
#[command(after_long_help = pairgate_server::Settings::help())]
pub struct AdminArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Operators of CAS and of these commands.
    #[command(subcommand)]
    Operator(crate::admin_operators::OperatorCommand),
    /// CAS API tokens.
    #[command(subcommand)]
    Token(crate::admin_tokens::TokenCommand),
    /// Terminals.
    #[command(subcommand)]
    Terminal(crate::admin_pairing::TerminalCommand),
    /// The block list of terminal keys.
    #[command(subcommand)]
    Key(crate::admin_keys::KeyCommand),
    /// The server identity: export it to a new machine, import it there.
    #[command(subcommand)]
    Identity(crate::admin_identity::IdentityCommand),
    /// The terminal CA that certifies re-key CSRs (CA mode).
    #[command(subcommand)]
    TerminalCa(crate::admin_terminal_ca::TerminalCaCommand),
    /// Vendor keys that sign manifests.
    #[command(subcommand)]
    Vendor(crate::admin_vendors::VendorCommand),
    /// Signed vendor manifests: terminals and their keys by the thousand.
    #[command(subcommand)]
    Manifest(crate::admin_vendors::ManifestCommand),
    /// Pairing requests, newest first.
    Requests {
        /// Only open requests (awaiting the reveal or a decision).
        #[arg(long)]
        pending: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Approves a request by the code the location contact reads out.
    Approve {
        /// Request id.
        request: String,
        /// The code shown on the terminal, NNNN-NNNN.
        #[arg(long)]
        code: PairingCode,
        /// The approving operator.
        #[arg(long)]
        operator: String,
        /// The operator's current TOTP code.
        #[arg(long)]
        totp: String,
    },
    /// Rejects an open request.
    Reject {
        /// Request id.
        request: String,
    },
    /// Breaks a terminal's trust: the master refuses it from now on.
    Unpair {
        /// Terminal serial.
        serial: String,
    },
    /// Suspends a paired terminal: the master refuses it and closes its
    /// connections, the pairing is kept.
    Suspend {
        /// Terminal serial.
        serial: String,
    },
    /// Resumes a suspended terminal (or clears a clone suspicion), with an
    /// operator's fresh TOTP.
    Resume {
        /// Terminal serial.
        serial: String,
        /// The operator doing it.
        #[arg(long)]
        operator: String,
        /// The operator's current TOTP code.
        #[arg(long)]
        totp: String,
    },
    /// The audit log, newest first; `verify` checks it against the
    /// server's signed checkpoints; `export` writes it as JSON lines.
    Audit {
        #[command(subcommand)]
        command: Option<crate::admin_audit::AuditCommand>,
        /// At most this many records, newest first.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

/// The settings of a server that exists: only `pairgate server` makes a
/// data directory, so a mistyped --data must not answer from a new,
/// empty database.
pub(crate) fn existing(args: &SettingsArgs) -> Result<pairgate_server::Settings> {
    let settings = args.load(Vec::new())?;
    if let pairgate_server::DatabaseLocation::DataDir(dir) = settings.database() {
        let db = dir.join("pairgate.db");
        if !db.is_file() {
            bail!(
                "{} holds no pairgate database ({} is missing): check --data, or start `pairgate server` there first",
                dir.display(),
                db.display()
            );
        }
    }
    Ok(settings)
}

/// The runtime a store command runs on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Who the audit log names for changes made here without an operator.
pub(crate) fn cli_actor() -> Actor {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Actor::new(format!("cli:{user}"))
}

pub fn run(args: AdminArgs, out: &Output) -> Result<()> {
    // An export is checked offline: no settings, no database.
    if let AdminCommand::Audit {
        command:
            Some(crate::admin_audit::AuditCommand::Verify {
                file: Some(file),
                server_pin,
            }),
        ..
    } = &args.command
    {
        return crate::admin_audit::verify_file(file, *server_pin, out);
    }
    let settings = existing(&args.settings)?;
    runtime()?.block_on(async {
        let store = pairgate_server::open_store(&settings).await?;
        command(&store, &settings, args.command, out).await
    })
}

async fn command(
    store: &Store,
    settings: &pairgate_server::Settings,
    command: AdminCommand,
    out: &Output,
) -> Result<()> {
    let actor = cli_actor();
    match command {
        AdminCommand::Operator(command) => {
            crate::admin_operators::run(store, command, &actor, out).await
        }
        AdminCommand::Token(command) => crate::admin_tokens::run(store, command, &actor, out).await,
        AdminCommand::Terminal(command) => {
            crate::admin_pairing::terminal(store, command, &actor, out).await
        }
        AdminCommand::Requests { pending, limit } => {
            crate::admin_pairing::requests(store, pending, limit, out).await
        }
        AdminCommand::Approve {
            request,
            code,
            operator,
            totp,
        } => crate::admin_pairing::approve(store, &request, &code, (&operator, &totp), out).await,
        AdminCommand::Key(command) => crate::admin_keys::run(store, command, &actor, out).await,
        AdminCommand::Identity(command) => {
            crate::admin_identity::run(store, settings, command, &actor, out).await
        }
        AdminCommand::TerminalCa(command) => {
            crate::admin_terminal_ca::run(store, settings, command, &actor, out).await
        }
        AdminCommand::Vendor(command) => crate::admin_vendors::vendor(store, command, out).await,
        AdminCommand::Manifest(command) => {
            crate::admin_vendors::manifest(store, command, &actor, out).await
        }
        AdminCommand::Reject { request } => {
            crate::admin_pairing::reject(store, &request, &actor, out).await
        }
        AdminCommand::Unpair { serial } => {
            crate::admin_pairing::unpair(store, &serial, &actor, out).await
        }
        AdminCommand::Suspend { serial } => {
            crate::admin_pairing::suspend(store, &serial, &actor, out).await
        }
        AdminCommand::Resume {
            serial,
            operator,
            totp,
        } => crate::admin_pairing::resume(store, &serial, (&operator, &totp), out).await,
        AdminCommand::Audit { command, limit } => {
            crate::admin_audit::run(store, settings, command, limit, out).await
        }
    }
}
