//! Three `sluice serve` processes on 127.0.0.1, .2 and .3 form a cluster
//! through their controllers: each registers, and DescribeCluster and
//! Metadata from any node list all three brokers. A topic with replication
//! factor 3 is produced with acks=all on its leader and copied to both
//! followers.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::*;
use common::{
    batch, free_port, produce_request, records_of, single_produce_answer, FETCH_VERSION,
    PRODUCE_VERSION,
};
use sluice_codec::delete_topics_request::DeleteTopicsRequest;
use sluice_codec::describe_quorum_request::{
    DescribeQuorumRequest, PartitionData as QuorumPartition, TopicData as QuorumTopic,
};
use sluice_codec::describe_quorum_response::PartitionData as QuorumState;
use sluice_codec::elect_leaders_request::{
    ElectLeadersRequest, TopicPartitions as ElectTopicPartitions,
};
use sluice_codec::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use sluice_codec::init_producer_id_request::InitProducerIdRequest;
use sluice_codec::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use sluice_codec::metadata_request::MetadataRequest;
use sluice_codec::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use sluice_codec::{RequestBody, ResponseBody};
use sluice_records::{BatchBuilder, Compression};

fn metadata_brokers(addr: SocketAddr) -> Vec<(i32, String, i32)> {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::Metadata(MetadataRequest {
        topics: Some(Vec::new()),
        ..Default::default()
    });
    let ResponseBody::Metadata(r) = c.call(12, &body) else {
        panic!("Metadata answered with another response");
    };
    let mut brokers: Vec<_> = r
        .brokers
        .iter()
        .map(|b| (b.node_id, b.host.clone(), b.port))
        .collect();
    brokers.sort();
    brokers
}

#[test]
fn three_nodes_register_and_every_node_lists_all_brokers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_nodes, kafka, want, controllers) = form_cluster(dir.path(), &[]);
    assert!((1..=3).contains(&controllers[0]), "{controllers:?}");
    let metadata_want: Vec<(i32, String, i32)> = want
        .iter()
        .map(|(id, h, p, _)| (*id, h.clone(), *p))
        .collect();
    for addr in &kafka {
        assert_eq!(
            metadata_brokers(*addr),
            metadata_want,
            "Metadata from {addr}"
        );
    }

    // DescribeQuorum: every node names the same leader and the three voters,
    // and answers with the leader's view: how far each voter's log reaches
    // (a node that does not lead asks the leader).
    let until = Instant::now() + FORM_TIMEOUT;
    loop {
        let answers: Vec<_> = kafka.iter().map(|a| describe_quorum(*a)).collect();
        let leaders: Vec<i32> = answers.iter().map(|q| q.leader_id).collect();
        let agreed = leaders.iter().all(|l| *l == leaders[0] && *l > 0);
        let known = answers
            .iter()
            .all(|q| q.current_voters.iter().all(|v| v.log_end_offset >= 0));
        if agreed && known {
            for q in &answers {
                let mut voters: Vec<i32> = q.current_voters.iter().map(|v| v.replica_id).collect();
                voters.sort();
                assert_eq!(voters, vec![1, 2, 3]);
                assert!(q.leader_epoch > 0);
            }
            let from_leader = &answers[leaders[0] as usize - 1];
            assert!(
                from_leader
                    .current_voters
                    .iter()
                    .all(|v| v.log_end_offset >= 0),
                "{from_leader:?}"
            );
            assert!(from_leader.high_watermark > 0, "{from_leader:?}");
            break;
        }
        assert!(
            Instant::now() < until,
            "DescribeQuorum never agreed on a leader and every voter's log end: {answers:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// DescribeQuorum v2 of `__cluster_metadata` partition 0 from `addr`.
fn describe_quorum(addr: SocketAddr) -> QuorumState {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::DescribeQuorum(DescribeQuorumRequest {
        topics: vec![QuorumTopic {
            topic_name: "__cluster_metadata".into(),
            partitions: vec![QuorumPartition { partition_index: 0 }],
        }],
    });
    let ResponseBody::DescribeQuorum(r) = c.call(2, &body) else {
        panic!("DescribeQuorum answered with another response");
    };
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!(r.nodes.len(), 3, "{r:?}");
    let p = r.topics[0].partitions[0].clone();
    assert_eq!(p.error_code, 0, "{p:?}");
    p
}

#[test]
fn a_killed_node_is_fenced_and_unfenced_when_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, kafka, _, _) = form_cluster(dir.path(), &FAST_LIVENESS);
    let listed = |addr: SocketAddr| describe_at(addr, 2, true).map(|(b, _)| b);
    let fenced_ids = |b: &[Listed]| -> Vec<i32> { b.iter().filter(|l| l.3).map(|l| l.0).collect() };
    wait_until("all three brokers registered and live", &nodes, || {
        listed(kafka[0]).is_some_and(|b| b.len() == 3 && fenced_ids(&b).is_empty())
    });

    // SIGKILL node 3: no goodbye, its heartbeats just stop.
    nodes[2].child.kill().expect("kill node 3");
    nodes[2].child.wait().expect("reap node 3");
    wait_until("node 3 fenced", &nodes[..2], || {
        listed(kafka[0]).is_some_and(|b| fenced_ids(&b) == vec![3])
    });
    let live: Vec<i32> = metadata_brokers(kafka[1]).iter().map(|b| b.0).collect();
    assert_eq!(live, vec![1, 2], "Metadata lists live brokers only");
    let v0: Vec<i32> = describe(kafka[1])
        .expect("describe")
        .0
        .iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(
        v0,
        vec![1, 2],
        "DescribeCluster without include_fenced_brokers"
    );

    // It comes back on the same data dir: registered again, live again.
    nodes[2] = nodes[2].restart();
    wait_until("node 3 live again", &nodes, || {
        listed(kafka[0]).is_some_and(|b| b.len() == 3 && fenced_ids(&b).is_empty())
    });
}

#[test]
fn a_replication_factor_3_topic_is_produced_with_acks_all_and_copied_to_every_follower() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, kafka, _, _) = form_cluster(dir.path(), &[]);
    let topic = "replicated";
    let created = create_replicated(kafka[0], topic, 3);
    assert_eq!(
        created.error_code,
        0,
        "{:?}\n{}",
        created.error_message,
        logs(&nodes)
    );
    assert_eq!(created.replication_factor, 3);

    // Every node lists the placement; the leader is one of the three, and the
    // ISR is all of them.
    let until = Instant::now() + FORM_TIMEOUT;
    let leader = loop {
        let states: Vec<_> = kafka.iter().map(|a| partition_state(*a, topic)).collect();
        if let Some(Some((leader, replicas, isr))) = states.first() {
            if states.iter().all(|s| s.as_ref() == states[0].as_ref()) {
                let mut replicas = replicas.clone();
                replicas.sort_unstable();
                assert_eq!(replicas, [1, 2, 3]);
                assert_eq!(isr, &[1, 2, 3]);
                break *leader;
            }
        }
        assert!(
            Instant::now() < until,
            "no leader listed:\n{}",
            logs(&nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let leader_addr = kafka[usize::try_from(leader - 1).expect("node id")];
    let follower_ids: Vec<i32> = (1..=3).filter(|&n| n != leader).collect();

    // acks=all: each answer comes once every in-sync replica has the batch.
    // The first produces may meet a leader whose followers have not
    // subscribed yet; they wait, bounded by the client timeout.
    let mut produced = Vec::new();
    for i in 0..20u32 {
        let key = format!("k{i}");
        let value = format!("v{i}");
        let answer = produce_to(
            leader_addr,
            topic,
            batch(&[(key.as_bytes(), value.as_bytes())]),
        );
        assert_eq!(
            answer.error_code,
            0,
            "produce {i}: {:?}\n{}",
            answer.error_message,
            logs(&nodes)
        );
        assert_eq!(answer.base_offset, i64::from(i));
        produced.push((i64::from(i), key.into_bytes(), value.into_bytes()));
    }

    // Consumed back from the leader: all of it, and the latest offset is the
    // high watermark (everything, as acks=all waited for it).
    let mut c = client(leader_addr).expect("connect");
    let fetched = c.fetch(topic, 0, 0);
    assert_eq!(fetched.error_code, 0);
    assert_eq!(fetched.high_watermark, 20);
    assert_eq!(records_of(&fetched.records), produced);
    assert_eq!(c.latest_offset(topic, 0), 20);

    // The followers hold the same batches, byte for byte (leader epoch
    // included), on disk: each acknowledged its durable end before the
    // produces above were answered.
    let leader_bytes = segment_bytes(dir.path(), leader, topic);
    let stored: usize = fetched.records.as_ref().map_or(0, |r| r.contiguous().len());
    assert!(stored > 0 && leader_bytes.len() >= stored);
    for &f in &follower_ids {
        let bytes = segment_bytes(dir.path(), f, topic);
        assert!(
            bytes.len() >= stored && bytes[..stored] == leader_bytes[..stored],
            "follower {f} differs from the leader {leader}"
        );
    }

    // A follower neither takes produces nor serves fetches.
    let follower_addr = kafka[usize::try_from(follower_ids[0] - 1).expect("node id")];
    let refused = produce_to(follower_addr, topic, batch(&[(b"k", b"v")]));
    assert_eq!(refused.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    let mut c = client(follower_addr).expect("connect");
    assert_eq!(c.fetch(topic, 0, 0).error_code, 6);
    // KIP-951: the refusal names the leader and where it listens (Produce
    // v10+, Fetch v12+ for the leader, v16+ for its endpoint).
    let leader_addr = kafka[usize::try_from(leader - 1).expect("node id")];
    let epoch = metadata_leader_epoch(leader_addr, topic);
    match c.call(12, &produce_request(topic, 0, batch(&[(b"k", b"v")]))) {
        ResponseBody::Produce(r) => {
            let endpoints: Vec<_> = r
                .node_endpoints
                .iter()
                .map(|e| (e.node_id, e.port))
                .collect();
            let p = single_produce_answer(r, topic, 0);
            assert_eq!(p.error_code, 6);
            assert_eq!(
                (p.current_leader.leader_id, p.current_leader.leader_epoch),
                (leader, epoch)
            );
            assert_eq!(endpoints, [(leader, i32::from(leader_addr.port()))]);
        }
        other => panic!("not a Produce response: {other:?}"),
    }
    let fetch = RequestBody::Fetch(FetchRequest {
        max_wait_ms: 0,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    match c.call(12, &fetch) {
        ResponseBody::Fetch(mut r) => {
            let p = r.responses.remove(0).partitions.remove(0);
            assert_eq!(p.error_code, 6);
            assert_eq!(
                (p.current_leader.leader_id, p.current_leader.leader_epoch),
                (leader, epoch)
            );
        }
        other => panic!("not a Fetch response: {other:?}"),
    }

    // Deleted through a follower: the controller drops it, and every node
    // its log.
    let mut c = client(follower_addr).expect("connect");
    c.set_timeout(Duration::from_secs(20));
    let body = RequestBody::DeleteTopics(DeleteTopicsRequest {
        topic_names: vec![topic.into()],
        timeout_ms: 15_000,
        ..Default::default()
    });
    match c.call(5, &body) {
        ResponseBody::DeleteTopics(r) => {
            assert_eq!(r.responses.len(), 1);
            assert_eq!(
                r.responses[0].error_code, 0,
                "{:?}",
                r.responses[0].error_message
            );
        }
        other => panic!("not a DeleteTopics response: {other:?}"),
    }
    let until = Instant::now() + FORM_TIMEOUT;
    for id in 1..=3 {
        let partition_dir = dir
            .path()
            .join(format!("n{id}"))
            .join("data")
            .join(format!("{topic}-0"));
        // The log goes first, then the topic from the node's table.
        while partition_dir.exists() || partition_state(kafka[id - 1], topic).is_some() {
            assert!(
                Instant::now() < until,
                "node {id} kept the deleted topic's log:\n{}",
                logs(&nodes)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // SIGTERM stops every node cleanly, replication streams and all.
    let mut nodes = nodes;
    for n in nodes.iter_mut() {
        let pid = n.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success());
    }
    let until = Instant::now() + FORM_TIMEOUT;
    for i in 0..nodes.len() {
        let status = loop {
            if let Some(status) = nodes[i].child.try_wait().expect("poll") {
                break status;
            }
            assert!(
                Instant::now() < until,
                "node {} did not stop after SIGTERM:\n{}",
                i + 1,
                logs(&nodes)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "node {} exited with {status}:\n{}",
            i + 1,
            logs(&nodes)
        );
    }
}

#[test]
fn a_replication_port_in_use_by_another_broker_fails_the_start() {
    // Two single-voter clusters on one host given the same replication
    // port: the second must refuse to start, not share the port
    // (SO_REUSEPORT would let the kernel spread followers over both).
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let port_arg = port.to_string();
    let extra = ["--replication-port", port_arg.as_str()];
    let first_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let first = start(
        dir.path(),
        1,
        &format!("1@127.0.0.1:{}", free_port()),
        first_addr,
        &extra,
    );
    let until = Instant::now() + FORM_TIMEOUT;
    while describe(first_addr).is_none_or(|(brokers, _)| brokers.is_empty()) {
        assert!(
            Instant::now() < until,
            "the first broker never served:\n{}",
            logs(std::slice::from_ref(&first))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut second = start(
        dir.path(),
        2,
        &format!("2@127.0.0.1:{}", free_port()),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        &extra,
    );
    let status = loop {
        if let Some(status) = second.child.try_wait().expect("poll") {
            break status;
        }
        assert!(
            Instant::now() < until,
            "the second broker started on a replication port in use:\n{}",
            std::fs::read_to_string(&second.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(&second.log).unwrap_or_default();
    assert!(log.contains(&port_arg), "the error names the port:\n{log}");
    drop(first);
}

#[test]
fn a_dead_follower_leaves_the_isr_consumers_stop_at_the_high_watermark_and_min_insync_refuses() {
    const LAG_MS: u64 = 3_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let lag = LAG_MS.to_string();
    let (mut nodes, kafka, _, _) =
        form_cluster(dir.path(), &["--replica-lag-time-max-ms", lag.as_str()]);
    let topic = "strict";
    let created = create_replicated_with(kafka[0], topic, 3, &[("min.insync.replicas", "3")]);
    assert_eq!(
        created.error_code,
        0,
        "{:?}\n{}",
        created.error_message,
        logs(&nodes)
    );
    let until = Instant::now() + FORM_TIMEOUT;
    let leader = loop {
        if let Some((leader, _, isr)) = partition_state(kafka[0], topic) {
            if isr.len() == 3 {
                break leader;
            }
        }
        assert!(
            Instant::now() < until,
            "no leader listed:\n{}",
            logs(&nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let leader_addr = kafka[usize::try_from(leader - 1).expect("node id")];
    for i in 0..5u8 {
        let a = produce_acks(leader_addr, topic, -1, batch(&[(b"k", &[i])]));
        assert_eq!(a.error_code, 0, "{:?}\n{}", a.error_message, logs(&nodes));
    }

    // A follower dies. Until the leader gives up on it (the lag time), the
    // high watermark stays: an acks=1 produce lands past it, and a fetch
    // there is empty (not out of range).
    let victim = (1..=3).find(|&n| n != leader).expect("a follower");
    let killed_at = Instant::now();
    let n = &mut nodes[usize::try_from(victim - 1).expect("node id")];
    let _ = n.child.kill();
    let _ = n.child.wait();
    let a = produce_acks(leader_addr, topic, 1, batch(&[(b"k", b"uncommitted")]));
    assert_eq!(a.error_code, 0);
    assert_eq!(a.base_offset, 5);
    let p = fetch_from(leader_addr, topic, 5, 0);
    if killed_at.elapsed() < Duration::from_millis(LAG_MS) {
        assert_eq!(
            p.error_code, 0,
            "between the HW and the log end: not out of range"
        );
        assert_eq!(p.high_watermark, 5);
        assert!(records_of(&p.records).is_empty(), "nothing above the HW");
    }

    // A long poll at the high watermark returns once the ISR shrinks and the
    // high watermark passes the batch.
    let p = fetch_from(leader_addr, topic, 5, 20_000);
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 6, "{}", logs(&nodes));
    let got = records_of(&p.records);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2, b"uncommitted");
    let (_, _, isr) = partition_state(leader_addr, topic).expect("metadata");
    assert_eq!(isr.len(), 2, "{isr:?}");
    assert!(!isr.contains(&victim));

    // Two in sync, three required: acks=all is refused before the append.
    let a = produce_acks(leader_addr, topic, -1, batch(&[(b"k", b"refused")]));
    assert_eq!(
        a.error_code, 19,
        "NOT_ENOUGH_REPLICAS: {:?}",
        a.error_message
    );
    let a = produce_acks(
        leader_addr,
        topic,
        1,
        batch(&[(b"k", b"acks=1 still works")]),
    );
    assert_eq!(a.error_code, 0);
    assert_eq!(a.base_offset, 6, "the refused batch was not appended");

    // The follower comes back on its data: it catches up (epoch query,
    // subscribe at its log end), rejoins the ISR, and acks=all works again.
    let i = usize::try_from(victim - 1).expect("node id");
    let restarted = nodes[i].restart();
    nodes[i] = restarted;
    let until = Instant::now() + FORM_TIMEOUT;
    loop {
        if partition_state(leader_addr, topic).is_some_and(|(_, _, isr)| isr.len() == 3) {
            break;
        }
        assert!(
            Instant::now() < until,
            "the restarted follower never rejoined the ISR:\n{}",
            logs(&nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = produce_acks(leader_addr, topic, -1, batch(&[(b"k", b"all three again")]));
    assert_eq!(a.error_code, 0, "{:?}\n{}", a.error_message, logs(&nodes));
    assert_eq!(a.base_offset, 7);
    let leader_bytes = segment_bytes(dir.path(), leader, topic);
    let victim_bytes = segment_bytes(dir.path(), victim, topic);
    let stored: usize = fetch_from(leader_addr, topic, 0, 0)
        .records
        .as_ref()
        .map_or(0, |r| r.contiguous().len());
    assert!(stored > 0);
    assert!(
        victim_bytes.len() >= stored && victim_bytes[..stored] == leader_bytes[..stored],
        "the restarted follower's log differs from the leader's"
    );
}

#[test]
fn acks_all_answers_request_timed_out_when_timeout_ms_passes_before_the_isr_has_the_batch() {
    // Long enough that the stopped follower stays in the ISR (and its
    // broker unfenced: the default 9 s session) for the whole wait.
    const LAG_MS: u64 = 10_000;
    const TIMEOUT_MS: i32 = 800;
    let dir = tempfile::tempdir().expect("tempdir");
    let lag = LAG_MS.to_string();
    let (nodes, kafka, _, _) =
        form_cluster(dir.path(), &["--replica-lag-time-max-ms", lag.as_str()]);
    let topic = "bounded";
    let created = create_replicated(kafka[0], topic, 3);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
    let until = Instant::now() + FORM_TIMEOUT;
    let leader = loop {
        if let Some((leader, _, isr)) = partition_state(kafka[0], topic) {
            if isr.len() == 3 {
                break leader;
            }
        }
        assert!(Instant::now() < until, "no full ISR:\n{}", logs(&nodes));
        std::thread::sleep(Duration::from_millis(100));
    };
    let leader_addr = kafka[usize::try_from(leader - 1).expect("node id")];
    let produce = |value: &[u8], timeout_ms: i32| {
        let mut c = client(leader_addr).expect("connect");
        c.set_timeout(Duration::from_secs(30));
        let RequestBody::Produce(mut req) = produce_request(topic, 0, batch(&[(b"k", value)]))
        else {
            unreachable!("a produce request")
        };
        req.timeout_ms = timeout_ms;
        let started = Instant::now();
        match c.call(PRODUCE_VERSION, &RequestBody::Produce(req)) {
            ResponseBody::Produce(r) => (single_produce_answer(r, topic, 0), started.elapsed()),
            other => panic!("not a Produce response: {other:?}"),
        }
    };
    // The ISR in the metadata can run ahead of the leader installing the
    // topic (UNKNOWN_TOPIC_OR_PARTITION, retriable): retry as a client does.
    wait_until("a first produce at the leader", &nodes, || {
        produce(b"first", TIMEOUT_MS).0.error_code == 0
    });

    // A follower stops (SIGSTOP) but stays in the ISR until the lag time:
    // the high watermark cannot pass the next batch.
    let victim = (1..=3).find(|&n| n != leader).expect("a follower");
    let stopped = &nodes[usize::try_from(victim - 1).expect("node id")];
    signal(stopped, "STOP");
    let stopped_at = Instant::now();
    let (a, took) = produce(b"timed out", TIMEOUT_MS);
    let in_isr = stopped_at.elapsed() < Duration::from_millis(LAG_MS);
    signal(stopped, "CONT");
    assert!(in_isr, "the produce outlasted the lag time ({took:?})");
    assert_eq!(
        a.error_code, 7,
        "REQUEST_TIMED_OUT after {took:?}: {:?}",
        a.error_message
    );
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS as u64),
        "answered after {took:?}, before timeout_ms"
    );
    eprintln!("REQUEST_TIMED_OUT after {took:?} (timeout_ms {TIMEOUT_MS})");

    // The follower resumes: the timed-out batch stayed appended and commits
    // with the next one.
    let (a, _) = produce(b"after", 10_000);
    assert_eq!(a.error_code, 0, "{:?}\n{}", a.error_message, logs(&nodes));
    assert_eq!(a.base_offset, 2);
    let got: Vec<Vec<u8>> = records_of(&fetch_from(leader_addr, topic, 0, 0).records)
        .into_iter()
        .map(|r| r.2)
        .collect();
    assert_eq!(
        got,
        [b"first".to_vec(), b"timed out".to_vec(), b"after".to_vec()]
    );
}

/// Produces one record with acks=all to the leader Metadata names, retrying
/// (bounded) while the partition has no usable leader yet (a stopped leader
/// not fenced yet cannot be reached; NOT_LEADER_OR_FOLLOWER (6) and
/// NOT_ENOUGH_REPLICAS (19) are refused before the append), so a retry
/// cannot duplicate. Returns the offset and the node that took it.
fn produce_acked(
    kafka: &[SocketAddr],
    nodes: &[Node],
    topic: &str,
    key: &[u8],
    value: &[u8],
) -> (i64, i32) {
    produce_batch_acked(kafka, nodes, topic, &batch(&[(key, value)]))
}

#[test]
fn a_killed_leader_fails_over_to_an_in_sync_replica_and_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, kafka, _, _) = form_cluster(dir.path(), &FAST_LIVENESS);
    let topic = "failover";
    let created = create_replicated(kafka[0], topic, 3);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);

    let mut acked = Vec::new();
    let mut first_leader = None;
    for i in 0..20u32 {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        let (offset, leader) =
            produce_acked(&kafka, &nodes, topic, key.as_bytes(), value.as_bytes());
        first_leader.get_or_insert(leader);
        acked.push((offset, key.into_bytes(), value.into_bytes()));
    }
    let old = first_leader.expect("a leader");

    // SIGKILL the leader: no goodbye, its heartbeats stop, the controller
    // fences it and an in-sync replica takes over in a new leader epoch.
    let victim = &mut nodes[usize::try_from(old - 1).expect("node id")];
    victim.child.kill().expect("kill the leader");
    victim.child.wait().expect("reap the leader");
    let survivors: Vec<SocketAddr> = (1..=3)
        .filter(|&n| n != old)
        .map(|n| kafka[usize::try_from(n - 1).expect("node id")])
        .collect();
    let until = Instant::now() + FORM_TIMEOUT;
    let new = loop {
        if let Some((leader, _, isr)) = partition_state(survivors[0], topic) {
            if leader != old {
                assert!(!isr.contains(&old), "the dead leader left the ISR: {isr:?}");
                break leader;
            }
        }
        assert!(Instant::now() < until, "no new leader:\n{}", logs(&nodes));
        std::thread::sleep(Duration::from_millis(100));
    };

    // acks=all goes on with the two replicas left (min.insync.replicas 2).
    for i in 20..40u32 {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        let (offset, leader) =
            produce_acked(&kafka, &nodes, topic, key.as_bytes(), value.as_bytes());
        assert_eq!(leader, new, "the leader stays put");
        acked.push((offset, key.into_bytes(), value.into_bytes()));
    }

    // Every acknowledged record, exactly once and in order, from the new
    // leader; offsets dense from 0.
    let mut c = client(kafka[usize::try_from(new - 1).expect("node id")]).expect("connect");
    let fetched = c.fetch(topic, 0, 0);
    assert_eq!(fetched.error_code, 0);
    let got = records_of(&fetched.records);
    assert_eq!(got, acked, "acknowledged records after the failover");
    assert!(got.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    assert_eq!(fetched.high_watermark, 40);

    // A consumer validates its position against the new leader
    // (OffsetForLeaderEpoch, KIP-320) with the epoch Metadata gives it:
    // answered in the new epoch (librdkafka stalls for good on
    // UNKNOWN_LEADER_EPOCH), epoch 0 ending where the new leader took over.
    let at_new = kafka[usize::try_from(new - 1).expect("node id")];
    let epoch = metadata_leader_epoch(at_new, topic);
    assert!(epoch > 0, "a new leader epoch: {epoch}");
    assert_eq!(epoch_end(at_new, topic, epoch, 0), (0, 0, 20));
    assert_eq!(epoch_end(at_new, topic, epoch, epoch), (0, epoch, 40));
    assert_eq!(epoch_end(at_new, topic, 0, 0).0, FENCED_LEADER_EPOCH);
    assert_eq!(
        epoch_end(at_new, topic, epoch + 1, 0).0,
        UNKNOWN_LEADER_EPOCH
    );
    let follower = *survivors
        .iter()
        .find(|a| **a != at_new)
        .expect("a follower");
    assert_eq!(
        epoch_end(follower, topic, epoch, 0).0,
        NOT_LEADER_OR_FOLLOWER
    );

    // Fetch (v9+) and ListOffsets (v4+) check the client's leader epoch
    // too (KIP-320): an older one is fenced, a newer one unknown, -1 and
    // the current one are served; a follower fences a stale epoch before
    // it says it does not lead.
    assert_eq!(fetch_in_epoch(at_new, topic, 0), FENCED_LEADER_EPOCH);
    assert_eq!(
        fetch_in_epoch(at_new, topic, epoch + 1),
        UNKNOWN_LEADER_EPOCH
    );
    assert_eq!(fetch_in_epoch(at_new, topic, epoch), 0);
    assert_eq!(fetch_in_epoch(at_new, topic, -1), 0);
    assert_eq!(fetch_in_epoch(follower, topic, 0), FENCED_LEADER_EPOCH);
    assert_eq!(
        fetch_in_epoch(follower, topic, epoch),
        NOT_LEADER_OR_FOLLOWER
    );
    assert_eq!(epoch_end(follower, topic, 0, 0).0, FENCED_LEADER_EPOCH);
    assert_eq!(latest_in_epoch(at_new, topic, 0).0, FENCED_LEADER_EPOCH);
    assert_eq!(
        latest_in_epoch(at_new, topic, epoch + 1).0,
        UNKNOWN_LEADER_EPOCH
    );
    assert_eq!(latest_in_epoch(at_new, topic, epoch), (0, 40, epoch));
}

/// The error of a Fetch v12 of partition 0 of `topic` at offset 0 that
/// names `current_leader_epoch`.
fn fetch_in_epoch(addr: SocketAddr, topic: &str, current_leader_epoch: i32) -> i16 {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::Fetch(FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
                current_leader_epoch,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    match c.call(FETCH_VERSION, &body) {
        ResponseBody::Fetch(mut r) => r.responses.remove(0).partitions.remove(0).error_code,
        other => panic!("not a Fetch response: {other:?}"),
    }
}

/// ListOffsets v7 latest of partition 0 of `topic` naming
/// `current_leader_epoch`: (error, offset, leader epoch).
fn latest_in_epoch(addr: SocketAddr, topic: &str, current_leader_epoch: i32) -> (i16, i64, i32) {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        isolation_level: 0,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                current_leader_epoch,
                timestamp: -1,
            }],
        }],
        timeout_ms: 10_000,
    });
    match c.call(7, &body) {
        ResponseBody::ListOffsets(r) => {
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.offset, p.leader_epoch)
        }
        other => panic!("not a ListOffsets response: {other:?}"),
    }
}

const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// The leader epoch of partition 0 of `topic` in Metadata from `addr`.
fn metadata_leader_epoch(addr: SocketAddr, topic: &str) -> i32 {
    metadata_topic(addr, topic).expect("connect").partitions[0].leader_epoch
}

/// OffsetForLeaderEpoch v4 for partition 0 of `topic`, as a consumer asks:
/// (error, epoch, end offset).
fn epoch_end(addr: SocketAddr, topic: &str, current: i32, requested: i32) -> (i16, i32, i64) {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest {
        replica_id: -1,
        topics: vec![OffsetForLeaderTopic {
            topic: topic.into(),
            partitions: vec![OffsetForLeaderPartition {
                partition: 0,
                current_leader_epoch: current,
                leader_epoch: requested,
            }],
        }],
    });
    let ResponseBody::OffsetForLeaderEpoch(r) = c.call(4, &body) else {
        panic!("OffsetForLeaderEpoch answered with another response");
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

#[test]
fn a_rolling_restart_under_acks_all_produce_loses_nothing_and_every_node_rejoins_the_isr() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Leader imbalance checked every second (automatic preferred election).
    let extra: Vec<&str> = FAST_LIVENESS
        .iter()
        .copied()
        .chain(["--leader-imbalance-check-interval-ms", "1000"])
        .collect();
    let (mut nodes, kafka, _, _) = form_cluster(dir.path(), &extra);
    let topic = "rolling";
    let created = create_replicated(kafka[0], topic, 3);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
    // Three partitions: one preferred leader on each node.
    let spread = "rolling-spread";
    let created = create_replicated_partitions(kafka[0], spread, 3, 3);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
    // Leaderships move while records are in flight (failovers, and the
    // controller's preferred elections): a batch appended on a leader that
    // loses its leadership before the commit is answered
    // NOT_LEADER_OR_FOLLOWER and retried, so the producer is idempotent (as
    // Kafka clients are by default) and the retry is not a duplicate.
    let producer = init_producer_id(kafka[0]);
    let mut acked: Vec<(i64, Vec<u8>, Vec<u8>)> = Vec::new();
    let produce = |nodes: &[Node], acked: &mut Vec<(i64, Vec<u8>, Vec<u8>)>, n: usize| {
        for _ in 0..n {
            let i = acked.len();
            let (key, value) = (format!("k{i}"), format!("v{i}"));
            let mut builder = BatchBuilder::new(Compression::None);
            builder
                .producer(producer.0, producer.1, i32::try_from(i).expect("small"))
                .push(
                    1_700_000_000_000,
                    Some(key.as_bytes()),
                    Some(value.as_bytes()),
                    &[],
                );
            let (offset, _) = produce_batch_acked(&kafka, nodes, topic, &builder.build());
            acked.push((offset, key.into_bytes(), value.into_bytes()));
        }
    };
    let full_isr = |nodes: &[Node]| {
        wait_until("every ISR back to all three", nodes, || {
            [topic, spread]
                .iter()
                .all(|t| kafka.iter().any(|a| isrs_full(*a, t)))
        });
    };
    full_isr(&nodes);
    produce(&nodes, &mut acked, 10);
    for i in 0..nodes.len() {
        // Node i+1 stops cleanly (a leader, at some point, for sure: the
        // leadership moves to a live ISR member when it is fenced), acks=all
        // produces go on with the two others, then it comes back on its data
        // and catches up until it is in sync again.
        let logs_now = logs(&nodes);
        stop_cleanly(&mut nodes[i], || logs_now.clone());
        produce(&nodes, &mut acked, 10);
        nodes[i] = nodes[i].restart();
        full_isr(&nodes);
        produce(&nodes, &mut acked, 10);
    }

    // The leaderships go back to the preferred replicas: without automatic
    // preferred election the node restarted last would lead nothing.
    wait_until("every leader on its preferred replica", &nodes, || {
        [topic, spread]
            .iter()
            .all(|t| kafka.iter().all(|a| preferred_leaders_lead(*a, t)))
    });

    // Every acknowledged record, once, in order, with dense offsets.
    let (leader, _, _) = kafka
        .iter()
        .find_map(|a| partition_state(*a, topic))
        .expect("a leader");
    let mut c = client(kafka[usize::try_from(leader - 1).expect("node id")]).expect("connect");
    let fetched = c.fetch(topic, 0, 0);
    assert_eq!(fetched.error_code, 0);
    let got = records_of(&fetched.records);
    assert_eq!(got.len(), acked.len());
    assert_eq!(got, acked, "acknowledged records after a rolling restart");
    assert!(got.iter().enumerate().all(|(i, r)| r.0 == i as i64));
}

/// Whether every partition of `topic` has all three replicas in its ISR.
fn isrs_full(addr: SocketAddr, topic: &str) -> bool {
    partitions_of(addr, topic).is_some_and(|ps| {
        ps.iter().all(|p| {
            let mut isr = p.isr_nodes.clone();
            isr.sort_unstable();
            isr == [1, 2, 3]
        })
    })
}

/// Whether every partition of `topic` is led by its first replica.
fn preferred_leaders_lead(addr: SocketAddr, topic: &str) -> bool {
    partitions_of(addr, topic).is_some_and(|ps| {
        ps.iter()
            .all(|p| p.leader_id >= 0 && p.replica_nodes.first() == Some(&p.leader_id))
    })
}

/// A producer id and epoch from InitProducerId v4 (idempotence, no
/// transactions).
fn init_producer_id(addr: SocketAddr) -> (i64, i16) {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::InitProducerId(InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: 60_000,
        ..Default::default()
    });
    match c.call(4, &body) {
        ResponseBody::InitProducerId(r) => {
            assert_eq!(r.error_code, 0, "InitProducerId: {r:?}");
            (r.producer_id, r.producer_epoch)
        }
        other => panic!("not an InitProducerId response: {other:?}"),
    }
}

/// Produces `records` (one idempotent batch) with acks=all to the leader
/// Metadata names, retrying the same batch (bounded) while the partition
/// has no usable leader or the leadership moves before the commit: the
/// broker answers a retried batch it already holds with its first offset.
/// Returns the offset and the node that took it.
fn produce_batch_acked(
    kafka: &[SocketAddr],
    nodes: &[Node],
    topic: &str,
    records: &Bytes,
) -> (i64, i32) {
    let until = Instant::now() + FORM_TIMEOUT;
    loop {
        let leader = kafka
            .iter()
            .find_map(|a| partition_state(*a, topic))
            .map(|s| s.0);
        let reachable =
            leader.filter(|&l| client(kafka[usize::try_from(l - 1).expect("node id")]).is_some());
        if let Some(leader) = reachable {
            let addr = kafka[usize::try_from(leader - 1).expect("node id")];
            let answer = produce_to(addr, topic, records.clone());
            match answer.error_code {
                0 => return (answer.base_offset, leader),
                6 | 19 => {}
                code => panic!(
                    "produce refused with {code}: {:?}\n{}",
                    answer.error_message,
                    logs(nodes)
                ),
            }
        }
        assert!(
            Instant::now() < until,
            "no leader took the produce:\n{}",
            logs(nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The leader of each partition of `topic`, once every partition has one.
fn partition_leaders(addr: SocketAddr, topic: &str) -> Option<Vec<i32>> {
    let t = metadata_topic(addr, topic)?;
    let mut parts: Vec<_> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id))
        .collect();
    parts.sort_unstable();
    let leaders: Vec<i32> = parts.into_iter().map(|(_, l)| l).collect();
    (t.error_code == 0 && !leaders.is_empty() && leaders.iter().all(|&l| l > 0)).then_some(leaders)
}

#[test]
fn replicas_on_every_shard_of_two_shard_nodes_replicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nodes, kafka, _, _) = form_cluster(dir.path(), &["--shards", "2"]);
    let topic = "sharded";
    let created = create_replicated_partitions(kafka[0], topic, 3, 4);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
    let until = Instant::now() + FORM_TIMEOUT;
    let leaders = loop {
        if let Some(l) = partition_leaders(kafka[0], topic) {
            break l;
        }
        assert!(Instant::now() < until, "no leaders:\n{}", logs(&nodes));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(leaders.len(), 4);
    for (p, &leader) in leaders.iter().enumerate() {
        let p = p as i32;
        let addr = kafka[usize::try_from(leader - 1).expect("node id")];
        let mut c = client(addr).expect("connect");
        c.set_timeout(Duration::from_secs(20));
        for i in 0..3u8 {
            let answer = match c.call(
                PRODUCE_VERSION,
                &produce_request(topic, p, batch(&[(b"k", &[i])])),
            ) {
                ResponseBody::Produce(r) => single_produce_answer(r, topic, p),
                other => panic!("not a Produce response: {other:?}"),
            };
            assert_eq!(
                answer.error_code,
                0,
                "partition {p}: {:?}\n{}",
                answer.error_message,
                logs(&nodes)
            );
            assert_eq!(answer.base_offset, i64::from(i));
        }
        let fetched = c.fetch(topic, p, 0);
        assert_eq!(fetched.error_code, 0);
        assert_eq!(fetched.high_watermark, 3, "partition {p}");
        assert_eq!(records_of(&fetched.records).len(), 3);
    }
}

/// ElectLeaders v2 of `partitions` of `topic` (None: every partition) from
/// `addr`: (topic, partition, error) of each result.
fn elect_leaders(
    addr: SocketAddr,
    election_type: i8,
    partitions: Option<(&str, Vec<i32>)>,
) -> Vec<(String, i32, i16)> {
    let mut c = client(addr).expect("connect");
    c.set_timeout(Duration::from_secs(20));
    let body = RequestBody::ElectLeaders(ElectLeadersRequest {
        election_type,
        topic_partitions: partitions.map(|(t, ps)| {
            vec![ElectTopicPartitions {
                topic: t.into(),
                partitions: ps,
            }]
        }),
        timeout_ms: 15_000,
    });
    let ResponseBody::ElectLeaders(r) = c.call(2, &body) else {
        panic!("ElectLeaders answered with another response");
    };
    assert_eq!(r.error_code, 0, "{r:?}");
    r.replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result
                .iter()
                .map(|p| (t.topic.clone(), p.partition_id, p.error_code))
        })
        .collect()
}

const ELECTION_NOT_NEEDED: i16 = 84;
const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;

#[test]
fn elect_leaders_moves_leadership_back_to_the_preferred_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No automatic preferred election: only ElectLeaders moves leaders.
    let extra: Vec<&str> = FAST_LIVENESS
        .iter()
        .copied()
        .chain(["--auto-leader-rebalance-enable", "false"])
        .collect();
    let (mut nodes, kafka, _, _) = form_cluster(dir.path(), &extra);
    let topic = "elect";
    let created = create_replicated(kafka[0], topic, 3);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
    let at = |id: i32| kafka[usize::try_from(id - 1).expect("node id")];

    // Advertised, and nothing to do while the preferred replica leads.
    let mut c = client(kafka[0]).expect("connect");
    let v = c.api_versions();
    assert!(
        v.api_keys
            .iter()
            .any(|k| k.api_key == 43 && k.min_version == 0 && k.max_version == 2),
        "ElectLeaders 0-2 in ApiVersions: {v:?}"
    );
    let mut first = None;
    wait_until("the topic led by its preferred replica", &nodes, || {
        first = partitions_of(kafka[0], topic).map(|ps| ps[0].clone());
        first
            .as_ref()
            .is_some_and(|p| p.leader_id >= 0 && p.replica_nodes.first() == Some(&p.leader_id))
    });
    let first = first.expect("a partition");
    let preferred = first.leader_id;
    assert_eq!(
        elect_leaders(kafka[0], 0, Some((topic, vec![0, 7]))),
        vec![
            (topic.to_string(), 0, ELECTION_NOT_NEEDED),
            (topic.to_string(), 7, UNKNOWN_TOPIC_OR_PARTITION)
        ]
    );
    assert_eq!(
        elect_leaders(kafka[0], 0, None),
        vec![],
        "all: nothing needed"
    );
    let (code, out) = cli_elect(kafka[1], &["--topic", topic, "--partition", "0"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("elect-0: no election needed"), "{out}");

    // The preferred leader stops: fenced, the leadership moves, and it
    // cannot be elected while it is away.
    let i = usize::try_from(preferred - 1).expect("node id");
    let logs_now = logs(&nodes);
    stop_cleanly(&mut nodes[i], || logs_now.clone());
    let other = (1..=3).find(|&n| n != preferred).expect("another node");
    wait_until("a new leader", &nodes, || {
        partition_state(at(other), topic).is_some_and(|s| s.0 != preferred)
    });
    assert_eq!(
        elect_leaders(at(other), 0, Some((topic, vec![0]))),
        vec![(topic.to_string(), 0, PREFERRED_LEADER_NOT_AVAILABLE)]
    );
    let (code, out) = cli_elect(at(other), &["--topic", topic]);
    assert_eq!(code, 1, "a failed election exits 1: {out}");
    assert!(out.contains("PREFERRED_LEADER_NOT_AVAILABLE"), "{out}");
    assert_eq!(
        elect_leaders(at(other), 1, Some((topic, vec![0]))),
        vec![(topic.to_string(), 0, ELECTION_NOT_NEEDED)],
        "unclean: the partition has a leader"
    );

    // It returns and catches up; it follows until asked to lead.
    nodes[i] = nodes[i].restart();
    wait_until("the ISR whole again", &nodes, || {
        isrs_full(at(other), topic)
    });
    let epoch_before = metadata_leader_epoch(at(other), topic);
    assert_ne!(
        partition_state(at(other), topic).map(|s| s.0),
        Some(preferred)
    );
    let (code, out) = cli_elect(at(other), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("elect-0: leader elected (preferred)"), "{out}");
    wait_until("every node lists the preferred leader", &nodes, || {
        kafka.iter().all(|a| preferred_leaders_lead(*a, topic))
    });
    let epoch = metadata_leader_epoch(at(preferred), topic);
    assert_eq!(
        epoch,
        epoch_before + 1,
        "the election bumped the leader epoch"
    );

    // The replicas took their roles: the preferred replica takes acks=all
    // produces (after its own catch-up as leader), the old epoch is fenced.
    let (offset, leader) = produce_acked(&kafka, &nodes, topic, b"k", b"after the election");
    assert_eq!(leader, preferred);
    assert_eq!(offset, 0);
    assert_eq!(
        fetch_in_epoch(at(preferred), topic, epoch_before),
        FENCED_LEADER_EPOCH
    );
    assert_eq!(fetch_in_epoch(at(preferred), topic, epoch), 0);
    let (code, out) = cli_elect(at(preferred), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("no partition needed a preferred election"),
        "{out}"
    );
}

/// (node, shard) of each replica of `topic`-0 as node `id`'s topic table
/// (`topics.json`) places them; None before the node has the topic.
fn placement_on(dir: &Path, id: i32, topic: &str) -> Option<Vec<(i32, u16)>> {
    let path = dir.join(format!("n{id}")).join("data").join("topics.json");
    let table: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    table["topics"][topic]["replicas"][0]
        .as_array()?
        .iter()
        .map(|r| {
            Some((
                i32::try_from(r[0].as_i64()?).ok()?,
                u16::try_from(r[1].as_u64()?).ok()?,
            ))
        })
        .collect()
}

/// The shards node `id`'s topic table places its replicas on (every
/// replicated topic and partition).
fn shards_used(dir: &Path, id: i32) -> std::collections::BTreeSet<u64> {
    let path = dir.join(format!("n{id}")).join("data").join("topics.json");
    let Some(table) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return Default::default();
    };
    let mut used = std::collections::BTreeSet::new();
    for t in table["topics"]
        .as_object()
        .into_iter()
        .flat_map(|t| t.values())
    {
        for p in t["replicas"].as_array().into_iter().flatten() {
            for r in p.as_array().into_iter().flatten() {
                if r[0].as_i64() == Some(i64::from(id)) {
                    used.extend(r[1].as_u64());
                }
            }
        }
    }
    used
}

/// The shard of node `id`'s replica of `topic`-0, as that node places it.
fn shard_on(dir: &Path, id: i32, topic: &str) -> Option<u16> {
    placement_on(dir, id, topic)?
        .into_iter()
        .find(|&(n, _)| n == id)
        .map(|(_, s)| s)
}

/// `--replicas` for `topic`-0: its brokers in their current order, with
/// `node`'s replica on `shard`.
fn replicas_with_shard(addr: SocketAddr, topic: &str, node: i32, shard: u16) -> String {
    partitions_of(addr, topic).expect("metadata")[0]
        .replica_nodes
        .iter()
        .map(|&n| {
            if n == node {
                format!("{n}:{shard}")
            } else {
                n.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Acknowledged records: (offset, key, value).
type Acked = Vec<(i64, Vec<u8>, Vec<u8>)>;

/// An idempotent acks=all producer to `topic`-0 on a thread, one record
/// at a time, until `stop` (Metadata asked of `ask_first` first): each batch is retried (bounded) on the newest
/// leader while the leadership moves (NOT_LEADER_OR_FOLLOWER, not enough
/// replicas); any other error fails it. Counts the acknowledged records
/// in `count` as it goes and returns them.
fn produce_in_background(
    kafka: Vec<SocketAddr>,
    ask_first: SocketAddr,
    topic: &'static str,
    producer: (i64, i16),
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::thread::JoinHandle<Result<Acked, String>> {
    std::thread::spawn(move || {
        let mut acked: Acked = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let i = acked.len();
            let (key, value) = (format!("k{i}"), format!("v{i}"));
            let mut builder = BatchBuilder::new(Compression::None);
            builder
                .producer(producer.0, producer.1, i32::try_from(i).expect("small"))
                .push(
                    // Now: a producer whose last batch is older than
                    // `producer.id.expiration.ms` is forgotten when a
                    // log is opened (as in Kafka), and a moved log is.
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                    Some(key.as_bytes()),
                    Some(value.as_bytes()),
                    &[],
                );
            let records = builder.build();
            let until = Instant::now() + Duration::from_secs(30);
            let offset = loop {
                // The leader's node first: the test never stops it, so
                // Metadata is not asked of a node that is going down.
                let leader = std::iter::once(&ask_first)
                    .chain(kafka.iter())
                    .find_map(|a| partition_state(*a, topic))
                    .map(|s| s.0);
                let addr = leader.map(|l| kafka[usize::try_from(l - 1).expect("node id")]);
                if let Some(mut c) = addr.and_then(client) {
                    c.set_timeout(Duration::from_secs(20));
                    let answer = match c
                        .call(PRODUCE_VERSION, &produce_request(topic, 0, records.clone()))
                    {
                        ResponseBody::Produce(r) => single_produce_answer(r, topic, 0),
                        other => return Err(format!("not a Produce response: {other:?}")),
                    };
                    match answer.error_code {
                        0 => break answer.base_offset,
                        // NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS(_AFTER_APPEND).
                        6 | 19 | 20 => {}
                        code => {
                            return Err(format!(
                                "record {i} refused with {code}: {:?}",
                                answer.error_message
                            ))
                        }
                    }
                }
                if Instant::now() > until {
                    return Err(format!("record {i}: no leader took it in 30 s"));
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            acked.push((offset, key.into_bytes(), value.into_bytes()));
            count.store(acked.len(), std::sync::atomic::Ordering::Relaxed);
            // Paced, so the log stays small enough to read back at once.
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(acked)
    })
}

/// Waits until node `id` places its replica of `topic`-0 on `shard`, and
/// the topic is led with a full ISR again.
fn wait_for_shard(
    dir: &Path,
    nodes: &[Node],
    kafka: &[SocketAddr],
    id: i32,
    topic: &str,
    shard: u16,
) {
    wait_until(
        &format!("node {id} holding {topic}-0 on shard {shard}"),
        nodes,
        || shard_on(dir, id, topic) == Some(shard) && kafka.iter().any(|a| isrs_full(*a, topic)),
    );
}

#[test]
fn a_replica_moves_to_another_shard_under_acks_all_and_a_node_restarts_with_fewer_shards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra: Vec<&str> = FAST_LIVENESS
        .iter()
        .copied()
        .chain(["--shards", "2", "--auto-leader-rebalance-enable", "false"])
        .collect();
    let (mut nodes, kafka, _, _) = form_cluster(dir.path(), &extra);
    let at = |id: i32| kafka[usize::try_from(id - 1).expect("node id")];
    let topic = "shardmove";
    let created = create_replicated(kafka[0], topic, 3);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
    wait_until("the topic led with a full ISR", &nodes, || {
        kafka.iter().any(|a| isrs_full(*a, topic))
    });
    let (leader, _, _) = kafka
        .iter()
        .find_map(|a| partition_state(*a, topic))
        .expect("a leader");
    let follower = (1..=3).find(|&n| n != leader).expect("a follower");
    let mut leader_shard = None;
    wait_until("every node's placement of the topic", &nodes, || {
        leader_shard = shard_on(dir.path(), leader, topic);
        leader_shard.is_some() && (1..=3).all(|n| shard_on(dir.path(), n, topic).is_some())
    });
    let leader_shard = leader_shard.expect("placed");

    // A shard the node does not run is refused, and nothing moves.
    let replicas = |node: i32, shard: u16| replicas_with_shard(kafka[0], topic, node, shard);
    // `sluice cluster reassign` moves `node`'s replica to shard `to`: its
    // output, once checked.
    let move_to_shard = |node: i32, to: u16| {
        let (code, out) = cli_reassign(
            kafka[0],
            &[
                "--topic",
                topic,
                "--partition",
                "0",
                "--replicas",
                &replicas(node, to),
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains(&format!("replica on broker {node} moving to shard {to}")),
            "{out}"
        );
        out
    };
    let (code, out) = cli_reassign(
        kafka[0],
        &[
            "--topic",
            topic,
            "--partition",
            "0",
            "--replicas",
            &replicas(leader, 7),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("broker {leader} has no shard 7")),
        "{out}"
    );
    assert_eq!(shard_on(dir.path(), leader, topic), Some(leader_shard));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = init_producer_id(kafka[0]);
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut load = Some(produce_in_background(
        kafka.clone(),
        at(leader),
        topic,
        producer,
        stop.clone(),
        count.clone(),
    ));
    // The load goes on: `n` more records acknowledged (the producer stops
    // only on an error: then it is reported).
    let more_acked = |nodes: &[Node],
                      load: &mut Option<std::thread::JoinHandle<Result<Acked, String>>>,
                      n: usize| {
        let target = count.load(std::sync::atomic::Ordering::Relaxed) + n;
        wait_until(&format!("{n} more acknowledged records"), nodes, || {
            if load.as_ref().is_some_and(|l| l.is_finished()) {
                let result: Result<Acked, String> = load
                    .take()
                    .expect("checked")
                    .join()
                    .expect("producer thread");
                panic!("the producer stopped: {:?}\n{}", result.err(), logs(nodes));
            }
            count.load(std::sync::atomic::Ordering::Relaxed) >= target
        });
    };
    more_acked(&nodes, &mut load, 10);

    // The leader's replica moves to its other shard under the load: a new
    // leader epoch on the same node, and produces go on.
    let epoch_before = metadata_leader_epoch(at(leader), topic);
    let to = 1 - leader_shard;
    move_to_shard(leader, to);
    wait_for_shard(dir.path(), &nodes, &kafka, leader, topic, to);
    wait_until("the same node leading in a new epoch", &nodes, || {
        partition_state(at(leader), topic).is_some_and(|s| s.0 == leader)
            && metadata_leader_epoch(at(leader), topic) == epoch_before + 1
    });
    more_acked(&nodes, &mut load, 10);

    // A follower's replica moves too (it subscribes again from its new
    // shard), ending on shard 1 so that the restart below must re-place it.
    let follower_shard = shard_on(dir.path(), follower, topic).expect("placed");
    let mut moves = vec![1 - follower_shard];
    if moves[0] == 0 {
        moves.push(1);
    }
    for to in moves {
        let out = move_to_shard(follower, to);
        assert!(
            !out.contains(&format!("{topic}-0: moving to")),
            "the same brokers: no reassignment: {out}"
        );
        wait_for_shard(dir.path(), &nodes, &kafka, follower, topic, to);
        more_acked(&nodes, &mut load, 5);
        // Acknowledged with the moved follower in the ISR: it streams again
        // (one that did not would stall acks=all until the lag time took it
        // out of the ISR).
        assert!(isrs_full(at(leader), topic), "{}", logs(&nodes));
    }
    assert_eq!(
        metadata_leader_epoch(at(leader), topic),
        epoch_before + 1,
        "a follower's move keeps the leader epoch"
    );

    // The follower restarts with one shard: the controller re-places its
    // replicas of shard 1 on shard 0, which opens them from the data dir;
    // it catches up and rejoins the ISR.
    assert!(shards_used(dir.path(), follower).contains(&1));
    let i = usize::try_from(follower - 1).expect("node id");
    let logs_now = logs(&nodes);
    stop_cleanly(&mut nodes[i], || logs_now.clone());
    more_acked(&nodes, &mut load, 5);
    let (root, id, voters, old_extra) = nodes[i].started_as.clone();
    let mut one_shard: Vec<String> = old_extra;
    let s = one_shard
        .iter()
        .position(|a| a == "--shards")
        .expect("started with --shards");
    one_shard[s + 1] = "1".into();
    let one_shard: Vec<&str> = one_shard.iter().map(String::as_str).collect();
    nodes[i] = start(&root, id, &voters, nodes[i].kafka, &one_shard);
    wait_for_shard(dir.path(), &nodes, &kafka, follower, topic, 0);
    assert_eq!(
        shards_used(dir.path(), follower),
        std::collections::BTreeSet::from([0]),
        "every replica of the one-shard node on shard 0"
    );
    more_acked(&nodes, &mut load, 10);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = load
        .take()
        .expect("running")
        .join()
        .expect("producer thread")
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&nodes)));
    assert!(acked.len() >= 20, "the load ran: {} records", acked.len());

    // Every acknowledged record, once, in order, with dense offsets, on
    // the leader; the restarted follower's copy is the leader's, byte for
    // byte, once it has caught up.
    let (leader_now, _, _) = kafka
        .iter()
        .find_map(|a| partition_state(*a, topic))
        .expect("a leader");
    let mut c = client(at(leader_now)).expect("connect");
    let (mut got, mut stored) = (Vec::new(), 0);
    loop {
        let fetched = c.fetch(topic, 0, got.len() as i64);
        assert_eq!(fetched.error_code, 0);
        let batch = records_of(&fetched.records);
        if batch.is_empty() {
            break;
        }
        stored += fetched.records.as_ref().map_or(0, |r| r.contiguous().len());
        got.extend(batch);
    }
    assert_eq!(got.len(), acked.len(), "{}", logs(&nodes));
    assert_eq!(got, acked, "acknowledged records across the shard moves");
    assert!(got.iter().enumerate().all(|(i, r)| r.0 == i as i64));
    // Segment files are longer than their data (preallocation): the data
    // part is compared.
    wait_until("every replica's log equal to the leader's", &nodes, || {
        let leader_log = segment_bytes(dir.path(), leader_now, topic);
        (1..=3).all(|n| {
            let log = segment_bytes(dir.path(), n, topic);
            log.len() >= stored && log[..stored] == leader_log[..stored]
        })
    });
}

/// ListOffsets v7 earliest (-2) of partition 0 of `topic` at `addr`: the
/// log start offset; None when `addr` does not lead it.
fn earliest_offset(addr: SocketAddr, topic: &str) -> Option<i64> {
    let mut c = client(addr)?;
    let body = RequestBody::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        isolation_level: 0,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                current_leader_epoch: -1,
                timestamp: -2,
            }],
        }],
        timeout_ms: 10_000,
    });
    match c.call(7, &body) {
        ResponseBody::ListOffsets(r) => {
            let p = &r.topics[0].partitions[0];
            (p.error_code == 0).then_some(p.offset)
        }
        other => panic!("not a ListOffsets response: {other:?}"),
    }
}

/// The base offsets of the segments of `topic`-0 on node `id`, in order.
fn segment_bases(dir: &Path, id: i32, topic: &str) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(partition_dir(dir, id, topic))
        .map(|d| {
            d.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect()
        })
        .unwrap_or_default();
    bases.sort_unstable();
    bases
}

/// Whether node `id` dropped exactly the segments of `topic`-0 wholly below
/// `log_start`: its first segment holds `log_start`.
fn starts_at(dir: &Path, id: i32, topic: &str, log_start: i64) -> bool {
    let bases = segment_bases(dir, id, topic);
    bases.first().is_some_and(|&b| b <= log_start) && bases.get(1).is_none_or(|&b| b > log_start)
}

#[test]
fn retention_of_a_replicated_partition_deletes_only_below_the_high_watermark_and_followers_follow()
{
    let dir = tempfile::tempdir().expect("tempdir");
    // Retention every 200 ms; a stopped follower is neither fenced nor
    // taken out of the ISR (so it holds the high watermark) while stopped.
    let extra = [
        "--retention-check-interval-ms",
        "200",
        "--broker-session-timeout-ms",
        "60000",
        "--replica-lag-time-max-ms",
        "600000",
        "--auto-leader-rebalance-enable",
        "false",
    ];
    let (nodes, kafka, _, _) = form_cluster(dir.path(), &extra);
    let at = |id: i32| kafka[usize::try_from(id - 1).expect("node id")];
    let value = vec![b'x'; 60];
    let produce = |leader: i32, topic: &str, acks: i16, n: usize| {
        for _ in 0..n {
            let a = produce_acks(at(leader), topic, acks, batch(&[(b"k", value.as_slice())]));
            assert_eq!(a.error_code, 0, "{:?}\n{}", a.error_message, logs(&nodes));
        }
    };
    // Segments of about seven one-record batches; no retention by time
    // (the records' timestamps are from 2023).
    let small = [("segment.bytes", "1024"), ("retention.ms", "-1")];
    let led = |topic: &str| {
        let mut state = None;
        wait_until("a leader and a full ISR", &nodes, || {
            state = partition_state(kafka[0], topic).filter(|s| s.2.len() == 3);
            state.is_some()
        });
        let (leader, replicas, _) = state.expect("waited for");
        let followers: Vec<i32> = replicas.into_iter().filter(|&n| n != leader).collect();
        (leader, followers)
    };

    // DeleteRecords on the leader: the followers' log starts follow.
    let trimmed = "trimmed";
    let created = create_replicated_with(kafka[0], trimmed, 3, &small);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
    let (leader, followers) = led(trimmed);
    produce(leader, trimmed, -1, 30);
    assert_eq!(delete_records(at(leader), trimmed, 15), 15);
    assert!(starts_at(dir.path(), leader, trimmed, 15));
    for &id in &followers {
        wait_until(
            &format!("node {id} following DeleteRecords"),
            &nodes,
            || starts_at(dir.path(), id, trimmed, 15),
        );
    }

    // Retention: far over retention.bytes, with one follower stopped (in
    // the ISR, so the high watermark stays at 30 while the leader takes
    // acks=1 records far past it).
    let topic = "retained";
    let mut configs = small.to_vec();
    configs.push(("retention.bytes", "2048"));
    let created = create_replicated_with(kafka[0], topic, 3, &configs);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
    let (leader, followers) = led(topic);
    produce(leader, topic, -1, 30);
    let hw = 30;
    let (stopped, running) = (followers[0], followers[1]);
    signal(
        &nodes[usize::try_from(stopped - 1).expect("node id")],
        "STOP",
    );
    produce(leader, topic, 1, 60);
    // The leader deletes only segments wholly below the high watermark:
    // the one holding offset 30 stays.
    let mut start = 0;
    wait_until("retention on the leader", &nodes, || {
        start = earliest_offset(at(leader), topic).unwrap_or(0);
        start > 0
    });
    assert!(
        start <= hw,
        "log start {start} past the high watermark {hw}"
    );
    let bases = segment_bases(dir.path(), leader, topic);
    assert!(
        starts_at(dir.path(), leader, topic, start),
        "{bases:?} from {start}"
    );
    assert!(
        bases.len() > 3,
        "the log is over retention.bytes: {bases:?}"
    );
    // The running follower deleted what the leader did, no more.
    wait_until("the running follower following the leader", &nodes, || {
        starts_at(dir.path(), running, topic, start)
    });
    assert_eq!(earliest_offset(at(leader), topic), Some(start));

    // The stopped follower comes back and catches up, the high watermark
    // reaches the log end, retention deletes further, and both followers'
    // log starts follow the leader's.
    signal(
        &nodes[usize::try_from(stopped - 1).expect("node id")],
        "CONT",
    );
    wait_until(
        "every replica's log start at the leader's, past 30",
        &nodes,
        || {
            earliest_offset(at(leader), topic).is_some_and(|start| {
                start > hw
                    && [leader, stopped, running]
                        .iter()
                        .all(|&id| starts_at(dir.path(), id, topic, start))
            })
        },
    );
    let mut c = client(at(leader)).expect("connect");
    let start = earliest_offset(at(leader), topic).expect("the leader");
    assert_eq!(c.fetch(topic, 0, start).high_watermark, 90);
}

/// The high watermark in node `id`'s `high-watermark-checkpoint` of
/// `topic`-0 (a big-endian i64, then its CRC).
fn checkpointed_high_watermark(dir: &Path, id: i32, topic: &str) -> Option<i64> {
    let bytes =
        std::fs::read(partition_dir(dir, id, topic).join("high-watermark-checkpoint")).ok()?;
    let body: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(i64::from_be_bytes(body))
}

#[test]
fn the_high_watermark_survives_a_full_cluster_restart_without_a_follower() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A follower that is down stays in the ISR (neither fenced nor lagging
    // out) for the whole test, so the restarted leader cannot move its
    // high watermark: it serves only what it checkpointed.
    let extra = [
        "--broker-session-timeout-ms",
        "120000",
        "--replica-lag-time-max-ms",
        "600000",
        "--auto-leader-rebalance-enable",
        "false",
    ];
    let (mut nodes, kafka, _, _) = form_cluster(dir.path(), &extra);
    let topic = "checkpointed";
    let created = create_replicated(kafka[0], topic, 3);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
    let mut state = None;
    wait_until("a leader and a full ISR", &nodes, || {
        state = partition_state(kafka[0], topic).filter(|s| s.2.len() == 3);
        state.is_some()
    });
    let (leader, replicas, _) = state.expect("waited for");
    let at = |id: i32| kafka[usize::try_from(id - 1).expect("node id")];
    for i in 0..20u8 {
        let a = produce_to(at(leader), topic, batch(&[(b"k", &[i])]));
        assert_eq!(a.error_code, 0, "{:?}\n{}", a.error_message, logs(&nodes));
    }
    let followers: Vec<i32> = replicas.into_iter().filter(|&n| n != leader).collect();
    let (gone, back) = (followers[0], followers[1]);
    let index = |id: i32| usize::try_from(id - 1).expect("node id");

    // The periodic checkpoint (every 5 s) reaches a follower's too.
    wait_until("the follower's high watermark checkpointed", &nodes, || {
        checkpointed_high_watermark(dir.path(), back, topic) == Some(20)
    });
    // One follower dies for good (SIGKILL: still in the ISR); the others
    // stop cleanly, the leader writing its high watermark as it closes,
    // and come back.
    nodes[index(gone)].child.kill().expect("kill");
    nodes[index(gone)].child.wait().expect("reap");
    for id in [back, leader] {
        let logs_now = logs(&nodes);
        stop_cleanly(&mut nodes[index(id)], || logs_now.clone());
    }
    assert_eq!(
        checkpointed_high_watermark(dir.path(), leader, topic),
        Some(20)
    );
    for id in [leader, back] {
        nodes[index(id)] = nodes[index(id)].restart();
    }

    // The leader serves the 20 committed records again (it did not wait
    // for the dead follower, which the controller fences only after two
    // minutes).
    let started = Instant::now();
    let bound = Duration::from_secs(30);
    loop {
        let served = partition_state(at(leader), topic)
            .filter(|s| s.0 != gone)
            .and_then(|s| client(at(s.0)))
            .map(|mut c| c.fetch(topic, 0, 0))
            .filter(|p| p.error_code == 0);
        if let Some(p) = served {
            if p.high_watermark == 20 {
                assert_eq!(records_of(&p.records).len(), 20);
                break;
            }
        }
        assert!(
            started.elapsed() < bound,
            "the restarted leader serves nothing after {bound:?}:\n{}",
            logs(&nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, _, isr) = partition_state(at(leader), topic).expect("a leader");
    assert!(
        isr.contains(&gone),
        "the dead follower is still in the ISR: {isr:?}"
    );
}

/// An OffsetCommit whose records cannot replicate (a follower of the
/// group's `__consumer_offsets` partition is stopped but still in the ISR)
/// is answered REQUEST_TIMED_OUT once `offsets_commit_timeout_ms` passes
/// (Kafka's `offsets.commit.timeout.ms`) instead of waiting for the high
/// watermark without bound; once the follower continues, commits succeed.
#[test]
fn an_offset_commit_that_cannot_replicate_is_answered_request_timed_out() {
    use sluice_codec::find_coordinator_request::FindCoordinatorRequest;
    use sluice_codec::offset_commit_request::{
        OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    // The stopped follower stays in the ISR (and its broker unfenced: the
    // default 9 s session) for the whole wait.
    const LAG_MS: u64 = 10_000;
    const COMMIT_TIMEOUT_MS: u64 = 1_000;
    const REQUEST_TIMED_OUT: i16 = 7;
    let dir = tempfile::tempdir().expect("tempdir");
    let (lag, timeout) = (LAG_MS.to_string(), COMMIT_TIMEOUT_MS.to_string());
    let (nodes, kafka, _, _) = form_cluster(
        dir.path(),
        &[
            "--replica-lag-time-max-ms",
            lag.as_str(),
            "--offsets-commit-timeout-ms",
            timeout.as_str(),
        ],
    );
    let (group, topic) = ("bounded-commits", "committed-to");
    let created = create_replicated(kafka[0], topic, 3);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
    let find = || {
        let body = RequestBody::FindCoordinator(FindCoordinatorRequest {
            key: group.into(),
            ..Default::default()
        });
        match client(kafka[0])?.call(3, &body) {
            ResponseBody::FindCoordinator(r) if r.error_code == 0 => Some(r.node_id),
            _ => None,
        }
    };
    let mut coordinator = None;
    wait_until("a coordinator for the group", &nodes, || {
        coordinator = find();
        coordinator.is_some()
    });
    let coordinator = coordinator.expect("found");
    let addr = kafka[usize::try_from(coordinator - 1).expect("node id")];
    // A commit outside any generation (as Kafka's admin client commits).
    let commit = |offset: i64| {
        let mut c = client(addr).expect("connect");
        c.set_timeout(Duration::from_secs(30));
        let body = RequestBody::OffsetCommit(OffsetCommitRequest {
            group_id: group.into(),
            generation_id_or_member_epoch: -1,
            topics: vec![OffsetCommitRequestTopic {
                name: topic.into(),
                partitions: vec![OffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: offset,
                    committed_leader_epoch: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        let started = Instant::now();
        match c.call(8, &body) {
            ResponseBody::OffsetCommit(r) => {
                (r.topics[0].partitions[0].error_code, started.elapsed())
            }
            other => panic!("not an OffsetCommit response: {other:?}"),
        }
    };
    // Every replica in sync (the group's partition loaded and led).
    wait_until("a first commit", &nodes, || commit(1).0 == 0);

    let follower = (1..=3).find(|&n| n != coordinator).expect("a follower");
    let stopped = &nodes[usize::try_from(follower - 1).expect("node id")];
    signal(stopped, "STOP");
    let stopped_at = Instant::now();
    let (code, took) = commit(2);
    let in_isr = stopped_at.elapsed() < Duration::from_millis(LAG_MS);
    signal(stopped, "CONT");
    assert!(in_isr, "the commit outlasted the lag time ({took:?})");
    assert_eq!(code, REQUEST_TIMED_OUT, "after {took:?}\n{}", logs(&nodes));
    assert!(
        took >= Duration::from_millis(COMMIT_TIMEOUT_MS),
        "answered after {took:?}, before the commit timeout"
    );
    eprintln!("OffsetCommit REQUEST_TIMED_OUT after {took:?} (timeout {COMMIT_TIMEOUT_MS} ms)");
    // The follower continues: commits go through again.
    wait_until("a commit after the follower continues", &nodes, || {
        commit(3).0 == 0
    });
}
