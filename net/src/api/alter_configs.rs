//! AlterConfigs v0-v2 (the legacy, non-incremental form): a topic's configs
//! become exactly the ones given; every key left out goes back to its default.
//! Shares validation and the shard-0 path with IncrementalAlterConfigs.

use std::rc::Rc;

use sluice_codec::alter_configs_request::AlterConfigsRequest;
use sluice_codec::alter_configs_response::{AlterConfigsResourceResponse, AlterConfigsResponse};

use crate::api::incremental_alter_configs::{alter, error_parts, ConfigChange, ResourceChange};
use crate::state::ShardState;

pub async fn handle(state: &Rc<ShardState>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let resources: Vec<ResourceChange> = req
        .resources
        .into_iter()
        .map(|r| ResourceChange {
            resource_type: r.resource_type,
            name: r.resource_name,
            change: ConfigChange::Replace(
                r.configs.into_iter().map(|c| (c.name, c.value)).collect(),
            ),
        })
        .collect();
    let asked: Vec<(i8, String)> = resources
        .iter()
        .map(|r| (r.resource_type, r.name.clone()))
        .collect();
    let results = alter(state, resources, req.validate_only).await;
    AlterConfigsResponse {
        responses: asked
            .into_iter()
            .zip(results)
            .map(|((resource_type, resource_name), r)| {
                let (error_code, error_message) = error_parts(r);
                AlterConfigsResourceResponse {
                    error_code,
                    error_message,
                    resource_type,
                    resource_name,
                }
            })
            .collect(),
        ..Default::default()
    }
}
