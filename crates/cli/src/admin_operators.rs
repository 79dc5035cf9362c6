//! `pairgate admin operator …`: create and list operators, and the
//! break-glass account changes (disable, enable, role, two-factor reset,
//! clearing a step-up lock) for whoever runs commands on the server
//! itself. Each change is one audited store transaction; the store keeps
//! at least one enabled admin.

use std::time::SystemTime;

use anyhow::Result;
use clap::Subcommand;
use pairgate_proto::cas_accounts::NewOperator;
use pairgate_store::{Actor, AdminAction, Role, Store};

use pairgate_agent::Output;

#[derive(Subcommand, Debug)]
pub enum OperatorCommand {
    /// Creates an operator; prints a one-time password and a TOTP URI.
    Create {
        /// Username (a-z 0-9 . _ -).
        name: String,
        /// admin, operator or viewer.
        #[arg(long)]
        role: Role,
    },
    /// Lists operators.
    List,
    /// Disables an operator: their sessions end and their API tokens are
    /// revoked.
    Disable {
        /// Username.
        name: String,
    },
    /// Enables a disabled operator.
    Enable {
        /// Username.
        name: String,
    },
    /// Changes an operator's role.
    Role {
        /// Username.
        name: String,
        /// admin, operator or viewer.
        #[arg(long)]
        role: Role,
    },
    /// Resets an operator's two-factor authentication (a lost phone):
    /// they enrol again at their next login.
    #[command(name = "reset-2fa")]
    ResetTotp {
        /// Username.
        name: String,
    },
    /// Clears an operator's step-up lock after too many wrong codes.
    ClearLock {
        /// Username.
        name: String,
    },
}

/// Runs an operator command as `actor`.
pub async fn run(
    store: &Store,
    command: OperatorCommand,
    actor: &Actor,
    out: &Output,
) -> Result<()> {
    let now = SystemTime::now();
    let by = AdminAction::local(actor.name());
    let (name, done) = match command {
        OperatorCommand::Create { name, role } => {
            let creds = store.create_operator(&name, role, actor, now).await?;
            out.print(
                format!(
                    "operator {name} ({}) created\n  one-time password: {}\n  TOTP (add to an authenticator app): {}\nBoth are shown once.",
                    role.as_str(),
                    creds.password.as_str(),
                    creds.totp_uri.as_str()
                ),
                NewOperator {
                    username: name.clone(),
                    role: role.as_str().to_owned(),
                    password: creds.password.clone(),
                    totp_uri: creds.totp_uri.clone(),
                },
            );
            return Ok(());
        }
        OperatorCommand::List => {
            let operators = store.operators().await?;
            let mut text = Vec::with_capacity(operators.len());
            let mut rows = Vec::with_capacity(operators.len());
            for o in &operators {
                let lock = store.step_up_lock(&o.username, now).await?;
                text.push(format!(
                    "{:<20} {:<9} 2fa={} {}{}",
                    o.username,
                    o.role.as_str(),
                    if o.totp_enabled { "on" } else { "off" },
                    if o.disabled { "disabled" } else { "" },
                    if lock.locked { " step-ups-locked" } else { "" }
                ));
                rows.push(o.view(Some(&lock)));
            }
            out.print(text.join("\n"), rows);
            return Ok(());
        }
        OperatorCommand::Disable { name } => {
            store.set_operator_disabled(&name, true, &by, now).await?;
            (
                name,
                "disabled; their sessions ended and their API tokens are revoked",
            )
        }
        OperatorCommand::Enable { name } => {
            store.set_operator_disabled(&name, false, &by, now).await?;
            (name, "enabled")
        }
        OperatorCommand::Role { name, role } => {
            store.set_operator_role(&name, role, &by, now).await?;
            (name, "given the new role")
        }
        OperatorCommand::ResetTotp { name } => {
            store.reset_operator_totp(&name, &by, now).await?;
            (
                name,
                "reset: they set up two-factor authentication at their next login",
            )
        }
        OperatorCommand::ClearLock { name } => {
            store.clear_step_up_lock(&name, &by, now).await?;
            (name, "cleared of the step-up lock")
        }
    };
    let operator = store.operator(&name).await?;
    out.print(
        format!("operator {name} {done}"),
        operator.map(|o| o.view(None)),
    );
    Ok(())
}
