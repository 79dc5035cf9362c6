//! The terminal's side of the gate's pairing protocol (docs/protocol.md,
//! steps 2 and 3) as single stateless calls, and how the gate's answers
//! are read, with the bodies of `pairgate_proto::gate`. The agent builds
//! its resumable pairing flow on them; `pairgate bench` simulates
//! terminals with them.

use pairgate_pki::{Commitment, Nonce};
use pairgate_proto::{
    ErrorBody, OpenAnswer, PairingHello, RequestStatus, RevealRequest, TerminalConfig,
};
use pairgate_tls::https::{HttpsClient, HttpsResponse};

use crate::TerminalError;

/// What a terminal says when it asks to pair (step 2).
#[derive(Clone, Debug)]
pub struct Hello<'a> {
    /// The serial an operator registered.
    pub serial: &'a str,
    /// Reported model.
    pub model: &'a str,
    /// Reported firmware.
    pub firmware: &'a str,
    /// Commitment to the terminal's nonce.
    pub commitment: Commitment,
}

/// What the gate answered to [`ask`].
#[derive(Clone, Debug)]
pub enum Answer {
    /// This certificate is already paired: its configuration.
    Paired(TerminalConfig),
    /// A request is open: reveal the nonce next.
    Pending {
        /// The request's id.
        request_id: String,
        /// The gate's nonce for the code.
        server_nonce: Nonce,
    },
}

/// Step 2: `POST {gate_url}/v1/pairing`. The response is returned as is,
/// so that the caller can pin the server key it came over before reading
/// it with [`answer`].
pub async fn ask(
    https: &HttpsClient,
    gate_url: &str,
    hello: &Hello<'_>,
) -> Result<HttpsResponse, TerminalError> {
    let body = PairingHello {
        serial: hello.serial.to_owned(),
        model: hello.model.to_owned(),
        firmware: hello.firmware.to_owned(),
        commitment: hello.commitment.to_hex(),
    };
    Ok(https
        .request(
            "POST",
            &format!("{gate_url}/v1/pairing"),
            &[("content-type", "application/json")],
            Some(to_json(&body)),
        )
        .await?)
}

/// Reads the gate's answer to [`ask`]; a refusal is
/// [`TerminalError::Gate`] with the gate's error code and message.
pub fn answer(r: &HttpsResponse) -> Result<Answer, TerminalError> {
    // Errors first: their body may not be JSON at all.
    if !matches!(r.status, 200 | 202) {
        return Err(gate_error(r));
    }
    match (r.status, read::<OpenAnswer>(r)?) {
        (200, OpenAnswer::Paired { config }) => Ok(Answer::Paired(config)),
        (
            202,
            OpenAnswer::Pending {
                request_id,
                server_nonce,
                ..
            },
        ) => Ok(Answer::Pending {
            request_id,
            server_nonce,
        }),
        _ => Err(gate_error(r)),
    }
}

/// Step 3: `POST {gate_url}/v1/pairing/{id}/reveal`. A refusal by the gate
/// is [`TerminalError::Gate`]; a connection failure is
/// [`TerminalError::Tls`].
pub async fn reveal(
    https: &HttpsClient,
    gate_url: &str,
    request_id: &str,
    nonce: &Nonce,
) -> Result<(), TerminalError> {
    let r = https
        .request(
            "POST",
            &format!("{gate_url}/v1/pairing/{request_id}/reveal"),
            &[("content-type", "application/json")],
            Some(to_json(&RevealRequest {
                terminal_nonce: nonce.to_hex(),
            })),
        )
        .await?;
    if r.status != 200 {
        return Err(gate_error(&r));
    }
    Ok(())
}

/// The gate's JSON error as a [`TerminalError::Gate`].
pub(crate) fn gate_error(r: &HttpsResponse) -> TerminalError {
    let (code, message) = error_body(r);
    TerminalError::Gate(format!("the gate answered {} {code}: {message}", r.status))
}

/// The code and message of an error answer (`?` and the raw body when it
/// is not the protocol's error body).
pub(crate) fn error_body(r: &HttpsResponse) -> (String, String) {
    match serde_json::from_slice::<ErrorBody>(&r.body) {
        Ok(body) => (body.error.code.to_string(), body.error.message),
        Err(_) => (
            "?".to_owned(),
            String::from_utf8_lossy(&r.body).into_owned(),
        ),
    }
}

/// A gate answer's body as `T`.
pub(crate) fn read<T: serde::de::DeserializeOwned>(r: &HttpsResponse) -> Result<T, TerminalError> {
    serde_json::from_slice(&r.body).map_err(|e| {
        TerminalError::Gate(format!(
            "the gate's answer ({}) is not what the protocol says: {e}",
            r.status
        ))
    })
}

/// The status of a request, from `GET /v1/pairing/{id}`.
pub(crate) fn request_status(r: &HttpsResponse) -> Result<RequestStatus, TerminalError> {
    if r.status != 200 {
        return Err(gate_error(r));
    }
    read(r)
}

fn to_json(body: &impl serde::Serialize) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> HttpsResponse {
        HttpsResponse {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            server_pin: None,
        }
    }

    #[test]
    fn reads_the_gates_answers() {
        let nonce = Nonce::random();
        let pending = response(
            202,
            &format!(
                r#"{{"status":"pending","request_id":"r1","server_nonce":"{}","expires_at":"2026-12-01T00:00:00Z"}}"#,
                nonce.to_hex()
            ),
        );
        match answer(&pending).unwrap() {
            Answer::Pending {
                request_id,
                server_nonce,
            } => {
                assert_eq!(request_id, "r1");
                assert_eq!(server_nonce.to_hex(), nonce.to_hex());
            }
            other => panic!("{other:?}"),
        }
        let paired = response(
            200,
            &format!(
                r#"{{"status":"paired","config":{{"master_url":"https://m","server_pins":["{}"]}}}}"#,
                "ab".repeat(32)
            ),
        );
        assert!(
            matches!(answer(&paired).unwrap(), Answer::Paired(c) if c.master_url == "https://m")
        );
        // Refusals carry the gate's code; broken answers say what is wrong.
        let refused = response(
            403,
            r#"{"error":{"code":"PG-UNKNOWN-SERIAL","message":"no such terminal"}}"#,
        );
        let e = answer(&refused).unwrap_err().to_string();
        assert!(e.contains("403 PG-UNKNOWN-SERIAL: no such terminal"), "{e}");
        let e = answer(&response(502, "<html>bad gateway</html>"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("502") && e.contains("bad gateway"), "{e}");
        let e = answer(&response(
            202,
            r#"{"status":"pending","request_id":"r1","server_nonce":"zz","expires_at":"x"}"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("64 hex digits"), "{e}");
        let e = answer(&response(202, r#"{"status":"pending"}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("request_id"), "{e}");
        let e = answer(&response(200, r#"{"status":"pending"}"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("200"), "{e}");
        assert!(answer(&response(202, "not json")).is_err());
    }
}
