//! Partition reassignment (KIP-455) and scale-out with real `sluice serve`
//! processes on 127.0.0.x: replicas move to other nodes while an acks=all
//! producer keeps writing; a broker-only node (not a controller voter)
//! joins a running cluster, takes replicas, and a voter is drained; topic
//! configs changed through the controller, unclean leader election, and
//! UnregisterBroker.
//!
//! The nodes run with `common::cluster`'s harness, as `cluster.rs`'s do.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::{
    batch, free_port, produce_request, records_of, single_produce_answer, PRODUCE_VERSION,
};
use sluice_codec::alter_partition_reassignments_request::{
    AlterPartitionReassignmentsRequest, ReassignablePartition, ReassignableTopic,
};
use sluice_codec::api_versions_request::ApiVersionsRequest;
use sluice_codec::describe_configs_request::{DescribeConfigsRequest, DescribeConfigsResource};
use sluice_codec::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use sluice_codec::list_partition_reassignments_request::ListPartitionReassignmentsRequest;
use sluice_codec::{ApiKey, RequestBody, ResponseBody};

/// Bound on every wait; a broken build fails instead of hanging.
const WAIT: Duration = FORM_TIMEOUT;
/// A reassignment of a partition holding a few hundred small records must
/// complete well within this.
const MOVE_BOUND: Duration = Duration::from_secs(30);

/// Every node of these tests: fast liveness, and Kafka's default of 50
/// `__consumer_offsets` partitions (a drain moves many partitions at once).
const NODE_FLAGS: [&str; 6] = [
    "--broker-heartbeat-interval-ms",
    "200",
    "--broker-session-timeout-ms",
    "1500",
    "--offsets-topic-partitions",
    "50",
];

const OFFSET_OUT_OF_RANGE: i16 = 1;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;

/// The three voters 1-3 on 127.0.0.1-3, once each lists all three;
/// returns the nodes and the voters string.
fn three_voters(dir: &Path) -> (Vec<Node>, String) {
    let (nodes, _, _, _) = form_cluster(dir, &NODE_FLAGS);
    let voters = nodes[0].started_as.2.clone();
    (nodes, voters)
}

/// Creates `topic` (one partition of `rf` replicas) through `addr`.
fn create_topic(addr: SocketAddr, topic: &str, rf: i16) {
    let created = create_replicated(addr, topic, rf);
    assert_eq!(created.error_code, 0, "{:?}", created.error_message);
}

/// AlterPartitionReassignments v1 of `topic`-`partition`; the partition's
/// error code and message.
fn alter(
    addr: SocketAddr,
    topic: &str,
    partition: i32,
    replicas: Option<&[i32]>,
    allow_rf_change: bool,
) -> (i16, Option<String>) {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::AlterPartitionReassignments(AlterPartitionReassignmentsRequest {
        allow_replication_factor_change: allow_rf_change,
        topics: vec![ReassignableTopic {
            name: topic.into(),
            partitions: vec![ReassignablePartition {
                partition_index: partition,
                replicas: replicas.map(<[i32]>::to_vec),
            }],
        }],
        ..Default::default()
    });
    let ResponseBody::AlterPartitionReassignments(r) = c.call(1, &body) else {
        panic!("AlterPartitionReassignments answered with another response");
    };
    assert_eq!(r.error_code, 0, "{r:?}");
    let p = &r.responses[0].partitions[0];
    (p.error_code, p.error_message.clone())
}

/// A reassignment in progress: topic, partition, replicas, adding, removing.
type Ongoing = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

/// Every reassignment in progress, from `addr`.
fn in_progress(addr: SocketAddr) -> Vec<Ongoing> {
    let Some(mut c) = client(addr) else {
        return vec![("unreachable".into(), -1, vec![], vec![], vec![])];
    };
    let body = RequestBody::ListPartitionReassignments(ListPartitionReassignmentsRequest {
        topics: None,
        ..Default::default()
    });
    let ResponseBody::ListPartitionReassignments(r) = c.call(0, &body) else {
        panic!("ListPartitionReassignments answered with another response");
    };
    assert_eq!(r.error_code, 0);
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.clone(),
                    p.partition_index,
                    p.replicas.clone(),
                    p.adding_replicas.clone(),
                    p.removing_replicas.clone(),
                )
            })
        })
        .collect()
}

/// What a producer thread saw: each acknowledged record (offset, value) in
/// acknowledgement order, and every value it sent (acknowledged or not).
#[derive(Default)]
struct Produced {
    acked: Vec<(i64, Vec<u8>)>,
    attempted: Vec<Vec<u8>>,
}

/// Produces one record with acks=all to the leader Metadata names, retrying
/// while there is no usable leader. Every attempt carries a value of its
/// own, so a retry of a produce that failed after its append (the leader
/// was moved away before the batch committed) shows as an unacknowledged
/// value, never as a duplicate of an acknowledged one.
fn produce_acked(
    addrs: &[SocketAddr],
    topic: &str,
    i: usize,
    out: &Mutex<Produced>,
    paths: &[PathBuf],
) {
    let until = Instant::now() + WAIT;
    for attempt in 0.. {
        let value = format!("v{i}.{attempt}").into_bytes();
        let leader = addrs
            .iter()
            .find_map(|a| partition_state(*a, topic))
            .map(|s| s.0);
        let target = leader.and_then(|l| {
            addrs
                .iter()
                .copied()
                .find(|a| a.ip().to_string() == format!("127.0.0.{l}"))
        });
        if let Some(mut c) = target.and_then(client) {
            out.lock().expect("lock").attempted.push(value.clone());
            let key = format!("k{i}");
            let answer = match c.call(
                PRODUCE_VERSION,
                &produce_request(topic, 0, batch(&[(key.as_bytes(), &value)])),
            ) {
                ResponseBody::Produce(r) => single_produce_answer(r, topic, 0),
                other => panic!("not a Produce response: {other:?}"),
            };
            match answer.error_code {
                0 => {
                    out.lock()
                        .expect("lock")
                        .acked
                        .push((answer.base_offset, value));
                    return;
                }
                // Refused before the append, so a retry cannot duplicate.
                // The controller lists a new topic (ISR included) before
                // its leader's node has installed it: unknown there briefly.
                NOT_LEADER_OR_FOLLOWER | NOT_ENOUGH_REPLICAS | UNKNOWN_TOPIC_OR_PARTITION => {}
                code => panic!(
                    "produce refused with {code}: {:?}\n{}",
                    answer.error_message,
                    logs(paths)
                ),
            }
        }
        assert!(
            Instant::now() < until,
            "no leader took produce {i}:\n{}",
            logs(paths)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An acks=all producer on its own thread until `stop` is set.
/// Records are numbered from `first` on.
fn spawn_producer(
    addrs: Vec<SocketAddr>,
    topic: &str,
    paths: Vec<PathBuf>,
    first: usize,
) -> (
    Arc<AtomicBool>,
    Arc<Mutex<Produced>>,
    std::thread::JoinHandle<()>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(Mutex::new(Produced::default()));
    let (s, p, topic) = (stop.clone(), produced.clone(), topic.to_string());
    let handle = std::thread::spawn(move || {
        let mut i = first;
        while !s.load(Ordering::Relaxed) {
            produce_acked(&addrs, &topic, i, &p, &paths);
            i += 1;
        }
    });
    (stop, produced, handle)
}

/// Every record of `topic`-0 on its leader at `addr`, up to its high
/// watermark: (offset, value).
fn consume_all(addr: SocketAddr, topic: &str) -> Vec<(i64, Vec<u8>)> {
    consume_from(addr, topic, 0)
}

/// Checks what a consumer reads against what the producer saw: offsets
/// dense from 0; every acknowledged record exactly once, at its offset and
/// in acknowledgement order; nothing that was never sent.
fn check_consumed(consumed: &[(i64, Vec<u8>)], produced: &Produced) {
    assert!(
        consumed.iter().enumerate().all(|(i, r)| r.0 == i as i64),
        "offsets not dense"
    );
    for (offset, value) in &produced.acked {
        let at = usize::try_from(*offset).expect("offset");
        assert_eq!(
            consumed.get(at).map(|r| &r.1),
            Some(value),
            "acknowledged record at {offset} lost or replaced"
        );
        let copies = consumed.iter().filter(|r| &r.1 == value).count();
        assert_eq!(copies, 1, "acknowledged record at {offset} duplicated");
    }
    assert!(
        produced.acked.windows(2).all(|w| w[0].0 < w[1].0),
        "acknowledgements out of order"
    );
    for (offset, value) in consumed {
        assert!(
            produced.attempted.contains(value),
            "record at {offset} was never produced"
        );
    }
}

/// The first `len` bytes of `topic`-0's first segment on node `id`.
fn segment_prefix(dir: &Path, id: i32, topic: &str, len: usize) -> Vec<u8> {
    let bytes = segment_bytes(dir, id, topic);
    assert!(
        bytes.len() >= len,
        "node {id}'s segment of {topic}-0 holds {} bytes, less than {len}",
        bytes.len()
    );
    bytes[..len].to_vec()
}

/// Starts moving `topic`-0 to `target` (through `sluice cluster reassign`
/// when `cli`, else the API) and waits until it completes: no longer
/// listed, Metadata shows exactly `target` with every replica in sync, and
/// the replicas left out have deleted their logs. Returns the new leader
/// and how long the move took.
fn reassign_and_wait(
    dir: &Path,
    addrs: &[SocketAddr],
    topic: &str,
    target: &[i32],
    cli: bool,
    paths: &[PathBuf],
) -> (i32, Duration) {
    let before = partition_state(addrs[0], topic).expect("a leader");
    let started = Instant::now();
    if cli {
        let list: Vec<String> = target.iter().map(i32::to_string).collect();
        let (code, out) = cli_reassign(
            addrs[0],
            &[
                "--topic",
                topic,
                "--partition",
                "0",
                "--replicas",
                &list.join(","),
                "--wait-ms",
                &MOVE_BOUND.as_millis().to_string(),
            ],
        );
        assert!(
            code == 0 && out.contains("Done"),
            "sluice cluster reassign: {out}\n{}",
            logs(paths)
        );
    } else {
        let (code, message) = alter(addrs[1], topic, 0, Some(target), true);
        assert_eq!(code, 0, "{message:?}");
    }
    let mut want_isr = target.to_vec();
    want_isr.sort_unstable();
    let mut leader = -1;
    wait_until("the reassignment to complete", paths, || {
        assert!(
            started.elapsed() < MOVE_BOUND,
            "the reassignment to {target:?} did not complete within {MOVE_BOUND:?} (in progress: {:?}; state {:?}):\n{}",
            in_progress(addrs[0]),
            partition_state(addrs[0], topic),
            logs(paths)
        );
        let done = addrs.iter().all(|a| {
            in_progress(*a).is_empty()
                && partition_state(*a, topic).is_some_and(|(l, r, isr)| {
                    leader = l;
                    r == target && isr == want_isr
                })
        });
        done && target.contains(&leader)
    });
    let took = started.elapsed();
    for gone in before.1.iter().filter(|n| !target.contains(n)) {
        wait_until("the removed replica's log to go", paths, || {
            !partition_dir(dir, *gone, topic).exists()
        });
    }
    (leader, took)
}

/// Three voters and `topic` with one partition of replication factor 2,
/// once it has a leader and a full ISR.
struct Rf2 {
    nodes: Vec<Node>,
    paths: Vec<PathBuf>,
    addrs: Vec<SocketAddr>,
    leader: i32,
    follower: i32,
    /// The node without a replica.
    spare: i32,
}

fn rf2_on_three_voters(dir: &Path, topic: &str) -> Rf2 {
    let (nodes, _) = three_voters(dir);
    let paths = log_paths(&nodes);
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.kafka).collect();
    create_topic(addrs[0], topic, 2);
    let mut state = None;
    wait_until("a leader and a full ISR", &paths, || {
        state = partition_state(addrs[0], topic).filter(|s| s.2.len() == 2);
        state.is_some()
    });
    let (leader, replicas, _) = state.expect("waited for");
    let follower = *replicas.iter().find(|&&n| n != leader).expect("rf 2");
    let spare = (1..=3)
        .find(|n| !replicas.contains(n))
        .expect("a spare node");
    Rf2 {
        nodes,
        paths,
        addrs,
        leader,
        follower,
        spare,
    }
}

#[test]
fn reassignment_moves_a_follower_then_the_leader_while_acks_all_produces_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = "moving";
    let Rf2 {
        nodes,
        paths,
        addrs,
        leader,
        follower,
        spare,
    } = rf2_on_three_voters(dir.path(), topic);

    // Refusals, as Kafka's: nothing starts.
    // (topic, partition, target, allow_replication_factor_change, error)
    type Case<'a> = (&'a str, i32, Option<&'a [i32]>, bool, i16);
    let cases: [Case; 6] = [
        ("nope", 0, Some(&[1, 2]), true, UNKNOWN_TOPIC_OR_PARTITION),
        (topic, 5, Some(&[1, 2]), true, UNKNOWN_TOPIC_OR_PARTITION),
        (topic, 0, Some(&[1, 1]), true, INVALID_REPLICA_ASSIGNMENT),
        (topic, 0, Some(&[1, 9]), true, INVALID_REPLICA_ASSIGNMENT),
        (
            topic,
            0,
            Some(&[1, 2, 3]),
            false,
            INVALID_REPLICATION_FACTOR,
        ),
        (topic, 0, None, true, NO_REASSIGNMENT_IN_PROGRESS),
    ];
    for (t, p, replicas, allow, want) in cases {
        let (code, message) = alter(addrs[0], t, p, replicas, allow);
        assert_eq!(code, want, "{t}-{p} to {replicas:?}: {message:?}");
    }
    assert!(in_progress(addrs[0]).is_empty());

    // A backlog for the new replicas to copy, then a producer that keeps
    // writing with acks=all through both moves.
    let backlog = Mutex::new(Produced::default());
    for i in 0..200 {
        produce_acked(&addrs, topic, i, &backlog, &paths);
    }
    let (stop, produced, producer) = spawn_producer(addrs.clone(), topic, paths.clone(), 200);
    {
        let mut p = produced.lock().expect("lock");
        let b = backlog.into_inner().expect("lock");
        p.acked.splice(0..0, b.acked);
        p.attempted.extend(b.attempted);
    }

    // 1. The follower moves to the spare node (through the CLI); the
    // leader stays.
    let (leader_after, took_follower) =
        reassign_and_wait(dir.path(), &addrs, topic, &[leader, spare], true, &paths);
    assert_eq!(leader_after, leader, "moving a follower keeps the leader");

    // 2. The leader is moved away (and the first follower comes back, on an
    // empty log): the new replica, first in the target, leads once in sync.
    let (new_leader, took_leader) =
        reassign_and_wait(dir.path(), &addrs, topic, &[spare, follower], false, &paths);
    assert_ne!(new_leader, leader, "the removed leader handed over");
    eprintln!("moves completed in {took_follower:?} (follower) and {took_leader:?} (leader)");

    // Let the producer write on the new leader a little, then stop it.
    let acked_before = produced.lock().expect("lock").acked.len();
    wait_until("acknowledged produces on the new leader", &paths, || {
        produced.lock().expect("lock").acked.len() >= acked_before + 20
    });
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("producer thread");
    let produced = produced.lock().expect("lock");
    assert!(
        produced.acked.len() > 220,
        "{} acknowledged",
        produced.acked.len()
    );

    let consumed = consume_all(addr_of(&nodes, new_leader), topic);
    check_consumed(&consumed, &produced);

    // Both replicas of the target hold the same bytes as far as committed.
    let stored: usize = {
        let mut c = client(addr_of(&nodes, new_leader)).expect("connect");
        let p = c.fetch(topic, 0, 0);
        p.records.as_ref().map_or(0, |r| r.contiguous().len())
    };
    assert!(stored > 0);
    let leader_bytes = segment_prefix(dir.path(), new_leader, topic, stored);
    for &other in [spare, follower].iter().filter(|&&n| n != new_leader) {
        wait_until("the follower's copy", &paths, || {
            std::fs::metadata(
                partition_dir(dir.path(), other, topic).join("00000000000000000000.log"),
            )
            .is_ok_and(|m| m.len() >= stored as u64)
        });
        assert!(
            segment_prefix(dir.path(), other, topic, stored) == leader_bytes,
            "replica {other} differs from the leader {new_leader}"
        );
    }
    assert!(!partition_dir(dir.path(), leader, topic).exists());
}

#[test]
fn a_broker_only_node_joins_takes_replicas_and_a_voter_is_drained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut nodes, voters) = three_voters(dir.path());
    let topic = "growing";
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.kafka).collect();
    create_topic(addrs[0], topic, 3);
    wait_until("a leader and a full ISR", &log_paths(&nodes), || {
        partition_state(addrs[0], topic).is_some_and(|s| s.2.len() == 3)
    });
    let backlog = Mutex::new(Produced::default());
    for i in 0..100 {
        produce_acked(&addrs, topic, i, &backlog, &log_paths(&nodes));
    }

    // Node 4 is no voter: it runs as a broker only, following the metadata
    // through the voters. It joins while an acks=all producer runs.
    let kafka4 = SocketAddr::from(([127, 0, 0, 4], free_port()));
    let listen4 = format!("127.0.0.4:{}", free_port());
    let mut all = addrs.clone();
    all.push(kafka4);
    let mut paths = log_paths(&nodes);
    paths.push(dir.path().join("n4").join("broker.log"));
    let (stop, produced, producer) = spawn_producer(all, topic, paths.clone(), 100);
    {
        let mut p = produced.lock().expect("lock");
        let b = backlog.into_inner().expect("lock");
        p.acked.splice(0..0, b.acked);
        p.attempted.extend(b.attempted);
    }
    let mut extra4 = NODE_FLAGS.to_vec();
    extra4.extend_from_slice(&["--controller-listen", &listen4]);
    nodes.push(start(dir.path(), 4, &voters, kafka4, &extra4));
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.kafka).collect();
    for addr in &addrs {
        wait_until("node 4 registered and listed everywhere", &paths, || {
            live_brokers(*addr) == [1, 2, 3, 4]
        });
    }
    // It knows the cluster's topics too.
    wait_until("node 4 to see the topic", &paths, || {
        partition_state(kafka4, topic).is_some()
    });
    // ApiVersions works on it like on any broker.
    let mut c = client(kafka4).expect("connect to node 4");
    let body = RequestBody::ApiVersions(ApiVersionsRequest::default());
    let ResponseBody::ApiVersions(v) = c.call(3, &body) else {
        panic!("ApiVersions answered with another response");
    };
    assert!(v
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::AlterPartitionReassignments.as_i16()));

    // Voter 1 is drained: its replica moves to node 4 (the only broker
    // outside the partition), through the CLI, bootstrapped from node 4.
    let drained = 1;
    let started = Instant::now();
    let (code, out) = cli_reassign(
        kafka4,
        &[
            "--drain",
            &drained.to_string(),
            "--wait-ms",
            &MOVE_BOUND.as_millis().to_string(),
        ],
    );
    assert_eq!(
        code,
        0,
        "sluice cluster reassign --drain: {out}\n{}",
        logs(&paths)
    );
    wait_until("node 1 drained", &paths, || {
        addrs.iter().all(|a| {
            partition_state(*a, topic).is_some_and(|(l, r, isr)| {
                let mut r = r.clone();
                r.sort_unstable();
                r == [2, 3, 4] && isr == [2, 3, 4] && l != drained
            })
        })
    });
    wait_until("node 1's log to go", &paths, || {
        !partition_dir(dir.path(), drained, topic).exists()
    });
    eprintln!("drained in {:?}", started.elapsed());

    let acked_before = produced.lock().expect("lock").acked.len();
    wait_until("acknowledged produces after the drain", &paths, || {
        produced.lock().expect("lock").acked.len() >= acked_before + 20
    });
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("producer thread");
    let produced = produced.lock().expect("lock");
    let (leader, _, _) = partition_state(addrs[1], topic).expect("a leader");
    let consumed = consume_all(addr_of(&nodes, leader), topic);
    check_consumed(&consumed, &produced);

    // Node 4's copy is the leader's, byte for byte.
    let stored: usize = {
        let mut c = client(addr_of(&nodes, leader)).expect("connect");
        let p = c.fetch(topic, 0, 0);
        p.records.as_ref().map_or(0, |r| r.contiguous().len())
    };
    if leader != 4 {
        wait_until("node 4's copy", &paths, || {
            std::fs::metadata(partition_dir(dir.path(), 4, topic).join("00000000000000000000.log"))
                .is_ok_and(|m| m.len() >= stored as u64)
        });
        assert!(
            segment_prefix(dir.path(), 4, topic, stored)
                == segment_prefix(dir.path(), leader, topic, stored),
            "node 4's replica differs from the leader {leader}"
        );
    }
}

/// Every record of `topic`-0 from `from` to the high watermark of the
/// leader at `addr`: (offset, value).
fn consume_from(addr: SocketAddr, topic: &str, from: i64) -> Vec<(i64, Vec<u8>)> {
    let mut c = client(addr).expect("connect");
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let p = c.fetch(topic, 0, next);
        assert_eq!(p.error_code, 0, "fetch from {addr} at {next}");
        let got = records_of(&p.records);
        if got.is_empty() {
            assert_eq!(next, p.high_watermark, "stuck below the high watermark");
            return out;
        }
        next = got.last().expect("non-empty").0 + 1;
        out.extend(
            got.into_iter()
                .filter(|r| r.0 >= from)
                .map(|(o, _, v)| (o, v)),
        );
    }
}

#[test]
fn a_new_replica_is_seeded_from_the_leaders_log_start_after_delete_records_and_then_leads() {
    const START: i64 = 60;
    let dir = tempfile::tempdir().expect("tempdir");
    let topic = "trimmed";
    let Rf2 {
        nodes,
        paths,
        addrs,
        leader,
        follower,
        spare,
    } = rf2_on_three_voters(dir.path(), topic);
    let produced = Mutex::new(Produced::default());
    for i in 0..100 {
        produce_acked(&addrs, topic, i, &produced, &paths);
    }

    // The leader's log now starts at 60: it has nothing to send a new,
    // empty replica from 0.
    assert_eq!(delete_records(addr_of(&nodes, leader), topic, START), START);

    // The leader moves to the spare node, which had no replica: it must be
    // seeded from the leader's log start, catch up, join the ISR and take
    // over (the reassignment completes only then).
    let (new_leader, took) =
        reassign_and_wait(dir.path(), &addrs, topic, &[spare, follower], false, &paths);
    assert_eq!(
        new_leader, spare,
        "the first in-sync replica of the target leads"
    );
    eprintln!("seeded, caught up and leading in {took:?}");
    let seeded = partition_dir(dir.path(), spare, topic);
    assert!(
        seeded.join("00000000000000000060.log").exists()
            && !seeded.join("00000000000000000000.log").exists(),
        "the new replica's log does not start at {START}"
    );

    // It serves the same records, from the same log start.
    let mut c = client(addr_of(&nodes, spare)).expect("connect");
    assert_eq!(c.fetch(topic, 0, 0).error_code, OFFSET_OUT_OF_RANGE);
    for i in 100..110 {
        produce_acked(&addrs, topic, i, &produced, &paths);
    }
    let produced = produced.into_inner().expect("lock");
    let consumed = consume_from(addr_of(&nodes, spare), topic, START);
    let want: Vec<(i64, Vec<u8>)> = produced
        .acked
        .iter()
        .filter(|r| r.0 >= START)
        .cloned()
        .collect();
    assert_eq!(want.len(), 50);
    assert_eq!(consumed, want, "{}", logs(&paths));
}

/// (leader id, -1 when none; ISR sorted) of `topic`-0 as `addr` lists it,
/// leaderless partitions included.
fn leader_and_isr(addr: SocketAddr, topic: &str) -> Option<(i32, Vec<i32>)> {
    let t = metadata_topic(addr, topic)?;
    let p = t.partitions.first()?;
    let mut isr = p.isr_nodes.clone();
    isr.sort_unstable();
    Some((p.leader_id, isr))
}

/// IncrementalAlterConfigs v1 SET of `pairs` on `topic`, through `addr`.
fn set_topic_configs(addr: SocketAddr, topic: &str, pairs: &[(&str, &str)]) {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::IncrementalAlterConfigs(IncrementalAlterConfigsRequest {
        resources: vec![AlterConfigsResource {
            resource_type: 2,
            resource_name: topic.into(),
            configs: pairs
                .iter()
                .map(|(k, v)| AlterableConfig {
                    name: (*k).into(),
                    config_operation: 0,
                    value: Some((*v).into()),
                })
                .collect(),
        }],
        validate_only: false,
    });
    let ResponseBody::IncrementalAlterConfigs(r) = c.call(1, &body) else {
        panic!("IncrementalAlterConfigs answered with another response");
    };
    assert_eq!(
        r.responses[0].error_code, 0,
        "{:?}",
        r.responses[0].error_message
    );
}

/// `key`'s value and source in DescribeConfigs of `topic` at `addr`.
fn topic_config(addr: SocketAddr, topic: &str, key: &str) -> (String, i8) {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::DescribeConfigs(DescribeConfigsRequest {
        resources: vec![DescribeConfigsResource {
            resource_type: 2,
            resource_name: topic.into(),
            configuration_keys: Some(vec![key.into()]),
        }],
        ..Default::default()
    });
    let ResponseBody::DescribeConfigs(r) = c.call(4, &body) else {
        panic!("DescribeConfigs answered with another response");
    };
    let res = &r.results[0];
    assert_eq!(res.error_code, 0, "{:?}", res.error_message);
    let e = &res.configs[0];
    (e.value.clone().unwrap_or_default(), e.config_source)
}

/// Every registered broker DescribeCluster lists at `addr`, fenced ones too.
fn registered_brokers(addr: SocketAddr) -> Vec<i32> {
    let (brokers, _) = describe_at(addr, 2, true).expect("connect");
    brokers.iter().map(|b| b.0).collect()
}

/// `sluice cluster unregister --id N` through `addr`: success and output.
fn cli_unregister(addr: SocketAddr, id: i32) -> (bool, String) {
    let (code, out) = cluster_cli("unregister", addr, &["--id", &id.to_string()]);
    (code == 0, out)
}

/// Topic configs are cluster metadata (a change on one node shows on every
/// node and reaches the leader's running partition), unclean leader
/// election follows `unclean.leader.election.enable`, and a removed broker
/// can be unregistered once it holds nothing.
///
/// One controller voter (node 1) and three broker-only nodes (2-4), so that
/// every replica of the topic can be down while the controller keeps its
/// quorum: the topic is moved onto nodes 2-4. Its two followers are
/// killed (the ISR shrinks to the leader), records are produced, the leader
/// is killed, and one old follower comes back: it stays out of the
/// leadership until the config is turned on, then leads without the
/// records only the old leader had.
#[test]
fn topic_configs_through_the_controller_unclean_election_and_unregister() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka: Vec<SocketAddr> = (1..=4u8)
        .map(|n| SocketAddr::from(([127, 0, 0, n], free_port())))
        .collect();
    let voters = format!("1@127.0.0.1:{}", free_port());
    // No automatic preferred election: the test names the leader.
    let mut common = NODE_FLAGS.to_vec();
    common.extend_from_slice(&[
        "--replica-lag-time-max-ms",
        "1000",
        "--auto-leader-rebalance-enable",
        "false",
    ]);
    // A learner restarts on the controller address it joined with.
    let listen: Vec<String> = (1..=4u8)
        .map(|n| format!("127.0.0.{n}:{}", free_port()))
        .collect();
    let start_node = |n: u8| {
        let mut extra = common.clone();
        if n != 1 {
            extra.extend_from_slice(&["--controller-listen", &listen[usize::from(n) - 1]]);
        }
        start(dir.path(), n, &voters, kafka[usize::from(n) - 1], &extra)
    };
    // Node 1 alone first: the offsets topic (one replica, as there is one
    // voter) lands on it, so the other nodes hold only what the test puts
    // there.
    let mut nodes: Vec<Node> = vec![start_node(1)];
    let paths: Vec<PathBuf> = (1..=4)
        .map(|n| dir.path().join(format!("n{n}")).join("broker.log"))
        .collect();
    wait_until("the offsets topic on node 1", &paths, || {
        leader_and_isr(kafka[0], "__consumer_offsets").is_some_and(|(l, _)| l == 1)
    });
    for n in 2..=4u8 {
        nodes.push(start_node(n));
    }
    wait_until("four brokers registered", &paths, || {
        live_brokers(kafka[0]) == [1, 2, 3, 4]
    });
    // `unclean` gets its unclean election from the config, `asked` from
    // ElectLeaders (`sluice cluster elect --type unclean`).
    let topic = "unclean";
    let asked = "asked";
    for t in [topic, asked] {
        create_topic(kafka[0], t, 3);
        wait_until("a full ISR", &paths, || {
            partition_state(kafka[0], t).is_some_and(|s| s.2.len() == 3)
        });
        let (code, msg) = alter(kafka[0], t, 0, Some(&[2, 3, 4]), false);
        assert_eq!(code, 0, "{msg:?}");
        wait_until("the topic on nodes 2-4, all in sync", &paths, || {
            partition_state(kafka[0], t).is_some_and(|(l, mut r, isr)| {
                r.sort_unstable();
                r == [2, 3, 4] && isr == [2, 3, 4] && l != 1
            })
        });
    }

    for addr in &kafka {
        wait_until("every node listing both topics", &paths, || {
            [topic, asked]
                .iter()
                .all(|t| partition_state(*addr, t).is_some_and(|s| s.2.len() == 3))
        });
    }

    // Part 1: a config change on node 2 (a learner: forwarded to the
    // controller) shows on every node, as the topic's own value.
    set_topic_configs(
        kafka[1],
        topic,
        &[("retention.ms", "123456789"), ("min.insync.replicas", "1")],
    );
    for addr in &kafka {
        wait_until("the new configs everywhere", &paths, || {
            topic_config(*addr, topic, "retention.ms") == ("123456789".into(), 1)
                && topic_config(*addr, topic, "min.insync.replicas").0 == "1"
        });
    }
    assert_eq!(
        topic_config(kafka[2], topic, "unclean.leader.election.enable"),
        ("false".into(), 5),
        "the default, from DescribeConfigs"
    );

    let (leader, _, _) = partition_state(kafka[0], topic).expect("a leader");
    let leader_addr = addr_of(&nodes, leader);
    let mut committed = Vec::new();
    for i in 0..5 {
        let value = format!("committed-{i}");
        let mut c = client(leader_addr).expect("connect to the leader");
        let a = c.produce(topic, 0, batch(&[(b"k", value.as_bytes())]));
        assert_eq!(a.error_code, 0, "{:?}\n{}", a.error_message, logs(&paths));
        committed.push(value);
    }

    // Both followers die; the ISR shrinks to the leader, which (with
    // min.insync.replicas now 1, a change that reached its running
    // partition) still takes acks=all produces.
    let followers: Vec<i32> = [2, 3, 4].into_iter().filter(|&n| n != leader).collect();
    for &f in &followers {
        let n = &mut nodes[usize::try_from(f - 1).expect("id")];
        let _ = n.child.kill();
        let _ = n.child.wait();
    }
    wait_until("the ISR down to the leader", &paths, || {
        leader_and_isr(kafka[0], topic) == Some((leader, vec![leader]))
    });
    for i in 0..5 {
        let value = format!("lost-{i}");
        let mut c = client(leader_addr).expect("connect to the leader");
        let a = c.produce(topic, 0, batch(&[(b"k", value.as_bytes())]));
        assert_eq!(
            a.error_code,
            0,
            "acks=all with min.insync.replicas=1: {:?}\n{}",
            a.error_message,
            logs(&paths)
        );
    }

    // The leader dies: no replica is live, the partition has no leader.
    {
        let n = &mut nodes[usize::try_from(leader - 1).expect("id")];
        let _ = n.child.kill();
        let _ = n.child.wait();
    }
    wait_until("no leader", &paths, || {
        leader_and_isr(kafka[0], topic) == Some((-1, vec![leader]))
            && leader_and_isr(kafka[0], asked).is_some_and(|(l, _)| l == -1)
    });

    // An old follower returns. Its registration is applied before it is
    // listed as live, and with the default nothing elects it.
    let back = followers[0];
    nodes[usize::try_from(back - 1).expect("id")] = start_node(u8::try_from(back).expect("id"));
    let back_addr = addr_of(&nodes, back);
    wait_until("the old follower registered again", &paths, || {
        live_brokers(kafka[0]).contains(&back)
    });
    assert_eq!(
        leader_and_isr(kafka[0], topic),
        Some((-1, vec![leader])),
        "an out-of-sync replica must not lead by default"
    );
    assert_eq!(leader_and_isr(kafka[0], asked).map(|s| s.0), Some(-1));
    wait_until("the old follower to list the topic", &paths, || {
        leader_and_isr(back_addr, topic).is_some()
    });
    let a = client(back_addr)
        .expect("connect")
        .produce(topic, 0, batch(&[(b"k", b"refused")]));
    assert_eq!(
        a.error_code, NOT_LEADER_OR_FOLLOWER,
        "{:?}",
        a.error_message
    );

    // Turning unclean election on (through the returned node) elects it.
    let started = Instant::now();
    set_topic_configs(
        back_addr,
        topic,
        &[("unclean.leader.election.enable", "true")],
    );
    wait_until("the out-of-sync replica to lead", &paths, || {
        leader_and_isr(kafka[0], topic) == Some((back, vec![back]))
    });
    let mut after = Vec::new();
    for i in 0..3 {
        let value = format!("after-{i}");
        let until = Instant::now() + WAIT;
        loop {
            let a = client(back_addr).expect("connect").produce(
                topic,
                0,
                batch(&[(b"k", value.as_bytes())]),
            );
            if a.error_code == 0 {
                break;
            }
            assert_eq!(
                a.error_code, NOT_LEADER_OR_FOLLOWER,
                "{:?}",
                a.error_message
            );
            assert!(Instant::now() < until, "the new leader never took produces");
            std::thread::sleep(Duration::from_millis(50));
        }
        after.push(value);
    }
    eprintln!(
        "unclean leader serving {:?} after the config change",
        started.elapsed()
    );

    // ElectLeaders with election type unclean (1) does the same on demand.
    let (code, text) = cli_elect(
        back_addr,
        &["--type", "unclean", "--topic", asked, "--partition", "0"],
    );
    assert!(
        code == 0 && text.contains("leader elected (unclean)"),
        "{text}"
    );
    assert_eq!(leader_and_isr(kafka[0], asked), Some((back, vec![back])));
    // It serves what it had, then the new records: those only the old
    // leader had are gone (Kafka's unclean semantics).
    let consumed: Vec<String> = consume_all(back_addr, topic)
        .into_iter()
        .map(|(_, v)| String::from_utf8(v).expect("UTF-8"))
        .collect();
    let expected: Vec<String> = committed.iter().chain(&after).cloned().collect();
    assert_eq!(consumed, expected);

    // Part 3: unregistering. The voter, a live broker and a broker that
    // still holds a replica are refused, each saying why.
    let (ok, out) = cli_unregister(back_addr, 1);
    assert!(!ok && out.contains("voter"), "{out}");
    let (ok, out) = cli_unregister(back_addr, back);
    assert!(!ok && out.contains("live"), "{out}");
    let (ok, out) = cli_unregister(back_addr, leader);
    assert!(!ok && out.contains("replicas"), "{out}");
    // Once the topic lives on the returned node alone, the dead ones go:
    // from the broker list and from the controller membership.
    for t in [topic, asked] {
        let (code, msg) = alter(kafka[0], t, 0, Some(&[back]), true);
        assert_eq!(code, 0, "{msg:?}");
        wait_until("the topic on the returned node alone", &paths, || {
            partition_state(kafka[0], t).is_some_and(|(_, r, _)| r == [back])
        });
    }
    assert_eq!(registered_brokers(kafka[0]), [1, 2, 3, 4]);
    for gone in [leader, followers[1]] {
        let (ok, out) = cli_unregister(back_addr, gone);
        assert!(ok, "{out}\n{}", logs(&paths));
    }
    let mut left = vec![1, back];
    left.sort_unstable();
    for addr in [kafka[0], back_addr] {
        wait_until("the unregistered brokers unlisted", &paths, || {
            registered_brokers(addr) == left
        });
    }
    let controller_log = std::fs::read_to_string(&paths[0]).expect("node 1 log");
    assert_eq!(
        controller_log
            .matches("removed from the controller membership")
            .count(),
        2,
        "{controller_log}"
    );
    let (ok, out) = cli_unregister(kafka[0], leader);
    assert!(!ok && out.contains("not registered"), "{out}");
}

/// The controller's broker default `unclean.leader.election.enable=true`
/// (`--topic-default`) reaches its elections: a topic that sets nothing
/// elects its returning out-of-sync replica (Kafka's controller decides by
/// its own config). One voter (node 1, the only one with the default) and
/// two broker-only nodes (without it) holding an RF 2 topic: the follower
/// is killed, the leader takes records alone and is killed, the follower
/// returns and leads with what it had.
#[test]
fn the_controllers_unclean_election_default_counts_for_topics_that_do_not_set_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka: Vec<SocketAddr> = (1..=3u8)
        .map(|n| SocketAddr::from(([127, 0, 0, n], free_port())))
        .collect();
    let voters = format!("1@127.0.0.1:{}", free_port());
    let listen: Vec<String> = (1..=3u8)
        .map(|n| format!("127.0.0.{n}:{}", free_port()))
        .collect();
    let start_node = |n: u8| {
        // NODE_FLAGS: the test was written when this file's `start` added
        // them to every node.
        let mut extra = NODE_FLAGS.to_vec();
        extra.extend_from_slice(&[
            "--replica-lag-time-max-ms",
            "1000",
            "--auto-leader-rebalance-enable",
            "false",
        ]);
        if n == 1 {
            extra.extend_from_slice(&["--topic-default", "unclean.leader.election.enable=true"]);
        } else {
            extra.extend_from_slice(&["--controller-listen", &listen[usize::from(n) - 1]]);
        }
        start(dir.path(), n, &voters, kafka[usize::from(n) - 1], &extra)
    };
    let paths: Vec<PathBuf> = (1..=3)
        .map(|n| dir.path().join(format!("n{n}")).join("broker.log"))
        .collect();
    // Node 1 first, so the offsets topic (one replica) lands on it.
    let mut nodes: Vec<Node> = vec![start_node(1)];
    wait_until("the offsets topic on node 1", &paths, || {
        leader_and_isr(kafka[0], "__consumer_offsets").is_some_and(|(l, _)| l == 1)
    });
    for n in 2..=3u8 {
        nodes.push(start_node(n));
    }
    wait_until("three brokers registered", &paths, || {
        live_brokers(kafka[0]) == [1, 2, 3]
    });
    let topic = "unclean-by-default";
    create_topic(kafka[0], topic, 2);
    wait_until("a full ISR", &paths, || {
        partition_state(kafka[0], topic).is_some_and(|s| s.2.len() == 2)
    });
    let (code, msg) = alter(kafka[0], topic, 0, Some(&[2, 3]), false);
    assert_eq!(code, 0, "{msg:?}");
    wait_until("the topic on nodes 2-3, both in sync", &paths, || {
        partition_state(kafka[0], topic).is_some_and(|(l, mut r, isr)| {
            r.sort_unstable();
            r == [2, 3] && isr == [2, 3] && l != 1
        })
    });
    let (leader, _, _) = partition_state(kafka[0], topic).expect("a leader");
    let follower = 5 - leader;
    let leader_addr = addr_of(&nodes, leader);
    let produce = |addr: SocketAddr, value: &str| {
        client(addr)
            .expect("connect")
            .produce(topic, 0, batch(&[(b"k", value.as_bytes())]))
    };
    let committed: Vec<String> = (0..3).map(|i| format!("committed-{i}")).collect();
    for value in &committed {
        let a = produce(leader_addr, value);
        assert_eq!(a.error_code, 0, "{:?}\n{}", a.error_message, logs(&paths));
    }
    let kill = |nodes: &mut Vec<Node>, id: i32| {
        let n = &mut nodes[usize::try_from(id - 1).expect("id")];
        let _ = n.child.kill();
        let _ = n.child.wait();
    };
    kill(&mut nodes, follower);
    wait_until("the ISR down to the leader", &paths, || {
        leader_and_isr(kafka[0], topic) == Some((leader, vec![leader]))
    });
    // min.insync.replicas is 1 for two replicas: the leader alone takes it.
    let a = produce(leader_addr, "lost");
    assert_eq!(a.error_code, 0, "{:?}\n{}", a.error_message, logs(&paths));
    kill(&mut nodes, leader);
    wait_until("no leader", &paths, || {
        leader_and_isr(kafka[0], topic) == Some((-1, vec![leader]))
    });

    // The follower returns out of sync; the controller's default elects it.
    nodes[usize::try_from(follower - 1).expect("id")] =
        start_node(u8::try_from(follower).expect("id"));
    let back = addr_of(&nodes, follower);
    wait_until("the out-of-sync replica to lead", &paths, || {
        leader_and_isr(kafka[0], topic) == Some((follower, vec![follower]))
    });
    let until = Instant::now() + WAIT;
    loop {
        let a = produce(back, "after");
        if a.error_code == 0 {
            break;
        }
        assert_eq!(
            a.error_code, NOT_LEADER_OR_FOLLOWER,
            "{:?}",
            a.error_message
        );
        assert!(Instant::now() < until, "the new leader never took produces");
        std::thread::sleep(Duration::from_millis(50));
    }
    let consumed: Vec<String> = consume_all(back, topic)
        .into_iter()
        .map(|(_, v)| String::from_utf8(v).expect("UTF-8"))
        .collect();
    let mut expected = committed.clone();
    expected.push("after".into());
    assert_eq!(
        consumed, expected,
        "the record only the old leader had is gone"
    );
}

/// A broker-only node that was unregistered (UnregisterBroker) and is
/// started again on its old data dir rejoins as a broker, as Kafka's
/// brokers register again with a new incarnation: its own Raft log still
/// lists it as a learner (it never got the membership change that removed
/// it), so it must ask the controller leader to add it again; then it
/// follows the metadata and takes replicas.
#[test]
fn an_unregistered_node_restarted_on_its_old_data_dir_rejoins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka: Vec<SocketAddr> = (1..=2u8)
        .map(|n| SocketAddr::from(([127, 0, 0, n], free_port())))
        .collect();
    let voters = format!("1@127.0.0.1:{}", free_port());
    let listen2 = format!("127.0.0.2:{}", free_port());
    let paths: Vec<PathBuf> = (1..=2)
        .map(|n| dir.path().join(format!("n{n}")).join("broker.log"))
        .collect();
    // Node 1 first: the offsets topic (one replica) lands on it, so node 2
    // holds nothing and may be unregistered once stopped.
    let _node1 = start(dir.path(), 1, &voters, kafka[0], &NODE_FLAGS);
    wait_until("the offsets topic on node 1", &paths, || {
        leader_and_isr(kafka[0], "__consumer_offsets").is_some_and(|(l, _)| l == 1)
    });
    let start2 = || {
        let mut extra = NODE_FLAGS.to_vec();
        extra.extend_from_slice(&["--controller-listen", &listen2]);
        start(dir.path(), 2, &voters, kafka[1], &extra)
    };
    let mut node2 = start2();
    wait_until("node 2 registered", &paths, || {
        live_brokers(kafka[0]) == [1, 2]
    });
    wait_until("node 2 following the metadata", &paths, || {
        leader_and_isr(kafka[1], "__consumer_offsets").is_some_and(|(l, _)| l == 1)
    });

    let _ = node2.child.kill();
    let _ = node2.child.wait();
    wait_until("node 2 fenced", &paths, || live_brokers(kafka[0]) == [1]);
    let (ok, out) = cli_unregister(kafka[0], 2);
    assert!(ok, "{out}\n{}", logs(&paths));
    wait_until("node 2 unlisted", &paths, || {
        registered_brokers(kafka[0]) == [1]
    });

    // Back on the same data dir: registered, live, following the metadata.
    node2 = start2();
    wait_until("node 2 registered again", &paths, || {
        live_brokers(kafka[0]) == [1, 2]
    });
    let topic = "after-rejoin";
    create_topic(kafka[0], topic, 2);
    wait_until("node 2 listing the new topic, in sync", &paths, || {
        partition_state(kafka[1], topic).is_some_and(|(_, _, isr)| isr == [1, 2])
    });
    let (leader, _, _) = partition_state(kafka[0], topic).expect("a leader");
    let a = client(kafka[usize::try_from(leader - 1).expect("id")])
        .expect("connect")
        .produce(topic, 0, batch(&[(b"k", b"replicated")]));
    assert_eq!(a.error_code, 0, "{:?}\n{}", a.error_message, logs(&paths));
    assert!(
        partition_dir(dir.path(), 2, topic).exists(),
        "node 2 holds no log of {topic}"
    );
    drop(node2);
}
