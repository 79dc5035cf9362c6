//! The terminal's side of the gate's pairing protocol (DESIGN.md steps 2
//! and 3) as single stateless calls, and how the gate's answers are read.
//! The agent builds its resumable pairing flow on them; `pairgate bench`
//! simulates terminals with them.

use pairgate_pki::{Commitment, Nonce};
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
    Paired(serde_json::Value),
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
    let body = serde_json::json!({
        "serial": hello.serial, "model": hello.model,
        "firmware": hello.firmware, "commitment": hello.commitment.to_hex(),
    });
    Ok(https
        .request(
            "POST",
            &format!("{gate_url}/v1/pairing"),
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
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
    let answer = json_body(r)?;
    match r.status {
        200 if answer.get("status").and_then(serde_json::Value::as_str) == Some("paired") => Ok(
            Answer::Paired(answer.get("config").cloned().unwrap_or_default()),
        ),
        202 => Ok(Answer::Pending {
            request_id: field(&answer, "request_id")?.to_owned(),
            server_nonce: field(&answer, "server_nonce")?
                .parse()
                .map_err(|_| TerminalError::Gate("the server nonce is not 64 hex digits".into()))?,
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
            Some(
                serde_json::json!({ "terminal_nonce": nonce.to_hex() })
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await?;
    if r.status != 200 {
        return Err(gate_error(&r));
    }
    Ok(())
}

/// The gate's JSON error as a [`TerminalError::Gate`].
pub(crate) fn gate_error(r: &HttpsResponse) -> TerminalError {
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let code = body
        .pointer("/error/code")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    let message = body
        .pointer("/error/message")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
    TerminalError::Gate(format!("the gate answered {} {code}: {message}", r.status))
}

/// A string field of a gate answer.
pub(crate) fn field<'a>(body: &'a serde_json::Value, name: &str) -> Result<&'a str, TerminalError> {
    body.get(name)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| TerminalError::Gate(format!("the gate's answer has no {name:?}")))
}

/// A gate answer's JSON body.
pub(crate) fn json_body(r: &HttpsResponse) -> Result<serde_json::Value, TerminalError> {
    serde_json::from_slice(&r.body)
        .map_err(|e| TerminalError::Gate(format!("the gate's answer is not JSON: {e}")))
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
                r#"{{"status":"pending","request_id":"r1","server_nonce":"{}"}}"#,
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
            r#"{"status":"paired","config":{"master_url":"https://m"}}"#,
        );
        assert!(
            matches!(answer(&paired).unwrap(), Answer::Paired(c) if c["master_url"] == "https://m")
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
            r#"{"status":"pending","request_id":"r1","server_nonce":"zz"}"#,
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
