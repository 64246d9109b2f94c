//! Replication driven by the broker: the I/O around `shard_router::replication`'s
//! state machines.
//!
//! - Every shard listens on its own replication port ([`serve`]); a
//!   follower's owning shard connects straight to the leader's owning shard,
//!   one connection per partition, so no byte crosses a core on either side.
//! - The leader's shard keeps a [`LeaderState`] per partition it leads
//!   ([`Leading`]): produce appends with the partition's leader epoch, waits
//!   for the high watermark when `acks=all`, and refuses `acks=all` while the
//!   ISR is below `min.insync.replicas`. One sender task per subscribed
//!   follower streams batches (only what the leader's flush policy has made
//!   durable) and high watermark updates.
//! - The follower's shard runs a [`FollowerState`] in a task ([`follow`]):
//!   epoch query, truncation, subscribe, then `append_replica` and an `Ack`
//!   of its durable end after each flush.
//! - Roles follow the controller's metadata ([`sync`]): who leads, in which
//!   epoch, with which ISR. ISR changes the leader wants (followers caught
//!   up, or lagging past `replica.lag.time.max.ms`, see [`tick`]) go to the
//!   controller as `AlterIsr`; the leader applies them when the metadata
//!   comes back.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::channel::{mpsc, oneshot};
use futures::{AsyncReadExt, AsyncWriteExt, SinkExt, StreamExt};
use glommio::net::{TcpListener, TcpStream};
use shard_router::controller::{ClusterMetadata, Command};
use shard_router::replication::wire::{decode_frame, Message, PartitionRef, PROTOCOL_VERSION};
use shard_router::replication::{
    epochs, AckId, AckResult, FollowerAction, FollowerState, LeaderConfig, LeaderEpoch,
    LeaderOutput, LeaderState,
};
use shard_router::{NodeId, ShardId};
use sluice_codec::ErrorCode;

use crate::state::{now_ms, Log, ShardState};
use crate::topics::{config_value, TopicMeta};

/// (topic, partition).
pub type Tp = (String, i32);

/// Most record bytes in one `Batches` message.
const MAX_SEND_BYTES: usize = 1 << 20;
/// Frames queued for one connection's writer before senders wait.
const WRITE_QUEUE_FRAMES: usize = 64;
/// How long a follower waits for a connection to its leader.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before a follower connects again after a failure.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// Reads time out this often so tasks notice a role change or shutdown.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// This shard leads the partition.
pub struct Leading {
    pub state: LeaderState,
    pub partition_epoch: i32,
    waiters: HashMap<u64, oneshot::Sender<AckResult>>,
    next_ack: u64,
    /// The leader's durable end as last reported (`on_leader_durable`).
    durable: i64,
    /// Tasks to wake when data becomes durable, the high watermark moves or
    /// a follower subscribes (senders, long polls).
    wake: Vec<oneshot::Sender<()>>,
    /// The role ended: a produce whose append finished later must not wait
    /// on it for a commit that will never come.
    resigned: bool,
    /// Each follower's current stream (its sender's stop flag): a follower
    /// that reconnects subscribes on a new connection before the old one is
    /// noticed closed, and the old one's end must not undo the new stream.
    streams: HashMap<NodeId, Rc<Cell<bool>>>,
}

impl Leading {
    /// Resolves on the next wake-up.
    pub fn changed(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        let (tx, rx) = oneshot::channel();
        // Waiters that gave up (a timeout, a closed connection) go, so an
        // idle partition's list stays bounded.
        self.wake.retain(|w| !w.is_canceled());
        self.wake.push(tx);
        async move {
            let _ = rx.await;
        }
    }

    fn wake_all(&mut self) {
        for w in self.wake.drain(..) {
            let _ = w.send(());
        }
    }
}

/// This shard follows the partition's leader.
pub struct Following {
    pub leader: NodeId,
    pub epoch: i32,
    pub high_watermark: Cell<i64>,
    /// The leader's log start, as last heard (0 before).
    leader_log_start: Cell<i64>,
    stopped: Cell<bool>,
}

enum Role {
    Leader(Rc<RefCell<Leading>>),
    Follower(Rc<Following>),
}

/// A shard's replicated partitions and its role in each.
#[derive(Default)]
pub struct Replicas {
    roles: RefCell<HashMap<Tp, Role>>,
    /// The last high watermark known per partition (kept across roles).
    high_watermarks: RefCell<HashMap<Tp, i64>>,
}

impl Replicas {
    pub fn leader(&self, topic: &str, partition: i32) -> Option<Rc<RefCell<Leading>>> {
        match self.roles.borrow().get(&(topic.to_string(), partition)) {
            Some(Role::Leader(l)) => Some(l.clone()),
            _ => None,
        }
    }

    pub fn follower(&self, topic: &str, partition: i32) -> Option<Rc<Following>> {
        match self.roles.borrow().get(&(topic.to_string(), partition)) {
            Some(Role::Follower(f)) => Some(f.clone()),
            _ => None,
        }
    }

    fn known_high_watermark(&self, tp: &Tp) -> i64 {
        self.high_watermarks.borrow().get(tp).copied().unwrap_or(0)
    }

    fn note_high_watermark(&self, tp: &Tp, hw: i64) {
        self.high_watermarks.borrow_mut().insert(tp.clone(), hw);
    }

    /// How far retention may delete in a replicated partition (segments
    /// wholly below this offset): the leader up to its high watermark
    /// (Kafka's rule), a follower only what its leader deleted too (below
    /// the leader's log start and the high watermark it knows), a shard
    /// without a role nothing.
    pub fn retention_bound(&self, tp: &Tp) -> i64 {
        match self.roles.borrow().get(tp) {
            Some(Role::Leader(l)) => l.borrow().state.high_watermark(),
            Some(Role::Follower(f)) => f.high_watermark.get().min(f.leader_log_start.get()),
            None => 0,
        }
    }

    fn stop(role: Role) -> Vec<(u64, oneshot::Sender<AckResult>)> {
        match role {
            Role::Follower(f) => {
                f.stopped.set(true);
                Vec::new()
            }
            Role::Leader(l) => {
                let mut l = l.borrow_mut();
                let _ = l.state.resign();
                l.resigned = true;
                l.wake_all();
                l.waiters.drain().collect()
            }
        }
    }
}

/// How a produce to a partition of a replicated topic goes.
pub enum ProduceGate {
    /// Not replicated: the single-node path.
    Local,
    /// This shard leads: append with this epoch.
    Leader(Rc<RefCell<Leading>>),
    /// Refused with this error.
    Refused(ErrorCode, String),
}

pub fn produce_gate(s: &ShardState, meta: &TopicMeta, partition: i32, acks: i16) -> ProduceGate {
    if !meta.is_replicated() {
        return ProduceGate::Local;
    }
    let Some(leading) = s.replicas.leader(&meta.name, partition) else {
        return ProduceGate::Refused(
            ErrorCode::NOT_LEADER_OR_FOLLOWER,
            format!(
                "node {} does not lead {}-{partition}",
                s.config.node_id, meta.name
            ),
        );
    };
    if let Err(e) = leading.borrow().state.check_produce(acks == -1) {
        return ProduceGate::Refused(ErrorCode::NOT_ENOUGH_REPLICAS, e.to_string());
    }
    ProduceGate::Leader(leading)
}

/// Kafka's offset lag of a replica held on this shard (DescribeLogDirs):
/// how far its log end is below the high watermark it knows, which only a
/// follower can be; 0 for a leader and for a topic of one node.
pub fn offset_lag(s: &ShardState, tp: &Tp, log_end: i64) -> i64 {
    match s.replicas.follower(&tp.0, tp.1) {
        Some(f) => (f.high_watermark.get() - log_end).max(0),
        None => 0,
    }
}

/// After a leader's append was assigned offsets up to `log_end`.
pub fn on_leader_appended(leading: &Rc<RefCell<Leading>>, log_end: i64) {
    leading.borrow_mut().state.on_appended(log_end, now_ms());
}

/// After the leader's flush policy is met up to `durable_end`: the high
/// watermark may move; followers get the data.
pub fn on_leader_durable(
    s: &Rc<ShardState>,
    tp: &Tp,
    leading: &Rc<RefCell<Leading>>,
    durable_end: i64,
) {
    let out = {
        let mut l = leading.borrow_mut();
        let end = durable_end.min(l.state.log_end());
        if end <= l.durable {
            return;
        }
        l.durable = end;
        let out = l.state.on_local_durable(end, now_ms());
        // Senders have new data for their followers.
        l.wake_all();
        out
    };
    handle_outputs(s, tp, leading, out);
}

/// Waits until the high watermark passes `end_offset` (`acks=all`).
pub fn wait_committed(
    s: &Rc<ShardState>,
    tp: &Tp,
    leading: &Rc<RefCell<Leading>>,
    end_offset: i64,
) -> oneshot::Receiver<AckResult> {
    let (tx, rx) = oneshot::channel();
    if leading.borrow().resigned {
        let _ = tx.send(AckResult::NotLeader);
        return rx;
    }
    let out = {
        let mut l = leading.borrow_mut();
        let id = l.next_ack;
        l.next_ack += 1;
        l.waiters.insert(id, tx);
        l.state.wait(AckId(id), end_offset)
    };
    handle_outputs(s, tp, leading, out);
    rx
}

/// Like [`wait_committed`], bounded by `timeout` (the produce request's
/// `timeout_ms`): `None` when it passes first. Kafka then answers
/// `REQUEST_TIMED_OUT`; the batch stays appended and may still commit.
pub async fn wait_committed_within(
    s: &Rc<ShardState>,
    tp: &Tp,
    leading: &Rc<RefCell<Leading>>,
    end_offset: i64,
    timeout: Duration,
) -> Option<AckResult> {
    let id = leading.borrow().next_ack;
    let committed = wait_committed(s, tp, leading, end_offset);
    let timer = glommio::timer::sleep(timeout);
    futures::pin_mut!(committed, timer);
    match futures::future::select(committed, timer).await {
        futures::future::Either::Left((r, _)) => Some(r.unwrap_or(AckResult::NotLeader)),
        futures::future::Either::Right(_) => {
            let mut l = leading.borrow_mut();
            l.waiters.remove(&id);
            l.state.cancel_wait(AckId(id));
            None
        }
    }
}

fn handle_outputs(
    s: &Rc<ShardState>,
    tp: &Tp,
    leading: &Rc<RefCell<Leading>>,
    out: Vec<LeaderOutput>,
) {
    for o in out {
        match o {
            LeaderOutput::Ack { id, result } => {
                if let Some(tx) = leading.borrow_mut().waiters.remove(&id.0) {
                    let _ = tx.send(result);
                }
            }
            LeaderOutput::HighWatermark(hw) => {
                s.replicas.note_high_watermark(tp, hw);
                leading.borrow_mut().wake_all();
            }
            LeaderOutput::ProposeIsr { epoch, isr } => {
                let Some(controller) = s.config.controller.clone() else {
                    continue;
                };
                // KIP-841: a broker the controller has fenced (or does not
                // know) is not proposed into the ISR; the controller would
                // refuse it, a Raft write on every tick until it unfences.
                let meta = controller.metadata();
                if let Some(committed) = committed_isr(&meta, tp) {
                    let ineligible = isr.iter().any(|n| {
                        !committed.contains(n) && meta.brokers.get(n).is_none_or(|b| b.fenced)
                    });
                    if ineligible {
                        tracing::debug!(
                            topic = tp.0,
                            partition = tp.1,
                            ?isr,
                            "not proposing a fenced broker into the ISR"
                        );
                        let out = leading
                            .borrow_mut()
                            .state
                            .on_isr_refused(&committed, now_ms());
                        handle_outputs(s, tp, leading, out);
                        continue;
                    }
                }
                let command = Command::AlterIsr {
                    topic: tp.0.clone(),
                    partition: tp.1,
                    leader: NodeId(s.config.node_id),
                    leader_epoch: epoch.0,
                    isr: isr.iter().copied().collect(),
                };
                tracing::info!(
                    topic = tp.0,
                    partition = tp.1,
                    ?isr,
                    "proposing an ISR change"
                );
                let s = s.clone();
                let tp = tp.clone();
                let leading = leading.clone();
                glommio::spawn_local(async move {
                    let result = controller.write(command).await;
                    if let Err(e) = result {
                        // Refused or lost: take the controller's ISR as it is,
                        // which also clears the pending proposal.
                        tracing::warn!(topic = tp.0, partition = tp.1, error = %e, "ISR change not applied");
                        if let Some(isr) = committed_isr(&controller.metadata(), &tp) {
                            let out = leading.borrow_mut().state.on_isr_refused(&isr, now_ms());
                            handle_outputs(&s, &tp, &leading, out);
                        }
                    }
                    // On success the metadata comes back through `sync`.
                })
                .detach();
            }
        }
    }
}

/// The ISR the controller committed for `tp`.
fn committed_isr(meta: &ClusterMetadata, tp: &Tp) -> Option<Vec<NodeId>> {
    meta.topics
        .get(&tp.0)
        .and_then(|t| t.partitions.get(usize::try_from(tp.1).ok()?))
        .map(|p| p.isr.clone())
}

/// The leader config of a partition of `meta`.
fn leader_config(s: &ShardState, meta: &TopicMeta) -> LeaderConfig {
    let min_insync_replicas = config_value(
        &meta.configs,
        &s.config.topic_defaults,
        "min.insync.replicas",
    )
    .and_then(|v| v.trim().parse::<usize>().ok())
    .unwrap_or(1)
    .max(1);
    LeaderConfig {
        min_insync_replicas,
        replica_lag_time_max_ms: s.config.replica_lag_time_max_ms,
    }
}

/// Brings this shard's roles in line with the controller's metadata: becomes
/// leader or follower of the replicated partitions it holds (in their
/// current leader epoch), applies committed ISR changes, and drops roles of
/// partitions it no longer holds.
pub fn sync(s: &Rc<ShardState>, meta: &ClusterMetadata) {
    let me = NodeId(s.config.node_id);
    let table = s.topics();
    let now = now_ms();
    let mut seen: Vec<Tp> = Vec::new();
    for (name, t) in &table.topics {
        if !t.is_replicated() {
            continue;
        }
        let Some(ct) = meta.topics.get(name) else {
            continue;
        };
        if ct.topic_id != *t.id.as_bytes() {
            continue;
        }
        for (p, ps) in ct.partitions.iter().enumerate() {
            let p = p as i32;
            // Both the topic table and the metadata must place this node's
            // replica here: a replica moving to another shard of this node
            // gives up its role as soon as either says so, and the new shard
            // takes it once its table has the log open.
            if t.replica_shard(p, me.0) != Some(s.shard.0)
                || ps.replica_on(me).map(|r| r.shard) != Some(s.shard)
            {
                continue;
            }
            let Some(log) = s.log(name, p) else {
                continue;
            };
            let tp: Tp = (name.clone(), p);
            seen.push(tp.clone());
            let current = s.replicas.roles.borrow_mut().remove(&tp);
            let role = match (ps.leader, current) {
                (Some(l), Some(Role::Leader(leading)))
                    if l == me && leading.borrow().state.epoch().0 == ps.leader_epoch =>
                {
                    leading.borrow_mut().state.set_config(leader_config(s, t));
                    let changed = leading.borrow().partition_epoch != ps.partition_epoch;
                    if changed {
                        let replicas: Vec<NodeId> = ps.replicas.iter().map(|r| r.node).collect();
                        let out = {
                            let mut lg = leading.borrow_mut();
                            lg.partition_epoch = ps.partition_epoch;
                            // A reassignment adds or removes followers.
                            if !replicas.iter().all(|&r| r == me || lg.state.is_follower(r)) {
                                tracing::info!(
                                    topic = name,
                                    partition = p,
                                    ?replicas,
                                    "replicas changed"
                                );
                            }
                            lg.state.set_replicas(&replicas);
                            lg.state.on_isr_committed(&ps.isr, now)
                        };
                        handle_outputs(s, &tp, &leading, out);
                    }
                    Some(Role::Leader(leading))
                }
                (Some(l), Some(Role::Follower(f)))
                    if l != me && f.leader == l && f.epoch == ps.leader_epoch =>
                {
                    Some(Role::Follower(f))
                }
                (leader, current) => {
                    if let Some(old) = current {
                        stop_role(s, &tp, old);
                    }
                    match leader {
                        Some(l) if l == me => {
                            let replicas: Vec<NodeId> =
                                ps.replicas.iter().map(|r| r.node).collect();
                            let (log_end, durable) = {
                                let lg = log.borrow();
                                (lg.log_end_offset(), lg.visible_offset())
                            };
                            let hw = s.replicas.known_high_watermark(&tp);
                            let state = LeaderState::new(
                                me,
                                LeaderEpoch(ps.leader_epoch),
                                leader_config(s, t),
                                &replicas,
                                &ps.isr,
                                log_end,
                                durable,
                                hw,
                                now,
                            );
                            tracing::info!(
                                topic = name,
                                partition = p,
                                epoch = ps.leader_epoch,
                                "leading"
                            );
                            let leading = Rc::new(RefCell::new(Leading {
                                state,
                                partition_epoch: ps.partition_epoch,
                                waiters: HashMap::new(),
                                next_ack: 0,
                                durable: -1,
                                wake: Vec::new(),
                                resigned: false,
                                streams: HashMap::new(),
                            }));
                            // A single-replica ISR commits on its own flushes.
                            on_leader_durable(s, &tp, &leading, durable);
                            if tp.0 == crate::groups::OFFSETS_TOPIC {
                                crate::groups::became_leader(s, p);
                            }
                            Some(Role::Leader(leading))
                        }
                        Some(l) => {
                            let Some(addr) =
                                replication_addr(meta, l, ps.replica_on(l).map(|r| r.shard))
                            else {
                                // The leader has not registered its ports yet:
                                // a later metadata change brings them.
                                continue;
                            };
                            tracing::info!(topic = name, partition = p, epoch = ps.leader_epoch, leader = l.0, %addr, "following");
                            let f = Rc::new(Following {
                                leader: l,
                                epoch: ps.leader_epoch,
                                high_watermark: Cell::new(s.replicas.known_high_watermark(&tp)),
                                leader_log_start: Cell::new(0),
                                stopped: Cell::new(false),
                            });
                            glommio::spawn_local(follow(
                                s.clone(),
                                tp.clone(),
                                log,
                                f.clone(),
                                addr,
                            ))
                            .detach();
                            Some(Role::Follower(f))
                        }
                        None => None,
                    }
                }
            };
            if let Some(role) = role {
                s.replicas.roles.borrow_mut().insert(tp, role);
            }
        }
    }
    let gone: Vec<Tp> = s
        .replicas
        .roles
        .borrow()
        .keys()
        .filter(|k| !seen.contains(k))
        .cloned()
        .collect();
    for tp in gone {
        let old = s.replicas.roles.borrow_mut().remove(&tp);
        if let Some(old) = old {
            stop_role(s, &tp, old);
        }
    }
}

/// This shard stops holding `tp` (a reassignment moved it away): its role
/// ends before its log goes.
pub fn forget(s: &ShardState, tp: &Tp) {
    if let Some(old) = s.replicas.roles.borrow_mut().remove(tp) {
        stop_role(s, tp, old);
    }
    s.replicas.high_watermarks.borrow_mut().remove(tp);
}

/// This shard hands `tp` to another shard of this node: its role ends; the
/// high watermark it knew is returned (and kept, so a second ask gets it
/// too).
pub fn hand_over(s: &ShardState, tp: &Tp) -> i64 {
    if let Some(old) = s.replicas.roles.borrow_mut().remove(tp) {
        stop_role(s, tp, old);
    }
    s.replicas.known_high_watermark(tp)
}

/// The high watermark to checkpoint for `tp`: the last one this shard
/// knew, if it knew one (only replicated partitions have one).
pub fn checkpointable_high_watermark(s: &ShardState, tp: &Tp) -> Option<i64> {
    s.replicas.high_watermarks.borrow().get(tp).copied()
}

/// This shard takes `tp` over from another shard of this node, which knew
/// the high watermark `hw`: a leader starts from it instead of from 0.
pub fn took_over(s: &ShardState, tp: &Tp, hw: i64) {
    let known = s.replicas.known_high_watermark(tp);
    s.replicas.note_high_watermark(tp, known.max(hw));
}

/// Ends a role: waiters of a leader get NOT_LEADER, and a coordinator of
/// `__consumer_offsets` groups hands them over.
fn stop_role(s: &ShardState, tp: &Tp, old: Role) {
    if matches!(old, Role::Leader(_)) && tp.0 == crate::groups::OFFSETS_TOPIC {
        crate::groups::lost_leadership(s, tp.1);
    }
    for (_, tx) in Replicas::stop(old) {
        let _ = tx.send(AckResult::NotLeader);
    }
}

fn replication_addr(
    meta: &ClusterMetadata,
    node: NodeId,
    shard: Option<ShardId>,
) -> Option<SocketAddr> {
    let b = meta.brokers.get(&node)?;
    let port = *b
        .registration
        .replication_ports
        .get(usize::from(shard?.0))?;
    if port == 0 {
        return None;
    }
    let host = &b.registration.host;
    format!("{host}:{port}").parse().ok().or_else(|| {
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
            .ok()?
            .next()
    })
}

/// Time passes for every partition this shard leads: followers lagging past
/// `replica.lag.time.max.ms` are proposed out of the ISR.
pub fn tick(s: &Rc<ShardState>) {
    let leaders: Vec<(Tp, Rc<RefCell<Leading>>)> = s
        .replicas
        .roles
        .borrow()
        .iter()
        .filter_map(|(tp, r)| match r {
            Role::Leader(l) => Some((tp.clone(), l.clone())),
            Role::Follower(_) => None,
        })
        .collect();
    let now = now_ms();
    for (tp, leading) in leaders {
        // What became durable without a produce waiting for it (acks=0,
        // a flush interval) counts for the high watermark too.
        if let Some(log) = s.log(&tp.0, tp.1) {
            let durable = log.borrow().visible_offset();
            on_leader_durable(s, &tp, &leading, durable);
        }
        let out = leading.borrow_mut().state.tick(now);
        handle_outputs(s, &tp, &leading, out);
    }
}

/// Per shard: follows the controller's metadata (and time, for ISR shrink)
/// until shutdown.
pub async fn run(s: Rc<ShardState>) {
    let Some(controller) = s.config.controller.clone() else {
        return;
    };
    let mut rx = controller.subscribe();
    let tick_ms = (s.config.replica_lag_time_max_ms / 4).clamp(10, 1000) as u64;
    loop {
        if s.shutdown.is_set() {
            return;
        }
        let meta = rx.borrow_and_update().clone();
        // After a restart the metadata starts old (the Raft log is applied
        // again from the start): nothing is installed, dropped or led
        // until it shows this process's registration. Acting on it at once
        // deleted the logs of every replica created since the last
        // snapshot, so a returning last in-sync replica came back empty.
        if controller.caught_up() {
            if s.shard.0 == 0 {
                publish_replicated_topics(&s, &meta).await;
            }
            sync(&s, &meta);
            tick(&s);
        }
        let changed = rx.changed();
        let timeout = glommio::timer::sleep(Duration::from_millis(tick_ms));
        let stop = s.shutdown.wait();
        futures::pin_mut!(changed, timeout, stop);
        let woke = futures::future::select(changed, futures::future::select(timeout, stop)).await;
        if let futures::future::Either::Left((Err(_), _)) = woke {
            // The controller is gone.
            return;
        }
    }
}

/// Shard 0: the controller's topics go into this node's topic table (with
/// their placement and configs), so every shard opens the logs of its
/// replicas and applies config changes to them; topics the controller
/// deleted go.
async fn publish_replicated_topics(s: &Rc<ShardState>, meta: &std::sync::Arc<ClusterMetadata>) {
    let table = s.topics();
    let current = |m: &TopicMeta, t: &shard_router::controller::TopicState| {
        m.id.as_bytes() == &t.topic_id && m.replicas == placement(t) && m.configs == t.configs
    };
    let up_to_date = meta.topics.iter().all(|(name, t)| {
        table
            .get(name)
            .is_some_and(|m| current(m, t) || !m.is_replicated())
    }) && table
        .topics
        .values()
        .filter(|m| m.is_replicated())
        .all(|m| meta.topics.contains_key(&m.name));
    if up_to_date {
        return;
    }
    let meta: ClusterMetadata = (**meta).clone();
    let result = crate::api::admin::on_controller(s, move |_, table| {
        table
            .topics
            .retain(|name, m| !m.is_replicated() || meta.topics.contains_key(name));
        for (name, t) in &meta.topics {
            match table.get(name) {
                Some(m) if current(m, t) => continue,
                Some(m) if !m.is_replicated() => {
                    tracing::warn!(topic = name, "a topic of this node alone has the name of a cluster topic; the cluster topic is not served here");
                    continue;
                }
                _ => {}
            }
            let replicas = placement(t);
            // Configs are cluster metadata: the controller's win over any
            // this node had (before config changes went through it).
            let configs = t.configs.clone();
            table.topics.insert(
                name.clone(),
                TopicMeta {
                    name: name.clone(),
                    id: uuid::Uuid::from_bytes(t.topic_id),
                    partitions: t.partitions.len() as i32,
                    configs,
                    internal: name.starts_with("__"),
                    replicas,
                },
            );
        }
    })
    .await;
    if let Err((code, msg)) = result {
        tracing::warn!(code, msg, "installing the cluster's topics failed");
    }
}

/// The (node, shard) of every replica of each partition of `t`, as the
/// topic table keeps it (a reassignment in progress: old and new replicas).
fn placement(t: &shard_router::controller::TopicState) -> Vec<Vec<(i32, u16)>> {
    t.partitions
        .iter()
        .map(|p| p.replicas.iter().map(|r| (r.node.0, r.shard.0)).collect())
        .collect()
}

// ---- the wire ----

/// Whole frames off a stream.
struct FrameReader<R> {
    stream: R,
    buf: BytesMut,
    chunk: Vec<u8>,
}

impl<R: futures::AsyncRead + Unpin> FrameReader<R> {
    fn new(stream: R) -> Self {
        FrameReader {
            stream,
            buf: BytesMut::new(),
            chunk: vec![0; 64 << 10],
        }
    }

    /// The next message; `Ok(None)` at the end of the stream. A read timeout
    /// is an `Err` of kind `TimedOut` and loses nothing buffered.
    async fn next(&mut self) -> std::io::Result<Option<Message>> {
        loop {
            match decode_frame(&mut self.buf) {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
            let n = self.stream.read(&mut self.chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
        }
    }
}

fn encode(m: &Message) -> Bytes {
    let mut b = BytesMut::new();
    m.encode(&mut b)
        .expect("messages we build fit the protocol's limits");
    b.freeze()
}

/// A writer task for one connection; frames go through the returned queue.
fn spawn_writer(mut w: futures::io::WriteHalf<TcpStream>) -> mpsc::Sender<Bytes> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE_FRAMES);
    glommio::spawn_local(async move {
        while let Some(frame) = rx.next().await {
            if w.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = w.close().await;
    })
    .detach();
    tx
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

fn tp_ref(tp: &Tp) -> PartitionRef {
    PartitionRef {
        topic: tp.0.clone(),
        partition: tp.1,
    }
}

// ---- the leader's side ----

/// Accepts followers' connections on this shard's replication port.
pub async fn serve(s: Rc<ShardState>, listener: TcpListener) {
    loop {
        let accept = listener.accept();
        let stop = s.shutdown.wait();
        futures::pin_mut!(accept, stop);
        match futures::future::select(accept, stop).await {
            futures::future::Either::Left((Ok(stream), _)) => {
                glommio::spawn_local(leader_conn(s.clone(), stream)).detach();
            }
            futures::future::Either::Left((Err(e), _)) => {
                tracing::warn!(error = %e, "replication accept failed");
                glommio::timer::sleep(RECONNECT_PAUSE).await;
            }
            futures::future::Either::Right(_) => return,
        }
    }
}

async fn leader_conn(s: Rc<ShardState>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(POLL_INTERVAL));
    let (r, w) = stream.split();
    let mut tx = spawn_writer(w);
    let mut reader = FrameReader::new(r);
    let follower = loop {
        match reader.next().await {
            Ok(Some(Message::Hello { node, version, .. })) if version == PROTOCOL_VERSION => {
                break node
            }
            Ok(Some(Message::Hello { node, version, .. })) => {
                tracing::warn!(
                    follower = node.0,
                    version,
                    ours = PROTOCOL_VERSION,
                    "a follower speaks another replication protocol version; closing"
                );
                return;
            }
            Err(e) if is_timeout(&e) && !s.shutdown.is_set() => continue,
            _ => return,
        }
    };
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        node: NodeId(s.config.node_id),
        shard: s.shard,
    };
    if tx.send(encode(&hello)).await.is_err() {
        return;
    }
    let mut senders: HashMap<Tp, Rc<Cell<bool>>> = HashMap::new();
    loop {
        let msg = match reader.next().await {
            Ok(Some(m)) => m,
            Err(e) if is_timeout(&e) && !s.shutdown.is_set() => continue,
            Ok(None) | Err(_) => break,
        };
        match msg {
            Message::EpochQuery {
                tp,
                leader_epoch,
                requested_epoch,
            } => {
                let key: Tp = (tp.topic.clone(), tp.partition);
                let answer = match (
                    s.replicas.leader(&tp.topic, tp.partition),
                    s.log(&tp.topic, tp.partition),
                ) {
                    (Some(l), Some(log)) => {
                        let epoch = l.borrow().state.epoch().0;
                        if epoch == leader_epoch {
                            let lg = log.borrow();
                            let end = lg.log_end_offset();
                            let cache = epochs::with_current_epoch(lg.leader_epochs(), epoch, end);
                            let (e, o) = epochs::end_offset_for(&cache, requested_epoch, end);
                            (0, e, o)
                        } else if leader_epoch < epoch {
                            (ErrorCode::FENCED_LEADER_EPOCH.0, -1, -1)
                        } else {
                            (ErrorCode::UNKNOWN_LEADER_EPOCH.0, -1, -1)
                        }
                    }
                    _ => (ErrorCode::NOT_LEADER_OR_FOLLOWER.0, -1, -1),
                };
                let _ = key;
                let m = Message::EpochAnswer {
                    tp,
                    leader_epoch,
                    requested_epoch,
                    error_code: answer.0,
                    epoch: answer.1,
                    end_offset: answer.2,
                };
                if tx.send(encode(&m)).await.is_err() {
                    break;
                }
            }
            Message::Subscribe {
                tp,
                leader_epoch,
                log_end,
            } => {
                let key: Tp = (tp.topic.clone(), tp.partition);
                let leading = s
                    .replicas
                    .leader(&tp.topic, tp.partition)
                    .filter(|l| l.borrow().state.epoch().0 == leader_epoch);
                // A replica this leader does not know yet (its reassignment
                // reached the follower's node first) is refused, so the
                // follower retries instead of waiting for a stream that
                // would never start.
                let leading = leading.filter(|l| l.borrow().state.is_follower(follower));
                let (Some(leading), Some(log)) = (leading, s.log(&tp.topic, tp.partition)) else {
                    let m = Message::Refused {
                        tp,
                        leader_epoch,
                        error_code: ErrorCode::NOT_LEADER_OR_FOLLOWER.0,
                    };
                    if tx.send(encode(&m)).await.is_err() {
                        break;
                    }
                    continue;
                };
                tracing::info!(
                    topic = tp.topic,
                    partition = tp.partition,
                    follower = follower.0,
                    log_end,
                    "follower subscribed"
                );
                let out = leading.borrow_mut().state.on_follower_subscribe(
                    follower,
                    LeaderEpoch(leader_epoch),
                    log_end,
                    now_ms(),
                );
                handle_outputs(&s, &key, &leading, out);
                if let Some(old) = senders.remove(&key) {
                    old.set(true);
                }
                let stop = Rc::new(Cell::new(false));
                senders.insert(key.clone(), stop.clone());
                if let Some(old) = leading.borrow_mut().streams.insert(follower, stop.clone()) {
                    // A stream of an earlier connection ends here.
                    old.set(true);
                }
                glommio::spawn_local(send_loop(
                    s.clone(),
                    key,
                    log,
                    leading.clone(),
                    follower,
                    tx.clone(),
                    stop,
                ))
                .detach();
                leading.borrow_mut().wake_all();
            }
            Message::Ack {
                tp,
                leader_epoch,
                log_end,
            } => {
                let key: Tp = (tp.topic.clone(), tp.partition);
                // Only the connection that carries the follower's current
                // stream reports for it: a report still buffered on an
                // older connection (the follower restarted, perhaps with an
                // empty disk, and subscribed again on a new one) describes
                // a log that is gone.
                let current = |l: &Leading| {
                    senders.get(&key).is_some_and(|stop| {
                        l.streams
                            .get(&follower)
                            .is_some_and(|c| Rc::ptr_eq(c, stop))
                    })
                };
                if let Some(leading) = s
                    .replicas
                    .leader(&tp.topic, tp.partition)
                    .filter(|l| current(&l.borrow()))
                {
                    let out = leading.borrow_mut().state.on_follower_ack(
                        follower,
                        LeaderEpoch(leader_epoch),
                        log_end,
                        now_ms(),
                    );
                    handle_outputs(&s, &key, &leading, out);
                }
            }
            other => {
                tracing::debug!(?other, "unexpected replication message at a leader");
            }
        }
    }
    for (key, stop) in senders {
        stop.set(true);
        if let Some(leading) = s.replicas.leader(&key.0, key.1) {
            let mut l = leading.borrow_mut();
            // Only if this connection still carries the follower's stream:
            // a newer connection's subscription stands.
            if l.streams
                .get(&follower)
                .is_some_and(|c| Rc::ptr_eq(c, &stop))
            {
                l.streams.remove(&follower);
                l.state.on_disconnected(follower);
            }
            l.wake_all();
        }
    }
}

/// The end offset of the whole batches in `records`.
fn batches_end(records: &[u8]) -> Option<i64> {
    let mut at = 0;
    let mut end = None;
    while at < records.len() {
        let h = sluice_records::BatchHeader::parse(&records[at..]).ok()?;
        end = Some(h.next_offset());
        at += h.total_len();
    }
    end
}

/// Streams one partition to one follower: durable batches it lacks, and
/// the high watermark when it moves.
async fn send_loop(
    s: Rc<ShardState>,
    tp: Tp,
    log: Log,
    leading: Rc<RefCell<Leading>>,
    follower: NodeId,
    mut tx: mpsc::Sender<Bytes>,
    stop: Rc<Cell<bool>>,
) {
    let epoch = leading.borrow().state.epoch().0;
    let (mut sent_hw, mut sent_log_start) = (-1, -1);
    loop {
        let still_leading = s
            .replicas
            .leader(&tp.0, tp.1)
            .is_some_and(|l| Rc::ptr_eq(&l, &leading));
        if stop.get() || s.shutdown.is_set() || !still_leading {
            return;
        }
        let (next, hw, streaming) = {
            let l = leading.borrow();
            let next = l
                .state
                .to_send()
                .into_iter()
                .find(|&(n, _)| n == follower)
                .map(|(_, o)| o);
            let streaming = l.state.is_streaming_to(follower);
            (next, l.state.high_watermark(), streaming)
        };
        // What the follower lacks is gone here (retention, DeleteRecords):
        // it restarts its log at our log start and subscribes there.
        let log_start = log.borrow().log_start_offset();
        let start_over = leading.borrow_mut().state.start_over(follower, log_start);
        if let Some(log_start) = start_over {
            tracing::info!(
                topic = tp.0,
                partition = tp.1,
                follower = follower.0,
                log_start,
                "the follower's log ends below this log's start: it starts over there"
            );
            let m = Message::StartAt {
                tp: tp_ref(&tp),
                leader_epoch: epoch,
                log_start,
            };
            if tx.send(encode(&m)).await.is_err() {
                return;
            }
            continue;
        }
        let visible = log.borrow().visible_offset();
        if let Some(from) = next.filter(|&n| n < visible) {
            match engine::log::read(&log, from, MAX_SEND_BYTES).await {
                Ok(r) if !r.chunks.is_empty() => {
                    let records = if r.chunks.len() == 1 {
                        r.chunks[0].clone()
                    } else {
                        let mut b = BytesMut::with_capacity(r.chunks.iter().map(Bytes::len).sum());
                        for c in &r.chunks {
                            b.extend_from_slice(c);
                        }
                        b.freeze()
                    };
                    let Some(end) = batches_end(&records) else {
                        tracing::error!(
                            topic = tp.0,
                            partition = tp.1,
                            "stored batches did not parse"
                        );
                        return;
                    };
                    let m = Message::Batches {
                        tp: tp_ref(&tp),
                        leader_epoch: epoch,
                        high_watermark: hw,
                        log_start,
                        records,
                    };
                    if tx.send(encode(&m)).await.is_err() {
                        return;
                    }
                    (sent_hw, sent_log_start) = (hw, log_start);
                    leading.borrow_mut().state.on_sent(follower, end);
                    continue;
                }
                Ok(_) => {}
                // Retention or DeleteRecords moved the log start meanwhile:
                // the next round tells the follower to start over.
                Err(engine::LogError::OffsetOutOfRange { .. })
                    if from < log.borrow().log_start_offset() =>
                {
                    continue
                }
                Err(e) => {
                    tracing::warn!(topic = tp.0, partition = tp.1, error = %e, "reading for a follower failed");
                    glommio::timer::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            }
        } else if (hw > sent_hw || log_start != sent_log_start) && streaming {
            // The high watermark moved, or retention or DeleteRecords moved
            // the log start: the follower's follow, caught up or not.
            let m = Message::Batches {
                tp: tp_ref(&tp),
                leader_epoch: epoch,
                high_watermark: hw,
                log_start,
                records: Bytes::new(),
            };
            if tx.send(encode(&m)).await.is_err() {
                return;
            }
            (sent_hw, sent_log_start) = (hw, log_start);
            continue;
        }
        // Woken when the leader's data becomes durable (each produce, and
        // the timer in `tick`), when the high watermark moves, or a follower
        // subscribes; the timeout covers anything else.
        let changed = leading.borrow_mut().changed();
        let timeout = glommio::timer::sleep(POLL_INTERVAL);
        futures::pin_mut!(changed, timeout);
        futures::future::select(changed, timeout).await;
    }
}

// ---- the follower's side ----

async fn follow(s: Rc<ShardState>, tp: Tp, log: Log, f: Rc<Following>, addr: SocketAddr) {
    let mut state: Option<FollowerState> = None;
    while !f.stopped.get() && !s.shutdown.is_set() {
        if let Err(e) = follow_once(&s, &tp, &log, &f, addr, &mut state).await {
            tracing::info!(topic = tp.0, partition = tp.1, leader = f.leader.0, %addr, error = %e, "replication stream ended; reconnecting");
        }
        glommio::timer::sleep(RECONNECT_PAUSE).await;
    }
}

async fn follow_once(
    s: &Rc<ShardState>,
    tp: &Tp,
    log: &Log,
    f: &Rc<Following>,
    addr: SocketAddr,
    state: &mut Option<FollowerState>,
) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(POLL_INTERVAL))
        .map_err(|e| e.to_string())?;
    let (r, w) = stream.split();
    let mut tx = spawn_writer(w);
    let mut reader = FrameReader::new(r);
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        node: NodeId(s.config.node_id),
        shard: s.shard,
    };
    tx.send(encode(&hello)).await.map_err(|e| e.to_string())?;
    let (cache, start, end) = {
        let l = log.borrow();
        (
            l.leader_epochs().to_vec(),
            l.log_start_offset(),
            l.log_end_offset(),
        )
    };
    let actions = match state {
        Some(st) => st.reconnect(&cache, start, end),
        None => {
            let (st, a) = FollowerState::new(
                f.leader,
                LeaderEpoch(f.epoch),
                &cache,
                start,
                end,
                f.high_watermark.get(),
            );
            *state = Some(st);
            a
        }
    };
    let st = state.as_mut().expect("set above");
    run_actions(s, tp, log, f, st, &mut tx, actions).await?;
    loop {
        if f.stopped.get() || s.shutdown.is_set() {
            return Ok(());
        }
        let msg = match reader.next().await {
            Ok(Some(m)) => m,
            Ok(None) => return Err("the leader closed the connection".into()),
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(e.to_string()),
        };
        // The role may have ended while this task waited: the log may be
        // closed (or handed to another shard) by now.
        if f.stopped.get() || s.shutdown.is_set() {
            return Ok(());
        }
        let actions = match msg {
            Message::Hello { version, .. } if version != PROTOCOL_VERSION => {
                return Err(format!(
                    "the leader speaks replication protocol version {version}, this node {PROTOCOL_VERSION}"
                ));
            }
            Message::Hello { .. } => continue,
            Message::EpochAnswer {
                leader_epoch,
                requested_epoch,
                error_code,
                epoch,
                end_offset,
                ..
            } => {
                if error_code != 0 {
                    return Err(format!("epoch query refused with error {error_code}"));
                }
                let (cache, start, end) = {
                    let l = log.borrow();
                    (
                        l.leader_epochs().to_vec(),
                        l.log_start_offset(),
                        l.log_end_offset(),
                    )
                };
                st.on_epoch_answer(
                    f.leader,
                    LeaderEpoch(leader_epoch),
                    requested_epoch,
                    (epoch, end_offset),
                    &cache,
                    start,
                    end,
                )
                .map_err(|e| e.to_string())?
            }
            Message::Batches {
                leader_epoch,
                high_watermark,
                log_start,
                records,
                ..
            } => {
                let (start, end, durable) = {
                    let l = log.borrow();
                    (l.log_start_offset(), l.log_end_offset(), l.visible_offset())
                };
                let actions = st
                    .on_batches(
                        f.leader,
                        LeaderEpoch(leader_epoch),
                        high_watermark,
                        log_start,
                        records,
                        start,
                        end,
                        durable,
                    )
                    .map_err(|e| e.to_string())?;
                f.leader_log_start.set(log_start);
                actions
            }
            Message::StartAt {
                leader_epoch,
                log_start,
                ..
            } => {
                let end = log.borrow().log_end_offset();
                st.on_start_at(f.leader, LeaderEpoch(leader_epoch), log_start, end)
                    .map_err(|e| e.to_string())?
            }
            Message::Refused { error_code, .. } => {
                return Err(format!("the leader refused with error {error_code}"));
            }
            other => {
                tracing::debug!(?other, "unexpected replication message at a follower");
                continue;
            }
        };
        run_actions(s, tp, log, f, st, &mut tx, actions).await?;
    }
}

async fn run_actions(
    s: &Rc<ShardState>,
    tp: &Tp,
    log: &Log,
    f: &Rc<Following>,
    st: &mut FollowerState,
    tx: &mut mpsc::Sender<Bytes>,
    actions: Vec<FollowerAction>,
) -> Result<(), String> {
    let epoch = f.epoch;
    let mut appended = false;
    for a in actions {
        // An earlier action awaited: the role may have ended meanwhile.
        if f.stopped.get() {
            return Ok(());
        }
        match a {
            FollowerAction::QueryEpoch { requested } => {
                let m = Message::EpochQuery {
                    tp: tp_ref(tp),
                    leader_epoch: epoch,
                    requested_epoch: requested,
                };
                tx.send(encode(&m)).await.map_err(|e| e.to_string())?;
            }
            FollowerAction::Truncate(offset) => {
                tracing::info!(
                    topic = tp.0,
                    partition = tp.1,
                    offset,
                    "truncating divergent history"
                );
                engine::log::truncate_to(log, offset)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            FollowerAction::StartAt(offset) => {
                tracing::info!(
                    topic = tp.0,
                    partition = tp.1,
                    offset,
                    "emptying the log to restart it at the leader's log start"
                );
                engine::log::truncate_fully_and_start_at(log, offset, now_ms())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            FollowerAction::Subscribe { log_end } => {
                // The leader counts it as durable.
                s.mark_dirty(log);
                let durable = log.borrow_mut().wait_visible(log_end);
                durable.await.map_err(|e| e.to_string())?;
                let m = Message::Subscribe {
                    tp: tp_ref(tp),
                    leader_epoch: epoch,
                    log_end,
                };
                tx.send(encode(&m)).await.map_err(|e| e.to_string())?;
            }
            FollowerAction::Append(records) => {
                let mut at = 0;
                let now = now_ms();
                while at < records.len() {
                    let len = sluice_records::BatchHeader::parse(&records[at..])
                        .map_err(|e| e.to_string())?
                        .total_len();
                    log.borrow_mut()
                        .append_replica(&records[at..at + len], now)
                        .map_err(|e| e.to_string())?;
                    at += len;
                }
                appended = true;
                s.mark_dirty(log);
            }
            FollowerAction::HighWatermark(hw) => {
                f.high_watermark.set(hw);
                s.replicas.note_high_watermark(tp, hw);
            }
            FollowerAction::LogStart(offset) => follow_log_start(tp, log, offset).await?,
            FollowerAction::Ack { log_end } => {
                let m = Message::Ack {
                    tp: tp_ref(tp),
                    leader_epoch: epoch,
                    log_end,
                };
                tx.send(encode(&m)).await.map_err(|e| e.to_string())?;
            }
        }
    }
    if appended && !f.stopped.get() {
        // A new epoch's first batch: its start goes to the checkpoint before
        // the leader hears the batch is here.
        engine::recovery::checkpoint_leader_epochs(log)
            .await
            .map_err(|e| e.to_string())?;
        let end = log.borrow().log_end_offset();
        let durable = log.borrow_mut().wait_visible(end);
        durable.await.map_err(|e| e.to_string())?;
        let visible = log.borrow().visible_offset();
        for a in st.on_local_durable(visible) {
            match a {
                FollowerAction::Ack { log_end } => {
                    let m = Message::Ack {
                        tp: tp_ref(tp),
                        leader_epoch: epoch,
                        log_end,
                    };
                    tx.send(encode(&m)).await.map_err(|e| e.to_string())?;
                }
                FollowerAction::LogStart(offset) => follow_log_start(tp, log, offset).await?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// Moves a follower's log start up to the leader's (`offset`, which the
/// log holds durably below the high watermark) and deletes the segments
/// wholly below it, as DeleteRecords does on the leader. The new start is
/// made durable with the deletion; a crash before that brings back
/// committed records below it, which the leader's next message removes.
async fn follow_log_start(tp: &Tp, log: &Log, offset: i64) -> Result<(), String> {
    let dropped = {
        let mut l = log.borrow_mut();
        let offset = offset.min(l.visible_offset());
        l.advance_log_start(offset).map_err(|e| e.to_string())?
    };
    if !dropped.is_empty() {
        tracing::debug!(
            topic = tp.0,
            partition = tp.1,
            offset,
            segments = dropped.len(),
            "the log start follows the leader's"
        );
    }
    drop(dropped);
    engine::log::delete_dropped_files(log)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

// ---- consumers ----

/// What consumers of a partition may see on this shard.
pub enum ConsumerView {
    /// Not replicated: the log's visible offset.
    Local,
    /// This shard leads: reads stop at the high watermark.
    Leader(Rc<RefCell<Leading>>),
    /// A follower, or not a replica here: `NOT_LEADER_OR_FOLLOWER` (fetching
    /// from followers, KIP-392, is not offered).
    NotLeader,
}

pub fn consumer_view(s: &ShardState, topic: &str, partition: i32) -> ConsumerView {
    let replicated = s.topics().get(topic).is_some_and(TopicMeta::is_replicated);
    if !replicated {
        return ConsumerView::Local;
    }
    match s.replicas.leader(topic, partition) {
        Some(l) => ConsumerView::Leader(l),
        None => ConsumerView::NotLeader,
    }
}

/// A consumer request's view of the partition after Kafka's check of its
/// `current_leader_epoch` (KIP-320) against the epoch this replica knows:
/// its own as leader, its leader's as follower, 0 on a single node. Older is
/// `FENCED_LEADER_EPOCH`, newer `UNKNOWN_LEADER_EPOCH`, -1 skips the check.
/// The epoch is checked before leadership, as Kafka does, so a follower
/// tells a client with a stale epoch that it is fenced.
pub fn consumer_view_checked(
    s: &ShardState,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<ConsumerView, ErrorCode> {
    let view = consumer_view(s, topic, partition);
    let known = match &view {
        ConsumerView::Local => Some(crate::api::offset_for_leader_epoch::LEADER_EPOCH),
        ConsumerView::Leader(l) => Some(l.borrow().state.epoch().0),
        ConsumerView::NotLeader => s.replicas.follower(topic, partition).map(|f| f.epoch),
    };
    if let Some(known) = known {
        crate::api::offset_for_leader_epoch::check_current_epoch(current_leader_epoch, known)?;
    }
    Ok(view)
}

/// Drops the batches at or past `high_watermark` from `chunks` (each chunk
/// holds whole batches, in offset order).
pub fn cut_at(chunks: Vec<Bytes>, high_watermark: i64) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let mut at = 0;
        while at < chunk.len() {
            let Ok(h) = sluice_records::BatchHeader::parse(&chunk[at..]) else {
                break;
            };
            if h.base_offset >= high_watermark {
                break;
            }
            at += h.total_len();
        }
        let whole = at == chunk.len();
        if at > 0 {
            out.push(chunk.slice(..at.min(chunk.len())));
        }
        if !whole {
            break;
        }
    }
    out
}
