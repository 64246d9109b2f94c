//! Three `sluice serve` processes on 127.0.0.1, .2 and .3 form a cluster
//! through their controllers: each registers, and DescribeCluster and
//! Metadata from any node list all three brokers. A topic with replication
//! factor 3 is produced with acks=all on its leader and copied to both
//! followers.

mod common;

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    batch, free_port, produce_request, records_of, single_produce_answer, sluice_command, Client,
    PRODUCE_VERSION,
};
use sluice_codec::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use sluice_codec::create_topics_response::CreatableTopicResult;
use sluice_codec::describe_cluster_request::DescribeClusterRequest;
use sluice_codec::describe_quorum_request::{
    DescribeQuorumRequest, PartitionData as QuorumPartition, TopicData as QuorumTopic,
};
use sluice_codec::describe_quorum_response::PartitionData;
use sluice_codec::metadata_request::{MetadataRequest, MetadataRequestTopic};
use sluice_codec::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use sluice_codec::produce_response::PartitionProduceResponse;
use sluice_codec::{RequestBody, ResponseBody};

/// Bound on waiting for the cluster to form; a broken build fails instead of
/// hanging. Not a speed check.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

struct Node {
    child: Child,
    kafka: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, id: u8, voters: &str, kafka: SocketAddr, extra: &[&str]) -> Node {
    let data = dir.join(format!("n{id}"));
    std::fs::create_dir_all(&data).expect("node dir");
    let log = data.join("broker.log");
    let out = File::create(&log).expect("log file");
    let args = [
        "serve",
        "--node-id",
        &id.to_string(),
        "--listen",
        &kafka.to_string(),
        "--data-dir",
        data.join("data").to_str().expect("UTF-8 path"),
        "--shards",
        "1",
        "--metrics-listen",
        "off",
        "--controller-voters",
        voters,
    ]
    .map(String::from);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    let child = sluice_command(&args)
        .env("SLUICE_LOG", "info")
        .stdout(out.try_clone().expect("clone log"))
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sluice");
    Node { child, kafka, log }
}

fn logs(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "--- {} ---\n{}",
                n.kafka,
                std::fs::read_to_string(&n.log).unwrap_or_default()
            )
        })
        .collect()
}

fn client(addr: SocketAddr) -> Option<Client> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    let mut c = Client::new(stream);
    c.set_timeout(Duration::from_secs(5));
    Some(c)
}

/// A broker as DescribeCluster lists it: id, host, port, fenced.
type Listed = (i32, String, i32, bool);

/// The brokers DescribeCluster (v0: live ones only) lists, and the controller.
fn describe(addr: SocketAddr) -> Option<(Vec<Listed>, i32)> {
    describe_at(addr, 0, false)
}

fn describe_at(addr: SocketAddr, version: i16, include_fenced: bool) -> Option<(Vec<Listed>, i32)> {
    let mut c = client(addr)?;
    let body = RequestBody::DescribeCluster(DescribeClusterRequest {
        include_fenced_brokers: include_fenced,
        ..Default::default()
    });
    let ResponseBody::DescribeCluster(r) = c.call(version, &body) else {
        panic!("DescribeCluster answered with another response");
    };
    assert_eq!(r.error_code, 0);
    let mut brokers: Vec<_> = r
        .brokers
        .iter()
        .map(|b| (b.broker_id, b.host.clone(), b.port, b.is_fenced))
        .collect();
    brokers.sort();
    Some((brokers, r.controller_id))
}

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

/// Three nodes on 127.0.0.1-3, started and waited for until each lists all
/// three brokers; returns the nodes, their Kafka addresses, what
/// DescribeCluster must list, and the controller each node named.
fn form_cluster(dir: &Path, extra: &[&str]) -> (Vec<Node>, Vec<SocketAddr>, Vec<Listed>, Vec<i32>) {
    let kafka: Vec<SocketAddr> = (1..=3u8)
        .map(|n| SocketAddr::from(([127, 0, 0, n], free_port())))
        .collect();
    let voters = (1..=3u8)
        .map(|n| format!("{n}@127.0.0.{n}:{}", free_port()))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<Node> = Vec::new();
    for n in 1..=3u8 {
        nodes.push(start(dir, n, &voters, kafka[usize::from(n) - 1], extra));
    }
    let want: Vec<Listed> = kafka
        .iter()
        .enumerate()
        .map(|(i, a)| (i as i32 + 1, a.ip().to_string(), i32::from(a.port()), false))
        .collect();

    let until = Instant::now() + FORM_TIMEOUT;
    let mut controllers = Vec::new();
    for (node, addr) in kafka.iter().enumerate() {
        loop {
            for n in nodes.iter_mut() {
                assert!(
                    n.child.try_wait().expect("poll").is_none(),
                    "a node exited:\n{}",
                    logs(&nodes)
                );
            }
            match describe(*addr) {
                Some((brokers, controller)) if brokers == want && controller > 0 => {
                    controllers.push(controller);
                    break;
                }
                _ => {}
            }
            assert!(
                Instant::now() < until,
                "node {} never listed all three brokers:\n{}",
                node + 1,
                logs(&nodes)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    (nodes, kafka, want, controllers)
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

    // DescribeQuorum: every node names the same leader and the three voters;
    // the leader knows how far each voter's log reaches.
    let until = Instant::now() + FORM_TIMEOUT;
    loop {
        let answers: Vec<_> = kafka.iter().map(|a| describe_quorum(*a)).collect();
        let leaders: Vec<i32> = answers.iter().map(|q| q.leader_id).collect();
        let agreed = leaders.iter().all(|l| *l == leaders[0] && *l > 0);
        if agreed {
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
            "DescribeQuorum never agreed: {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// DescribeQuorum v2 of `__cluster_metadata` partition 0 from `addr`.
fn describe_quorum(addr: SocketAddr) -> PartitionData {
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

/// Short heartbeat timings so a silent node is fenced within seconds.
const FAST_LIVENESS: [&str; 4] = [
    "--broker-heartbeat-interval-ms",
    "200",
    "--broker-session-timeout-ms",
    "1500",
];

/// Polls `ok` every 100 ms until it holds, failing with the nodes' logs
/// after [`FORM_TIMEOUT`].
fn wait_until(what: &str, nodes: &[Node], mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + FORM_TIMEOUT;
    while !ok() {
        assert!(
            Instant::now() < until,
            "gave up waiting for {what}:\n{}",
            logs(nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_node_is_fenced_and_unfenced_when_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka: Vec<SocketAddr> = (1..=3u8)
        .map(|n| SocketAddr::from(([127, 0, 0, n], free_port())))
        .collect();
    let voters = (1..=3u8)
        .map(|n| format!("{n}@127.0.0.{n}:{}", free_port()))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<Node> = (1..=3u8)
        .map(|n| {
            start(
                dir.path(),
                n,
                &voters,
                kafka[usize::from(n) - 1],
                &FAST_LIVENESS,
            )
        })
        .collect();
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
    nodes[2] = start(dir.path(), 3, &voters, kafka[2], &FAST_LIVENESS);
    wait_until("node 3 live again", &nodes, || {
        listed(kafka[0]).is_some_and(|b| b.len() == 3 && fenced_ids(&b).is_empty())
    });
}

/// (leader, replicas, ISR) of partition 0 of `topic` in Metadata from `addr`.
fn partition_state(addr: SocketAddr, topic: &str) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let mut c = client(addr)?;
    let body = RequestBody::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.into()),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let ResponseBody::Metadata(r) = c.call(12, &body) else {
        panic!("Metadata answered with another response");
    };
    let t = r.topics.first()?;
    let p = t.partitions.first()?;
    if t.error_code != 0 || p.error_code != 0 || p.leader_id < 0 {
        return None;
    }
    let mut replicas = p.replica_nodes.clone();
    replicas.sort_unstable();
    let mut isr = p.isr_nodes.clone();
    isr.sort_unstable();
    Some((p.leader_id, replicas, isr))
}

fn create_replicated(addr: SocketAddr, topic: &str, rf: i16) -> CreatableTopicResult {
    let mut c = client(addr).expect("connect");
    c.set_timeout(Duration::from_secs(20));
    let body = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.into(),
            num_partitions: 1,
            replication_factor: rf,
            ..Default::default()
        }],
        timeout_ms: 15_000,
        validate_only: false,
    });
    match c.call(5, &body) {
        ResponseBody::CreateTopics(mut r) => r.topics.remove(0),
        other => panic!("not a CreateTopics response: {other:?}"),
    }
}

fn produce_to(addr: SocketAddr, topic: &str, records: Bytes) -> PartitionProduceResponse {
    let mut c = client(addr).expect("connect");
    c.set_timeout(Duration::from_secs(20));
    match c.call(PRODUCE_VERSION, &produce_request(topic, 0, records)) {
        ResponseBody::Produce(r) => single_produce_answer(r, topic, 0),
        other => panic!("not a Produce response: {other:?}"),
    }
}

/// The bytes of the first segment of `topic`-0 in node `id`'s data dir.
fn segment_bytes(dir: &Path, id: i32, topic: &str) -> Vec<u8> {
    let path = dir
        .join(format!("n{id}"))
        .join("data")
        .join(format!("{topic}-0"))
        .join("00000000000000000000.log");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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
                assert_eq!(replicas, &[1, 2, 3]);
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
    drop(nodes);
}

/// Produces one record with acks=all to the leader Metadata names (a dead
/// node's address just fails to connect), retrying (bounded) while the
/// partition has no usable leader yet: NOT_LEADER_OR_FOLLOWER (6) and
/// NOT_ENOUGH_REPLICAS (19) are refused before the append, so a retry cannot
/// duplicate. Returns the offset and the node that took it.
fn produce_acked(
    kafka: &[SocketAddr],
    nodes: &[Node],
    topic: &str,
    key: &[u8],
    value: &[u8],
) -> (i64, i32) {
    let until = Instant::now() + FORM_TIMEOUT;
    loop {
        let leader = kafka
            .iter()
            .find_map(|a| partition_state(*a, topic))
            .map(|s| s.0);
        if let Some(leader) = leader {
            let addr = kafka[usize::try_from(leader - 1).expect("node id")];
            let answer = produce_to(addr, topic, batch(&[(key, value)]));
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
}

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// The leader epoch of partition 0 of `topic` in Metadata from `addr`.
fn metadata_leader_epoch(addr: SocketAddr, topic: &str) -> i32 {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.into()),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let ResponseBody::Metadata(r) = c.call(12, &body) else {
        panic!("Metadata answered with another response");
    };
    r.topics[0].partitions[0].leader_epoch
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
