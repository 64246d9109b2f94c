//! Regression: at start-up a shard could replay `__consumer_offsets` before
//! the new topic table had its logs open (the table was installed first), so
//! some partitions failed to load and their groups answered
//! COORDINATOR_LOAD_IN_PROGRESS until the next restart.

mod common;

use std::time::{Duration, Instant};

use common::Broker;
use sluice_codec::describe_groups_request::DescribeGroupsRequest;
use sluice_codec::{ErrorCode, RequestBody, ResponseBody};

#[test]
fn every_group_partition_loads_on_a_fresh_broker() {
    for _ in 0..3 {
        let mut broker = Broker::start(&["--shards", "2", "--offsets-topic-partitions", "400"]);
        let mut client = broker.connect();
        // 2,000 names cover nearly all of the 400 offsets partitions; many partitions widen the window the race needed.
        let groups: Vec<String> = (0..2000).map(|i| format!("group-{i}")).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let loading = loop {
            let body = RequestBody::DescribeGroups(DescribeGroupsRequest {
                groups: groups.clone(),
                include_authorized_operations: false,
            });
            let ResponseBody::DescribeGroups(r) = client.call(5, &body) else {
                panic!("not a DescribeGroups response")
            };
            assert_eq!(r.groups.len(), groups.len());
            let loading: Vec<String> = r
                .groups
                .iter()
                .filter(|g| g.error_code == ErrorCode::COORDINATOR_LOAD_IN_PROGRESS.0)
                .map(|g| g.group_id.clone())
                .collect();
            if loading.is_empty() || Instant::now() > deadline {
                break loading;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            loading.is_empty(),
            "groups still loading after 10 s: {loading:?}\n{}",
            broker.log()
        );
        assert!(!broker.log().contains("cannot load"), "{}", broker.log());
        broker.assert_serving();
    }
}
