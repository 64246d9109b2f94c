//! One controller node: openraft, its storage and its network on a thread of
//! their own, behind a [`Controller`] handle that any thread may use.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot, watch};

use super::liveness::Liveness;
use super::metadata::{
    BrokerRegistration, ClusterMetadata, Command, ElectionType, MetadataError, Outcome,
};
use super::network::{self, NetworkFactory};
use super::rebalance::preferred_elections;
use super::store::{LogStore, StateMachineStore};
use super::{Raft, RaftNodeId, WriteError, WriteResult};
use crate::ids::NodeId;

/// Commands waiting for the controller thread, per node.
pub const CONTROLLER_QUEUE_JOBS: usize = 256;
/// How long a write keeps looking for a leader before giving up.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between tries while no leader is known.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Pause between tries of a broker registration.
pub const REGISTER_RETRY: Duration = Duration::from_millis(500);
/// Entries between snapshots (then the log before them is purged).
const SNAPSHOT_EVERY_ENTRIES: u64 = 1000;

/// How to run one controller node.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub node_id: NodeId,
    /// Every voter's controller address (`host:port`), this node included.
    pub voters: BTreeMap<NodeId, String>,
    /// Directory of the Raft log, vote and snapshots.
    pub dir: PathBuf,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// How often this node's broker heartbeats to the controller leader
    /// (Kafka's `broker.heartbeat.interval.ms`).
    pub broker_heartbeat_interval_ms: u64,
    /// A broker without a heartbeat for this long is fenced and its
    /// leaderships move (Kafka's `broker.session.timeout.ms`).
    pub broker_session_timeout_ms: u64,
    /// Whether the controller leader moves leaderships back to preferred
    /// replicas on its own (Kafka's `auto.leader.rebalance.enable`).
    pub auto_leader_rebalance: bool,
    /// How often it checks (Kafka's `leader.imbalance.check.interval.seconds`).
    pub leader_imbalance_check_interval_ms: u64,
    /// A broker's allowed share of non-preferred leaders, in percent (Kafka's
    /// `leader.imbalance.per.broker.percentage`).
    pub leader_imbalance_per_broker_percentage: u32,
    /// The default of `unclean.leader.election.enable` for topics that do
    /// not set it (the broker's `topic_defaults`). The controller leader
    /// writes its own into the metadata, where the elections read it.
    pub unclean_leader_election_enable: bool,
}

/// Kafka's defaults.
pub const DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS: u64 = 2_000;
pub const DEFAULT_BROKER_SESSION_TIMEOUT_MS: u64 = 9_000;
pub const DEFAULT_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE: u32 = 10;
/// Kafka checks every 300 s; 10 s puts leaders back within seconds of a
/// rolling restart's last node catching up.
pub const DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL_MS: u64 = 10_000;

impl ControllerConfig {
    /// Timings that suit a LAN: heartbeats every 100 ms, elections after
    /// 300-600 ms of silence.
    pub fn new(node_id: NodeId, voters: BTreeMap<NodeId, String>, dir: PathBuf) -> Self {
        ControllerConfig {
            node_id,
            voters,
            dir,
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            broker_heartbeat_interval_ms: DEFAULT_BROKER_HEARTBEAT_INTERVAL_MS,
            broker_session_timeout_ms: DEFAULT_BROKER_SESSION_TIMEOUT_MS,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: DEFAULT_LEADER_IMBALANCE_CHECK_INTERVAL_MS,
            leader_imbalance_per_broker_percentage: DEFAULT_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE,
            unclean_leader_election_enable: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("invalid controller configuration: {0}")]
    Config(String),
    #[error("controller storage in {dir}: {source}")]
    Storage { dir: PathBuf, source: io::Error },
    #[error("cannot start the controller thread: {0}")]
    Thread(io::Error),
    #[error("controller failed to start: {0}")]
    Raft(String),
}

/// How long a node waits for the controller leader's view of the quorum.
pub const QUORUM_QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// The Raft quorum as one node sees it (for DescribeQuorum).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuorumInfo {
    pub leader: Option<NodeId>,
    /// Raft term: Kafka's leader epoch of the metadata quorum.
    pub term: u64,
    /// Index of the last entry applied here.
    pub applied_index: Option<u64>,
    /// Index of the last entry in this node's log.
    pub last_log_index: Option<u64>,
    pub voters: Vec<VoterInfo>,
    /// Members that follow the log without voting (broker-only nodes).
    #[serde(default)]
    pub learners: Vec<VoterInfo>,
    /// Whether this node leads.
    pub is_leader: bool,
}

/// One member of the Raft group (a voter or a learner).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoterInfo {
    pub node: NodeId,
    /// The member's controller address (`host:port`).
    pub addr: String,
    /// Highest entry known replicated to the member (leader only).
    pub matched_index: Option<u64>,
}

/// The quorum as openraft's metrics on one node show it.
pub(crate) fn quorum_of(m: &openraft::RaftMetrics<RaftNodeId, BasicNode>) -> QuorumInfo {
    let membership = m.membership_config.membership();
    let member = |id: RaftNodeId| VoterInfo {
        node: NodeId(id as i32),
        addr: membership
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default(),
        matched_index: m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).copied().flatten())
            .map(|l| l.index),
    };
    let voter_ids: BTreeSet<RaftNodeId> = membership.voter_ids().collect();
    let learner_ids: BTreeSet<RaftNodeId> = membership.learner_ids().collect();
    QuorumInfo {
        leader: m.current_leader.map(|id| NodeId(id as i32)),
        term: m.current_term,
        applied_index: m.last_applied.map(|l| l.index),
        last_log_index: m.last_log_index,
        voters: voter_ids.into_iter().map(member).collect(),
        learners: learner_ids.into_iter().map(member).collect(),
        is_leader: m.state == ServerState::Leader,
    }
}

pub(crate) enum Job {
    Write(Command, oneshot::Sender<WriteResult>),
    /// A broker's heartbeat; `forwarded` when another controller sent it
    /// here as the leader (it is not forwarded again).
    Heartbeat {
        node: NodeId,
        forwarded: bool,
        reply: oneshot::Sender<Result<(), WriteError>>,
    },
    /// The controller leader's view of the quorum (asked of the leader when
    /// this node does not lead).
    Quorum(oneshot::Sender<Result<QuorumInfo, WriteError>>),
}

/// A running controller node. Dropping it stops the node.
pub struct Controller {
    handle: ControllerHandle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A cheap, cloneable way to reach a controller node from any thread or
/// executor. Calls fail with [`WriteError::Unavailable`] once the node
/// stopped.
#[derive(Clone)]
pub struct ControllerHandle {
    node_id: NodeId,
    jobs: mpsc::Sender<Job>,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    metrics: watch::Receiver<openraft::RaftMetrics<RaftNodeId, BasicNode>>,
    broker_heartbeat_interval: Duration,
    /// The broker epoch of this process's latest registration (0: none yet).
    registered_epoch: Arc<AtomicU64>,
}

impl std::fmt::Debug for ControllerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerHandle")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn raft_id(node: NodeId) -> Result<RaftNodeId, ControllerError> {
    u64::try_from(node.0).map_err(|_| ControllerError::Config(format!("{node} is negative")))
}

impl Controller {
    /// Start the node on `listener` (already bound, so a caller can pick
    /// port 0 and learn the port). On a fresh log the node proposes the
    /// configured voters as the first membership; every voter does, with
    /// the same voters, which openraft allows.
    pub fn start(
        config: ControllerConfig,
        listener: std::net::TcpListener,
    ) -> Result<Controller, ControllerError> {
        let me = raft_id(config.node_id)?;
        if config.broker_heartbeat_interval_ms == 0
            || config.broker_session_timeout_ms <= config.broker_heartbeat_interval_ms
        {
            return Err(ControllerError::Config(format!(
                "the broker session timeout ({} ms) must be longer than the heartbeat \
                 interval ({} ms), which must be positive",
                config.broker_session_timeout_ms, config.broker_heartbeat_interval_ms
            )));
        }
        let mut members = BTreeMap::new();
        for (node, addr) in &config.voters {
            members.insert(raft_id(*node)?, BasicNode { addr: addr.clone() });
        }
        if members.is_empty() {
            return Err(ControllerError::Config("no controller voters".into()));
        }
        // A node outside the voters runs as a learner: it follows the log
        // and asks the leader to add it with the address it listens on.
        let role = if config.voters.contains_key(&config.node_id) {
            Role::Voter
        } else {
            let addr = listener
                .local_addr()
                .map_err(|e| ControllerError::Config(format!("controller listener: {e}")))?;
            if addr.ip().is_unspecified() {
                return Err(ControllerError::Config(format!(
                    "{} is not a voter, so the voters connect to it at its controller \
                     address, which must not be unspecified ({addr})",
                    config.node_id
                )));
            }
            Role::Learner {
                addr: addr.to_string(),
            }
        };
        let raft_config = Config {
            cluster_name: "sluice-controller".into(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_ENTRIES),
            max_in_snapshot_log_to_keep: SNAPSHOT_EVERY_ENTRIES,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ControllerError::Config(e.to_string()))?;
        let storage_err = |source| ControllerError::Storage {
            dir: config.dir.clone(),
            source,
        };
        let log = LogStore::open(&config.dir).map_err(storage_err)?;
        let (published, metadata) = watch::channel(Arc::new(ClusterMetadata::new()));
        let published = Arc::new(published);
        let state = StateMachineStore::open(&config.dir, published).map_err(storage_err)?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ControllerError::Config(format!("controller listener: {e}")))?;

        let (jobs_tx, jobs_rx) = mpsc::channel(CONTROLLER_QUEUE_JOBS);
        let loop_jobs = jobs_tx.clone();
        let loop_metadata = metadata.clone();
        let session_timeout_ms = config.broker_session_timeout_ms;
        let rebalance = Rebalance {
            enabled: config.auto_leader_rebalance,
            interval_ms: config.leader_imbalance_check_interval_ms.max(1),
            percentage: config.leader_imbalance_per_broker_percentage,
        };
        let unclean_default = config.unclean_leader_election_enable;
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("controller-{}", config.node_id.0))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ControllerError::Raft(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(run(
                    me,
                    role,
                    members,
                    Arc::new(raft_config),
                    log,
                    state,
                    listener,
                    Queue {
                        tx: loop_jobs,
                        rx: jobs_rx,
                    },
                    loop_metadata,
                    session_timeout_ms,
                    rebalance,
                    unclean_default,
                    stop_rx,
                    ready_tx,
                ));
            })
            .map_err(ControllerError::Thread)?;
        let metrics = match ready_rx.recv() {
            Ok(Ok(metrics)) => metrics,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(ControllerError::Raft("controller thread ended".into()));
            }
        };
        Ok(Controller {
            handle: ControllerHandle {
                node_id: config.node_id,
                jobs: jobs_tx,
                metadata,
                metrics,
                broker_heartbeat_interval: Duration::from_millis(
                    config.broker_heartbeat_interval_ms,
                ),
                registered_epoch: Arc::new(AtomicU64::new(0)),
            },
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// A handle for other threads and shards.
    pub fn handle(&self) -> ControllerHandle {
        self.handle.clone()
    }

    pub fn node_id(&self) -> NodeId {
        self.handle.node_id
    }

    /// See [`ControllerHandle::write`].
    pub async fn write(&self, command: Command) -> WriteResult {
        self.handle.write(command).await
    }

    /// See [`ControllerHandle::metadata`].
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.handle.metadata()
    }

    /// See [`ControllerHandle::quorum`].
    pub fn quorum(&self) -> QuorumInfo {
        self.handle.quorum()
    }

    /// Stop the node and wait for its thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(node = self.handle.node_id.0, "controller thread panicked");
            }
        }
    }
}

impl ControllerHandle {
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Apply `command` through the Raft leader (forwarded if another node
    /// leads) and wait until it is committed and applied there. Works from
    /// any executor.
    pub async fn write(&self, command: Command) -> WriteResult {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Write(command, tx))
            .await
            .map_err(|_| WriteError::Unavailable("controller stopped".into()))?;
        rx.await
            .map_err(|_| WriteError::Unavailable("controller stopped".into()))?
    }

    /// Tell the controller leader that `node`'s broker is alive (through
    /// this node's controller, which forwards it to the leader).
    pub async fn heartbeat(&self, node: NodeId) -> Result<(), WriteError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Heartbeat {
                node,
                forwarded: false,
                reply,
            })
            .await
            .map_err(|_| WriteError::Unavailable("controller stopped".into()))?;
        rx.await
            .map_err(|_| WriteError::Unavailable("controller stopped".into()))?
    }

    /// Whether this node's metadata has caught up with the controller
    /// since this process started: it shows the broker registration this
    /// process made (`spawn_registration`). The Raft log is applied again
    /// from the start on a restart, and until the commit index arrives a
    /// node sees an old state (empty, without a snapshot): acting on it
    /// would drop the replicas of every topic created since, deleting
    /// their logs.
    pub fn caught_up(&self) -> bool {
        let epoch = self.registered_epoch.load(Ordering::Acquire);
        epoch != 0
            && self
                .metadata
                .borrow()
                .brokers
                .get(&self.node_id)
                .is_some_and(|b| b.broker_epoch >= epoch)
    }

    /// The metadata as applied on this node.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    /// A receiver that sees each new metadata version.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.metadata.clone()
    }

    /// The quorum as this node sees it (only a leader knows how far each
    /// member's log reaches).
    pub fn quorum(&self) -> QuorumInfo {
        quorum_of(&self.metrics.borrow())
    }

    /// The quorum as the controller leader sees it: this node's view when
    /// it leads, else asked of the leader over the controller connection
    /// (Kafka's brokers forward DescribeQuorum to the active controller).
    /// `NotLeader` while no leader is known; `Unavailable` when the leader
    /// does not answer within [`QUORUM_QUERY_TIMEOUT`].
    pub async fn leader_quorum(&self) -> Result<QuorumInfo, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Quorum(tx))
            .await
            .map_err(|_| WriteError::Unavailable("controller stopped".into()))?;
        rx.await
            .map_err(|_| WriteError::Unavailable("controller stopped".into()))?
    }

    /// Register this broker, retrying every [`REGISTER_RETRY`] until the
    /// controller accepts or refuses it, then heartbeat every broker
    /// heartbeat interval (registering again if the controller has
    /// forgotten the broker), on a thread of its own (so no shard waits for
    /// the cluster to form). The thread ends with the node.
    pub fn spawn_registration(
        &self,
        registration: BrokerRegistration,
    ) -> io::Result<JoinHandle<()>> {
        let handle = self.clone();
        std::thread::Builder::new()
            .name(format!("register-{}", registration.node.0))
            .spawn(move || {
                while handle.register(&registration) {
                    handle.heartbeat_until_forgotten(registration.node);
                }
            })
    }

    /// Registers, retrying; false when the node stopped or was refused.
    fn register(&self, registration: &BrokerRegistration) -> bool {
        loop {
            match futures::executor::block_on(
                self.write(Command::RegisterBroker(registration.clone())),
            ) {
                Ok(outcome) => {
                    tracing::info!(?outcome, "broker registered with the controller");
                    if let Outcome::BrokerRegistered { broker_epoch } = outcome {
                        self.registered_epoch
                            .fetch_max(broker_epoch, Ordering::AcqRel);
                    }
                    return true;
                }
                Err(WriteError::Refused(e)) => {
                    tracing::error!(error = %e, "the controller refused this broker's registration");
                    return false;
                }
                Err(e) if self.jobs.is_closed() => {
                    tracing::debug!(error = %e, "controller stopped before registration");
                    return false;
                }
                Err(e) => {
                    tracing::info!(error = %e, "broker registration pending; retrying");
                    std::thread::sleep(REGISTER_RETRY);
                }
            }
        }
    }

    /// Heartbeats until the node stops (returns) or the controller no
    /// longer knows the broker (returns, to register again).
    fn heartbeat_until_forgotten(&self, node: NodeId) {
        let mut failing = false;
        loop {
            std::thread::sleep(self.broker_heartbeat_interval);
            if self.jobs.is_closed() {
                return;
            }
            match futures::executor::block_on(self.heartbeat(node)) {
                Ok(()) => {
                    if failing {
                        tracing::info!("broker heartbeats reach the controller again");
                    }
                    failing = false;
                }
                Err(WriteError::Refused(MetadataError::UnknownBroker(_))) => {
                    tracing::warn!("the controller does not know this broker; registering again");
                    return;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "broker heartbeat failed; retrying");
                    }
                    failing = true;
                }
            }
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

type Metrics = watch::Receiver<openraft::RaftMetrics<RaftNodeId, BasicNode>>;

/// The controller thread's job queue: its receiver, and a sender the Raft
/// server hands forwarded heartbeats to.
struct Queue {
    tx: mpsc::Sender<Job>,
    rx: mpsc::Receiver<Job>,
}

/// Automatic preferred-leader election settings (see `rebalance.rs`).
#[derive(Clone, Copy, Debug)]
struct Rebalance {
    enabled: bool,
    interval_ms: u64,
    percentage: u32,
}

/// Whether this node votes in the controller quorum or only follows it.
enum Role {
    Voter,
    /// A broker-only node: a Raft learner, reachable at `addr`.
    Learner {
        addr: String,
    },
}

#[allow(clippy::too_many_arguments)]
async fn run(
    me: RaftNodeId,
    role: Role,
    members: BTreeMap<RaftNodeId, BasicNode>,
    config: Arc<Config>,
    log: LogStore,
    state: StateMachineStore,
    listener: std::net::TcpListener,
    queue: Queue,
    metadata: watch::Receiver<Arc<ClusterMetadata>>,
    session_timeout_ms: u64,
    rebalance: Rebalance,
    unclean_default: bool,
    mut stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::SyncSender<Result<Metrics, ControllerError>>,
) {
    let Queue {
        tx: jobs_tx,
        rx: mut jobs,
    } = queue;
    let raft = match Raft::new(me, config, NetworkFactory, log, state).await {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(ControllerError::Raft(e.to_string())));
            return;
        }
    };
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(ControllerError::Config(format!(
                "controller listener: {e}"
            ))));
            return;
        }
    };
    let voter_addrs: Vec<String> = members.values().map(|n| n.addr.clone()).collect();
    let mut joining = None;
    match raft.is_initialized().await {
        Ok(true) => {}
        Ok(false) if matches!(role, Role::Learner { .. }) => {}
        Ok(false) => {
            if let Err(e) = raft.initialize(members).await {
                // Another voter's membership may have arrived first.
                tracing::debug!(error = %e, "controller initialize");
            }
        }
        Err(e) => {
            let _ = ready.send(Err(ControllerError::Raft(e.to_string())));
            return;
        }
    }
    if let Role::Learner { addr } = role {
        joining = Some(tokio::spawn(join_as_learner(
            raft.clone(),
            me,
            addr,
            voter_addrs,
        )));
    }
    let server = tokio::spawn(network::serve(listener, raft.clone(), jobs_tx));
    let _ = ready.send(Ok(raft.metrics()));

    let started = tokio::time::Instant::now();
    let now_ms = || started.elapsed().as_millis() as u64;
    let mut liveness = Liveness::new(session_timeout_ms);
    let mut led_term = None;
    // The next leader-imbalance check (while leading), and whether the
    // elections of the last one are still being written.
    let mut next_rebalance_ms = u64::MAX;
    let rebalancing = Arc::new(AtomicBool::new(false));
    // Whether the leader's write of its unclean-election default is in flight.
    let setting_default = Arc::new(AtomicBool::new(false));
    // Fence and unfence writes report back here when they end.
    let (settled_tx, mut settled) = mpsc::unbounded_channel::<NodeId>();
    let mut tick = tokio::time::interval(Duration::from_millis(
        (session_timeout_ms / 10).clamp(10, 250),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            node = settled.recv() => {
                if let Some(node) = node {
                    liveness.settled(node);
                }
            }
            _ = tick.tick() => {
                let (leading, term) = {
                    let m = raft.metrics();
                    let m = m.borrow();
                    (m.state == ServerState::Leader, m.current_term)
                };
                if leading && led_term != Some(term) {
                    liveness.lead(now_ms());
                    led_term = Some(term);
                    next_rebalance_ms = now_ms() + rebalance.interval_ms;
                } else if !leading && liveness.is_leading() {
                    liveness.follow();
                    led_term = None;
                }
                let current = metadata.borrow().clone();
                for command in liveness.due(now_ms(), &current) {
                    tracing::warn!(
                        ?command,
                        session_timeout_ms,
                        "no heartbeat from a broker within the session timeout: fencing it"
                    );
                    spawn_liveness_write(&raft, command, &settled_tx);
                }
                if liveness.is_leading()
                    && current.unclean_election_default != unclean_default
                    && !setting_default.swap(true, Ordering::AcqRel)
                {
                    spawn_default_write(&raft, unclean_default, &setting_default);
                }
                if rebalance.enabled
                    && liveness.is_leading()
                    && now_ms() >= next_rebalance_ms
                    && !rebalancing.load(Ordering::Acquire)
                {
                    next_rebalance_ms = now_ms() + rebalance.interval_ms;
                    let elections = preferred_elections(&current, rebalance.percentage);
                    if !elections.is_empty() {
                        spawn_rebalance_write(&raft, elections, &rebalancing);
                    }
                }
            }
            job = jobs.recv() => match job {
                None => break,
                Some(Job::Write(command, reply)) => {
                    let raft = raft.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(write_anywhere(&raft, command).await);
                    });
                }
                Some(Job::Quorum(reply)) => {
                    let local = quorum_of(&raft.metrics().borrow());
                    if local.is_leader {
                        let _ = reply.send(Ok(local));
                        continue;
                    }
                    let leader = leader_addr(&raft);
                    tokio::spawn(async move {
                        let result = match leader {
                            Some(addr) => network::ask_quorum(&addr, QUORUM_QUERY_TIMEOUT).await,
                            None => Err(WriteError::NotLeader { leader: None, leader_addr: None }),
                        };
                        let _ = reply.send(result);
                    });
                }
                Some(Job::Heartbeat { node, forwarded, reply }) => {
                    if liveness.is_leading() {
                        let current = metadata.borrow().clone();
                        if !current.brokers.contains_key(&node) {
                            let _ = reply.send(Err(WriteError::Refused(
                                MetadataError::UnknownBroker(node),
                            )));
                            continue;
                        }
                        if let Some(command) = liveness.heartbeat(node, now_ms(), &current) {
                            tracing::info!(?command, "a fenced broker heartbeats again: unfencing it");
                            spawn_liveness_write(&raft, command, &settled_tx);
                        }
                        let _ = reply.send(Ok(()));
                    } else {
                        let leader = leader_addr(&raft);
                        tokio::spawn(async move {
                            let result = match leader {
                                Some(addr) if !forwarded => network::forward_heartbeat(&addr, node).await,
                                _ => Err(WriteError::NotLeader { leader: None, leader_addr: None }),
                            };
                            let _ = reply.send(result);
                        });
                    }
                }
            },
        }
    }
    server.abort();
    if let Some(joining) = joining {
        joining.abort();
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "controller shutdown");
    }
}

/// The address of the Raft leader, when it is known and is another node.
fn leader_addr(raft: &Raft) -> Option<String> {
    let m = raft.metrics();
    let m = m.borrow();
    let leader = m.current_leader?;
    if leader == m.id {
        return None;
    }
    m.membership_config
        .membership()
        .get_node(&leader)
        .map(|n| n.addr.clone())
}

/// Writes a fence or unfence on the leader; reports the broker settled when
/// the write ends, whatever its result.
fn spawn_liveness_write(raft: &Raft, command: Command, settled: &mpsc::UnboundedSender<NodeId>) {
    let node = match &command {
        Command::FenceBroker { node } | Command::UnfenceBroker { node } => *node,
        _ => return,
    };
    let raft = raft.clone();
    let settled = settled.clone();
    tokio::spawn(async move {
        match network::write_local(&raft, command).await {
            Ok(outcome) => tracing::info!(?outcome, node = node.0, "broker liveness applied"),
            Err(e) => tracing::warn!(error = %e, node = node.0, "broker liveness write failed"),
        }
        let _ = settled.send(node);
    });
}

/// Writes this leader's default of `unclean.leader.election.enable` into
/// the metadata; `busy` (set by the caller) is cleared when the write ends.
fn spawn_default_write(raft: &Raft, enabled: bool, busy: &Arc<AtomicBool>) {
    let raft = raft.clone();
    let busy = busy.clone();
    tokio::spawn(async move {
        let command = Command::SetUncleanElectionDefault { enabled };
        match network::write_local(&raft, command).await {
            Ok(_) => tracing::info!(
                enabled,
                "unclean.leader.election.enable default of this controller written"
            ),
            Err(e) => tracing::warn!(error = %e, "unclean election default write failed"),
        }
        busy.store(false, Ordering::Release);
    });
}

/// Writes the preferred elections of one imbalance check on the leader;
/// `busy` is set until the write ends, so checks never overlap.
fn spawn_rebalance_write(raft: &Raft, elections: Vec<(String, i32)>, busy: &Arc<AtomicBool>) {
    tracing::info!(
        partitions = elections.len(),
        "leader imbalance: electing preferred leaders"
    );
    let command = Command::ElectLeaders {
        election: ElectionType::Preferred,
        partitions: Some(elections),
    };
    busy.store(true, Ordering::Release);
    let raft = raft.clone();
    let busy = busy.clone();
    tokio::spawn(async move {
        match network::write_local(&raft, command).await {
            Ok(Outcome::LeadersElected { results }) => {
                for r in results {
                    match r.result {
                        Ok(leader) => tracing::info!(
                            topic = r.topic,
                            partition = r.partition,
                            leader = leader.0,
                            "preferred leader elected"
                        ),
                        Err(e) => tracing::debug!(
                            topic = r.topic,
                            partition = r.partition,
                            error = ?e,
                            "preferred leader not elected"
                        ),
                    }
                }
            }
            Ok(other) => tracing::warn!(?other, "unexpected outcome of a preferred election"),
            Err(e) => tracing::warn!(error = %e, "preferred leader election write failed"),
        }
        busy.store(false, Ordering::Release);
    });
}

/// Write locally if leader, else forward to the leader; retry while there
/// is none, up to [`WRITE_TIMEOUT`].
async fn write_anywhere(raft: &Raft, command: Command) -> WriteResult {
    let deadline = Instant::now() + WRITE_TIMEOUT;
    loop {
        let result = match network::write_local(raft, command.clone()).await {
            Err(WriteError::NotLeader {
                leader_addr: Some(addr),
                ..
            }) => network::forward(&addr, command.clone()).await,
            other => other,
        };
        match result {
            Err(WriteError::NotLeader { .. } | WriteError::Unavailable(_))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(WriteError::NotLeader { .. }) => {
                return Err(WriteError::Unavailable(format!(
                    "no controller leader within {WRITE_TIMEOUT:?}"
                )))
            }
            other => return other,
        }
    }
}

/// A learner asks the voters, until one that leads accepts, to add it to
/// the membership at `addr` (from then on the leader replicates the
/// metadata log to it). It asks on every start, even when its own log lists
/// it: a learner removed by UnregisterBroker never receives the membership
/// change that removed it (the leader stops replicating to it first), so
/// only the leader can tell; a member already is told so at once. Ends
/// once the leader has accepted and the membership this node applied lists
/// it with that address.
async fn join_as_learner(raft: Raft, me: RaftNodeId, addr: String, voters: Vec<String>) {
    let mut announced = false;
    let mut accepted = false;
    loop {
        let listed = {
            let m = raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .get_node(&me)
                .is_some_and(|n| n.addr == addr)
        };
        if listed && accepted {
            tracing::info!(%addr, "following the controller quorum as a learner (broker only)");
            return;
        }
        // Once accepted, only wait for the membership to arrive.
        let mut targets = if accepted { Vec::new() } else { voters.clone() };
        let mut tried = Vec::new();
        while let Some(target) = targets.pop() {
            if tried.contains(&target) {
                continue;
            }
            tried.push(target.clone());
            match network::ask_to_join(&target, me, &addr).await {
                Ok(()) => {
                    if !announced {
                        tracing::info!(voter = %target, "the controller leader added this node as a learner");
                        announced = true;
                    }
                    accepted = true;
                    break;
                }
                Err(WriteError::NotLeader {
                    leader_addr: Some(leader),
                    ..
                }) => targets.push(leader),
                Err(e) => tracing::debug!(voter = %target, error = %e, "joining as a learner"),
            }
        }
        tokio::time::sleep(REGISTER_RETRY).await;
    }
}
