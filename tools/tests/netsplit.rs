//! A network partition that isolates a partition leader.
//!
//! Three `sluice serve` processes, each in a network namespace of its own
//! (`common::netns`), all three controller voters; a topic of three
//! partitions, replication factor 3, `min.insync.replicas` 2 (the default for
//! three replicas), one partition led by each node. A producer thread writes
//! with acks=all the whole time, following the leader with the highest
//! leader epoch any node names (as Kafka clients do), and records every
//! answer. The partition leader is then cut off from its peers but not from
//! the test, twice: first the node that also leads the controller quorum,
//! then one that does not. Each time:
//!
//! - the majority side elects a new partition leader within a bound;
//! - the isolated old leader, which still believes it leads, does not
//!   acknowledge an acks=all write (it cannot commit an ISR without itself
//!   to the controller, and its followers are gone);
//! - it does take acks=1 writes: divergent history;
//! - acks=all goes on at the new leader;
//! - after healing, the old leader follows the new one, truncates its
//!   divergent records (KIP-101), catches up and rejoins the ISR; the three
//!   replicas' segment files hold the same bytes; and every acknowledged
//!   record is on the new leader exactly once, at the offset it was
//!   acknowledged with, in order (0 lost, 0 duplicated, 0 reordered), while
//!   none of the divergent records is.

mod common;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::cluster::FAST_LIVENESS;
use common::netns::Netns;
use common::{batch, produce_request, records_of, request_bytes, Client, Stored};
use sluice_codec::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use sluice_codec::describe_cluster_request::DescribeClusterRequest;
use sluice_codec::describe_quorum_request::{
    DescribeQuorumRequest, PartitionData as QuorumPartition, TopicData as QuorumTopic,
};
use sluice_codec::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use sluice_codec::metadata_request::{MetadataRequest, MetadataRequestTopic};
use sluice_codec::{decode_response, RequestBody, ResponseBody};

const NODES: usize = 3;
/// Every node listens on these in its own namespace.
const KAFKA_PORT: u16 = 9092;
const CONTROLLER_PORT: u16 = 9093;
/// `replica.lag.time.max.ms`: short, so the isolated leader tries to shrink
/// its ISR (and must fail to) well within the partition.
const LAG_MS: u64 = 1_000;
/// Bound on every wait for the cluster to do something; a broken build fails
/// instead of hanging. Not a speed check.
const WAIT: Duration = Duration::from_secs(30);
/// How long the producer waits for one answer before giving up on it.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the isolated old leader is given to acknowledge an acks=all
/// write (it must not).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between polls of the cluster's state, and before a producer retries
/// a refused or unanswered produce.
const POLL: Duration = Duration::from_millis(50);

/// Three nodes in namespaces; the processes die and the namespaces go when
/// it drops (the `Netns` first, then the data).
struct Cluster {
    net: Netns,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let mut net = Netns::new(NODES);
        let dir = tempfile::tempdir().expect("tempdir");
        let voters = (1..=NODES)
            .map(|i| format!("{i}@{}:{CONTROLLER_PORT}", net.addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        let lag = LAG_MS.to_string();
        for i in 1..=NODES {
            let node_dir = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let mut args: Vec<String> = vec![
                "serve".into(),
                "--node-id".into(),
                i.to_string(),
                "--listen".into(),
                format!("{}:{KAFKA_PORT}", net.addr(i)),
                "--data-dir".into(),
                node_dir.join("data").to_str().expect("UTF-8 path").into(),
                "--metrics-listen".into(),
                "off".into(),
                "--controller-voters".into(),
                voters.clone(),
                "--shards".into(),
                "1".into(),
                "--replica-lag-time-max-ms".into(),
                lag.clone(),
            ];
            args.extend(FAST_LIVENESS.iter().map(|s| (*s).to_string()));
            net.spawn(
                i,
                std::path::Path::new(env!("CARGO_BIN_EXE_sluice")),
                &args,
                &node_dir.join("broker.log"),
                |cmd| {
                    cmd.env("NO_COLOR", "1").env_remove("SLUICE_LOG_LEVEL");
                },
            );
        }
        let mut cluster = Cluster { net, dir };
        let until = Instant::now() + WAIT;
        for i in 1..=NODES {
            loop {
                for n in 1..=NODES {
                    assert!(cluster.net.running(n), "node {n} exited");
                }
                if live_brokers(cluster.addr(i as i32)) == Some(3) {
                    break;
                }
                assert!(
                    Instant::now() < until,
                    "node {i} never listed all three brokers"
                );
                std::thread::sleep(POLL);
            }
        }
        cluster
    }

    fn addr(&self, node: i32) -> SocketAddr {
        let i = usize::try_from(node).expect("a node id");
        SocketAddr::from((self.net.addr(i), KAFKA_PORT))
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        (1..=NODES as i32).map(|n| self.addr(n)).collect()
    }

    fn log_path(&self, node: i32) -> PathBuf {
        self.dir.path().join(format!("n{node}")).join("broker.log")
    }

    /// The last lines of every node's log.
    fn log_tails(&self) -> String {
        (1..=NODES as i32)
            .map(|n| {
                let log = std::fs::read_to_string(self.log_path(n)).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(60)..];
                format!("--- node {n} ---\n{}\n", tail.join("\n"))
            })
            .collect()
    }

    /// The bytes of the first segment of `topic`-`p` in `node`'s data dir.
    fn segment(&self, node: i32, topic: &str, p: usize) -> Vec<u8> {
        let path = self
            .dir
            .path()
            .join(format!("n{node}"))
            .join("data")
            .join(format!("{topic}-{p}"))
            .join("00000000000000000000.log");
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Polls `f` until it gives a value, failing after [`WAIT`].
    fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let until = Instant::now() + WAIT;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < until,
                "gave up waiting for {what} after {WAIT:?}"
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
    }
}

/// One request on a new connection; I/O errors and timeouts are errors, not
/// panics (an isolated node may not answer).
fn call(
    addr: SocketAddr,
    version: i16,
    body: &RequestBody,
    timeout: Duration,
) -> io::Result<ResponseBody> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    let mut c = Client::new(stream);
    c.set_timeout(timeout);
    c.send_raw(&request_bytes(1, version, body))?;
    let frame = c.read_frame()?;
    let (correlation_id, response) = decode_response(body.api_key(), version, frame)
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
    assert_eq!(correlation_id, 1);
    Ok(response)
}

/// How many live brokers DescribeCluster from `addr` lists.
fn live_brokers(addr: SocketAddr) -> Option<usize> {
    let body = RequestBody::DescribeCluster(DescribeClusterRequest::default());
    match call(addr, 0, &body, Duration::from_secs(2)).ok()? {
        ResponseBody::DescribeCluster(r) if r.error_code == 0 => Some(r.brokers.len()),
        _ => None,
    }
}

/// The controller quorum's leader as `addr` sees it.
fn quorum_leader(addr: SocketAddr) -> Option<i32> {
    let body = RequestBody::DescribeQuorum(DescribeQuorumRequest {
        topics: vec![QuorumTopic {
            topic_name: "__cluster_metadata".into(),
            partitions: vec![QuorumPartition { partition_index: 0 }],
        }],
    });
    match call(addr, 2, &body, Duration::from_secs(2)).ok()? {
        ResponseBody::DescribeQuorum(r) if r.error_code == 0 => {
            let leader = r.topics.first()?.partitions.first()?.leader_id;
            (leader > 0).then_some(leader)
        }
        _ => None,
    }
}

/// The controller leader every node names.
fn controller_leader(c: &Cluster) -> i32 {
    c.wait_for("a controller leader every node names", || {
        let leaders: Vec<i32> = c
            .addrs()
            .iter()
            .map(|a| quorum_leader(*a))
            .collect::<Option<_>>()?;
        leaders
            .iter()
            .all(|&l| l == leaders[0])
            .then_some(leaders[0])
    })
}

/// A partition as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct View {
    leader: i32,
    epoch: i32,
    isr: Vec<i32>,
}

/// Every partition of `topic` (by index) as Metadata from `addr` lists it.
fn partitions(addr: SocketAddr, topic: &str) -> Option<Vec<View>> {
    let body = RequestBody::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.into()),
            ..Default::default()
        }]),
        allow_auto_topic_creation: false,
        ..Default::default()
    });
    let ResponseBody::Metadata(r) = call(addr, 12, &body, Duration::from_secs(2)).ok()? else {
        return None;
    };
    let t = r.topics.first()?;
    if t.error_code != 0 || t.partitions.is_empty() {
        return None;
    }
    let mut parts = t.partitions.clone();
    parts.sort_by_key(|p| p.partition_index);
    Some(
        parts
            .iter()
            .map(|p| {
                let mut isr = p.isr_nodes.clone();
                isr.sort_unstable();
                View {
                    leader: p.leader_id,
                    epoch: p.leader_epoch,
                    isr,
                }
            })
            .collect(),
    )
}

/// Produces one record `value` to `topic`-`p` at `addr` with `acks`:
/// (error code, base offset), or the I/O error (no answer within `timeout`).
fn produce(
    addr: SocketAddr,
    topic: &str,
    p: usize,
    acks: i16,
    value: &str,
    timeout: Duration,
) -> io::Result<(i16, i64)> {
    let p = i32::try_from(p).expect("a partition index");
    let RequestBody::Produce(mut req) =
        produce_request(topic, p, batch(&[(b"k", value.as_bytes())]))
    else {
        unreachable!("a produce request")
    };
    req.acks = acks;
    match call(addr, 9, &RequestBody::Produce(req), timeout)? {
        ResponseBody::Produce(r) => {
            let a = common::single_produce_answer(r, topic, p);
            Ok((a.error_code, a.base_offset))
        }
        other => Err(io::Error::other(format!(
            "not a Produce response: {other:?}"
        ))),
    }
}

/// Everything below the high watermark of `topic`-`p` on the leader at
/// `addr`: the records, the bytes of their batches, the high watermark.
fn read_all(addr: SocketAddr, topic: &str, p: usize) -> (Vec<Stored>, usize, i64) {
    let body = RequestBody::Fetch(FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 64 << 20,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: i32::try_from(p).expect("a partition index"),
                fetch_offset: 0,
                partition_max_bytes: 64 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    let ResponseBody::Fetch(mut r) =
        call(addr, 12, &body, Duration::from_secs(10)).expect("fetch from the leader")
    else {
        panic!("not a Fetch response");
    };
    let part = r.responses.remove(0).partitions.remove(0);
    assert_eq!(part.error_code, 0, "fetch from the leader");
    let records = records_of(&part.records);
    let bytes = part.records.as_ref().map_or(0, |r| r.contiguous().len());
    assert_eq!(
        records.last().map_or(0, |r| r.0 + 1),
        part.high_watermark,
        "one fetch reads everything below the high watermark"
    );
    (records, bytes, part.high_watermark)
}

/// The leader the node with the newest view (highest leader epoch) names.
fn newest_leader(kafka: &[SocketAddr], topic: &str, p: usize) -> Option<i32> {
    kafka
        .iter()
        .filter_map(|a| partitions(*a, topic)?.get(p).cloned())
        .filter(|v| v.leader > 0)
        .max_by_key(|v| v.epoch)
        .map(|v| v.leader)
}

#[derive(Debug)]
enum Answer {
    Acked(i64),
    Refused(i16),
    /// No answer within [`PRODUCE_TIMEOUT`] (or the connection failed): the
    /// record may or may not have been written.
    Unanswered,
}

/// One acks=all produce of the producer thread.
#[derive(Debug)]
struct Attempt {
    value: String,
    leader: i32,
    answer: Answer,
    at: Instant,
}

/// Produces distinct values (`tag-0`, `tag-1`, ...) with acks=all, one at a
/// time, until `stop`; each attempt goes to `attempts`. A value is never
/// sent twice, so a retry cannot duplicate and every value in the log is
/// traceable to one attempt.
fn run_producer(
    kafka: Vec<SocketAddr>,
    topic: String,
    p: usize,
    tag: String,
    stop: Arc<AtomicBool>,
    attempts: mpsc::Sender<Attempt>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let Some(leader) = newest_leader(&kafka, &topic, p) else {
            std::thread::sleep(POLL);
            continue;
        };
        let value = format!("{tag}-{n}");
        n += 1;
        let addr = kafka[usize::try_from(leader - 1).expect("a node id")];
        let answer = match produce(addr, &topic, p, -1, &value, PRODUCE_TIMEOUT) {
            Ok((0, offset)) => Answer::Acked(offset),
            Ok((code, _)) => Answer::Refused(code),
            Err(_) => Answer::Unanswered,
        };
        let acked = matches!(answer, Answer::Acked(_));
        let attempt = Attempt {
            value,
            leader,
            answer,
            at: Instant::now(),
        };
        if attempts.send(attempt).is_err() {
            return;
        }
        if !acked {
            std::thread::sleep(POLL);
        }
    }
}

/// The producer thread and what it reported so far.
struct Producer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    rx: mpsc::Receiver<Attempt>,
    attempts: Vec<Attempt>,
}

impl Producer {
    fn start(kafka: Vec<SocketAddr>, topic: &str, p: usize, tag: &str) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (topic, tag, flag) = (topic.to_string(), tag.to_string(), stop.clone());
        let thread = std::thread::spawn(move || run_producer(kafka, topic, p, tag, flag, tx));
        Producer {
            stop,
            thread: Some(thread),
            rx,
            attempts: Vec::new(),
        }
    }

    /// Waits until `n` more attempts that `counts` accepts were acknowledged.
    fn wait_acked(&mut self, n: usize, what: &str, counts: impl Fn(&Attempt) -> bool) {
        let until = Instant::now() + WAIT;
        let mut seen = 0;
        while seen < n {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(a) => {
                    if matches!(a.answer, Answer::Acked(_)) && counts(&a) {
                        seen += 1;
                    }
                    self.attempts.push(a);
                }
                Err(_) => panic!(
                    "{what}: {seen} of {n} acknowledged within {WAIT:?}; last attempts {:?}",
                    &self.attempts[self.attempts.len().saturating_sub(5)..],
                ),
            }
        }
    }

    /// Stops the thread (after its attempt in flight) and collects the rest.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("the producer thread");
        }
        self.attempts.extend(self.rx.try_iter());
    }

    /// (offset, value) of every acknowledged attempt, in the order of the
    /// acknowledgements.
    fn acked(&self) -> Vec<(i64, String)> {
        self.attempts
            .iter()
            .filter_map(|a| match a.answer {
                Answer::Acked(offset) => Some((offset, a.value.clone())),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What one isolation round found.
struct Round {
    lost: usize,
    duplicated: usize,
    reordered: usize,
}

/// Compares the acknowledged records with the log read back: lost (not at
/// the offset it was acknowledged with), duplicated (a value more than
/// once) and reordered (a later acknowledgement at a lower offset).
fn check(acked: &[(i64, String)], log: &[Stored]) -> Round {
    let mut at: HashMap<&[u8], Vec<i64>> = HashMap::new();
    for (offset, _, value) in log {
        at.entry(value.as_slice()).or_default().push(*offset);
    }
    let duplicated = at.values().filter(|o| o.len() > 1).count();
    let lost = acked
        .iter()
        .filter(|(offset, value)| at.get(value.as_bytes()).is_none_or(|o| !o.contains(offset)))
        .count();
    let reordered = acked
        .windows(2)
        .filter(|w| {
            let first = at.get(w[0].1.as_bytes()).and_then(|o| o.first());
            let second = at.get(w[1].1.as_bytes()).and_then(|o| o.first());
            matches!((first, second), (Some(a), Some(b)) if a >= b)
        })
        .count();
    Round {
        lost,
        duplicated,
        reordered,
    }
}

/// Cuts `victim`, which leads a partition of `topic`, off from its peers
/// under acks=all load, then heals, and checks everything the module doc
/// lists.
fn isolate_a_partition_leader(c: &mut Cluster, topic: &str, victim: i32, label: &str) {
    let all: Vec<i32> = (1..=NODES as i32).collect();
    let before = c.wait_for("every node to list a full ISR everywhere", || {
        let views: Vec<Vec<View>> = c
            .addrs()
            .iter()
            .map(|a| partitions(*a, topic))
            .collect::<Option<_>>()?;
        let same = views.iter().all(|v| *v == views[0]);
        (same && views[0].iter().all(|v| v.isr == all)).then(|| views[0].clone())
    });
    let p = before
        .iter()
        .position(|v| v.leader == victim)
        .unwrap_or_else(|| panic!("node {victim} leads no partition: {before:?}"));
    let old_epoch = before[p].epoch;
    let controller = controller_leader(c);
    let majority: Vec<i32> = all.iter().copied().filter(|&n| n != victim).collect();

    let mut producer = Producer::start(c.addrs(), topic, p, label);
    producer.wait_acked(20, "acks=all before the cut", |_| true);

    // Cut the leader off from both peers; the test still reaches it.
    c.net.isolate(usize::try_from(victim).expect("a node id"));
    let cut_at = Instant::now();
    let (new_leader, new_epoch) = c.wait_for("a new leader on the majority side", || {
        let views: Vec<View> = majority
            .iter()
            .map(|&m| partitions(c.addr(m), topic)?.get(p).cloned())
            .collect::<Option<_>>()?;
        let v = &views[0];
        let elected = views.iter().all(|x| x == v)
            && v.leader > 0
            && v.leader != victim
            && v.epoch > old_epoch
            && !v.isr.contains(&victim);
        elected.then_some((v.leader, v.epoch))
    });
    let to_new_leader = cut_at.elapsed();
    let majority_controller = c.wait_for("a controller leader on the majority side", || {
        let leaders: Vec<i32> = majority
            .iter()
            .map(|&m| quorum_leader(c.addr(m)))
            .collect::<Option<_>>()?;
        (leaders.iter().all(|&l| l == leaders[0]) && leaders[0] != victim).then_some(leaders[0])
    });
    let stale_view = partitions(c.addr(victim), topic).map(|v| v[p].clone());

    // The old leader, which has tried to shrink its ISR to itself for a
    // while now (the lag time is shorter than the session timeout), must
    // not acknowledge an acks=all write.
    let probe = format!("{label}-probe-acks-all");
    let probed_at = Instant::now();
    let probe_answer = produce(c.addr(victim), topic, p, -1, &probe, PROBE_TIMEOUT);
    assert!(
        !matches!(probe_answer, Ok((0, _))),
        "the isolated old leader {victim} acknowledged an acks=all write ({probe_answer:?}) \
         {:?} after the cut",
        probed_at.duration_since(cut_at),
    );

    // It still takes acks=1 writes: history the new leader never saw.
    let mut divergent = Vec::new();
    for k in 0..5 {
        let value = format!("{label}-divergent-acks1-{k}");
        match produce(c.addr(victim), topic, p, 1, &value, PROBE_TIMEOUT) {
            Ok((0, offset)) => divergent.push((offset, value)),
            other => panic!("acks=1 at the isolated old leader: {other:?}"),
        }
    }

    // acks=all goes on at the new leader.
    producer.wait_acked(20, "acks=all at the new leader", |a| {
        a.leader == new_leader && a.at > cut_at
    });
    c.net.heal();
    let healed_at = Instant::now();
    c.wait_for("the old leader back in the ISR, on every node", || {
        let views: Vec<View> = c
            .addrs()
            .iter()
            .map(|a| partitions(*a, topic)?.get(p).cloned())
            .collect::<Option<_>>()?;
        let want = View {
            leader: new_leader,
            epoch: new_epoch,
            isr: all.clone(),
        };
        views.iter().all(|v| *v == want).then_some(())
    });
    let to_rejoin = healed_at.elapsed();
    let rejoined_at = Instant::now();
    producer.wait_acked(10, "acks=all after the heal", |a| a.at > rejoined_at);
    producer.stop();

    // A last acks=all record with all three in the ISR: every replica then
    // holds everything below it.
    let marker = format!("{label}-marker");
    let (code, marker_offset) = produce(c.addr(new_leader), topic, p, -1, &marker, WAIT)
        .unwrap_or_else(|e| panic!("the marker: {e}"));
    assert_eq!(code, 0, "the marker");
    let mut acked = producer.acked();
    acked.push((marker_offset, marker.clone()));

    let (log, stored, high_watermark) = read_all(c.addr(new_leader), topic, p);
    assert_eq!(high_watermark, marker_offset + 1);
    assert!(
        log.iter().enumerate().all(|(i, r)| r.0 == i as i64),
        "offsets dense from 0"
    );
    let round = check(&acked, &log);
    let in_log = |value: &str| log.iter().any(|r| r.2 == value.as_bytes());
    let unacked_kept = producer
        .attempts
        .iter()
        .filter(|a| !matches!(a.answer, Answer::Acked(_)) && in_log(&a.value))
        .count();
    let acked_while_cut = producer
        .attempts
        .iter()
        .filter(|a| matches!(a.answer, Answer::Acked(_)) && a.at > cut_at && a.at < healed_at)
        .count();
    let divergent_kept = divergent.iter().filter(|(_, v)| in_log(v)).count();
    let overwritten = divergent
        .iter()
        .filter(|(offset, v)| {
            log.get(*offset as usize)
                .is_some_and(|r| r.2 != v.as_bytes())
        })
        .count();

    println!(
        "{label}: isolated node {victim} (partition {p} leader in epoch {old_epoch}; controller \
         leader {controller}, so the isolated node {} it)",
        if controller == victim {
            "was"
        } else {
            "was not"
        }
    );
    println!(
        "{label}: new leader {new_leader} in epoch {new_epoch} after {to_new_leader:?}; controller \
         leader on the majority side {majority_controller}; the isolated node still said {stale_view:?}"
    );
    println!(
        "{label}: acks=all at the isolated old leader: {probe_answer:?} (no acknowledgement in \
         {PROBE_TIMEOUT:?}); {} acks=1 records taken there at offsets {:?}",
        divergent.len(),
        divergent.iter().map(|d| d.0).collect::<Vec<_>>()
    );
    let refused: Vec<i16> = producer
        .attempts
        .iter()
        .filter_map(|a| match a.answer {
            Answer::Refused(code) => Some(code),
            _ => None,
        })
        .collect();
    let unanswered = producer
        .attempts
        .iter()
        .filter(|a| matches!(a.answer, Answer::Unanswered))
        .count();
    println!(
        "{label}: producer: {} acks=all attempts, {} acknowledged ({acked_while_cut} while the \
         node was cut off), {unanswered} unanswered, refused with {refused:?} ({unacked_kept} \
         unacknowledged ones in the log anyway); healed: back in the ISR after {to_rejoin:?}; \
         log of {} records (with the marker), high watermark {high_watermark}",
        producer.attempts.len(),
        acked.len() - 1,
        log.len()
    );
    println!(
        "{label}: lost {}, duplicated {}, reordered {}; divergent acks=1 records kept {divergent_kept} \
         of {} ({overwritten} of their offsets now hold other records)",
        round.lost,
        round.duplicated,
        round.reordered,
        divergent.len()
    );

    // What went wrong, record by record, for the failure message.
    let stored_at = |value: &str| log.iter().find(|r| r.2 == value.as_bytes()).map(|r| r.0);
    for a in &producer.attempts {
        if let Answer::Acked(offset) = a.answer {
            if stored_at(&a.value) != Some(offset) {
                let held = log
                    .get(offset as usize)
                    .map(|r| String::from_utf8_lossy(&r.2).into_owned());
                println!(
                    "{label}: LOST {} acknowledged by node {} at offset {offset}, {:?} after the \
                     cut (healed {:?} after the cut); in the log at {:?}; that offset holds {held:?}",
                    a.value,
                    a.leader,
                    a.at.saturating_duration_since(cut_at),
                    healed_at.duration_since(cut_at),
                    stored_at(&a.value),
                );
            }
        }
    }
    if round.lost > 0 {
        let log = std::fs::read_to_string(c.log_path(victim)).unwrap_or_default();
        let roles: Vec<&str> = log
            .lines()
            .filter(|l| {
                ["ISR", "leading", "following", "truncat", "fenc"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .collect();
        println!(
            "{label}: node {victim}'s roles and ISR changes:\n{}",
            roles.join("\n")
        );
    }
    assert_eq!(
        (round.lost, round.duplicated, round.reordered),
        (0, 0, 0),
        "lost, duplicated, reordered acknowledged records"
    );
    assert_eq!(
        divergent_kept, 0,
        "the old leader's divergent acks=1 records were truncated (KIP-101)"
    );
    assert!(
        !in_log(&probe),
        "the unacknowledged acks=all probe was truncated"
    );

    // The three replicas hold the same bytes, the old leader included: its
    // divergent batches are gone from its files, not just hidden.
    let leader_bytes = c.segment(new_leader, topic, p);
    assert!(stored > 0 && leader_bytes.len() >= stored);
    for node in all.iter().copied() {
        let bytes = c.segment(node, topic, p);
        assert!(
            bytes.len() >= stored && bytes[..stored] == leader_bytes[..stored],
            "{label}: node {node}'s log differs from the leader {new_leader}'s"
        );
        assert!(
            bytes[stored..].iter().all(|b| *b == 0),
            "{label}: node {node} holds {} bytes past the leader's log end",
            bytes.len() - stored
        );
    }
}

#[test]
fn an_isolated_leader_cannot_acknowledge_and_loses_only_its_divergent_history_after_healing() {
    let mut c = Cluster::start();
    let topic = "netsplit";
    let body = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.into(),
            num_partitions: 3,
            replication_factor: 3,
            ..Default::default()
        }],
        timeout_ms: 15_000,
        validate_only: false,
    });
    match call(c.addr(1), 5, &body, Duration::from_secs(20)) {
        Ok(ResponseBody::CreateTopics(r)) => {
            assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message)
        }
        other => panic!("CreateTopics: {other:?}"),
    }

    // Round 1: the controller leader, which also leads a partition (each
    // node leads one of the three).
    let controller = controller_leader(&c);
    isolate_a_partition_leader(&mut c, topic, controller, "controller-leader");

    // Round 2: a partition leader that does not lead the controller.
    // Round 1 may leave every leader on one node for a while (its partition
    // moved there; a node fenced under load moves its own too) until the
    // automatic preferred-leader election (every 10 s by default; a shorter
    // interval moved leaders during round 1's checks) moves them back.
    let controller = controller_leader(&c);
    let victim = c.wait_for("a partition leader outside the controller", || {
        partitions(c.addr(1), topic)?
            .iter()
            .map(|v| v.leader)
            .find(|&l| l > 0 && l != controller)
    });
    isolate_a_partition_leader(&mut c, topic, victim, "partition-leader");
}
