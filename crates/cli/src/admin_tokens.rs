//! `pairgate admin token …`: CAS API tokens made, listed and revoked
//! locally. A token is shown once, when made; lists never hold one.

use std::time::SystemTime;

use anyhow::Result;
use clap::Subcommand;
use pairgate_server::rfc3339;
use pairgate_store::{Actor, AdminAction, ApiToken, Store};
use serde_json::json;

use pairgate_agent::Output;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
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

/// Runs a token command as `actor`.
pub async fn run(store: &Store, command: TokenCommand, actor: &Actor, out: &Output) -> Result<()> {
    let now = SystemTime::now();
    match command {
        TokenCommand::Create { operator, name } => {
            let by = AdminAction::local(actor.name());
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
                record.receipt(token.as_str()),
            );
        }
        TokenCommand::List => {
            let tokens = store.api_tokens(None).await?;
            let now = pairgate_server::unix_millis(now);
            let text: Vec<String> = tokens
                .iter()
                .map(|t| {
                    format!(
                        "{}  {:<20} {:<20} {}",
                        t.id,
                        t.username,
                        t.name,
                        standing(t, now)
                    )
                })
                .collect();
            let views: Vec<_> = tokens.iter().map(ApiToken::view).collect();
            out.print(text.join("\n"), views);
        }
        TokenCommand::Revoke { id } => {
            store.revoke_api_token(&id, None, actor, now).await?;
            out.print(
                format!("API token {id} revoked"),
                json!({ "id": id, "status": "revoked" }),
            );
        }
    }
    Ok(())
}

/// Whether a token works at `now` (Unix ms).
fn standing(t: &ApiToken, now: i64) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at <= now {
        "expired"
    } else {
        "active"
    }
}
