//! The client side of the Kafka protocol on our codec: framing over blocking
//! sockets, request pipelining, and bootstrap (ApiVersions, Metadata,
//! CreateTopics, ListOffsets).
//!
//! Why blocking sockets and threads rather than an async runtime: the load
//! generator gets one core, and its cost per message (building the record,
//! recording its latency) dominates; batching amortises each request's
//! syscalls and thread wake-ups over hundreds of messages. Plain threads keep
//! the client independent of glommio's locked-memory needs and easy to test.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_codec::api_versions_request::ApiVersionsRequest;
use sluice_codec::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use sluice_codec::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use sluice_codec::metadata_request::{MetadataRequest, MetadataRequestTopic};
use sluice_codec::metadata_response::MetadataResponse;
use sluice_codec::{
    decode_response, encode_request, ApiKey, ErrorCode, RequestBody, RequestHeader, ResponseBody,
};

use crate::error::{PerfError, Result};

/// Largest response frame accepted (a fetch answer is bounded by the
/// request's max bytes; this only stops a garbage size prefix).
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// Socket read buffer of a pipeline's reader.
const READ_BUFFER_BYTES: usize = 256 << 10;
/// How long bootstrap waits for a new topic's partitions to get leaders.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);
pub const CLIENT_ID: &str = "sluice-bench";

/// Versions this client speaks, per API: topics by name (Produce <= 12 and
/// Fetch <= 12; later versions address topics by id).
const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 4, 12),
    (ApiKey::CreateTopics, 2, 7),
];

/// The version used for each API, agreed with the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub produce: i16,
    pub fetch: i16,
    pub list_offsets: i16,
    pub metadata: i16,
    pub create_topics: i16,
}

impl Versions {
    /// The highest version of each API both sides speak.
    pub fn negotiate(broker: &[(i16, i16, i16)]) -> Result<Versions> {
        let pick = |key: ApiKey| -> Result<i16> {
            let &(_, lo, hi) = CLIENT_VERSIONS
                .iter()
                .find(|(k, _, _)| *k == key)
                .expect("every API used is listed");
            let Some(&(_, blo, bhi)) = broker.iter().find(|(k, _, _)| *k == key.as_i16()) else {
                return Err(PerfError::Broker(format!(
                    "the broker does not offer {}",
                    key.name()
                )));
            };
            let v = hi.min(bhi);
            if v < lo.max(blo) {
                return Err(PerfError::Broker(format!(
                    "no common version of {}: broker {blo}-{bhi}, client {lo}-{hi}",
                    key.name()
                )));
            }
            Ok(v)
        };
        Ok(Versions {
            produce: pick(ApiKey::Produce)?,
            fetch: pick(ApiKey::Fetch)?,
            list_offsets: pick(ApiKey::ListOffsets)?,
            metadata: pick(ApiKey::Metadata)?,
            create_topics: pick(ApiKey::CreateTopics)?,
        })
    }
}

/// Encodes one request frame (size prefix included).
pub fn encode(api_version: i16, correlation_id: i32, body: &RequestBody) -> Vec<Bytes> {
    let header = RequestHeader {
        api_key: body.api_key().as_i16(),
        api_version,
        correlation_id,
        client_id: Some(CLIENT_ID.to_string()),
    };
    encode_request(&header, body)
}

/// Writes all chunks with vectored writes.
pub fn write_chunks(stream: &mut impl Write, chunks: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = stream.write_vectored(rest)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Reads one frame (the bytes after the size prefix).
pub fn read_frame(stream: &mut impl Read) -> std::io::Result<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size);
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s <= MAX_RESPONSE_BYTES)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("response size {size} outside 0..={MAX_RESPONSE_BYTES}"),
            )
        })?;
    let mut buf = vec![0u8; size];
    stream.read_exact(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// Connects to `addr`, or to the first of a comma-separated list of
/// addresses that answers (a bootstrap list, as Kafka clients take).
fn connect(addr: &str) -> Result<TcpStream> {
    let mut addrs = Vec::new();
    let mut unresolved = None;
    for one in addr.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match one.to_socket_addrs() {
            Ok(resolved) => addrs.extend(resolved),
            Err(e) => unresolved = Some(PerfError::io(format!("cannot resolve {one}"), e)),
        }
    }
    if addrs.is_empty() {
        return Err(unresolved.unwrap_or_else(|| {
            PerfError::io(
                format!("no address in {addr:?}"),
                std::io::ErrorKind::InvalidInput.into(),
            )
        }));
    }
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
            Ok(s) => {
                s.set_nodelay(true)
                    .map_err(|e| PerfError::io("TCP_NODELAY", e))?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(PerfError::io(
        format!("cannot connect to {addr}"),
        last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
    ))
}

/// A connection used one request at a time (bootstrap and admin calls).
pub struct Connection {
    addr: String,
    stream: TcpStream,
    next_correlation_id: i32,
}

impl Connection {
    pub fn connect(addr: &str) -> Result<Connection> {
        Ok(Connection {
            addr: addr.to_string(),
            stream: connect(addr)?,
            next_correlation_id: 0,
        })
    }

    /// Sends one request and waits for its response.
    pub fn call(&mut self, version: i16, body: &RequestBody) -> Result<ResponseBody> {
        let api = body.api_key();
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let io = |e| PerfError::io(format!("{} to {}", api.name(), self.addr), e);
        write_chunks(&mut self.stream, &encode(version, correlation_id, body)).map_err(io)?;
        let frame = read_frame(&mut self.stream).map_err(io)?;
        let (got, response) =
            decode_response(api, version, frame).map_err(|source| PerfError::Decode {
                api: api.name(),
                source,
            })?;
        if got != correlation_id {
            return Err(PerfError::Protocol(format!(
                "{} answered with correlation id {got}, expected {correlation_id}",
                self.addr
            )));
        }
        Ok(response)
    }

    /// ApiVersions, then the versions to use.
    pub fn negotiate(&mut self) -> Result<Versions> {
        let body = RequestBody::ApiVersions(ApiVersionsRequest {
            client_software_name: CLIENT_ID.to_string(),
            client_software_version: env!("CARGO_PKG_VERSION").to_string(),
            ..ApiVersionsRequest::default()
        });
        let ResponseBody::ApiVersions(r) = self.call(3, &body)? else {
            return Err(PerfError::Protocol(
                "ApiVersions: wrong response type".into(),
            ));
        };
        if r.error_code != 0 {
            return Err(PerfError::Broker(format!(
                "ApiVersions failed: {}",
                ErrorCode(r.error_code)
            )));
        }
        let keys: Vec<_> = r
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        Versions::negotiate(&keys)
    }
}

/// One request awaiting its response, with what the caller needs to handle
/// the answer.
struct InFlight<T> {
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    context: T,
}

/// A connection with up to `max_in_flight` requests outstanding. The
/// caller's thread writes; a reader thread matches responses to requests
/// strictly in order (Kafka answers a connection's requests in the order
/// sent), checks each correlation id, and hands `(context, response)` to the
/// handler. Sending blocks while the window is full.
pub struct Pipeline<T: Send + 'static> {
    addr: String,
    stream: TcpStream,
    in_flight: Option<SyncSender<InFlight<T>>>,
    reader: Option<JoinHandle<Result<()>>>,
    next_correlation_id: i32,
}

impl<T: Send + 'static> Pipeline<T> {
    pub fn connect<F>(addr: &str, max_in_flight: usize, handler: F) -> Result<Pipeline<T>>
    where
        F: FnMut(T, ResponseBody) -> Result<()> + Send + 'static,
    {
        Pipeline::start(addr, connect(addr)?, max_in_flight, handler)
    }

    /// Starts the reader thread on an open stream.
    pub fn start<F>(
        addr: &str,
        stream: TcpStream,
        max_in_flight: usize,
        handler: F,
    ) -> Result<Pipeline<T>>
    where
        F: FnMut(T, ResponseBody) -> Result<()> + Send + 'static,
    {
        assert!(max_in_flight >= 1, "at least one request in flight");
        // The reader holds one entry while it waits for that response, so
        // the channel holds the rest of the window.
        let (tx, rx) = sync_channel(max_in_flight - 1);
        let read_half = stream
            .try_clone()
            .map_err(|e| PerfError::io("cloning a socket", e))?;
        let name = addr.to_string();
        let reader = std::thread::Builder::new()
            .name(format!("bench-read {addr}"))
            .spawn(move || read_loop(name, read_half, rx, handler))
            .map_err(|e| PerfError::io("spawning a reader thread", e))?;
        Ok(Pipeline {
            addr: addr.to_string(),
            stream,
            in_flight: Some(tx),
            reader: Some(reader),
            next_correlation_id: 0,
        })
    }

    /// Sends a request whose response goes to the handler with `context`.
    /// Blocks while `max_in_flight` requests are outstanding.
    pub fn send(&mut self, version: i16, body: &RequestBody, context: T) -> Result<()> {
        let correlation_id = self.take_correlation_id();
        let entry = InFlight {
            correlation_id,
            api: body.api_key(),
            version,
            context,
        };
        let tx = self.in_flight.as_ref().expect("sender kept until finish");
        if tx.send(entry).is_err() {
            // The reader ended; its result says why.
            return Err(self.reader_failure());
        }
        self.write(version, correlation_id, body)
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    pub fn send_unanswered(&mut self, version: i16, body: &RequestBody) -> Result<()> {
        let correlation_id = self.take_correlation_id();
        self.write(version, correlation_id, body)
    }

    fn take_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        // Wraps to negative after 2^31 requests, as Java's client does.
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        id
    }

    fn write(&mut self, version: i16, correlation_id: i32, body: &RequestBody) -> Result<()> {
        let chunks = encode(version, correlation_id, body);
        match write_chunks(&mut self.stream, &chunks) {
            Ok(()) => Ok(()),
            Err(e) => {
                let failure = self.reader_failure();
                match failure {
                    PerfError::Protocol(_) | PerfError::Decode { .. } | PerfError::Broker(_) => {
                        Err(failure)
                    }
                    _ => Err(PerfError::io(format!("writing to {}", self.addr), e)),
                }
            }
        }
    }

    fn reader_failure(&mut self) -> PerfError {
        self.in_flight = None;
        match self.reader.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => PerfError::Protocol(format!("reader of {} panicked", self.addr)),
            _ => PerfError::Protocol(format!("connection to {} closed", self.addr)),
        }
    }

    /// Waits for every outstanding response, then closes.
    pub fn finish(mut self) -> Result<()> {
        self.in_flight = None;
        let result = match self.reader.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(PerfError::Protocol(format!(
                "reader of {} panicked",
                self.addr
            ))),
            None => Ok(()),
        };
        let _ = self.stream.shutdown(Shutdown::Both);
        result
    }
}

impl<T: Send + 'static> Drop for Pipeline<T> {
    fn drop(&mut self) {
        if self.reader.is_some() {
            // Not finished: unblock the reader and let it go.
            self.in_flight = None;
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }
}

fn read_loop<T, F>(
    addr: String,
    stream: TcpStream,
    rx: Receiver<InFlight<T>>,
    mut handler: F,
) -> Result<()>
where
    F: FnMut(T, ResponseBody) -> Result<()>,
{
    let shutdown_handle = stream.try_clone().ok();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
    let result = (|| {
        // Ends when the sender is dropped and every request was answered.
        while let Ok(req) = rx.recv() {
            let frame = read_frame(&mut reader).map_err(|e| {
                PerfError::io(
                    format!("reading the {} response from {addr}", req.api.name()),
                    e,
                )
            })?;
            let (got, body) = decode_response(req.api, req.version, frame).map_err(|source| {
                PerfError::Decode {
                    api: req.api.name(),
                    source,
                }
            })?;
            if got != req.correlation_id {
                return Err(PerfError::Protocol(format!(
                    "{addr} answered out of order: correlation id {got}, expected {} ({})",
                    req.correlation_id,
                    req.api.name()
                )));
            }
            handler(req.context, body)?;
        }
        Ok(())
    })();
    if result.is_err() {
        // Unblock a writer stuck on a full socket.
        if let Some(s) = shutdown_handle {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    result
}

/// What bootstrap learned about the cluster and the topic.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub versions: Versions,
    /// node id -> "host:port" as advertised.
    pub brokers: BTreeMap<i32, String>,
    pub topic: String,
    /// Leader node of each partition, indexed by partition.
    pub leaders: Vec<i32>,
}

impl Cluster {
    pub fn partitions(&self) -> u32 {
        self.leaders.len() as u32
    }

    pub fn leader_addr(&self, partition: u32) -> Result<&str> {
        let node = self.leaders[partition as usize];
        self.brokers.get(&node).map(String::as_str).ok_or_else(|| {
            PerfError::Broker(format!(
                "leader {node} of partition {partition} is not in metadata"
            ))
        })
    }
}

/// How to create the topic when it is missing.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// Connects to `bootstrap`, agrees versions, and finds the topic's leaders,
/// creating the topic first when it is missing and `create` is given.
pub fn bootstrap(bootstrap: &str, topic: &TopicSpec, create: bool) -> Result<Cluster> {
    let mut conn = Connection::connect(bootstrap)?;
    let versions = conn.negotiate()?;
    let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
    let mut created = false;
    loop {
        let meta = metadata(&mut conn, versions.metadata, &topic.name)?;
        let brokers: BTreeMap<i32, String> = meta
            .brokers
            .iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
            .collect();
        let t = meta
            .topics
            .iter()
            .find(|t| t.name.as_deref() == Some(&topic.name))
            .ok_or_else(|| {
                PerfError::Broker(format!("metadata has no entry for {:?}", topic.name))
            })?;
        let code = ErrorCode(t.error_code);
        if code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION && create && !created {
            create_topic(&mut conn, versions.create_topics, topic)?;
            created = true;
            continue;
        }
        let ready = code.is_none()
            && !t.partitions.is_empty()
            && t.partitions
                .iter()
                .all(|p| p.error_code == 0 && p.leader_id >= 0);
        if ready {
            let mut leaders = vec![-1; t.partitions.len()];
            for p in &t.partitions {
                let idx = usize::try_from(p.partition_index)
                    .ok()
                    .filter(|&i| i < leaders.len())
                    .ok_or_else(|| {
                        PerfError::Broker(format!(
                            "partition index {} out of range",
                            p.partition_index
                        ))
                    })?;
                leaders[idx] = p.leader_id;
            }
            if leaders.iter().any(|&l| l < 0) {
                return Err(PerfError::Broker("metadata lists a partition twice".into()));
            }
            let cluster = Cluster {
                versions,
                brokers,
                topic: topic.name.clone(),
                leaders,
            };
            if created {
                // A broker may list a new partition's leader before that
                // leader serves it (Kafka does): wait until every partition
                // answers ListOffsets, so the run does not start with
                // NOT_LEADER_OR_FOLLOWER errors.
                while let Err(e) = list_offsets(&cluster, -1) {
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            return Ok(cluster);
        }
        if Instant::now() >= deadline {
            return Err(PerfError::Broker(format!(
                "topic {:?} not ready after {TOPIC_READY_TIMEOUT:?}: {code}",
                topic.name
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metadata(conn: &mut Connection, version: i16, topic: &str) -> Result<MetadataResponse> {
    let body = RequestBody::Metadata(MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.to_string()),
            ..MetadataRequestTopic::default()
        }]),
        // Auto-creation would make the topic with the broker's default
        // partition count, not the one asked for.
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    });
    match conn.call(version, &body)? {
        ResponseBody::Metadata(m) => Ok(m),
        _ => Err(PerfError::Protocol("Metadata: wrong response type".into())),
    }
}

fn create_topic(conn: &mut Connection, version: i16, topic: &TopicSpec) -> Result<()> {
    let body = RequestBody::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: topic.name.clone(),
            num_partitions: topic.partitions,
            replication_factor: topic.replication_factor,
            configs: topic
                .configs
                .iter()
                .map(|(k, v)| CreatableTopicConfig {
                    name: k.clone(),
                    value: Some(v.clone()),
                })
                .collect(),
            ..CreatableTopic::default()
        }],
        timeout_ms: 30_000,
        ..CreateTopicsRequest::default()
    });
    let ResponseBody::CreateTopics(r) = conn.call(version, &body)? else {
        return Err(PerfError::Protocol(
            "CreateTopics: wrong response type".into(),
        ));
    };
    for t in &r.topics {
        let code = ErrorCode(t.error_code);
        if !code.is_none() && code != ErrorCode::TOPIC_ALREADY_EXISTS {
            return Err(PerfError::Broker(format!(
                "cannot create topic {:?}: {code} {}",
                t.name,
                t.error_message.as_deref().unwrap_or("")
            )));
        }
    }
    Ok(())
}

/// Earliest (`timestamp = -2`) or latest (`-1`) offset of every partition.
pub fn list_offsets(cluster: &Cluster, timestamp: i64) -> Result<Vec<i64>> {
    let mut by_leader: HashMap<i32, Vec<u32>> = HashMap::new();
    for p in 0..cluster.partitions() {
        by_leader
            .entry(cluster.leaders[p as usize])
            .or_default()
            .push(p);
    }
    let mut offsets = vec![-1i64; cluster.partitions() as usize];
    for (leader, parts) in by_leader {
        let addr = cluster
            .brokers
            .get(&leader)
            .ok_or_else(|| PerfError::Broker(format!("leader {leader} is not in metadata")))?;
        let mut conn = Connection::connect(addr)?;
        let body = RequestBody::ListOffsets(ListOffsetsRequest {
            replica_id: -1,
            topics: vec![ListOffsetsTopic {
                name: cluster.topic.clone(),
                partitions: parts
                    .iter()
                    .map(|&p| ListOffsetsPartition {
                        partition_index: p as i32,
                        timestamp,
                        ..ListOffsetsPartition::default()
                    })
                    .collect(),
            }],
            ..ListOffsetsRequest::default()
        });
        let ResponseBody::ListOffsets(r) = conn.call(cluster.versions.list_offsets, &body)? else {
            return Err(PerfError::Protocol(
                "ListOffsets: wrong response type".into(),
            ));
        };
        for t in &r.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(PerfError::Broker(format!(
                        "ListOffsets of partition {}: {}",
                        p.partition_index,
                        ErrorCode(p.error_code)
                    )));
                }
                if let Some(slot) = usize::try_from(p.partition_index)
                    .ok()
                    .and_then(|i| offsets.get_mut(i))
                {
                    *slot = p.offset;
                }
            }
        }
    }
    if let Some(p) = offsets.iter().position(|&o| o < 0) {
        return Err(PerfError::Broker(format!("no offset for partition {p}")));
    }
    Ok(offsets)
}

/// Helpers for the `sluice` admin and client commands: a deadline on every
/// answer, the broker's raw version table, and requests sent without
/// waiting (Produce with acks=0).
impl Connection {
    /// Connects, giving up after `timeout`; every later read and write on
    /// the connection also fails after `timeout` (so a hung broker ends a
    /// command instead of stalling it).
    pub fn connect_timeout(addr: &str, timeout: Duration) -> Result<Connection> {
        let addrs: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|e| PerfError::io(format!("cannot resolve {addr}"), e))?
            .collect();
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    let setup = |s: &TcpStream| -> std::io::Result<()> {
                        s.set_nodelay(true)?;
                        s.set_read_timeout(Some(timeout))?;
                        s.set_write_timeout(Some(timeout))
                    };
                    setup(&stream).map_err(|e| PerfError::io("socket options", e))?;
                    return Ok(Connection {
                        addr: addr.to_string(),
                        stream,
                        next_correlation_id: 0,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(PerfError::io(
            format!("cannot connect to {addr}"),
            last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
        ))
    }

    /// ApiVersions: `(api_key, min_version, max_version)` of every API the
    /// broker offers.
    pub fn api_versions(&mut self) -> Result<Vec<(i16, i16, i16)>> {
        let body = RequestBody::ApiVersions(ApiVersionsRequest {
            client_software_name: CLIENT_ID.to_string(),
            client_software_version: env!("CARGO_PKG_VERSION").to_string(),
            ..ApiVersionsRequest::default()
        });
        let ResponseBody::ApiVersions(r) = self.call(3, &body)? else {
            return Err(PerfError::Protocol(
                "ApiVersions: wrong response type".into(),
            ));
        };
        if r.error_code != 0 {
            return Err(PerfError::Broker(format!(
                "ApiVersions failed: {}",
                ErrorCode(r.error_code)
            )));
        }
        Ok(r.api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect())
    }

    /// Sends a request the broker does not answer (Produce with acks=0).
    pub fn send_unanswered(&mut self, version: i16, body: &RequestBody) -> Result<()> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        write_chunks(&mut self.stream, &encode(version, correlation_id, body))
            .map_err(|e| PerfError::io(format!("{} to {}", body.api_key().name(), self.addr), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_codec::api_versions_response::ApiVersionsResponse;
    use sluice_codec::{decode_request, encode_response};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_bootstrap_list_connects_to_the_first_address_that_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let good = listener.local_addr().unwrap();
        // A port nothing listens on: bind one, then free it.
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let s = connect(&format!("no-such-host.invalid:9092, {dead},{good}")).unwrap();
        assert_eq!(s.peer_addr().unwrap(), good);
        assert!(connect(&dead.to_string()).is_err());
        assert!(connect(" , ").is_err());
    }

    /// A fake broker: reads `n` requests, and only after all have arrived
    /// (so they were truly in flight together) answers each with the
    /// correlation id `answer(id)` and an ApiVersions body carrying the
    /// request's index as its throttle time.
    fn fake_server(n: usize, answer: fn(i32) -> i32) -> (String, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut ids = Vec::new();
            for _ in 0..n {
                let frame = read_frame(&mut s).unwrap();
                let (header, _) = decode_request(frame).unwrap();
                ids.push((header.correlation_id, header.api_version));
            }
            for (i, (id, version)) in ids.into_iter().enumerate() {
                let body = ResponseBody::ApiVersions(ApiVersionsResponse {
                    throttle_time_ms: i as i32,
                    ..ApiVersionsResponse::default()
                });
                let chunks = encode_response(answer(id), ApiKey::ApiVersions, version, &body);
                write_chunks(&mut s, &chunks).unwrap();
            }
            // Wait for the client to close.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        (addr, handle)
    }

    fn api_versions() -> RequestBody {
        RequestBody::ApiVersions(ApiVersionsRequest::default())
    }

    #[test]
    fn pipeline_matches_responses_in_order() {
        let n = 8;
        let (addr, server) = fake_server(n, |id| id);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        let mut p = Pipeline::connect(&addr, n, move |ctx: usize, body| {
            let ResponseBody::ApiVersions(r) = body else {
                panic!("wrong body");
            };
            seen2.lock().unwrap().push((ctx, r.throttle_time_ms));
            Ok(())
        })
        .unwrap();
        for i in 0..n {
            p.send(3, &api_versions(), i * 10).unwrap();
        }
        p.finish().unwrap();
        server.join().unwrap();
        let seen = seen.lock().unwrap().clone();
        let want: Vec<_> = (0..n).map(|i| (i * 10, i as i32)).collect();
        assert_eq!(
            seen, want,
            "each context gets the response to its own request"
        );
    }

    #[test]
    fn pipeline_rejects_an_out_of_order_answer() {
        // The server swaps the ids of the first two responses.
        let (addr, server) = fake_server(2, |id| 1 - id);
        let mut p = Pipeline::connect(&addr, 2, |_: (), _| Ok(())).unwrap();
        p.send(3, &api_versions(), ()).unwrap();
        p.send(3, &api_versions(), ()).unwrap();
        let err = p.finish().unwrap_err();
        assert!(
            matches!(&err, PerfError::Protocol(m) if m.contains("out of order")),
            "{err}"
        );
        server.join().unwrap();
    }

    #[test]
    fn pipeline_window_limits_requests_in_flight() {
        // The server answers only after 4 requests; with a window of 2 the
        // client would block forever, so send from a thread and check that
        // only 2 got through while unanswered.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let sent = Arc::new(Mutex::new(0usize));
        let sent2 = Arc::clone(&sent);
        let client = std::thread::spawn(move || {
            let mut p = Pipeline::connect(&addr, 2, |_: (), _| Ok(())).unwrap();
            for _ in 0..3 {
                p.send(3, &api_versions(), ()).unwrap();
                *sent2.lock().unwrap() += 1;
            }
            p.finish()
        });
        let (mut s, _) = listener.accept().unwrap();
        let mut ids = Vec::new();
        for _ in 0..2 {
            let (h, _) = decode_request(read_frame(&mut s).unwrap()).unwrap();
            ids.push(h.correlation_id);
        }
        // Two requests are in flight: the third send is blocked until one
        // is answered (checked once the answers release it).
        assert!(*sent.lock().unwrap() <= 2);
        let answer = |s: &mut TcpStream, id| {
            let body = ResponseBody::ApiVersions(ApiVersionsResponse::default());
            write_chunks(s, &encode_response(id, ApiKey::ApiVersions, 3, &body)).unwrap();
        };
        answer(&mut s, ids[0]);
        let (h, _) = decode_request(read_frame(&mut s).unwrap()).unwrap();
        assert_eq!(h.correlation_id, 2);
        answer(&mut s, ids[1]);
        answer(&mut s, 2);
        client.join().unwrap().unwrap();
        assert_eq!(*sent.lock().unwrap(), 3);
    }

    #[test]
    fn pipeline_reports_a_closed_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = read_frame(&mut s);
            // Close without answering.
        });
        let mut p = Pipeline::connect(&addr, 4, |_: (), _| Ok(())).unwrap();
        p.send(3, &api_versions(), ()).unwrap();
        server.join().unwrap();
        let err = p.finish().unwrap_err();
        assert!(matches!(err, PerfError::Io { .. }), "{err}");
    }

    #[test]
    fn versions_pick_the_highest_common() {
        let broker = [
            (ApiKey::Produce.as_i16(), 3, 13),
            (ApiKey::Fetch.as_i16(), 4, 17),
            (ApiKey::ListOffsets.as_i16(), 1, 10),
            (ApiKey::Metadata.as_i16(), 0, 13),
            (ApiKey::CreateTopics.as_i16(), 2, 7),
        ];
        let v = Versions::negotiate(&broker).unwrap();
        assert_eq!(
            (v.produce, v.fetch, v.list_offsets, v.metadata),
            (12, 12, 9, 12)
        );
        let old = [(ApiKey::Produce.as_i16(), 0, 2)];
        assert!(Versions::negotiate(&old).is_err());
    }
}
