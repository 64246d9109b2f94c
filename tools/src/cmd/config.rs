//! What the client commands (`topic`, `produce`, `consume`, `group`,
//! `cluster`) share: how to reach the cluster (`--bootstrap-server`,
//! `--timeout-ms`), a session over the Kafka protocol that knows the
//! brokers and the API versions agreed with them, and the exit codes.
//!
//! The commands speak only the Kafka protocol, so they work against any
//! Kafka-compatible broker; an API the broker lacks is an error that says so.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;
use perf::client::Connection;
use perf::PerfError;
use sluice_codec::find_coordinator_request::FindCoordinatorRequest;
use sluice_codec::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use sluice_codec::metadata_request::{MetadataRequest, MetadataRequestTopic};
use sluice_codec::metadata_response::MetadataResponse;
use sluice_codec::{ApiKey, ErrorCode, RequestBody, ResponseBody};

/// Exit codes of every `sluice` command (also in `sluice --help`).
pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;
pub const EXIT_NOT_FOUND: u8 = 4;

pub const EXIT_CODES_HELP: &str = "Exit codes: 0 success; 1 runtime error (the broker refused \
or failed a request); 2 invalid arguments, input or configuration; 3 broker unreachable \
(connection refused, timed out or lost); 4 not found (topic, partition or group).";

/// An error that ends the command with a particular exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

fn exit(code: u8, message: impl fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code,
        message: message.to_string(),
    })
}

/// Bad arguments, input or configuration: exit code 2.
pub fn usage_error(message: impl fmt::Display) -> anyhow::Error {
    exit(EXIT_USAGE, message)
}

/// A topic, partition or group that does not exist: exit code 4.
pub fn not_found(message: impl fmt::Display) -> anyhow::Error {
    exit(EXIT_NOT_FOUND, message)
}

/// The broker refused or failed something: exit code 1.
pub fn runtime_error(message: impl fmt::Display) -> anyhow::Error {
    exit(EXIT_RUNTIME, message)
}

/// The exit code for an error that ended a command.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(x) = cause.downcast_ref::<Exit>() {
            return x.code;
        }
        if let Some(PerfError::Io { .. }) = cause.downcast_ref::<PerfError>() {
            return EXIT_UNREACHABLE;
        }
    }
    EXIT_RUNTIME
}

/// Whether progress lines should be drawn (stderr is a terminal).
pub fn show_progress() -> bool {
    std::io::stderr().is_terminal()
}

/// How to reach the cluster.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// A broker to bootstrap from, HOST:PORT (any broker of the cluster).
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        global = true,
        env = "SLUICE_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,
    /// How long to wait for any one answer from a broker, in ms.
    #[arg(
        long,
        global = true,
        env = "SLUICE_TIMEOUT_MS",
        default_value_t = 30_000,
        value_name = "MS"
    )]
    pub timeout_ms: u64,
}

/// The range of versions this CLI handles for each API it uses (topics by
/// name: Fetch and Produce up to 12, OffsetCommit/OffsetFetch below 10).
const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 4, 12),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ElectLeaders, 1, 2),
    (ApiKey::UnregisterBroker, 0, 0),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::AlterReplicaLogDirs, 1, 2),
];

/// One partition as Metadata describes it.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// A topic as Metadata describes it, partitions in index order.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    pub fn leader_of(&self, partition: i32) -> Option<i32> {
        self.partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader)
    }
}

/// A conversation with a cluster: one connection to the bootstrap broker,
/// one per other broker as needed, the API versions the bootstrap broker
/// offers, and the brokers Metadata listed.
pub struct Session {
    bootstrap: String,
    timeout: Duration,
    boot: Connection,
    /// Connections by node id, opened on first use.
    conns: HashMap<i32, Connection>,
    apis: Vec<(i16, i16, i16)>,
    pub brokers: BTreeMap<i32, String>,
    pub cluster_id: Option<String>,
    pub controller_id: i32,
}

impl Session {
    pub fn connect(args: &ClientArgs) -> anyhow::Result<Session> {
        let timeout = Duration::from_millis(args.timeout_ms.max(1));
        let mut boot = open(&args.bootstrap, timeout)?;
        let apis = boot
            .api_versions()
            .map_err(|e| io_error(&args.bootstrap, e))?;
        let mut s = Session {
            bootstrap: args.bootstrap.clone(),
            timeout,
            boot,
            conns: HashMap::new(),
            apis,
            brokers: BTreeMap::new(),
            cluster_id: None,
            controller_id: -1,
        };
        s.metadata(Some(&[]), false)?;
        Ok(s)
    }

    pub fn supports(&self, key: ApiKey) -> bool {
        self.version(key).is_ok()
    }

    /// The highest version of `key` both this CLI and the broker speak.
    pub fn version(&self, key: ApiKey) -> anyhow::Result<i16> {
        let &(_, lo, hi) = CLIENT_VERSIONS
            .iter()
            .find(|(k, _, _)| *k == key)
            .expect("every API the CLI calls is listed");
        let Some(&(_, blo, bhi)) = self.apis.iter().find(|(k, _, _)| *k == key.as_i16()) else {
            return Err(runtime_error(format!(
                "the broker at {} does not support {} (it is not in its ApiVersions)",
                self.bootstrap,
                key.name()
            )));
        };
        let v = hi.min(bhi);
        if v < lo.max(blo) {
            return Err(runtime_error(format!(
                "no common version of {}: the broker speaks {blo}-{bhi}, this CLI {lo}-{hi}",
                key.name()
            )));
        }
        Ok(v)
    }

    /// Sends `body` to `node` (None: the bootstrap broker) at the agreed version.
    pub fn call(&mut self, node: Option<i32>, body: &RequestBody) -> anyhow::Result<ResponseBody> {
        let key = body.api_key();
        let version = self.version(key)?;
        let (addr, conn) = match node {
            None => (self.bootstrap.clone(), &mut self.boot),
            Some(id) => {
                let addr = self.brokers.get(&id).cloned().ok_or_else(|| {
                    runtime_error(format!(
                        "broker {id} is not in the cluster metadata; is it down?"
                    ))
                })?;
                if !self.conns.contains_key(&id) {
                    let c = open(&addr, self.timeout)?;
                    self.conns.insert(id, c);
                }
                (addr, self.conns.get_mut(&id).expect("inserted above"))
            }
        };
        let response = conn.call(version, body).map_err(|e| io_error(&addr, e))?;
        if response.api_key() != key {
            return Err(runtime_error(format!(
                "{addr} answered {} with a {} response",
                key.name(),
                response.api_key().name()
            )));
        }
        Ok(response)
    }

    /// Sends `body` to `node` without waiting for an answer (Produce with acks=0).
    pub fn send_unanswered(&mut self, node: i32, body: &RequestBody) -> anyhow::Result<()> {
        let version = self.version(body.api_key())?;
        let addr = self.brokers.get(&node).cloned().ok_or_else(|| {
            runtime_error(format!(
                "broker {node} is not in the cluster metadata; is it down?"
            ))
        })?;
        if !self.conns.contains_key(&node) {
            let c = open(&addr, self.timeout)?;
            self.conns.insert(node, c);
        }
        let conn = self.conns.get_mut(&node).expect("inserted above");
        conn.send_unanswered(version, body)
            .map_err(|e| io_error(&addr, e))
    }

    /// Metadata for `topics` (None: all topics), refreshing the broker list.
    pub fn metadata(
        &mut self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> anyhow::Result<MetadataResponse> {
        let body = RequestBody::Metadata(MetadataRequest {
            topics: topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic {
                        name: Some(t.clone()),
                        ..MetadataRequestTopic::default()
                    })
                    .collect()
            }),
            allow_auto_topic_creation: allow_auto_create,
            ..MetadataRequest::default()
        });
        let ResponseBody::Metadata(m) = self.call(None, &body)? else {
            unreachable!("call() checks the response type");
        };
        self.brokers = m
            .brokers
            .iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
            .collect();
        self.cluster_id = m.cluster_id.clone();
        self.controller_id = m.controller_id;
        Ok(m)
    }

    /// Every topic (internal ones too), sorted by name.
    pub fn topics(&mut self) -> anyhow::Result<Vec<TopicInfo>> {
        let m = self.metadata(None, false)?;
        let mut out: Vec<TopicInfo> = m
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| {
                Some(TopicInfo {
                    name: t.name.clone()?,
                    internal: t.is_internal,
                    partitions: partitions_of(t),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One topic; unknown is [`not_found`]. Waits (up to the timeout) for
    /// every partition to have a leader, as a topic just created may not yet.
    pub fn topic(&mut self, name: &str, allow_auto_create: bool) -> anyhow::Result<TopicInfo> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let m = self.metadata(Some(&[name.to_string()]), allow_auto_create)?;
            let t = m
                .topics
                .iter()
                .find(|t| t.name.as_deref() == Some(name))
                .ok_or_else(|| {
                    runtime_error(format!("metadata has no entry for topic {name:?}"))
                })?;
            let code = ErrorCode(t.error_code);
            if code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION && !allow_auto_create {
                return Err(not_found(format!(
                    "topic {name:?} does not exist on {}; list topics with `sluice topic list`, create it with `sluice topic create {name}`",
                    self.bootstrap
                )));
            }
            if code == ErrorCode::INVALID_TOPIC_EXCEPTION {
                return Err(usage_error(format!(
                    "{name:?} is not a valid topic name (letters, digits, '.', '_', '-'; at most 249)"
                )));
            }
            let info = TopicInfo {
                name: name.to_string(),
                internal: t.is_internal,
                partitions: partitions_of(t),
            };
            let ready = code.is_none()
                && !info.partitions.is_empty()
                && info.partitions.iter().all(|p| p.leader >= 0);
            if ready {
                return Ok(info);
            }
            if Instant::now() >= deadline {
                return Err(runtime_error(format!(
                    "topic {name:?} has no leader for every partition after {:?} ({code}); is the cluster healthy?",
                    self.timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// ListOffsets of `partitions` of `topic` at `timestamp` (-1 latest,
    /// -2 earliest, else the first offset at or after that time; a time
    /// after the last record gives -1), asking each partition's leader.
    pub fn list_offsets(
        &mut self,
        topic: &TopicInfo,
        partitions: &[i32],
        timestamp: i64,
    ) -> anyhow::Result<BTreeMap<i32, i64>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            let leader = topic.leader_of(p).ok_or_else(|| {
                not_found(format!(
                    "partition {p} of topic {:?} does not exist (it has {})",
                    topic.name,
                    topic.partitions.len()
                ))
            })?;
            by_leader.entry(leader).or_default().push(p);
        }
        let mut out = BTreeMap::new();
        for (leader, parts) in by_leader {
            let body = RequestBody::ListOffsets(ListOffsetsRequest {
                replica_id: -1,
                topics: vec![ListOffsetsTopic {
                    name: topic.name.clone(),
                    partitions: parts
                        .iter()
                        .map(|&p| ListOffsetsPartition {
                            partition_index: p,
                            current_leader_epoch: -1,
                            timestamp,
                        })
                        .collect(),
                }],
                ..ListOffsetsRequest::default()
            });
            let ResponseBody::ListOffsets(r) = self.call(Some(leader), &body)? else {
                unreachable!("call() checks the response type");
            };
            for t in &r.topics {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        return Err(runtime_error(format!(
                            "cannot list offsets of {}/{}: {}",
                            topic.name,
                            p.partition_index,
                            ErrorCode(p.error_code)
                        )));
                    }
                    out.insert(p.partition_index, p.offset);
                }
            }
        }
        Ok(out)
    }

    /// The node coordinating `group`, retrying while the coordinator loads.
    pub fn coordinator(&mut self, group: &str) -> anyhow::Result<i32> {
        let version = self.version(ApiKey::FindCoordinator)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let body = RequestBody::FindCoordinator(FindCoordinatorRequest {
                key: group.to_string(),
                key_type: 0,
                coordinator_keys: vec![group.to_string()],
            });
            let ResponseBody::FindCoordinator(r) = self.call(None, &body)? else {
                unreachable!("call() checks the response type");
            };
            let (code, message, node, host, port) = if version >= 4 {
                let c = r.coordinators.first().ok_or_else(|| {
                    runtime_error("FindCoordinator answered without a coordinator")
                })?;
                (
                    c.error_code,
                    c.error_message.clone(),
                    c.node_id,
                    c.host.clone(),
                    c.port,
                )
            } else {
                (
                    r.error_code,
                    r.error_message.clone(),
                    r.node_id,
                    r.host.clone(),
                    r.port,
                )
            };
            let code = ErrorCode(code);
            if code.is_none() {
                self.brokers.insert(node, format!("{host}:{port}"));
                return Ok(node);
            }
            let retriable = [
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                ErrorCode::COORDINATOR_LOAD_IN_PROGRESS,
                ErrorCode::NOT_COORDINATOR,
            ]
            .contains(&code);
            if !retriable || Instant::now() >= deadline {
                return Err(runtime_error(format!(
                    "cannot find the coordinator of group {group:?}: {code} {}",
                    message.unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn partitions_of(t: &sluice_codec::metadata_response::MetadataResponseTopic) -> Vec<PartitionInfo> {
    let mut ps: Vec<PartitionInfo> = t
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            partition: p.partition_index,
            leader: p.leader_id,
            replicas: p.replica_nodes.clone(),
            isr: p.isr_nodes.clone(),
        })
        .collect();
    ps.sort_by_key(|p| p.partition);
    ps
}

fn open(addr: &str, timeout: Duration) -> anyhow::Result<Connection> {
    let conn = Connection::connect_timeout(addr, timeout).map_err(|e| io_error(addr, e))?;
    Ok(conn)
}

/// A failure to reach or talk to `addr`, as exit code 3 with advice.
fn io_error(addr: &str, e: PerfError) -> anyhow::Error {
    match e {
        PerfError::Io { context, source } => exit(
            EXIT_UNREACHABLE,
            format!(
                "broker unreachable: {context}: {source}; check that a broker runs there and the address given with --bootstrap-server / SLUICE_BOOTSTRAP_SERVER (now {addr})"
            ),
        ),
        other => runtime_error(other),
    }
}

/// Error text for a per-item error code with the broker's message.
pub fn describe_error(code: ErrorCode, message: Option<&str>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!("{code}: {m}"),
        _ => code.to_string(),
    }
}

/// Parses `NAME=VALUE` (topic configs, headers).
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How often a progress line is redrawn at most.
const PROGRESS_REDRAW: Duration = Duration::from_millis(200);

/// A line of progress on stderr, drawn at the first update and then redrawn
/// at most every [`PROGRESS_REDRAW`], only when stderr is a terminal.
pub struct Progress {
    enabled: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            enabled: show_progress(),
            last: None,
            drawn: false,
        }
    }

    pub fn update(&mut self, line: impl FnOnce() -> String) {
        if !self.enabled || self.last.is_some_and(|t| t.elapsed() < PROGRESS_REDRAW) {
            return;
        }
        self.last = Some(Instant::now());
        self.drawn = true;
        eprint!("\r\x1b[2K{}", line());
    }

    /// Clears the line, so what follows starts clean.
    pub fn finish(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }
}
