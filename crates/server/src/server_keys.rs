//! The server's keys as terminals learn them (docs/protocol.md, "Server
//! key rotation"): the key this instance presents, the next one
//! (announced, or already activated in the store while this instance has
//! not switched yet) and every rotation statement, from which a terminal
//! follows the server's key from a pin it holds.
//!
//! - `GET /v1/server-keys` at the gate and the master reads the store, so
//!   an announcement is seen at once.
//! - `GET /v1/me` carries the same pins and statements from the master's
//!   copy, which [`follow`] refreshes every `reconcile_secs` (it stays
//!   served from memory).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use pairgate_pki::SpkiPin;
use pairgate_proto::server_keys::{Rotation, ServerKeys};
use pairgate_store::{Store, StoredRotation};

use crate::ApiError;

/// The next key for a connection on which `presented` was served: the
/// announced one, else the recorded identity when this instance has not
/// switched to it yet.
fn next_pin(
    rotations: &[StoredRotation],
    recorded: Option<SpkiPin>,
    presented: SpkiPin,
) -> Option<SpkiPin> {
    let announced = rotations
        .iter()
        .filter(|r| r.activated_at.is_none())
        .filter_map(|r| r.rotation.signed().ok())
        .map(|s| s.statement.next_pin())
        .next();
    announced.or(recorded.filter(|pin| *pin != presented))
}

/// The answer for a connection on which this instance presented `presented`.
pub(crate) async fn answer(store: &Store, presented: SpkiPin) -> Result<Response, ApiError> {
    let (rotations, recorded, recovery) = store.server_keys().await?;
    Ok(Json(ServerKeys {
        current: presented,
        next: next_pin(&rotations, recorded, presented),
        rotations: rotations.into_iter().map(|r| r.rotation).collect(),
        recovery,
    })
    .into_response())
}

/// The rotations and recorded identity as the master last read them.
#[derive(Debug, Default)]
pub(crate) struct KeysView(RwLock<Arc<Keys>>);

/// One reading of the store.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    stored: Vec<StoredRotation>,
    recorded: Option<SpkiPin>,
    /// The statements, as the wire carries them.
    pub rotations: Vec<Rotation>,
}

impl Keys {
    /// The pins a terminal should hold on a connection that presented
    /// `presented`: that key, and the next one when there is one.
    pub(crate) fn pins(&self, presented: SpkiPin) -> Vec<SpkiPin> {
        let mut pins = vec![presented];
        pins.extend(next_pin(&self.stored, self.recorded, presented));
        pins
    }
}

impl KeysView {
    /// The last reading.
    pub(crate) fn get(&self) -> Arc<Keys> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, keys: Keys) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
    }
}

/// Reads the store's rotations and identity into `view` at once and then
/// every `every`, until `shutdown`.
pub(crate) async fn follow(
    store: Store,
    view: Arc<KeysView>,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match store.server_keys().await {
            Ok((stored, recorded, _)) => view.set(Keys {
                rotations: stored.iter().map(|r| r.rotation.clone()).collect(),
                stored,
                recorded,
            }),
            Err(e) => tracing::warn!(error = %e, "reading the server's rotations failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}
