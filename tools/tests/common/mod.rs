//! Shared helpers of the broker tests: start the real `sluice` binary on a
//! free port with its own data directory, and talk to it over blocking
//! sockets with the codec.

// Each test binary uses only some of these helpers.
#![allow(dead_code)]

pub mod cluster;
pub mod netns;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_codec::api_versions_request::ApiVersionsRequest;
use sluice_codec::api_versions_response::ApiVersionsResponse;
use sluice_codec::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use sluice_codec::create_topics_response::CreatableTopicResult;
use sluice_codec::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use sluice_codec::fetch_response::PartitionData;
use sluice_codec::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use sluice_codec::produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData};
use sluice_codec::produce_response::PartitionProduceResponse;
use sluice_codec::{
    decode_response, encode_request, ApiKey, Records, RequestBody, RequestHeader, ResponseBody,
};
use sluice_records::{BatchBuilder, BatchIter, Compression, RecordIter};

/// Every blocking read and write on a test socket gives up after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a broker may take to answer its first ApiVersions.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response frame a test accepts.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

pub const PRODUCE_VERSION: i16 = 9;
pub const FETCH_VERSION: i16 = 12;
pub const LIST_OFFSETS_VERSION: i16 = 7;
pub const CREATE_TOPICS_VERSION: i16 = 5;
pub const API_VERSIONS_VERSION: i16 = 3;

/// A port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Runs the `sluice` binary with `args`, without waiting for anything.
pub fn sluice_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("SLUICE_LOG_LEVEL")
        .stdin(Stdio::null());
    cmd
}

/// A running broker; killed when dropped (also when a test panics, when the
/// tail of its log is printed).
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    log_path: PathBuf,
    /// The temporary directory the broker lives in, when it owns one.
    _dir: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts a broker with one shard in a fresh temporary directory;
    /// `extra` are more `sluice serve` flags.
    pub fn start(extra: &[&str]) -> Broker {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut broker = Broker::start_in(dir.path(), extra);
        broker._dir = Some(dir);
        broker
    }

    /// Starts a broker whose data lives in `dir/data` and whose log is
    /// appended to `dir/broker.log` (so a restart on the same `dir` finds
    /// the data and continues the log).
    pub fn start_in(dir: &Path, extra: &[&str]) -> Broker {
        let port = free_port();
        let data_dir = dir.join("data");
        let log_path = dir.join("broker.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the broker log");
        let listen = format!("127.0.0.1:{port}");
        let data = data_dir.to_str().expect("UTF-8 temp path").to_string();
        let mut args = vec!["serve", "--data-dir", &data, "--listen", &listen];
        if !extra.contains(&"--shards") {
            args.extend(["--shards", "1"]);
        }
        args.extend(extra);
        let child = sluice_command(&args)
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn sluice");
        let mut broker = Broker {
            child: Some(child),
            port,
            data_dir,
            log_path,
            _dir: None,
        };
        broker.wait_ready();
        broker
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            assert!(
                self.is_running(),
                "sluice exited during start-up:\n{}",
                self.log()
            );
            if let Ok(stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(500))
            {
                let mut client = Client::new(stream);
                client.set_timeout(Duration::from_secs(2));
                if client.try_api_versions().is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not answer ApiVersions within {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn connect(&self) -> Client {
        let stream = TcpStream::connect_timeout(&self.addr(), IO_TIMEOUT).expect("connect");
        Client::new(stream)
    }

    /// The broker's log (stdout and stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker process").id()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("poll the broker").is_none(),
            None => false,
        }
    }

    /// A new connection is accepted and answered.
    pub fn assert_serving(&mut self) {
        assert!(self.is_running(), "sluice died:\n{}", self.log());
        let versions = self.connect().api_versions();
        assert_eq!(versions.error_code, 0);
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let child = self.child.as_mut().expect("broker process");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("poll the broker") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not exit within {timeout:?} of SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- last lines of the broker log ({}) ---\n{}",
                self.log_path.display(),
                tail.join("\n")
            );
        }
    }
}

/// A frame as a client puts it on the wire: size prefix, header, body.
pub fn request_bytes(correlation_id: i32, version: i16, body: &RequestBody) -> Vec<u8> {
    let header = RequestHeader {
        api_key: body.api_key().as_i16(),
        api_version: version,
        correlation_id,
        client_id: Some("broker-test".into()),
    };
    encode_request(&header, body).concat()
}

/// A blocking Kafka client on one connection.
pub struct Client {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

impl Client {
    pub fn new(stream: TcpStream) -> Client {
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            stream,
            next_correlation_id: 1,
        };
        client.set_timeout(IO_TIMEOUT);
        client
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
        self.stream
            .set_write_timeout(Some(timeout))
            .expect("write timeout");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a request without waiting; returns its correlation id.
    pub fn send(&mut self, version: i16, body: &RequestBody) -> i32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let bytes = request_bytes(correlation_id, version, body);
        self.send_raw(&bytes).expect("send a request");
        correlation_id
    }

    /// Reads one response frame (without its size prefix).
    pub fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| std::io::Error::other(format!("response frame size {size}")))?;
        let mut frame = vec![0u8; size];
        self.stream.read_exact(&mut frame)?;
        Ok(Bytes::from(frame))
    }

    /// Reads and decodes one response to a request of `api` at `version`.
    pub fn recv(&mut self, api: ApiKey, version: i16) -> (i32, ResponseBody) {
        let frame = self.read_frame().expect("read a response");
        decode_response(api, version, frame).expect("decode a response")
    }

    /// Sends a request and reads its response.
    pub fn call(&mut self, version: i16, body: &RequestBody) -> ResponseBody {
        let api = body.api_key();
        let sent = self.send(version, body);
        let (correlation_id, response) = self.recv(api, version);
        assert_eq!(
            correlation_id,
            sent,
            "correlation id of the {} response",
            api.name()
        );
        response
    }

    pub fn try_api_versions(&mut self) -> std::io::Result<ApiVersionsResponse> {
        let body = RequestBody::ApiVersions(api_versions_request());
        let bytes = request_bytes(0, API_VERSIONS_VERSION, &body);
        self.send_raw(&bytes)?;
        let frame = self.read_frame()?;
        match decode_response(ApiKey::ApiVersions, API_VERSIONS_VERSION, frame) {
            Ok((0, ResponseBody::ApiVersions(r))) => Ok(r),
            other => Err(std::io::Error::other(format!(
                "bad ApiVersions answer {other:?}"
            ))),
        }
    }

    pub fn api_versions(&mut self) -> ApiVersionsResponse {
        let body = RequestBody::ApiVersions(api_versions_request());
        match self.call(API_VERSIONS_VERSION, &body) {
            ResponseBody::ApiVersions(r) => r,
            other => panic!("not an ApiVersions response: {other:?}"),
        }
    }

    /// Creates a topic; `configs` are topic configs such as
    /// `("max.message.bytes", "1000")`.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> CreatableTopicResult {
        let body = RequestBody::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                num_partitions: partitions,
                replication_factor: 1,
                configs: configs
                    .iter()
                    .map(|(k, v)| CreatableTopicConfig {
                        name: (*k).into(),
                        value: Some((*v).into()),
                    })
                    .collect(),
                ..Default::default()
            }],
            timeout_ms: 10_000,
            validate_only: false,
        });
        match self.call(CREATE_TOPICS_VERSION, &body) {
            ResponseBody::CreateTopics(mut r) => {
                assert_eq!(r.topics.len(), 1);
                let t = r.topics.remove(0);
                assert_eq!(t.error_code, 0, "create {name}: {:?}", t.error_message);
                t
            }
            other => panic!("not a CreateTopics response: {other:?}"),
        }
    }

    /// Produces `records` (acks=-1) to one partition and returns its answer.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> PartitionProduceResponse {
        let body = produce_request(topic, partition, records);
        match self.call(PRODUCE_VERSION, &body) {
            ResponseBody::Produce(r) => single_produce_answer(r, topic, partition),
            other => panic!("not a Produce response: {other:?}"),
        }
    }

    /// Fetches one partition from `offset` (no waiting).
    pub fn fetch(&mut self, topic: &str, partition: i32, offset: i64) -> PartitionData {
        let body = RequestBody::Fetch(FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 16 << 20,
            topics: vec![FetchTopic {
                topic: topic.into(),
                partitions: vec![FetchPartition {
                    partition,
                    fetch_offset: offset,
                    partition_max_bytes: 8 << 20,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        match self.call(FETCH_VERSION, &body) {
            ResponseBody::Fetch(mut r) => {
                assert_eq!(r.error_code, 0, "fetch error");
                assert_eq!(r.responses.len(), 1);
                let mut t = r.responses.remove(0);
                assert_eq!(t.topic, topic);
                assert_eq!(t.partitions.len(), 1);
                let p = t.partitions.remove(0);
                assert_eq!(p.partition_index, partition);
                p
            }
            other => panic!("not a Fetch response: {other:?}"),
        }
    }

    /// The partition's latest offset (ListOffsets timestamp -1).
    pub fn latest_offset(&mut self, topic: &str, partition: i32) -> i64 {
        let body = RequestBody::ListOffsets(ListOffsetsRequest {
            replica_id: -1,
            isolation_level: 0,
            topics: vec![ListOffsetsTopic {
                name: topic.into(),
                partitions: vec![ListOffsetsPartition {
                    partition_index: partition,
                    current_leader_epoch: -1,
                    timestamp: -1,
                }],
            }],
            timeout_ms: 10_000,
        });
        match self.call(LIST_OFFSETS_VERSION, &body) {
            ResponseBody::ListOffsets(r) => {
                let p = &r.topics[0].partitions[0];
                assert_eq!(p.error_code, 0, "list offsets of {topic}-{partition}");
                p.offset
            }
            other => panic!("not a ListOffsets response: {other:?}"),
        }
    }

    /// The broker closes this connection (EOF or reset) within [`IO_TIMEOUT`],
    /// without answering.
    pub fn assert_closed(&mut self, what: &str) {
        let mut buf = [0u8; 256];
        let started = Instant::now();
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => panic!("{what}: got {n} bytes of answer instead of a close"),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "{what}: connection still open after {:?}",
                        started.elapsed()
                    )
                }
                // A close with unread input arrives as a reset.
                Err(_) => return,
            }
        }
    }
}

pub fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest {
        client_software_name: "sluice-broker-test".into(),
        client_software_version: "1".into(),
        ..Default::default()
    }
}

pub fn produce_request(topic: &str, partition: i32, records: Bytes) -> RequestBody {
    RequestBody::Produce(ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: partition,
                records: Some(records.into()),
            }],
            ..Default::default()
        }],
    })
}

/// The one partition's answer in a Produce response to one partition.
pub fn single_produce_answer(
    r: sluice_codec::produce_response::ProduceResponse,
    topic: &str,
    partition: i32,
) -> PartitionProduceResponse {
    assert_eq!(r.responses.len(), 1, "topics in the produce response");
    let t = &r.responses[0];
    assert_eq!(t.name, topic);
    assert_eq!(t.partition_responses.len(), 1);
    let p = t.partition_responses[0].clone();
    assert_eq!(p.index, partition);
    p
}

/// One uncompressed batch holding `records` as (key, value) pairs.
pub fn batch(records: &[(&[u8], &[u8])]) -> Bytes {
    let mut builder = BatchBuilder::new(Compression::None);
    for (key, value) in records {
        builder.push(1_700_000_000_000, Some(key), Some(value), &[]);
    }
    builder.build()
}

/// A record as read back: offset, key, value.
pub type Stored = (i64, Vec<u8>, Vec<u8>);

/// (offset, key, value) of every record in the whole batches of fetched
/// `records` (a partial batch at the end, which a fetch may return, is
/// ignored).
pub fn records_of(records: &Option<Records>) -> Vec<Stored> {
    let Some(records) = records else {
        return Vec::new();
    };
    let records = records.contiguous();
    let mut out = Vec::new();
    for item in BatchIter::new(&records) {
        let Ok((_, range)) = item else { break };
        let (header, iter) = RecordIter::from_batch(&records[range]).expect("uncompressed batch");
        for record in iter {
            let record = record.expect("a valid record");
            out.push((
                record.offset(&header),
                record.key.unwrap_or_default().to_vec(),
                record.value.unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}
