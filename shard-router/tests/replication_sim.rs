//! Deterministic simulation of partition replication (raft-rs style): three
//! nodes, each a real engine log on the in-memory disk, driven through the
//! pure leader/follower state machines, talking through the wire codec over
//! a simulated network. No sockets, no clocks: time and delivery order are
//! chosen by the test.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use engine::log::{
    delete_dropped_files, flush, read, truncate_fully_and_start_at, truncate_to, PartitionLog,
};
use engine::storage::memory::MemStorage;
use engine::{CacheBudget, LogConfig};
use futures::executor::block_on;
use proptest::prelude::*;
use shard_router::replication::epochs::{end_offset_for, with_current_epoch};
use shard_router::replication::wire::{decode_frame, Message, PartitionRef};
use shard_router::replication::{
    consumer_read_bound, AckId, AckResult, FollowerAction, FollowerState, LeaderConfig,
    LeaderEpoch, LeaderOutput, LeaderState, ReadBound,
};
use shard_router::NodeId;
use sluice_records::{BatchBuilder, BatchHeader, Compression};

const T0: i64 = 1_700_000_000_000;
const LAG_MS: i64 = 10_000;
/// Kafka's NOT_LEADER_OR_FOLLOWER, sent back to a stale leader.
const FENCED_LEADER_EPOCH: i16 = 74;

enum Role {
    Leader(LeaderState),
    Follower(FollowerState),
    Offline,
}

struct Node {
    id: NodeId,
    log: RefCell<PartitionLog<MemStorage>>,
    role: Role,
    /// The high watermark this node knows (leader: its own; follower: the leader's).
    high_watermark: i64,
}

struct Sim {
    now_ms: i64,
    nodes: BTreeMap<NodeId, Node>,
    /// Frames in flight: (from, to, encoded frame).
    net: VecDeque<(NodeId, NodeId, BytesMut)>,
    /// Nodes whose traffic is dropped both ways.
    cut_off: BTreeSet<NodeId>,
    /// Produces waiting for acks=all: id -> (leader, end offset).
    waiting: BTreeMap<AckId, (NodeId, i64)>,
    acked: BTreeMap<AckId, AckResult>,
    next_ack: u64,
    /// The controller's view: epoch, leader, committed ISR.
    epoch: LeaderEpoch,
    isr: BTreeSet<NodeId>,
    config: LeaderConfig,
    /// Every high watermark any leader announced, per epoch, in order.
    hw_history: Vec<(LeaderEpoch, i64)>,
    /// The stored bytes of every batch an acks=all produce was answered
    /// for: none may ever be lost (unless DeleteRecords removed it).
    committed: Vec<Bytes>,
    /// How many times a follower emptied its log to restart at its
    /// leader's log start.
    restarts: usize,
    /// What the leader last sent each subscribed follower: (high watermark,
    /// log start); a change is sent on its own, as the broker's sender does.
    sent: BTreeMap<NodeId, (i64, i64)>,
}

fn tp() -> PartitionRef {
    PartitionRef {
        topic: "t".into(),
        partition: 0,
    }
}

fn batch(id: u64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..2 {
        let v = format!("b{id}-{i}");
        b.push(T0, Some(b"k"), Some(v.as_bytes()), &[]);
    }
    b.build()
}

fn open_log() -> RefCell<PartitionLog<MemStorage>> {
    // Small segments, so that retention (run by `Op::Retention` only) has
    // whole segments to delete.
    let cfg = LogConfig {
        segment_bytes: 1 << 10,
        retention_bytes: 2 << 10,
        preallocate_bytes: 0,
        ..LogConfig::default()
    };
    let log = block_on(engine::recovery::open(
        MemStorage::new(),
        PathBuf::from("/d/t-0"),
        cfg,
        CacheBudget::new(1 << 20),
        T0,
    ))
    .expect("open");
    RefCell::new(log)
}

/// Every stored batch of `log` from its log start to its visible end.
fn batches_of(log: &RefCell<PartitionLog<MemStorage>>) -> Vec<Bytes> {
    let start = log.borrow().log_start_offset();
    batches_from(log, start)
}

/// Every stored batch of `log` holding an offset at or past `from` (which
/// must be at or past its log start), to its visible end.
fn batches_from(log: &RefCell<PartitionLog<MemStorage>>, from: i64) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let r = block_on(read(log, offset, 1 << 20)).expect("read");
        if r.chunks.is_empty() {
            return out;
        }
        for c in r.chunks {
            let mut at = 0;
            while at < c.len() {
                let h = BatchHeader::parse(&c[at..]).expect("header");
                out.push(c.slice(at..at + h.total_len()));
                offset = h.next_offset();
                at += h.total_len();
            }
        }
    }
}

impl Sim {
    fn new(min_insync_replicas: usize) -> Sim {
        let ids = [NodeId(1), NodeId(2), NodeId(3)];
        let nodes = ids
            .iter()
            .map(|&id| {
                (
                    id,
                    Node {
                        id,
                        log: open_log(),
                        role: Role::Offline,
                        high_watermark: 0,
                    },
                )
            })
            .collect();
        let mut sim = Sim {
            now_ms: T0,
            nodes,
            net: VecDeque::new(),
            cut_off: BTreeSet::new(),
            waiting: BTreeMap::new(),
            acked: BTreeMap::new(),
            next_ack: 0,
            epoch: LeaderEpoch(0),
            isr: ids.iter().copied().collect(),
            config: LeaderConfig {
                min_insync_replicas,
                replica_lag_time_max_ms: LAG_MS,
            },
            hw_history: Vec::new(),
            committed: Vec::new(),
            restarts: 0,
            sent: BTreeMap::new(),
        };
        sim.elect(NodeId(1));
        sim
    }

    fn leader_id(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .find(|n| matches!(n.role, Role::Leader(_)))
            .map(|n| n.id)
    }

    fn leader(&self) -> &LeaderState {
        match self.nodes.values().find_map(|n| match &n.role {
            Role::Leader(l) => Some(l),
            _ => None,
        }) {
            Some(l) => l,
            None => panic!("no leader"),
        }
    }

    /// The controller makes `new_leader` leader of the next epoch (it must be
    /// in the ISR: unclean election is off); everyone else follows.
    fn elect(&mut self, new_leader: NodeId) {
        assert!(self.isr.contains(&new_leader), "unclean election is off");
        let old = self.leader_id();
        if let Some(old) = old {
            let outs = match &mut self.node(old).role {
                Role::Leader(l) => l.resign(),
                _ => Vec::new(),
            };
            self.apply_leader_outputs(old, outs);
        }
        self.epoch = LeaderEpoch(self.epoch.0 + 1);
        let epoch = self.epoch;
        let replicas: Vec<NodeId> = self.nodes.keys().copied().collect();
        let isr: Vec<NodeId> = self.isr.iter().copied().collect();
        let (config, now_ms) = (self.config, self.now_ms);
        for id in replicas.clone() {
            let node = self.node(id);
            let (log_start, log_end, durable, cache) = {
                let l = node.log.borrow();
                (
                    l.log_start_offset(),
                    l.log_end_offset(),
                    l.visible_offset(),
                    l.leader_epochs().to_vec(),
                )
            };
            if id == new_leader {
                node.role = Role::Leader(LeaderState::new(
                    id,
                    epoch,
                    config,
                    &replicas,
                    &isr,
                    log_end,
                    durable,
                    node.high_watermark,
                    now_ms,
                ));
                node.high_watermark = node.high_watermark.min(log_end);
            } else {
                let (f, actions) = FollowerState::new(
                    new_leader,
                    epoch,
                    &cache,
                    log_start,
                    log_end,
                    node.high_watermark,
                );
                node.role = Role::Follower(f);
                self.apply_follower_actions(id, actions);
            }
        }
    }

    fn node(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).expect("a node of the sim")
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: Message) {
        let mut frame = BytesMut::new();
        msg.encode(&mut frame).expect("encode");
        self.net.push_back((from, to, frame));
    }

    /// A produce on the current leader; `Some(id)` if it was accepted.
    fn produce(&mut self, id: u64, acks_all: bool) -> Option<AckId> {
        let leader = self.leader_id()?;
        let epoch = self.epoch.0;
        let now_ms = self.now_ms;
        let node = self.node(leader);
        let Role::Leader(l) = &mut node.role else {
            return None;
        };
        if l.check_produce(acks_all).is_err() {
            return None;
        }
        let a = node
            .log
            .borrow_mut()
            .append(&batch(id), epoch, now_ms)
            .expect("append");
        l.on_appended(a.last_offset + 1, now_ms);
        if !acks_all {
            return None;
        }
        let ack = AckId(self.next_ack);
        self.next_ack += 1;
        self.waiting.insert(ack, (leader, a.last_offset + 1));
        let outs = match &mut self.node(leader).role {
            Role::Leader(l) => l.wait(ack, a.last_offset + 1),
            _ => Vec::new(),
        };
        self.apply_leader_outputs(leader, outs);
        Some(ack)
    }

    /// Runs the flush of `id`'s log and reports what became durable.
    fn flush(&mut self, id: NodeId) {
        let now_ms = self.now_ms;
        let node = self.node(id);
        block_on(flush(&node.log, now_ms, false));
        let durable = node.log.borrow().visible_offset();
        match &mut node.role {
            Role::Leader(l) => {
                let outs = l.on_local_durable(durable, now_ms);
                self.apply_leader_outputs(id, outs);
            }
            Role::Follower(f) => {
                let actions = f.on_local_durable(durable);
                self.apply_follower_actions(id, actions);
            }
            Role::Offline => {}
        }
    }

    /// The leader streams what its followers lack (up to its visible end).
    fn stream(&mut self) {
        let Some(leader) = self.leader_id() else {
            return;
        };
        // Caught-up followers too: they are sent the high watermark and the
        // log start when those move.
        let sends = self.leader().streams();
        let hw = self.leader().high_watermark();
        let epoch = self.epoch.0;
        for (to, from) in sends {
            let node = self.node(leader);
            let log_start = node.log.borrow().log_start_offset();
            let start_over = match &mut node.role {
                Role::Leader(l) => l.start_over(to, log_start),
                _ => None,
            };
            if let Some(log_start) = start_over {
                self.send(
                    leader,
                    to,
                    Message::StartAt {
                        tp: tp(),
                        leader_epoch: epoch,
                        log_start,
                    },
                );
                continue;
            }
            if from >= node.log.borrow().visible_offset() {
                if self.sent.get(&to) != Some(&(hw, log_start)) {
                    self.sent.insert(to, (hw, log_start));
                    self.send(
                        leader,
                        to,
                        Message::Batches {
                            tp: tp(),
                            leader_epoch: epoch,
                            high_watermark: hw,
                            log_start,
                            records: Bytes::new(),
                        },
                    );
                }
                continue;
            }
            let r = block_on(read(&node.log, from, 8 << 10)).expect("leader read");
            let mut records = BytesMut::new();
            let mut next = from;
            for c in &r.chunks {
                records.extend_from_slice(c);
            }
            let mut at = 0;
            while at < records.len() {
                let h = BatchHeader::parse(&records[at..]).expect("header");
                next = h.next_offset();
                at += h.total_len();
            }
            if let Role::Leader(l) = &mut node.role {
                l.on_sent(to, next);
            }
            self.sent.insert(to, (hw, log_start));
            self.send(
                leader,
                to,
                Message::Batches {
                    tp: tp(),
                    leader_epoch: epoch,
                    high_watermark: hw,
                    log_start,
                    records: records.freeze(),
                },
            );
        }
    }

    /// Delivers the first frame in flight (dropped if either end is cut off).
    fn deliver_one(&mut self) -> bool {
        let Some((from, to, mut frame)) = self.net.pop_front() else {
            return false;
        };
        if self.cut_off.contains(&from) || self.cut_off.contains(&to) {
            return true;
        }
        let msg = decode_frame(&mut frame)
            .expect("decode")
            .expect("whole frame");
        self.handle(from, to, msg);
        true
    }

    /// Runs the network until quiet: stream, deliver, flush, repeat.
    fn settle(&mut self) {
        for _ in 0..200 {
            self.stream();
            let mut moved = false;
            while self.deliver_one() {
                moved = true;
            }
            for id in [NodeId(1), NodeId(2), NodeId(3)] {
                self.flush(id);
            }
            if !moved && self.net.is_empty() && self.leader_sends_pending() == 0 {
                return;
            }
        }
        panic!("the simulation did not settle");
    }

    fn leader_sends_pending(&self) -> usize {
        let Some(leader) = self.leader_id() else {
            return 0;
        };
        let visible = self.nodes[&leader].log.borrow().visible_offset();
        self.leader()
            .to_send()
            .into_iter()
            .filter(|&(to, from)| from < visible && !self.cut_off.contains(&to))
            .count()
    }

    fn handle(&mut self, from: NodeId, to: NodeId, msg: Message) {
        let now_ms = self.now_ms;
        let node = self.node(to);
        match (&mut node.role, msg) {
            (
                Role::Leader(l),
                Message::EpochQuery {
                    leader_epoch,
                    requested_epoch,
                    ..
                },
            ) => {
                let current = l.epoch().0;
                let answer = if leader_epoch != current {
                    (-1, -1)
                } else {
                    let log = node.log.borrow();
                    let cache =
                        with_current_epoch(log.leader_epochs(), current, log.log_end_offset());
                    end_offset_for(&cache, requested_epoch, log.log_end_offset())
                };
                self.send(
                    to,
                    from,
                    Message::EpochAnswer {
                        tp: tp(),
                        leader_epoch: current,
                        requested_epoch,
                        error_code: 0,
                        epoch: answer.0,
                        end_offset: answer.1,
                    },
                );
            }
            (
                Role::Leader(l),
                Message::Subscribe {
                    leader_epoch,
                    log_end,
                    ..
                },
            ) => {
                let outs =
                    l.on_follower_subscribe(from, LeaderEpoch(leader_epoch), log_end, now_ms);
                // A new stream: the sender starts over.
                self.sent.remove(&from);
                self.apply_leader_outputs(to, outs);
            }
            (
                Role::Leader(l),
                Message::Ack {
                    leader_epoch,
                    log_end,
                    ..
                },
            ) => {
                let outs = l.on_follower_ack(from, LeaderEpoch(leader_epoch), log_end, now_ms);
                self.apply_leader_outputs(to, outs);
            }
            (
                Role::Follower(f),
                Message::EpochAnswer {
                    leader_epoch,
                    requested_epoch,
                    epoch,
                    end_offset,
                    ..
                },
            ) => {
                let (cache, log_start, log_end) = {
                    let l = node.log.borrow();
                    (
                        l.leader_epochs().to_vec(),
                        l.log_start_offset(),
                        l.log_end_offset(),
                    )
                };
                match f.on_epoch_answer(
                    from,
                    LeaderEpoch(leader_epoch),
                    requested_epoch,
                    (epoch, end_offset),
                    &cache,
                    log_start,
                    log_end,
                ) {
                    Ok(actions) => self.apply_follower_actions(to, actions),
                    Err(_) => self.refuse(to, from, leader_epoch),
                }
            }
            (
                Role::Follower(f),
                Message::Batches {
                    leader_epoch,
                    high_watermark,
                    log_start: leader_log_start,
                    records,
                    ..
                },
            ) => {
                let (log_start, log_end, durable) = {
                    let l = node.log.borrow();
                    (l.log_start_offset(), l.log_end_offset(), l.visible_offset())
                };
                match f.on_batches(
                    from,
                    LeaderEpoch(leader_epoch),
                    high_watermark,
                    leader_log_start,
                    records,
                    log_start,
                    log_end,
                    durable,
                ) {
                    Ok(actions) => self.apply_follower_actions(to, actions),
                    Err(_) => self.refuse(to, from, leader_epoch),
                }
            }
            (
                Role::Follower(f),
                Message::StartAt {
                    leader_epoch,
                    log_start,
                    ..
                },
            ) => {
                let log_end = node.log.borrow().log_end_offset();
                match f.on_start_at(from, LeaderEpoch(leader_epoch), log_start, log_end) {
                    Ok(actions) => {
                        if actions
                            .iter()
                            .any(|a| matches!(a, FollowerAction::StartAt(_)))
                        {
                            self.restarts += 1;
                        }
                        self.apply_follower_actions(to, actions)
                    }
                    Err(_) => self.refuse(to, from, leader_epoch),
                }
            }
            // Anything else (a stale leader's stream reaching a new leader, a
            // follower's report reaching a node that no longer leads) is
            // refused or dropped, as a real shard would.
            (Role::Leader(_), Message::Batches { leader_epoch, .. }) => {
                self.refuse(to, from, leader_epoch)
            }
            _ => {}
        }
    }

    fn refuse(&mut self, from: NodeId, to: NodeId, leader_epoch: i32) {
        self.send(
            from,
            to,
            Message::Refused {
                tp: tp(),
                leader_epoch,
                error_code: FENCED_LEADER_EPOCH,
            },
        );
    }

    fn apply_follower_actions(&mut self, id: NodeId, actions: Vec<FollowerAction>) {
        let now_ms = self.now_ms;
        let (leader, epoch) = match &self.nodes[&id].role {
            Role::Follower(f) => (f.leader(), f.epoch().0),
            _ => return,
        };
        for a in actions {
            match a {
                FollowerAction::QueryEpoch { requested } => self.send(
                    id,
                    leader,
                    Message::EpochQuery {
                        tp: tp(),
                        leader_epoch: epoch,
                        requested_epoch: requested,
                    },
                ),
                FollowerAction::Truncate(offset) => {
                    let node = self.node(id);
                    block_on(truncate_to(&node.log, offset)).expect("truncate");
                    node.high_watermark = node.high_watermark.min(offset);
                }
                FollowerAction::StartAt(offset) => {
                    let node = self.node(id);
                    block_on(truncate_fully_and_start_at(&node.log, offset, now_ms))
                        .expect("restart the log");
                    node.high_watermark = node.high_watermark.min(offset);
                    let l = node.log.borrow();
                    assert_eq!((l.log_start_offset(), l.log_end_offset()), (offset, offset));
                }
                FollowerAction::Subscribe { log_end } => {
                    let node = self.node(id);
                    block_on(flush(&node.log, now_ms, true));
                    assert!(node.log.borrow().visible_offset() >= log_end);
                    self.send(
                        id,
                        leader,
                        Message::Subscribe {
                            tp: tp(),
                            leader_epoch: epoch,
                            log_end,
                        },
                    )
                }
                FollowerAction::Append(records) => {
                    let node = self.node(id);
                    let mut at = 0;
                    while at < records.len() {
                        let h = BatchHeader::parse(&records[at..]).expect("checked by on_batches");
                        let len = h.total_len();
                        node.log
                            .borrow_mut()
                            .append_replica(&records[at..at + len], now_ms)
                            .expect("replica append");
                        at += len;
                    }
                }
                FollowerAction::HighWatermark(hw) => self.node(id).high_watermark = hw,
                FollowerAction::LogStart(offset) => {
                    let node = self.node(id);
                    assert!(
                        offset <= node.high_watermark,
                        "{id}: log start {offset} past its high watermark {}",
                        node.high_watermark
                    );
                    node.log
                        .borrow_mut()
                        .advance_log_start(offset)
                        .expect("the follower holds it durably");
                    block_on(delete_dropped_files(&node.log)).expect("delete files");
                }
                FollowerAction::Ack { log_end } => self.send(
                    id,
                    leader,
                    Message::Ack {
                        tp: tp(),
                        leader_epoch: epoch,
                        log_end,
                    },
                ),
            }
        }
    }

    fn apply_leader_outputs(&mut self, id: NodeId, outs: Vec<LeaderOutput>) {
        for o in outs {
            match o {
                LeaderOutput::Ack { id: ack, result } => {
                    let (leader, end) = self.waiting.remove(&ack).expect("a waiting produce");
                    assert_eq!(leader, id);
                    if result != AckResult::NotLeader {
                        let last = self.check_everyone_in_sync_has(end);
                        self.committed.push(last);
                    }
                    self.acked.insert(ack, result);
                }
                LeaderOutput::ProposeIsr { epoch, isr } => {
                    // The controller commits proposals of the current epoch at once.
                    if epoch == self.epoch {
                        self.isr = isr.clone();
                        let now_ms = self.now_ms;
                        let members: Vec<NodeId> = isr.into_iter().collect();
                        let outs = match &mut self.node(id).role {
                            Role::Leader(l) => l.on_isr_committed(&members, now_ms),
                            _ => Vec::new(),
                        };
                        self.apply_leader_outputs(id, outs);
                    }
                }
                LeaderOutput::HighWatermark(hw) => {
                    self.node(id).high_watermark = hw;
                    self.hw_history.push((self.epoch, hw));
                    let log_start = self.nodes[&id].log.borrow().log_start_offset();
                    // Followers learn it with the next batches, or now.
                    let followers: Vec<NodeId> =
                        self.nodes.keys().copied().filter(|&n| n != id).collect();
                    for f in followers {
                        self.send(
                            id,
                            f,
                            Message::Batches {
                                tp: tp(),
                                leader_epoch: self.epoch.0,
                                high_watermark: hw,
                                log_start,
                                records: Bytes::new(),
                            },
                        );
                    }
                }
            }
        }
    }

    /// The acks=all promise: every member of the committed ISR holds every
    /// offset below `end` durably, with the leader's bytes. Returns the
    /// leader's batch that ends at `end`.
    fn check_everyone_in_sync_has(&self, end: i64) -> Bytes {
        let leader = self.leader_id().expect("a leader acks");
        let leader_batches = batches_of(&self.nodes[&leader].log);
        for r in self.leader().isr() {
            let log = &self.nodes[r].log;
            assert!(
                log.borrow().visible_offset() >= end,
                "{r} in the ISR lacks offsets below {end}"
            );
            // Compared where both logs hold data (log starts may differ).
            let from = log
                .borrow()
                .log_start_offset()
                .max(self.nodes[&leader].log.borrow().log_start_offset());
            let leader_batches = batches_from(&self.nodes[&leader].log, from);
            let theirs = batches_from(log, from);
            for (mine, other) in leader_batches.iter().zip(&theirs) {
                let h = BatchHeader::parse(mine).expect("header");
                if h.base_offset >= end {
                    break;
                }
                assert_eq!(
                    mine, other,
                    "{r} holds different bytes at {}",
                    h.base_offset
                );
            }
        }
        leader_batches
            .into_iter()
            .find(|b| BatchHeader::parse(b).is_ok_and(|h| h.next_offset() == end))
            .unwrap_or_else(|| {
                // DeleteRecords removed it already (acknowledged late).
                assert!(self.nodes[&leader].log.borrow().log_start_offset() >= end);
                Bytes::new()
            })
    }

    /// `id`'s connections dropped: frames still in flight on them are lost
    /// (a leader handles a connection's frames before its end, and the sim
    /// tells it of the end at once, so none may arrive after).
    fn drop_connections(&mut self, id: NodeId) {
        self.net.retain(|&(from, to, _)| from != id && to != id);
    }

    /// Cuts `id` off the network: its connections drop.
    fn cut(&mut self, id: NodeId) {
        self.cut_off.insert(id);
        self.drop_connections(id);
        if let Some(leader) = self.leader_id() {
            let others: Vec<NodeId> = if leader == id {
                self.nodes.keys().copied().filter(|&n| n != id).collect()
            } else {
                vec![id]
            };
            if let Role::Leader(l) = &mut self.node(leader).role {
                for n in others {
                    l.on_disconnected(n);
                }
            }
        }
    }

    /// Every node back on the network; followers reconnect.
    fn heal(&mut self) {
        // Frames sent while cut off went on connections that are gone.
        for id in std::mem::take(&mut self.cut_off) {
            self.drop_connections(id);
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let node = self.node(id);
            let (cache, log_start, log_end) = {
                let l = node.log.borrow();
                (
                    l.leader_epochs().to_vec(),
                    l.log_start_offset(),
                    l.log_end_offset(),
                )
            };
            if let Role::Follower(f) = &mut node.role {
                let actions = f.reconnect(&cache, log_start, log_end);
                self.apply_follower_actions(id, actions);
            }
        }
    }

    /// DeleteRecords on the leader, as Kafka bounds it: the log start moves
    /// to `fraction`/4 of the way from where it is to the high watermark
    /// (often inside a batch).
    fn delete_records(&mut self, fraction: i64) {
        let Some(leader) = self.leader_id() else {
            return;
        };
        let hw = self.leader().high_watermark();
        let node = self.node(leader);
        // A new leader may know a high watermark past its own durable end.
        let hw = hw.min(node.log.borrow().visible_offset());
        let start = node.log.borrow().log_start_offset();
        let target = start + (hw - start).max(0) * fraction / 4;
        node.log
            .borrow_mut()
            .advance_log_start(target)
            .expect("delete records below the high watermark");
        block_on(delete_dropped_files(&node.log)).expect("delete files");
    }

    /// Retention (`retention.bytes` of the sim's logs) on every replica at
    /// once, as each broker's housekeeping runs it: the leader deletes
    /// only below its high watermark, a follower only what its leader
    /// deleted too (below the leader's log start and its own high
    /// watermark).
    fn retention(&mut self) {
        let now_ms = self.now_ms;
        for node in self.nodes.values_mut() {
            let bound = match &node.role {
                Role::Leader(l) => l.high_watermark(),
                Role::Follower(f) => node.high_watermark.min(f.leader_log_start()),
                Role::Offline => 0,
            };
            if node.log.borrow_mut().plan_retention_below(now_ms, bound) > 0 {
                block_on(delete_dropped_files(&node.log)).expect("delete files");
            }
        }
    }

    /// Nothing at or above the high watermark is gone anywhere: no replica's
    /// log starts past the high watermark it knows.
    fn check_log_starts(&self) {
        for n in self.nodes.values() {
            let start = n.log.borrow().log_start_offset();
            assert!(
                start <= n.high_watermark,
                "{}: log start {start} past its high watermark {}",
                n.id,
                n.high_watermark
            );
        }
    }

    /// Follower `id` loses its disk (or a reassignment adds it as a new
    /// replica): the controller takes it out of the ISR, and it follows
    /// again from an empty log at 0.
    fn wipe(&mut self, id: NodeId) {
        let Some(leader) = self.leader_id().filter(|&l| l != id) else {
            return;
        };
        if self.isr.remove(&id) {
            let (now_ms, isr) = (self.now_ms, self.isr.iter().copied().collect::<Vec<_>>());
            let outs = match &mut self.node(leader).role {
                Role::Leader(l) => l.on_isr_committed(&isr, now_ms),
                _ => Vec::new(),
            };
            self.apply_leader_outputs(leader, outs);
        }
        if let Role::Leader(l) = &mut self.node(leader).role {
            l.on_disconnected(id);
        }
        self.drop_connections(id);
        let epoch = self.epoch;
        let node = self.node(id);
        node.log = open_log();
        node.high_watermark = 0;
        let (f, actions) = FollowerState::new(leader, epoch, &[], 0, 0, 0);
        node.role = Role::Follower(f);
        self.apply_follower_actions(id, actions);
    }

    fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
        if let Some(leader) = self.leader_id() {
            let now_ms = self.now_ms;
            let outs = match &mut self.node(leader).role {
                Role::Leader(l) => l.tick(now_ms),
                _ => Vec::new(),
            };
            self.apply_leader_outputs(leader, outs);
        }
    }
}

#[test]
fn acks_all_completes_when_both_followers_have_the_batch() {
    let mut sim = Sim::new(2);
    let a = sim.produce(1, true).expect("accepted");
    sim.flush(NodeId(1));
    assert!(!sim.acked.contains_key(&a), "only the leader has it");
    sim.settle();
    assert_eq!(sim.acked.get(&a), Some(&AckResult::Committed));
    assert_eq!(sim.leader().high_watermark(), 2);
    for n in sim.nodes.values() {
        assert_eq!(n.high_watermark, 2, "{}", n.id);
    }
}

#[test]
fn a_lagging_follower_leaves_the_isr_after_the_lag_time_and_rejoins_when_caught_up() {
    let mut sim = Sim::new(2);
    sim.produce(1, true);
    sim.settle();
    sim.cut(NodeId(3));
    let a = sim.produce(2, true).expect("accepted");
    sim.settle();
    assert!(
        !sim.acked.contains_key(&a),
        "node 3 is in the ISR and lacks it"
    );
    sim.advance(LAG_MS);
    assert!(sim.isr.contains(&NodeId(3)), "not yet past the lag time");
    sim.advance(1);
    assert_eq!(sim.isr, BTreeSet::from([NodeId(1), NodeId(2)]));
    assert_eq!(sim.acked.get(&a), Some(&AckResult::Committed));
    // Back on the network: it catches up and is proposed back.
    sim.heal();
    sim.settle();
    assert_eq!(sim.isr, BTreeSet::from([NodeId(1), NodeId(2), NodeId(3)]));
    assert_eq!(batches_of(&sim.nodes[&NodeId(3)].log).len(), 2);
}

#[test]
fn min_insync_replicas_refuses_before_append_and_flags_after_append() {
    let mut sim = Sim::new(3);
    sim.settle();
    sim.cut(NodeId(3));
    let a = sim.produce(1, true).expect("three in sync: accepted");
    sim.settle();
    sim.advance(LAG_MS + 1);
    // The ISR shrank to two while the produce waited.
    assert_eq!(sim.isr.len(), 2);
    assert_eq!(
        sim.acked.get(&a),
        Some(&AckResult::NotEnoughReplicasAfterAppend)
    );
    let end = sim.leader().log_end();
    assert_eq!(sim.produce(2, true), None, "NOT_ENOUGH_REPLICAS");
    assert_eq!(sim.leader().log_end(), end, "nothing appended");
    // acks=1 is not subject to min.insync.replicas.
    sim.produce(3, false);
    assert_eq!(sim.leader().log_end(), end + 2);
}

#[test]
fn failover_truncates_the_old_leaders_divergent_suffix_and_reads_above_the_hw_are_empty() {
    let mut sim = Sim::new(1);
    for id in 0..5 {
        sim.produce(id, true);
    }
    sim.settle();
    assert_eq!(sim.leader().high_watermark(), 10);
    // Node 1 goes on alone: its writes reach nobody.
    sim.cut_off.insert(NodeId(1));
    let lost: Vec<AckId> = (5..8).filter_map(|id| sim.produce(id, true)).collect();
    sim.flush(NodeId(1));
    assert_eq!(sim.nodes[&NodeId(1)].log.borrow().log_end_offset(), 16);
    // Node 3 had the data up to 10, but the last HW update never reached it.
    sim.net.clear();
    sim.node(NodeId(3)).high_watermark = 8;
    sim.cut_off.clear();
    sim.elect(NodeId(3));
    for a in &lost {
        assert_eq!(sim.acked.get(a), Some(&AckResult::NotLeader));
    }
    // A consumer that read to 10 on node 1 fetches at 10 on node 3, whose
    // HW is still 8: an empty answer, not OFFSET_OUT_OF_RANGE.
    let (hw, end) = (sim.leader().high_watermark(), sim.leader().log_end());
    assert_eq!((hw, end), (8, 10));
    assert_eq!(consumer_read_bound(10, 0, hw, end), ReadBound::Empty);
    assert_eq!(consumer_read_bound(9, 0, hw, end), ReadBound::Empty);
    assert_eq!(consumer_read_bound(4, 0, hw, end), ReadBound::Upto(8));
    assert_eq!(consumer_read_bound(11, 0, hw, end), ReadBound::OutOfRange);
    // The new leader writes in epoch 2; everyone converges on its history.
    let a = sim.produce(100, true).expect("accepted");
    sim.settle();
    assert_eq!(sim.acked.get(&a), Some(&AckResult::Committed));
    let truth = batches_of(&sim.nodes[&NodeId(3)].log);
    assert_eq!(truth.len(), 6);
    for n in [NodeId(1), NodeId(2)] {
        assert_eq!(batches_of(&sim.nodes[&n].log), truth, "{n}");
        assert_eq!(
            sim.nodes[&n].log.borrow().leader_epochs(),
            &[(1, 0), (2, 10)],
            "{n}"
        );
    }
    assert_eq!(sim.leader().high_watermark(), 12);
}

#[test]
fn a_follower_refuses_a_stale_leaders_stream() {
    let mut sim = Sim::new(1);
    sim.produce(1, true);
    sim.settle();
    sim.elect(NodeId(2));
    sim.settle();
    // Node 1, deposed, still streams in epoch 1.
    sim.send(
        NodeId(1),
        NodeId(3),
        Message::Batches {
            tp: tp(),
            leader_epoch: 1,
            high_watermark: 99,
            log_start: 0,
            records: batch(7),
        },
    );
    let end = sim.nodes[&NodeId(3)].log.borrow().log_end_offset();
    assert!(sim.deliver_one());
    assert_eq!(sim.nodes[&NodeId(3)].log.borrow().log_end_offset(), end);
    let refused = sim.net.back().map(|(from, to, f)| {
        let mut f = f.clone();
        (*from, *to, decode_frame(&mut f).expect("decode"))
    });
    assert_eq!(
        refused,
        Some((
            NodeId(3),
            NodeId(1),
            Some(Message::Refused {
                tp: tp(),
                leader_epoch: 1,
                error_code: FENCED_LEADER_EPOCH
            })
        ))
    );
    assert!(sim.nodes[&NodeId(3)].high_watermark < 99);
}

#[test]
fn a_new_replica_restarts_its_log_at_the_leaders_log_start_inside_a_batch() {
    let mut sim = Sim::new(2);
    for id in 0..40 {
        sim.produce(id, true);
    }
    sim.settle();
    assert_eq!(sim.leader().high_watermark(), 80);
    // Batches hold two records: 61 lies inside the batch 60..=61.
    sim.node(NodeId(1))
        .log
        .borrow_mut()
        .advance_log_start(61)
        .expect("delete records");
    block_on(delete_dropped_files(&sim.nodes[&NodeId(1)].log)).expect("delete files");
    // Node 3 comes back as a new replica with an empty log at 0.
    sim.wipe(NodeId(3));
    assert_eq!(sim.isr, BTreeSet::from([NodeId(1), NodeId(2)]));
    let a = sim.produce(40, true).expect("accepted");
    sim.settle();
    assert_eq!(sim.acked.get(&a), Some(&AckResult::Committed));
    assert_eq!(sim.restarts, 1, "told once to start at 61");
    assert_eq!(
        sim.isr,
        BTreeSet::from([NodeId(1), NodeId(2), NodeId(3)]),
        "caught up and back in the ISR"
    );
    {
        let l = sim.nodes[&NodeId(3)].log.borrow();
        // Restarted at 61, then at the base of the batch holding it, then
        // at the leader's log start again once that batch was durable.
        assert_eq!((l.log_start_offset(), l.log_end_offset()), (61, 82));
    }
    let truth = batches_from(&sim.nodes[&NodeId(1)].log, 61);
    assert_eq!(batches_from(&sim.nodes[&NodeId(3)].log, 61), truth);
    // It leads, and serves the same records; node 1 follows it.
    sim.elect(NodeId(3));
    let b = sim.produce(41, true).expect("accepted");
    sim.settle();
    assert_eq!(sim.acked.get(&b), Some(&AckResult::Committed));
    let truth = batches_from(&sim.nodes[&NodeId(3)].log, 61);
    assert_eq!(truth.len(), 12);
    for n in [NodeId(1), NodeId(2)] {
        assert_eq!(batches_from(&sim.nodes[&n].log, 61), truth, "{n}");
    }
}

#[test]
fn a_follower_far_behind_the_leaders_log_start_starts_over_there() {
    let mut sim = Sim::new(1);
    sim.produce(0, true);
    sim.settle();
    sim.cut(NodeId(3));
    for id in 1..30 {
        sim.produce(id, true);
    }
    sim.settle();
    sim.advance(LAG_MS + 1);
    assert_eq!(sim.isr, BTreeSet::from([NodeId(1), NodeId(2)]));
    // Retention or DeleteRecords: everything node 3 lacks is gone from the leader.
    sim.delete_records(4);
    assert_eq!(sim.nodes[&NodeId(1)].log.borrow().log_start_offset(), 60);
    sim.heal();
    sim.settle();
    assert_eq!(sim.restarts, 1);
    assert_eq!(sim.isr.len(), 3);
    let l = sim.nodes[&NodeId(3)].log.borrow();
    assert_eq!((l.log_start_offset(), l.log_end_offset()), (60, 60));
}

#[test]
fn retention_deletes_only_below_the_high_watermark_and_followers_follow_the_leaders_log_start() {
    let mut sim = Sim::new(2);
    for id in 0..60 {
        sim.produce(id, true);
    }
    sim.settle();
    assert_eq!(sim.leader().high_watermark(), 120);
    // Both followers are cut off (still in the ISR): the leader takes
    // acks=1 records far past the high watermark, which stays at 120.
    sim.cut(NodeId(2));
    sim.cut(NodeId(3));
    for id in 60..90 {
        sim.produce(id, false);
    }
    sim.flush(NodeId(1));
    let hw = sim.leader().high_watermark();
    assert_eq!(hw, 120);
    sim.retention();
    sim.check_log_starts();
    let leader_start = sim.nodes[&NodeId(1)].log.borrow().log_start_offset();
    assert!(leader_start > 0, "retention.bytes deleted something");
    assert!(leader_start <= hw, "nothing at or above the HW goes");
    // The followers deleted nothing of their own: they have not heard of
    // the leader's new log start.
    for n in [NodeId(2), NodeId(3)] {
        assert_eq!(sim.nodes[&n].log.borrow().log_start_offset(), 0, "{n}");
    }
    sim.heal();
    sim.settle();
    for id in 90..150 {
        sim.produce(id, true);
    }
    sim.settle();
    sim.retention();
    sim.settle();
    let leader_start = sim.nodes[&NodeId(1)].log.borrow().log_start_offset();
    assert_eq!(sim.leader().high_watermark(), 300);
    assert!(leader_start > hw, "retention went on once the HW moved");
    for n in [NodeId(2), NodeId(3)] {
        assert_eq!(
            sim.nodes[&n].log.borrow().log_start_offset(),
            leader_start,
            "{n} follows the leader's log start"
        );
    }
    sim.check_log_starts();
}

#[derive(Clone, Debug)]
enum Op {
    Produce(bool),
    Stream,
    Deliver,
    Flush(u8),
    Advance(i64),
    Cut(u8),
    Heal,
    Elect(u8),
    DeleteRecords(i64),
    Wipe(u8),
    Retention,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Produce),
        3 => Just(Op::Stream),
        6 => Just(Op::Deliver),
        3 => (1u8..=3).prop_map(Op::Flush),
        2 => (0i64..6_000).prop_map(Op::Advance),
        1 => (2u8..=3).prop_map(Op::Cut),
        1 => Just(Op::Heal),
        1 => (1u8..=3).prop_map(Op::Elect),
        1 => (1i64..=4).prop_map(Op::DeleteRecords),
        1 => (1u8..=3).prop_map(Op::Wipe),
        2 => Just(Op::Retention),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any interleaving of produces, deliveries, flushes, lost messages and
    /// time: the HW never goes back, acks=all answers only when every ISR
    /// member has the batch (checked inside the sim at each ack), the HW
    /// never passes an ISR member's durable end, and healing brings every
    /// replica to the same log.
    #[test]
    fn replication_invariants(ops in proptest::collection::vec(op(), 1..120), min_isr in 1usize..=3) {
        let mut sim = Sim::new(min_isr);
        let mut next_id = 0;
        let mut elections = 0;
        for o in ops {
            match o {
                Op::Produce(acks_all) => {
                    sim.produce(next_id, acks_all);
                    next_id += 1;
                }
                Op::Stream => sim.stream(),
                Op::Deliver => {
                    sim.deliver_one();
                }
                Op::Flush(n) => sim.flush(NodeId(i32::from(n))),
                Op::Advance(ms) => sim.advance(ms),
                Op::Cut(n) => sim.cut(NodeId(i32::from(n))),
                Op::Heal => sim.heal(),
                Op::DeleteRecords(fraction) => sim.delete_records(fraction),
                Op::Wipe(n) => sim.wipe(NodeId(i32::from(n))),
                Op::Retention => sim.retention(),
                Op::Elect(n) => {
                    // Unclean election is off: only an ISR member may lead.
                    let n = NodeId(i32::from(n));
                    if sim.isr.contains(&n) && sim.leader_id() != Some(n) {
                        sim.elect(n);
                        elections += 1;
                    }
                }
            }
            let hw = sim.leader().high_watermark();
            for r in sim.leader().isr() {
                prop_assert!(sim.nodes[r].log.borrow().visible_offset() >= hw, "{} visible {} hw {} isr {:?}", r, sim.nodes[r].log.borrow().visible_offset(), hw, sim.leader().isr());
            }
            sim.check_log_starts();
        }
        // Within an epoch the HW only grows; a new leader may start lower
        // (it learns the HW late) but never takes back a committed batch.
        for w in sim.hw_history.windows(2) {
            prop_assert!(w[0].0 != w[1].0 || w[1].1 > w[0].1, "HW went back: {:?}", w);
        }
        sim.heal();
        sim.settle();
        // Every follower's log start followed the leader's (it may lie
        // past it: one that led before and deleted more keeps that).
        let leader = sim.leader_id().expect("a leader");
        let leader_start = sim.nodes[&leader].log.borrow().log_start_offset();
        for n in sim.nodes.values() {
            let start = n.log.borrow().log_start_offset();
            prop_assert!(start >= leader_start, "{}: log start {} behind the leader's {}", n.id, start, leader_start);
        }
        // Log starts differ (one that led deleted more): compare from the latest.
        let from = sim.nodes.values().map(|n| n.log.borrow().log_start_offset()).max().unwrap_or(0);
        let truth = batches_from(&sim.nodes[&NodeId(1)].log, from);
        for n in [NodeId(2), NodeId(3)] {
            prop_assert_eq!(&batches_from(&sim.nodes[&n].log, from), &truth);
        }
        prop_assert!(sim.waiting.is_empty(), "every acks=all produce answered");
        prop_assert_eq!(sim.leader().high_watermark(), sim.leader().log_end());
        for b in &sim.committed {
            let deleted = BatchHeader::parse(b).map_or(true, |h| h.next_offset() <= from);
            prop_assert!(deleted || truth.contains(b), "an acknowledged batch was lost ({} elections)", elections);
        }
    }
}
