//! InitProducerId v0-v5, for idempotent producers. Transactions are not
//! supported: a transactional id gets an error the client reports at once.

use std::rc::Rc;

use shard_router::ShardId;
use sluice_codec::init_producer_id_request::InitProducerIdRequest;
use sluice_codec::init_producer_id_response::InitProducerIdResponse;
use sluice_codec::ErrorCode;

use crate::state::ShardState;

pub async fn handle(state: &Rc<ShardState>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let fail = |code: ErrorCode| InitProducerIdResponse {
        error_code: code.0,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    if req.transactional_id.is_some() {
        return fail(ErrorCode::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    // A producer re-initialising after a fatal error gets a fresh id: sequence
    // state is per (id, epoch), so a new id is always safe.
    let id = state
        .router
        .call(ShardId(0), |s: &Rc<ShardState>| {
            let s = s.clone();
            Box::pin(async move { s.allocate_producer_id().await.map_err(|e| e.to_string()) })
        })
        .await;
    match id {
        Ok(Ok(producer_id)) => InitProducerIdResponse {
            producer_id,
            producer_epoch: 0,
            ..Default::default()
        },
        Ok(Err(e)) => {
            tracing::error!(error = %e, "producer id allocation failed");
            fail(ErrorCode::KAFKA_STORAGE_ERROR)
        }
        Err(e) => {
            tracing::error!(error = %e, "producer id allocation failed");
            fail(ErrorCode::UNKNOWN_SERVER_ERROR)
        }
    }
}
