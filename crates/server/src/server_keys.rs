//! `GET /v1/server-keys` at the gate and the master: the key this instance
//! presents, the next one (announced, or already activated in the store
//! while this instance has not switched yet) and every rotation statement,
//! from which a terminal follows the server's key from a pin it holds
//! (docs/protocol.md, "Server key rotation").

use axum::Json;
use axum::response::{IntoResponse, Response};
use pairgate_pki::SpkiPin;
use pairgate_proto::server_keys::ServerKeys;
use pairgate_store::Store;

use crate::ApiError;

/// The answer for a connection on which this instance presented `presented`.
pub(crate) async fn answer(store: &Store, presented: SpkiPin) -> Result<Response, ApiError> {
    let (rotations, recorded, recovery) = store.server_keys().await?;
    let announced = rotations
        .iter()
        .filter(|r| r.activated_at.is_none())
        .filter_map(|r| r.rotation.signed().ok())
        .map(|s| s.statement.next_pin())
        .next();
    let next = announced.or(recorded.filter(|pin| *pin != presented));
    Ok(Json(ServerKeys {
        current: presented,
        next,
        rotations: rotations.into_iter().map(|r| r.rotation).collect(),
        recovery,
    })
    .into_response())
}
