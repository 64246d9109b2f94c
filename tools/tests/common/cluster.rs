//! The harness of the cluster process tests (`cluster.rs`,
//! `cluster_reassign.rs`, `netsplit.rs`): `sluice serve` nodes on
//! 127.0.0.x with a controller each, waiting on the cluster's state with a
//! bound, and the Kafka requests those tests send to see it (Metadata,
//! DescribeCluster, CreateTopics, Produce, Fetch) on fresh connections.
//!
//! Every wait polls and gives up after [`FORM_TIMEOUT`] with the nodes'
//! logs: a broken build fails instead of hanging.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_codec::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use sluice_codec::create_topics_response::CreatableTopicResult;
use sluice_codec::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
};
use sluice_codec::describe_cluster_request::DescribeClusterRequest;
use sluice_codec::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use sluice_codec::fetch_response::PartitionData;
use sluice_codec::metadata_request::{MetadataRequest, MetadataRequestTopic};
use sluice_codec::metadata_response::{MetadataResponsePartition, MetadataResponseTopic};
use sluice_codec::produce_response::PartitionProduceResponse;
use sluice_codec::{RequestBody, ResponseBody};

use super::{
    free_port, produce_request, single_produce_answer, sluice_command, Client, FETCH_VERSION,
    PRODUCE_VERSION,
};

/// Bound on waiting for the cluster to do something (form, elect, catch
/// up); a broken build fails instead of hanging. Not a speed check.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// Short heartbeat timings so a silent node is fenced within seconds.
pub const FAST_LIVENESS: [&str; 4] = [
    "--broker-heartbeat-interval-ms",
    "200",
    "--broker-session-timeout-ms",
    "1500",
];

pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// A `sluice serve` process of a cluster; killed when dropped.
pub struct Node {
    pub child: Child,
    pub kafka: SocketAddr,
    /// Its stdout and stderr, appended to across restarts.
    pub log: PathBuf,
    /// How it was started: data dir root, node id, voters, extra flags.
    pub started_as: (PathBuf, u8, String, Vec<String>),
}

impl Node {
    /// The same node again, on the same data (after a kill or a stop).
    pub fn restart(&self) -> Node {
        let (dir, id, voters, extra) = &self.started_as;
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        start(dir, *id, voters, self.kafka, &extra)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts node `id` listening on `kafka`, data in `dir/n<id>/data`, log in
/// `dir/n<id>/broker.log`; `extra` are more `sluice serve` flags. One shard
/// and a three-partition `__consumer_offsets` unless `extra` says otherwise.
pub fn start(dir: &Path, id: u8, voters: &str, kafka: SocketAddr, extra: &[&str]) -> Node {
    let data = dir.join(format!("n{id}"));
    std::fs::create_dir_all(&data).expect("node dir");
    let log = data.join("broker.log");
    let out = File::options()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log file");
    let args = [
        "serve",
        "--node-id",
        &id.to_string(),
        "--listen",
        &kafka.to_string(),
        "--data-dir",
        data.join("data").to_str().expect("UTF-8 path"),
        "--metrics-listen",
        "off",
        "--controller-voters",
        voters,
    ]
    .map(String::from);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    if !extra.contains(&"--shards") {
        args.extend_from_slice(&["--shards", "1"]);
    }
    // A small replicated __consumer_offsets: every cluster creates one.
    if !extra.contains(&"--offsets-topic-partitions") {
        args.extend_from_slice(&["--offsets-topic-partitions", "3"]);
    }
    args.extend_from_slice(extra);
    let child = sluice_command(&args)
        .env("SLUICE_LOG", "info")
        .stdout(out.try_clone().expect("clone log"))
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sluice");
    Node {
        child,
        kafka,
        log,
        started_as: (
            dir.to_path_buf(),
            id,
            voters.to_string(),
            extra.iter().map(|s| (*s).to_string()).collect(),
        ),
    }
}

/// What a failed wait prints: the logs of some nodes, running or not.
pub trait NodeLogs {
    fn log_paths(&self) -> Vec<PathBuf>;
}

impl NodeLogs for [Node] {
    fn log_paths(&self) -> Vec<PathBuf> {
        self.iter().map(|n| n.log.clone()).collect()
    }
}

impl NodeLogs for Vec<Node> {
    fn log_paths(&self) -> Vec<PathBuf> {
        self.as_slice().log_paths()
    }
}

impl NodeLogs for [PathBuf] {
    fn log_paths(&self) -> Vec<PathBuf> {
        self.to_vec()
    }
}

impl NodeLogs for Vec<PathBuf> {
    fn log_paths(&self) -> Vec<PathBuf> {
        self.clone()
    }
}

/// The whole log of each node, one after the other.
pub fn logs<L: NodeLogs + ?Sized>(of: &L) -> String {
    of.log_paths()
        .iter()
        .map(|p| {
            format!(
                "--- {} ---\n{}",
                p.display(),
                std::fs::read_to_string(p).unwrap_or_default()
            )
        })
        .collect()
}

/// The log files of `nodes`, for waits that outlive the nodes.
pub fn log_paths(nodes: &[Node]) -> Vec<PathBuf> {
    nodes.log_paths()
}

/// Polls `ok` every 100 ms until it holds, failing with the nodes' logs
/// after [`FORM_TIMEOUT`].
pub fn wait_until<L: NodeLogs + ?Sized>(what: &str, nodes: &L, mut ok: impl FnMut() -> bool) {
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

/// A client on a new connection to `addr` (None when it does not accept
/// within 500 ms); reads and writes give up after 20 s, longer than a
/// produce's `timeout_ms`.
pub fn client(addr: SocketAddr) -> Option<Client> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    let mut c = Client::new(stream);
    c.set_timeout(Duration::from_secs(20));
    Some(c)
}

/// Kafka address of node `id` among `nodes` (ids are 1-based positions).
pub fn addr_of(nodes: &[Node], id: i32) -> SocketAddr {
    nodes[usize::try_from(id - 1).expect("node id")].kafka
}

/// A broker as DescribeCluster lists it: id, host, port, fenced.
pub type Listed = (i32, String, i32, bool);

/// The brokers DescribeCluster (v0: live ones only) lists, and the controller.
pub fn describe(addr: SocketAddr) -> Option<(Vec<Listed>, i32)> {
    describe_at(addr, 0, false)
}

/// DescribeCluster at `version`: the brokers listed (sorted) and the
/// controller; None while `addr` does not accept.
pub fn describe_at(
    addr: SocketAddr,
    version: i16,
    include_fenced: bool,
) -> Option<(Vec<Listed>, i32)> {
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

/// Live broker ids DescribeCluster lists at `addr` (none while it does not
/// accept).
pub fn live_brokers(addr: SocketAddr) -> Vec<i32> {
    describe(addr).map_or_else(Vec::new, |(brokers, _)| {
        brokers.iter().map(|b| b.0).collect()
    })
}

/// Three nodes on 127.0.0.1-3, started and waited for until each lists all
/// three brokers; returns the nodes, their Kafka addresses, what
/// DescribeCluster must list, and the controller each node named.
pub fn form_cluster(
    dir: &Path,
    extra: &[&str],
) -> (Vec<Node>, Vec<SocketAddr>, Vec<Listed>, Vec<i32>) {
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

/// `topic` as Metadata v12 from `addr` lists it (without creating it);
/// None while the node does not accept.
pub fn metadata_topic(addr: SocketAddr, topic: &str) -> Option<MetadataResponseTopic> {
    let mut c = client(addr)?;
    let body = RequestBody::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.into()),
            ..Default::default()
        }]),
        // A node without the topic would create one of its own.
        allow_auto_topic_creation: false,
        ..Default::default()
    });
    let ResponseBody::Metadata(r) = c.call(12, &body) else {
        panic!("Metadata answered with another response");
    };
    r.topics.into_iter().next()
}

/// (leader, replicas in assignment order, ISR sorted) of partition 0 of
/// `topic` in Metadata from `addr`; None without a leader.
pub fn partition_state(addr: SocketAddr, topic: &str) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let t = metadata_topic(addr, topic)?;
    let p = t.partitions.first()?;
    if t.error_code != 0 || p.error_code != 0 || p.leader_id < 0 {
        return None;
    }
    let mut isr = p.isr_nodes.clone();
    isr.sort_unstable();
    Some((p.leader_id, p.replica_nodes.clone(), isr))
}

/// Every partition of `topic` as Metadata v12 from `addr` lists it, replica
/// order kept (the first replica is the preferred leader); None while the
/// node cannot answer or has no such topic.
pub fn partitions_of(addr: SocketAddr, topic: &str) -> Option<Vec<MetadataResponsePartition>> {
    let t = metadata_topic(addr, topic)?;
    (t.error_code == 0 && !t.partitions.is_empty()).then_some(t.partitions)
}

/// Creates `topic` with one partition of `rf` replicas; the answer.
pub fn create_replicated(addr: SocketAddr, topic: &str, rf: i16) -> CreatableTopicResult {
    create_replicated_with(addr, topic, rf, &[])
}

/// Creates `topic` with one partition of `rf` replicas and `configs`.
pub fn create_replicated_with(
    addr: SocketAddr,
    topic: &str,
    rf: i16,
    configs: &[(&str, &str)],
) -> CreatableTopicResult {
    create_topics(addr, topic, 1, rf, configs)
}

/// Creates `topic` with `partitions` partitions of `rf` replicas.
pub fn create_replicated_partitions(
    addr: SocketAddr,
    topic: &str,
    rf: i16,
    partitions: i32,
) -> CreatableTopicResult {
    create_topics(addr, topic, partitions, rf, &[])
}

fn create_topics(
    addr: SocketAddr,
    topic: &str,
    partitions: i32,
    rf: i16,
    configs: &[(&str, &str)],
) -> CreatableTopicResult {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.into(),
            num_partitions: partitions,
            replication_factor: rf,
            configs: configs
                .iter()
                .map(|(k, v)| CreatableTopicConfig {
                    name: (*k).into(),
                    value: Some((*v).into()),
                })
                .collect(),
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

/// Produces `records` with acks=all to partition 0 of `topic` at `addr`.
pub fn produce_to(addr: SocketAddr, topic: &str, records: Bytes) -> PartitionProduceResponse {
    produce_acks(addr, topic, -1, records)
}

/// Produces `records` with `acks` to partition 0 of `topic` at `addr`.
pub fn produce_acks(
    addr: SocketAddr,
    topic: &str,
    acks: i16,
    records: Bytes,
) -> PartitionProduceResponse {
    let mut c = client(addr).expect("connect");
    c.set_timeout(Duration::from_secs(30));
    let RequestBody::Produce(mut req) = produce_request(topic, 0, records) else {
        unreachable!("a produce request")
    };
    req.acks = acks;
    match c.call(PRODUCE_VERSION, &RequestBody::Produce(req)) {
        ResponseBody::Produce(r) => single_produce_answer(r, topic, 0),
        other => panic!("not a Produce response: {other:?}"),
    }
}

/// Fetch v12 of partition 0 of `topic` from `offset`, waiting up to
/// `max_wait_ms` for a byte.
pub fn fetch_from(addr: SocketAddr, topic: &str, offset: i64, max_wait_ms: i32) -> PartitionData {
    let mut c = client(addr).expect("connect");
    c.set_timeout(Duration::from_secs(30));
    let body = RequestBody::Fetch(FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: offset,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    });
    match c.call(FETCH_VERSION, &body) {
        ResponseBody::Fetch(mut r) => r.responses.remove(0).partitions.remove(0),
        other => panic!("not a Fetch response: {other:?}"),
    }
}

/// DeleteRecords of `topic`-0 below `offset`, sent to `addr`: the new low
/// watermark.
pub fn delete_records(addr: SocketAddr, topic: &str, offset: i64) -> i64 {
    let mut c = client(addr).expect("connect");
    let body = RequestBody::DeleteRecords(DeleteRecordsRequest {
        topics: vec![DeleteRecordsTopic {
            name: topic.into(),
            partitions: vec![DeleteRecordsPartition {
                partition_index: 0,
                offset,
            }],
        }],
        timeout_ms: 10_000,
    });
    let ResponseBody::DeleteRecords(r) = c.call(2, &body) else {
        panic!("DeleteRecords answered with another response");
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "DeleteRecords at {addr}");
    p.low_watermark
}

/// Sends `signal` (`STOP`, `CONT`, `TERM`) to a node's process.
pub fn signal(node: &Node, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &node.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal}");
}

/// SIGTERM `node` and wait (bounded) for a clean exit.
pub fn stop_cleanly(node: &mut Node, all_logs: impl Fn() -> String) {
    signal(node, "TERM");
    let until = Instant::now() + FORM_TIMEOUT;
    let status = loop {
        if let Some(status) = node.child.try_wait().expect("poll") {
            break status;
        }
        assert!(
            Instant::now() < until,
            "no exit after SIGTERM:\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exited with {status}:\n{}", all_logs());
}

/// The directory of `topic`-0 in node `id`'s data dir.
pub fn partition_dir(dir: &Path, id: i32, topic: &str) -> PathBuf {
    dir.join(format!("n{id}"))
        .join("data")
        .join(format!("{topic}-0"))
}

/// The bytes of the first segment of `topic`-0 in node `id`'s data dir.
pub fn segment_bytes(dir: &Path, id: i32, topic: &str) -> Vec<u8> {
    let path = partition_dir(dir, id, topic).join("00000000000000000000.log");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `sluice cluster SUBCOMMAND --bootstrap-server addr ARGS`: exit code, and
/// stdout followed by stderr.
pub fn cluster_cli(subcommand: &str, addr: SocketAddr, args: &[&str]) -> (i32, String) {
    let bootstrap = addr.to_string();
    let mut all = vec![
        "cluster",
        subcommand,
        "--bootstrap-server",
        bootstrap.as_str(),
    ];
    all.extend_from_slice(args);
    let out = sluice_command(&all)
        .output()
        .unwrap_or_else(|e| panic!("run sluice cluster {subcommand}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `sluice cluster elect ARGS` against `addr`: (exit code, output).
pub fn cli_elect(addr: SocketAddr, args: &[&str]) -> (i32, String) {
    cluster_cli("elect", addr, args)
}

/// `sluice cluster reassign ARGS` against `addr`: (exit code, output).
pub fn cli_reassign(addr: SocketAddr, args: &[&str]) -> (i32, String) {
    cluster_cli("reassign", addr, args)
}
