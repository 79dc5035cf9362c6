//! The OpenAPI 3.1 document of the CAS API, served at
//! `/api/v1/openapi.json` without authentication. Written by hand next to
//! the handlers in `api.rs`; a test checks that every route is in it.

use axum::Json;
use serde_json::{Value, json};

fn error_responses() -> Value {
    json!({
        "400": { "$ref": "#/components/responses/Error" },
        "401": { "$ref": "#/components/responses/Error" },
        "403": { "$ref": "#/components/responses/Error" },
        "404": { "$ref": "#/components/responses/Error" },
    })
}

fn ok(schema: &str) -> Value {
    json!({ "description": "OK", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn with_errors(mut responses: Value, extra: Value) -> Value {
    if let (Some(r), Some(e)) = (responses.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    responses
}

fn body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

/// The document.
pub fn spec() -> Value {
    let mut doc = base();
    accounts(&mut doc);
    vendors(&mut doc);
    bulk(&mut doc);
    doc
}

fn base() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pairgate CAS API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Terminals, pairing requests and the audit log. Authenticate with an API token (`pairgate admin token create --operator NAME`, or the web UI): `Authorization: Bearer pgt_…`. A token acts with its operator's role; approve, unpair, new tokens and operator changes also need a current TOTP code of that operator; five wrong codes in 15 minutes lock that operator's step-ups (429).",
        },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "bearer": [] }],
        "paths": paths(),
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": { "Error": { "description": "Refused", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } } },
            "schemas": schemas(),
        },
    })
}

/// Terminals, pairing requests, blocked keys and the audit log.
fn paths() -> Value {
    let string = json!({ "type": "string" });
    let serial = json!([{ "name": "serial", "in": "path", "required": true, "schema": string }]);
    json!({
        "/terminals": {
            "get": {
                "summary": "Search terminals",
                "parameters": [
                    { "name": "q", "in": "query", "schema": string, "description": "text in serial, name or location" },
                    { "name": "state", "in": "query", "schema": { "enum": ["registered", "paired", "unpaired"] } },
                    { "name": "offset", "in": "query", "schema": { "type": "integer" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "maximum": 1000 } },
                ],
                "responses": with_errors(json!({ "200": ok("TerminalList") }), error_responses()),
            },
            "post": {
                "summary": "Register a terminal (operator, admin)",
                "requestBody": body("NewTerminal"),
                "responses": with_errors(json!({ "201": ok("Terminal"), "409": { "$ref": "#/components/responses/Error" } }), error_responses()),
            },
        },
        "/terminals/{serial}": {
            "get": { "summary": "One terminal", "parameters": [{ "name": "serial", "in": "path", "required": true, "schema": string }],
                     "responses": with_errors(json!({ "200": ok("Terminal") }), error_responses()) },
        },
        "/terminals/{serial}/keys": {
            "get": { "summary": "The terminal's key lineage since it last paired, oldest first (empty until its first re-key)", "parameters": serial,
                     "responses": with_errors(json!({ "200": ok("TerminalKeyList") }), error_responses()) },
        },
        "/terminals/{serial}/vpn": {
            "get": { "summary": "The terminal's VPN credentials, newest first: the active one and those revoked (never a private key)", "parameters": serial,
                     "responses": with_errors(json!({ "200": ok("TerminalVpn") }), error_responses()) },
        },
        "/terminals/{serial}/vpn/regenerate": {
            "post": { "summary": "Revoke the VPN credential so the terminal makes a new key and enrols again (operator, admin; fresh TOTP)", "parameters": serial,
                      "requestBody": body("Totp"),
                      "responses": with_errors(json!({ "200": ok("TerminalVpn") }), error_responses()) },
        },
        "/terminals/{serial}/unpair": {
            "post": { "summary": "Unpair (operator, admin; fresh TOTP)", "parameters": [{ "name": "serial", "in": "path", "required": true, "schema": string }],
                      "requestBody": body("Totp"),
                      "responses": with_errors(json!({ "200": ok("Terminal") }), error_responses()) },
        },
        "/terminals/{serial}/suspend": {
            "post": { "summary": "Suspend a paired terminal: the master refuses it and closes its connections; the pairing is kept (operator or admin)", "parameters": serial, "responses": with_errors(json!({ "200": ok("Terminal"), "409": { "$ref": "#/components/responses/Error" } }), error_responses()) }
        },
        "/terminals/{serial}/resume": {
            "post": { "summary": "Resume a suspended terminal or clear a clone suspicion (fresh TOTP)", "parameters": serial, "requestBody": body("Totp"), "responses": with_errors(json!({ "200": ok("Terminal"), "409": { "$ref": "#/components/responses/Error" } }), error_responses()) }
        },
        "/pairing-requests": {
            "get": { "summary": "Pairing requests, newest first, filtered", "parameters": [
                        { "name": "state", "in": "query", "schema": { "enum": ["pending", "approved", "rejected", "expired", "superseded"] } },
                        { "name": "serial_prefix", "in": "query", "schema": string },
                        { "name": "model", "in": "query", "schema": string },
                        { "name": "older_than_secs", "in": "query", "schema": { "type": "integer" } },
                        { "name": "flagged", "in": "query", "schema": { "type": "boolean" } },
                        { "name": "offset", "in": "query", "schema": { "type": "integer" } },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "maximum": 1000 } } ],
                     "responses": with_errors(json!({ "200": ok("PairingRequestList") }), error_responses()) },
        },
        "/pairing-requests/{id}": {
            "get": { "summary": "One pairing request", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": string }],
                     "responses": with_errors(json!({ "200": ok("PairingRequest") }), error_responses()) },
        },
        "/pairing-requests/{id}/approve": {
            "post": { "summary": "Approve by the code on the terminal's screen (operator, admin; fresh TOTP). A wrong code counts; the third ends the request.",
                      "parameters": [{ "name": "id", "in": "path", "required": true, "schema": string }],
                      "requestBody": body("Approval"),
                      "responses": with_errors(json!({ "200": ok("Approved"), "409": { "$ref": "#/components/responses/Error" }, "410": { "$ref": "#/components/responses/Error" } }), error_responses()) },
        },
        "/pairing-requests/{id}/reject": {
            "post": { "summary": "Reject (operator, admin)", "parameters": [{ "name": "id", "in": "path", "required": true, "schema": string }],
                      "responses": with_errors(json!({ "200": ok("PairingRequest") }), error_responses()) },
        },
        "/blocked-keys": {
            "get": { "summary": "Blocked terminal keys, newest first", "responses": with_errors(json!({ "200": ok("BlockedKeyList") }), error_responses()) },
            "post": { "summary": "Block a terminal key: it can no longer ask to pair, its open requests end (operator, admin)",
                      "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/NewBlock" } } } },
                      "responses": with_errors(json!({ "201": ok("BlockedKey"), "409": { "$ref": "#/components/responses/Error" } }), error_responses()) },
        },
        "/blocked-keys/{fingerprint}": {
            "delete": { "summary": "Unblock a terminal key (operator, admin)", "parameters": [{ "name": "fingerprint", "in": "path", "required": true, "schema": string }],
                        "responses": with_errors(json!({ "200": ok("Unblocked") }), error_responses()) },
        },
        "/audit": {
            "get": { "summary": "The audit log, newest first, with the hash chain's state", "parameters": [
                        { "name": "q", "in": "query", "schema": string, "description": "text in actor, action or subject" },
                        { "name": "offset", "in": "query", "schema": { "type": "integer" } },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "maximum": 1000 } } ],
                     "responses": with_errors(json!({ "200": ok("Audit") }), error_responses()) },
        },
    })
}

/// The bodies of [`paths`].
fn schemas() -> Value {
    let list = |name: &str, item: &str| json!({ "type": "object", "properties": { name: { "type": "array", "items": { "$ref": format!("#/components/schemas/{item}") } }, "total": { "type": "integer" } } });
    let string = json!({ "type": "string" });
    let opt_string = json!({ "type": ["string", "null"] });
    json!({
            "Error": { "type": "object", "properties": { "error": { "type": "object", "properties": { "code": { "type": "string", "description": "stable, PG-…" }, "message": string } } } },
            "NewTerminal": { "type": "object", "required": ["serial"], "properties": { "serial": string, "name": string, "location": string, "contact_name": string, "contact_phone": string } },
            "Terminal": { "type": "object", "properties": {
                "serial": string, "name": string, "location": string, "contact_name": string, "contact_phone": string,
                "state": { "enum": ["registered", "paired", "unpaired", "suspended"] }, "paired_fingerprint": opt_string, "paired_at": opt_string,
                "paired_by": opt_string, "last_seen_at": opt_string, "last_seen_address": opt_string, "firmware": opt_string,
                "vpn_profile": string, "created_at": string, "suspended_at": opt_string, "suspended_by": opt_string,
                "suspected_clone": { "type": "boolean" }, "clone_evidence": { "type": ["object", "null"] }, "successor_fingerprint": opt_string } },
            "TerminalList": list("terminals", "Terminal"),
            "BulkResults": { "type": "object", "properties": { "results": { "type": "array", "items": { "type": "object", "properties": {
                "id": string, "status": { "enum": ["approved", "rejected", "refused"] },
                "error": { "type": "object", "properties": { "code": string, "message": string } } } } } } },
            "NewBlock": { "type": "object", "required": ["fingerprint", "reason"], "properties": { "fingerprint": string, "reason": string } },
            "BlockedKey": { "type": "object", "properties": { "fingerprint": string, "reason": string, "blocked_by": string, "blocked_at": string } },
            "BlockedKeyList": list("blocked_keys", "BlockedKey"),
            "TerminalKey": { "type": "object", "properties": { "fingerprint": string, "predecessor": opt_string, "recorded_at": string,
                "activated_at": opt_string, "retired_at": opt_string, "not_after": string } },
            "TerminalKeyList": list("keys", "TerminalKey"),
            "VpnCredential": { "type": "object", "properties": { "type": { "enum": ["openvpn", "wireguard"] }, "public_key": string,
                "certificate_serial": opt_string, "address": string, "address_v6": opt_string, "issued_at": string,
                "revoked_at": opt_string, "revoked_reason": opt_string } },
            "TerminalVpn": list("credentials", "VpnCredential"),
            "Unblocked": { "type": "object", "properties": { "fingerprint": string, "blocked": { "type": "boolean" } } },
            "PairingRequest": { "type": "object", "properties": {
                "id": string, "serial": string, "fingerprint": string, "state": { "enum": ["pending", "approved", "rejected", "expired", "superseded"] },
                "remote_address": string, "model": string, "firmware": string, "flagged": { "type": "boolean" }, "supersedes": opt_string,
                "failed_attempts": { "type": "integer" }, "code_shown": { "type": "boolean" }, "created_at": string, "expires_at": string,
                "decided_at": opt_string, "decided_by": opt_string } },
            "PairingRequestList": { "type": "object", "properties": { "pairing_requests": { "type": "array", "items": { "$ref": "#/components/schemas/PairingRequest" } }, "total": { "type": "integer" } } },
            "Totp": { "type": "object", "required": ["totp"], "properties": { "totp": { "type": "string", "pattern": "^[0-9]{6}$" } } },
            "Approval": { "type": "object", "required": ["code", "totp"], "properties": { "code": { "type": "string", "pattern": "^[0-9]{4}-?[0-9]{4}$" }, "totp": { "type": "string", "pattern": "^[0-9]{6}$" } } },
            "Approved": { "type": "object", "properties": { "status": { "const": "approved" }, "terminal": { "$ref": "#/components/schemas/Terminal" } } },
            "Audit": { "type": "object", "properties": {
                "records": { "type": "array", "items": { "type": "object" } }, "total": { "type": "integer" },
                "chain": { "type": "object", "properties": { "intact": { "type": "boolean" }, "records": { "type": "integer" }, "first_broken": { "type": ["integer", "null"] } } } } },
    })
}

/// The account paths (`api_accounts.rs`) and their schemas.
fn accounts(doc: &mut Value) {
    let name =
        json!([{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }]);
    let change = |summary: &str, schema: &str| {
        json!({ "post": { "summary": summary, "parameters": name, "requestBody": body(schema),
                          "responses": with_errors(json!({ "200": ok("OperatorState"), "409": { "$ref": "#/components/responses/Error" }, "429": { "$ref": "#/components/responses/Error" } }), error_responses()) } })
    };
    let paths = [
        (
            "/tokens",
            json!({ "post": { "summary": "A new API token for the calling operator (fresh TOTP); shown once, expires after the server's api_token_days",
                                      "requestBody": body("NewToken"),
                                      "responses": with_errors(json!({ "201": ok("NewTokenMade"), "429": { "$ref": "#/components/responses/Error" } }), error_responses()) } }),
        ),
        (
            "/operators",
            json!({ "get": { "summary": "Operators with their step-up lock (admin)", "responses": with_errors(json!({ "200": { "description": "OK" } }), error_responses()) } }),
        ),
        (
            "/operators/{name}/disable",
            change(
                "Disable an operator: sessions end, tokens revoked (admin; fresh TOTP)",
                "Totp",
            ),
        ),
        (
            "/operators/{name}/enable",
            change("Enable an operator (admin; fresh TOTP)", "Totp"),
        ),
        (
            "/operators/{name}/role",
            change(
                "Change an operator's role (admin; fresh TOTP)",
                "RoleChange",
            ),
        ),
        (
            "/operators/{name}/reset-2fa",
            change(
                "Reset two-factor authentication: enrol again at next login; sessions end, tokens revoked (admin; fresh TOTP)",
                "Totp",
            ),
        ),
        (
            "/operators/{name}/clear-step-up-lock",
            change(
                "Clear the lock after too many wrong second-factor codes (admin; fresh TOTP)",
                "Totp",
            ),
        ),
    ];
    insert(doc, "/paths", paths);
    let schemas = [
        (
            "NewToken",
            json!({ "type": "object", "required": ["name", "totp"], "properties": { "name": { "type": "string" }, "totp": { "type": "string", "pattern": "^[0-9]{6}$" } } }),
        ),
        (
            "NewTokenMade",
            json!({ "type": "object", "properties": { "id": { "type": "string" }, "operator": { "type": "string" }, "name": { "type": "string" }, "created_at": { "type": "string" }, "expires_at": { "type": "string" }, "token": { "type": "string" } } }),
        ),
        (
            "RoleChange",
            json!({ "type": "object", "required": ["role", "totp"], "properties": { "role": { "enum": ["admin", "operator", "viewer"] }, "totp": { "type": "string", "pattern": "^[0-9]{6}$" } } }),
        ),
        (
            "OperatorState",
            json!({ "type": "object", "properties": { "username": { "type": "string" }, "role": { "type": "string" }, "totp_enabled": { "type": "boolean" }, "disabled": { "type": "boolean" } } }),
        ),
    ];
    insert(doc, "/components/schemas", schemas);
}

/// Adds `entries` to the object at `pointer` in `doc`.
fn insert<const N: usize>(doc: &mut Value, pointer: &str, entries: [(&str, Value); N]) {
    if let Some(object) = doc.pointer_mut(pointer).and_then(Value::as_object_mut) {
        for (key, value) in entries {
            object.insert(key.to_owned(), value);
        }
    }
}

/// Vendor keys and manifests.
fn vendors(doc: &mut Value) {
    let errors = |extra: Value| with_errors(extra, error_responses());
    let paths = [
        (
            "/vendors",
            json!({
                "get": { "summary": "The registered vendor keys", "responses": errors(json!({ "200": ok("VendorList") })) },
                "post": { "summary": "Register a vendor's public key, Ed25519 or P-256 PEM (admin; fresh TOTP)", "requestBody": body("NewVendor"),
                          "responses": errors(json!({ "201": ok("Vendor"), "409": { "$ref": "#/components/responses/Error" } })) },
            }),
        ),
        (
            "/vendors/{name}/remove",
            json!({ "post": { "summary": "Remove a vendor key: its manifests stop vouching (admin; fresh TOTP)",
                              "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                              "requestBody": body("Totp"), "responses": errors(json!({ "204": { "description": "Removed" } })) } }),
        ),
        (
            "/manifests",
            json!({
                "get": { "summary": "The imported manifests, newest first", "responses": errors(json!({ "200": ok("ManifestList") })) },
                "post": { "summary": "Import a signed manifest (docs/protocol.md): the file's exact bytes as the body, the detached signature base64 in the Pairgate-Manifest-Signature header; 201 imported, 200 imported before (nothing changed); a bad signature or a conflicting key imports nothing",
                          "parameters": [{ "name": "Pairgate-Manifest-Signature", "in": "header", "required": true, "schema": { "type": "string", "contentEncoding": "base64" } }],
                          "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
                          "responses": errors(json!({ "200": ok("ManifestImport"), "201": ok("ManifestImport"), "409": { "$ref": "#/components/responses/Error" } })) },
            }),
        ),
    ];
    insert(doc, "/paths", paths);
    let text = json!({ "type": "string" });
    let schemas = [
        (
            "NewVendor",
            json!({ "type": "object", "required": ["name", "public_key", "totp"], "properties": { "name": text, "public_key": text, "totp": { "type": "string", "pattern": "^[0-9]{6}$" } } }),
        ),
        (
            "Vendor",
            json!({ "type": "object", "properties": { "name": text, "algorithm": { "enum": ["ed25519", "p256"] }, "key_pin": text, "added_at": text, "added_by": text } }),
        ),
        (
            "VendorList",
            json!({ "type": "object", "properties": { "vendors": { "type": "array", "items": { "$ref": "#/components/schemas/Vendor" } } } }),
        ),
        (
            "ManifestList",
            json!({ "type": "object", "properties": { "manifests": { "type": "array", "items": { "type": "object", "properties": { "id": text, "vendor": text, "issued_at": text, "terminals": { "type": "integer" }, "imported_at": text, "imported_by": text } } } } }),
        ),
        (
            "ManifestImport",
            json!({ "type": "object", "properties": { "manifest_id": text, "terminals": { "type": "integer" }, "registered": { "type": "integer" }, "unchanged": { "type": "boolean" } } }),
        ),
    ];
    insert(doc, "/components/schemas", schemas);
}

/// Bulk decisions and the export.
fn bulk(doc: &mut Value) {
    let string = json!({ "type": "string" });
    let paths = json!({
        "/pairing-requests/bulk-approve": {
            "post": { "summary": "Approve up to 500 requests, each by the code its terminal shows, under one fresh TOTP (operator, admin); one outcome per request",
                      "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["approvals", "totp"],
                          "properties": { "approvals": { "type": "array", "items": { "type": "object", "required": ["id", "code"], "properties": { "id": string, "code": string } } }, "totp": string } } } } },
                      "responses": with_errors(json!({ "200": ok("BulkResults") }), error_responses()) },
        },
        "/pairing-requests/bulk-reject": {
            "post": { "summary": "Reject up to 500 requests (operator, admin); one outcome per request",
                      "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["ids"], "properties": { "ids": { "type": "array", "items": string } } } } } },
                      "responses": with_errors(json!({ "200": ok("BulkResults") }), error_responses()) },
        },
        "/export/terminals": {
            "get": { "summary": "Every terminal matching q and state, as CSV (default) or JSON", "parameters": [
                        { "name": "format", "in": "query", "schema": { "enum": ["csv", "json"] } },
                        { "name": "state", "in": "query", "schema": { "enum": ["registered", "paired", "unpaired"] } },
                        { "name": "q", "in": "query", "schema": string } ],
                     "responses": with_errors(json!({ "200": { "description": "text/csv, or a JSON array of terminals" } }), error_responses()) },
        }
    });
    if let (Some(all), Some(more)) = (
        doc.get_mut("paths").and_then(Value::as_object_mut),
        paths.as_object(),
    ) {
        all.extend(more.clone());
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<Value> {
    Json(spec())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_api_route_is_documented() {
        let spec = super::spec();
        let source = [
            include_str!("api.rs"),
            include_str!("api_accounts.rs"),
            include_str!("api_vendors.rs"),
            include_str!("api_bulk.rs"),
        ]
        .concat();
        let mut routes = 0;
        // `.route("PATH", …)`, the path on the same line or the next.
        for call in source.split(".route(").skip(1) {
            let Some(rest) = call.trim_start().strip_prefix('"') else {
                continue;
            };
            let path = rest.split('"').next().unwrap_or_default();
            if path == "/openapi.json" {
                continue;
            }
            routes += 1;
            assert!(
                spec["paths"].get(path).is_some(),
                "{path} is not in the OpenAPI document"
            );
        }
        assert_eq!(routes, 28);
    }
}
