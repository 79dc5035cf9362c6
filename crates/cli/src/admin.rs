//! `pairgate admin …`: the operator's verbs on the server's data directory
//! or database, over the same store code as the gate, master and CAS. Every
//! trust change is one transaction with its audit record; approval takes
//! the operator's fresh TOTP.

use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use pairgate_pki::PairingCode;
use pairgate_server::rfc3339;
use pairgate_store::{Actor, NewTerminal, PairingRequest, Serial, Store, Terminal};
use serde_json::{Value, json};

use crate::output::Output;
use crate::server::SettingsArgs;

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
    Token(TokenCommand),
    /// Terminals.
    #[command(subcommand)]
    Terminal(TerminalCommand),
    /// The block list of terminal keys.
    #[command(subcommand)]
    Key(crate::admin_keys::KeyCommand),
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

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Creates a CAS API token for an operator; prints it once.
    Create {
        /// The operator the token acts for (with their role).
        #[arg(long)]
        operator: String,
        /// What it is for.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Lists API tokens (never the tokens themselves).
    List,
    /// Revokes a token by id.
    Revoke {
        /// Token id (the 16 hex digits after pgt_).
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum TerminalCommand {
    /// Registers a terminal so that it may ask to pair.
    Add {
        /// Serial.
        serial: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Location.
        #[arg(long, default_value = "")]
        location: String,
        /// The location contact who reads the pairing code.
        #[arg(long, default_value = "")]
        contact: String,
        /// Their phone.
        #[arg(long, default_value = "")]
        phone: String,
    },
    /// Lists terminals.
    List,
}

/// Who the audit log names for changes made here without an operator.
fn cli_actor() -> Actor {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Actor::new(format!("cli:{user}"))
}

fn when(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(rfc3339(ms)))
}

fn terminal_json(t: &Terminal) -> Value {
    json!({
        "serial": t.serial, "name": t.name, "location": t.location,
        "contact_name": t.contact_name, "contact_phone": t.contact_phone,
        "state": t.state, "paired_fingerprint": t.paired_fingerprint,
        "paired_at": when(t.paired_at), "paired_by": t.paired_by,
        "last_seen_at": when(t.last_seen_at), "last_seen_address": t.last_seen_address,
        "firmware": t.firmware, "created_at": when(Some(t.created_at)),
    })
}

fn request_json(r: &PairingRequest) -> Value {
    json!({
        "id": r.id, "serial": r.serial, "fingerprint": r.fingerprint,
        "state": r.state, "status": r.state.wire_status(), "flagged": r.flagged,
        "supersedes": r.supersedes, "failed_attempts": r.failed_attempts,
        "remote_address": r.remote_address, "model": r.model, "firmware": r.firmware,
        "code_ready": r.terminal_nonce.is_some(),
        "created_at": when(Some(r.created_at)), "expires_at": when(Some(r.expires_at)),
        "decided_at": when(r.decided_at), "decided_by": r.decided_by,
    })
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
    let settings = args.settings.load(Vec::new())?;
    // Only `pairgate server` makes a data directory: a mistyped --data
    // must not answer from a new, empty database.
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
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
    let now = SystemTime::now();
    match command {
        AdminCommand::Operator(command) => {
            crate::admin_operators::run(store, command, &cli_actor(), out).await?;
        }
        AdminCommand::Token(TokenCommand::Create { operator, name }) => {
            let by = pairgate_store::AdminAction::local(cli_actor().name());
            let (record, token) = store
                .create_api_token_for(&operator, &name, &by, now)
                .await?;
            out.print(
                format!(
                    "API token {} for {operator} created, valid until {} (shown once):\n{}",
                    record.id,
                    rfc3339(record.expires_at),
                    token.as_str()
                ),
                json!({
                    "id": record.id, "operator": operator, "name": record.name,
                    "expires_at": rfc3339(record.expires_at), "token": token.as_str(),
                }),
            );
        }
        AdminCommand::Token(TokenCommand::List) => {
            let tokens = store.api_tokens(None).await?;
            let text: Vec<String> = tokens
                .iter()
                .map(|t| {
                    format!(
                        "{}  {:<20} {:<20} {}",
                        t.id,
                        t.username,
                        t.name,
                        if t.revoked_at.is_some() {
                            "revoked"
                        } else if t.expires_at <= pairgate_server::unix_millis(now) {
                            "expired"
                        } else {
                            "active"
                        }
                    )
                })
                .collect();
            out.print(text.join("\n"), json!(tokens));
        }
        AdminCommand::Token(TokenCommand::Revoke { id }) => {
            store.revoke_api_token(&id, None, &cli_actor(), now).await?;
            out.print(
                format!("API token {id} revoked"),
                json!({ "id": id, "status": "revoked" }),
            );
        }
        AdminCommand::Terminal(TerminalCommand::Add {
            serial,
            name,
            location,
            contact,
            phone,
        }) => {
            let new = NewTerminal {
                serial,
                name,
                location,
                contact_name: contact,
                contact_phone: phone,
            };
            let t = store
                .register_terminal(
                    &new,
                    &pairgate_store::Changer::local(cli_actor().name()),
                    now,
                )
                .await?;
            out.print(
                format!("terminal {} registered; it may now ask to pair", t.serial),
                terminal_json(&t),
            );
        }
        AdminCommand::Terminal(TerminalCommand::List) => {
            let terminals = store.terminals().await?;
            let text: Vec<String> = terminals
                .iter()
                .map(|t| {
                    format!(
                        "{:<20} {:<10} {} {}",
                        t.serial,
                        t.state.as_str(),
                        t.paired_fingerprint
                            .map_or_else(|| "-".into(), |f| f.to_hex()),
                        t.name
                    )
                })
                .collect();
            out.print(
                text.join("\n"),
                Value::Array(terminals.iter().map(terminal_json).collect()),
            );
        }
        AdminCommand::Requests { pending, limit } => {
            let requests = store.pairing_requests(pending, limit).await?;
            let text: Vec<String> = requests
                .iter()
                .map(|r| {
                    format!(
                        "{}  {:<16} {:<15} {}{}  {}",
                        r.id,
                        r.serial,
                        r.state.as_str(),
                        if r.flagged { "FLAGGED " } else { "" },
                        rfc3339(r.created_at),
                        r.fingerprint
                    )
                })
                .collect();
            out.print(
                text.join("\n"),
                Value::Array(requests.iter().map(request_json).collect()),
            );
        }
        AdminCommand::Approve {
            request,
            code,
            operator,
            totp,
        } => {
            let proof = store.verify_second_factor(&operator, &totp, now).await?;
            let t = store.approve_pairing(&request, &code, &proof, now).await?;
            out.print(
                format!(
                    "terminal {} paired with {} by {operator}",
                    t.serial,
                    t.paired_fingerprint
                        .map_or_else(|| "-".into(), |f| f.to_hex())
                ),
                terminal_json(&t),
            );
        }
        AdminCommand::Key(command) => {
            crate::admin_keys::run(store, command, &cli_actor(), out).await?;
        }
        AdminCommand::Reject { request } => {
            let r = store
                .reject_pairing(
                    &request,
                    &pairgate_store::Changer::local(cli_actor().name()),
                    now,
                )
                .await?;
            out.print(format!("request {} rejected", r.id), request_json(&r));
        }
        AdminCommand::Unpair { serial } => {
            let serial = Serial::new(&serial)?;
            let t = store
                .unpair(
                    &serial,
                    &pairgate_store::TrustChange::local(cli_actor().name()),
                    now,
                )
                .await?;
            out.print(
                format!(
                    "terminal {} unpaired; the master refuses it from now on",
                    t.serial
                ),
                terminal_json(&t),
            );
        }
        AdminCommand::Audit { command, limit } => {
            crate::admin_audit::run(store, settings, command, limit, out).await?;
        }
    }
    Ok(())
}
