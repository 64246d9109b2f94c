//! Committed offsets expire as in Kafka (KIP-496), are removed with
//! tombstones, and stay removed after a restart:
//! - an Empty group's offsets, `offsets_retention_minutes` after the commit;
//! - a live consumer group keeps the offsets of the topic it subscribes to,
//!   and loses those of a topic it does not;
//! - offsets of a deleted topic go at the next check;
//! - an explicit retention time (OffsetCommit v2) is honoured.
//!
//! The smallest retention is one minute, so this test runs a little over one.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Broker, Client};
use sluice_codec::delete_topics_request::DeleteTopicsRequest;
use sluice_codec::heartbeat_request::HeartbeatRequest;
use sluice_codec::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use sluice_codec::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use sluice_codec::offset_fetch_request::{OffsetFetchRequest, OffsetFetchRequestTopic};
use sluice_codec::sync_group_request::{SyncGroupRequest, SyncGroupRequestAssignment};
use sluice_codec::{ErrorCode, RequestBody, ResponseBody};

const SESSION_MS: i32 = 10_000;
/// How long the test waits for the one-minute retention to act.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(120);

/// ConsumerProtocolSubscription v0: the topics, no user data.
fn subscription(topics: &[&str]) -> Bytes {
    let mut m = vec![0, 0];
    m.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        m.extend_from_slice(&(t.len() as i16).to_be_bytes());
        m.extend_from_slice(t.as_bytes());
    }
    m.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(m)
}

/// Commits `offset` for `topic` partition 0: with `generation` -1 and no
/// member (a simple commit) unless given; v2 carries `retention_ms`.
fn commit(
    c: &mut Client,
    group: &str,
    member: (&str, i32),
    topic: &str,
    offset: i64,
    retention_ms: Option<i64>,
) {
    let version = if retention_ms.is_some() { 2 } else { 8 };
    let body = RequestBody::OffsetCommit(OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: member.1,
        member_id: member.0.into(),
        retention_time_ms: retention_ms.unwrap_or(-1),
        topics: vec![OffsetCommitRequestTopic {
            name: topic.into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: offset,
                committed_leader_epoch: -1,
                committed_metadata: Some(String::new()),
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let ResponseBody::OffsetCommit(r) = c.call(version, &body) else {
        panic!("not an OffsetCommit response")
    };
    let code = r.topics[0].partitions[0].error_code;
    assert_eq!(code, 0, "commit {group} {topic}: {:?}", ErrorCode(code));
}

/// The committed offset of `topic` partition 0 (-1: none), once the group's
/// partition is loaded.
fn committed(c: &mut Client, group: &str, topic: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = RequestBody::OffsetFetch(OffsetFetchRequest {
            group_id: group.into(),
            topics: Some(vec![OffsetFetchRequestTopic {
                name: topic.into(),
                partition_indexes: vec![0],
            }]),
            ..Default::default()
        });
        let ResponseBody::OffsetFetch(r) = c.call(7, &body) else {
            panic!("not an OffsetFetch response")
        };
        if r.error_code == ErrorCode::COORDINATOR_LOAD_IN_PROGRESS.0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert_eq!(r.error_code, 0, "OffsetFetch {group}");
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "OffsetFetch {group} {topic}");
        return p.committed_offset;
    }
}

/// A one-member consumer group subscribed to `topics`: (member id, generation).
fn join(c: &mut Client, group: &str, topics: &[&str]) -> (String, i32) {
    let mut member_id = String::new();
    let joined = loop {
        let body = RequestBody::JoinGroup(JoinGroupRequest {
            group_id: group.into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: SESSION_MS,
            member_id: member_id.clone(),
            protocol_type: "consumer".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "range".into(),
                metadata: subscription(topics),
            }],
            ..Default::default()
        });
        let ResponseBody::JoinGroup(r) = c.call(5, &body) else {
            panic!("not a JoinGroup response")
        };
        if r.error_code == ErrorCode::MEMBER_ID_REQUIRED.0 && member_id.is_empty() {
            member_id = r.member_id;
            continue;
        }
        assert_eq!(r.error_code, 0, "JoinGroup {:?}", ErrorCode(r.error_code));
        break r;
    };
    let body = RequestBody::SyncGroup(SyncGroupRequest {
        group_id: group.into(),
        generation_id: joined.generation_id,
        member_id: joined.member_id.clone(),
        assignments: vec![SyncGroupRequestAssignment {
            member_id: joined.member_id.clone(),
            assignment: Bytes::new(),
        }],
        ..Default::default()
    });
    let ResponseBody::SyncGroup(r) = c.call(3, &body) else {
        panic!("not a SyncGroup response")
    };
    assert_eq!(r.error_code, 0, "SyncGroup {:?}", ErrorCode(r.error_code));
    (joined.member_id, joined.generation_id)
}

fn heartbeat(c: &mut Client, group: &str, member: &(String, i32)) {
    let body = RequestBody::Heartbeat(HeartbeatRequest {
        group_id: group.into(),
        generation_id: member.1,
        member_id: member.0.clone(),
        group_instance_id: None,
    });
    let ResponseBody::Heartbeat(r) = c.call(3, &body) else {
        panic!("not a Heartbeat response")
    };
    assert_eq!(r.error_code, 0, "Heartbeat {:?}", ErrorCode(r.error_code));
}

/// Heartbeats `live` until `done` holds, failing after `limit`.
fn wait_until(
    c: &mut Client,
    live: &(String, i32),
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&mut Client) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        heartbeat(c, "live", live);
        if done(c) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn offsets_expire_by_the_retention_rules_and_stay_gone_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--offsets-retention-minutes",
        "1",
        "--offsets-retention-check-interval-ms",
        "200",
        "--group-initial-rebalance-delay-ms",
        "0",
        "--offsets-topic-partitions",
        "4",
    ];
    let mut broker = Broker::start_in(dir.path(), &flags);
    let mut c = broker.connect();
    for t in ["t", "u", "gone"] {
        c.create_topic(t, 1, &[]);
    }
    let simple = ("", -1);

    let live = join(&mut c, "live", &["t"]);
    commit(&mut c, "live", (&live.0, live.1), "t", 7, None);
    commit(&mut c, "live", (&live.0, live.1), "u", 3, None);
    commit(&mut c, "empty", simple, "t", 5, None);
    commit(&mut c, "deleted", simple, "gone", 9, None);
    commit(&mut c, "explicit", simple, "t", 11, Some(1_000));
    assert_eq!(committed(&mut c, "deleted", "gone"), 9);

    let body = RequestBody::DeleteTopics(DeleteTopicsRequest {
        topic_names: vec!["gone".into()],
        timeout_ms: 10_000,
        ..Default::default()
    });
    let ResponseBody::DeleteTopics(r) = c.call(5, &body) else {
        panic!("not a DeleteTopics response")
    };
    assert_eq!(r.responses[0].error_code, 0);

    // Well before the minute: a deleted topic's offsets and an explicit
    // retention time.
    wait_until(
        &mut c,
        &live,
        Duration::from_secs(20),
        "deleted topic's offsets removed",
        |c| committed(c, "deleted", "gone") == -1,
    );
    wait_until(
        &mut c,
        &live,
        Duration::from_secs(20),
        "explicit retention honoured",
        |c| committed(c, "explicit", "t") == -1,
    );
    assert_eq!(committed(&mut c, "empty", "t"), 5, "not a minute yet");
    assert_eq!(committed(&mut c, "live", "u"), 3, "not a minute yet");

    // After the minute: the empty group's offsets and the live group's
    // unsubscribed topic go; its subscribed topic stays.
    wait_until(
        &mut c,
        &live,
        EXPIRY_DEADLINE,
        "the empty group's offsets expired",
        |c| committed(c, "empty", "t") == -1,
    );
    wait_until(
        &mut c,
        &live,
        Duration::from_secs(10),
        "the unsubscribed topic's offsets expired",
        |c| committed(c, "live", "u") == -1,
    );
    assert_eq!(
        committed(&mut c, "live", "t"),
        7,
        "a live group keeps its offsets"
    );

    // Tombstones: a restart replays __consumer_offsets to the same answer.
    drop(c);
    let status = broker.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    let broker = Broker::start_in(dir.path(), &flags);
    let mut c = broker.connect();
    assert_eq!(committed(&mut c, "empty", "t"), -1, "{}", broker.log());
    assert_eq!(committed(&mut c, "live", "u"), -1);
    assert_eq!(committed(&mut c, "deleted", "gone"), -1);
    assert_eq!(committed(&mut c, "explicit", "t"), -1);
    assert_eq!(committed(&mut c, "live", "t"), 7);
}
