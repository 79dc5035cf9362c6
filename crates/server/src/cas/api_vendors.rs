//! The CAS API for vendor keys and manifests: any token lists them; an
//! admin with a fresh TOTP adds or removes a vendor key; an operator
//! imports a manifest, sent as the request body byte for byte (its
//! signature covers those bytes) with the detached signature, base64, in
//! the `Pairgate-Manifest-Signature` header.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use pairgate_pki::VendorKey;
use pairgate_pki::manifest::MAX_MANIFEST_BYTES;
use pairgate_proto::ErrorCode;
use pairgate_proto::cas::TotpBody;
use pairgate_proto::manifests::{ManifestList, SIGNATURE_HEADER, VendorBody, VendorList};

use super::Cas;
use super::api::{bearer, store};
use super::api_accounts::admin;
use crate::error::ApiError;
use crate::http::{BodyLimit, JsonBody, JsonPath, read_body};

/// How long a manifest upload may take.
const UPLOAD_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// The vendor and manifest routes, merged into `/api/v1`.
pub fn router() -> Router<Cas> {
    Router::new()
        .route("/vendors", get(vendors).post(add_vendor))
        .route("/vendors/{name}/remove", post(remove_vendor))
        .route("/manifests", get(manifests).post(import_manifest))
}

async fn vendors(State(cas): State<Cas>, headers: HeaderMap) -> Response {
    tri!(bearer(&cas, &headers).await);
    let vendors = tri!(store(cas.store.vendors().await));
    Json(VendorList {
        vendors: vendors.iter().map(pairgate_store::Vendor::view).collect(),
    })
    .into_response()
}

async fn add_vendor(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<VendorBody>,
) -> Response {
    let key = match VendorKey::from_pem(body.public_key.as_bytes()) {
        Ok(key) => key,
        Err(e) => return ApiError::bad_request(ErrorCode::Invalid, e.to_string()).into_response(),
    };
    let by = tri!(admin(&cas, &headers, &body.totp).await);
    let vendor = tri!(store(
        cas.store
            .add_vendor(&body.name, &key, &by, cas.clock.now())
            .await
    ));
    (StatusCode::CREATED, Json(vendor.view())).into_response()
}

async fn remove_vendor(
    State(cas): State<Cas>,
    headers: HeaderMap,
    JsonPath(name): JsonPath<String>,
    JsonBody(body): JsonBody<TotpBody>,
) -> Response {
    let by = tri!(admin(&cas, &headers, &body.totp).await);
    tri!(store(
        cas.store.remove_vendor(&name, &by, cas.clock.now()).await
    ));
    StatusCode::NO_CONTENT.into_response()
}

async fn manifests(State(cas): State<Cas>, headers: HeaderMap) -> Response {
    tri!(bearer(&cas, &headers).await);
    let manifests = tri!(store(cas.store.manifests().await));
    Json(ManifestList {
        manifests: manifests
            .iter()
            .map(pairgate_store::ManifestRecord::view)
            .collect(),
    })
    .into_response()
}

async fn import_manifest(State(cas): State<Cas>, headers: HeaderMap, body: Body) -> Response {
    let op = tri!(bearer(&cas, &headers).await);
    let by = tri!(store(op.changer()));
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        });
    let Some(signature) = signature else {
        return ApiError::bad_request(
            ErrorCode::Invalid,
            format!(
                "send the manifest's detached signature, base64, in the {SIGNATURE_HEADER} header"
            ),
        )
        .into_response();
    };
    let file = match read_body(body, BodyLimit(MAX_MANIFEST_BYTES, UPLOAD_TIME)).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    let imported = tri!(store(
        cas.store
            .import_signed_manifest(&file, &signature, &by, cas.clock.now())
            .await
    ));
    let status = if imported.unchanged {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, Json(imported.view())).into_response()
}
