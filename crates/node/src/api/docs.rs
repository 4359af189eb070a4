//! The OpenAPI document of the API, served at `GET /openapi.json`.

use utoipa::OpenApi;

use super::error::ErrorBody;
use super::handlers;
use super::types::{
    BatchItem, BlockResponse, BlockTx, EventsResponse, HeaderEntry, HeadersResponse, Mode,
    NonceResponse, StateResponse, StatusResponse, SubmitBatchRequest, SubmitBatchResponse,
    SubmitTxHex, SubmitTxResponse, SyncStatus,
};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "TrustEdge node API",
        description = "Submit transactions, read blocks, state, events and proofs of a TrustEdge \
                       permissioned ledger node. Every error is JSON {\"code\", \"message\"}."
    ),
    paths(
        handlers::submit_tx,
        handlers::submit_batch,
        handlers::tx_status,
        handlers::tx_proof,
        handlers::latest_block,
        handlers::block_by_height,
        handlers::block_by_hash,
        handlers::block_raw,
        handlers::headers,
        handlers::status,
        handlers::state,
        handlers::query,
        handlers::events,
        handlers::orgs,
        handlers::org,
        handlers::devices,
        handlers::device,
        handlers::nonce,
        handlers::genesis,
        super::edge::record_proof,
        super::tracing::notices,
        super::tracing::export,
        super::contacts::chains,
        super::origin::origin,
        super::aerosol::rooms,
        handlers::metrics,
        handlers::openapi,
    ),
    components(schemas(
        ErrorBody,
        SubmitTxHex,
        SubmitTxResponse,
        SubmitBatchRequest,
        SubmitBatchResponse,
        BatchItem,
        StatusResponse,
        SyncStatus,
        Mode,
        BlockResponse,
        BlockTx,
        HeaderEntry,
        HeadersResponse,
        StateResponse,
        EventsResponse,
        NonceResponse,
        super::edge::EdgeRecordProofResponse,
        super::tracing::TracingNotice,
        super::tracing::TracingNoticesResponse,
        super::contacts::ContactChainsResponse,
        super::contacts::ContactChainResponse,
        super::contacts::ContactHopResponse,
        crate::origin_service::OriginView,
        crate::origin_service::OriginCluster,
        crate::origin_service::OriginCandidateView,
        crate::origin_service::ExplanationView,
        crate::origin_service::ContactEvidenceView,
        crate::origin_service::RoomEvidenceView,
        crate::origin_service::TreeEdgeView,
        crate::aerosol_worker::AerosolRoomsResponse,
        crate::aerosol_worker::RoomRiskView,
        crate::aerosol_worker::RoomWindowView,
    )),
    tags(
        (name = "transactions", description = "Submitting transactions and following them"),
        (name = "blocks", description = "Blocks, headers and raw blocks for followers"),
        (name = "proofs", description = "Proofs to verify offline"),
        (name = "state", description = "Module queries, events, organisations and devices"),
        (name = "node", description = "Status, genesis, metrics, this document"),
        (name = "tracing", description = "Exposure notices and GAEN key exports for devices"),
        (name = "contacts", description = "Contact chains among confirmed cases (cloud nodes)"),
        (name = "origin", description = "Outbreak-origin inference among confirmed cases (cloud nodes)"),
        (name = "aerosol", description = "Aerosol risk of the edge's own rooms per window (edge nodes, local data)"),
    )
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented = Vec::new();
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                documented.push((method.clone(), path.clone()));
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = crate::api::ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
    }
}
