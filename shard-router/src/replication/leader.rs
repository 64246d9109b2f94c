//! The leader's side of one partition: what each follower has, the in-sync
//! replica set (ISR), the high watermark, and the `acks=all` produces waiting
//! for it.
//!
//! Kafka's rules (KIP-497's AlterPartition for ISR changes): the leader only
//! *proposes* an ISR; the controller commits it. While a change is pending,
//! the high watermark and `acks=all` count the maximal ISR (the committed set
//! plus any replica being added), and `min.insync.replicas` counts the
//! committed set alone.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::LeaderEpoch;
use crate::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// `min.insync.replicas`: fewer in-sync replicas refuse `acks=all`.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long
    /// leaves the ISR.
    pub replica_lag_time_max_ms: i64,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
        }
    }
}

/// The caller's name for one `acks=all` produce waiting on the high watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AckId(pub u64);

/// How an `acks=all` produce ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckResult {
    /// Every in-sync replica has it: answer success.
    Committed,
    /// Committed, but the ISR had shrunk below `min.insync.replicas` by then
    /// (Kafka's `NOT_ENOUGH_REPLICAS_AFTER_APPEND`).
    NotEnoughReplicasAfterAppend,
    /// This node stopped leading before the batch was committed
    /// (`NOT_LEADER_OR_FOLLOWER`; the client retries on the new leader).
    NotLeader,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProduceError {
    #[error("{isr} in-sync replicas, min.insync.replicas is {min}")]
    NotEnoughReplicas { isr: usize, min: usize },
}

/// What the driver must do after an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderOutput {
    /// Answer this produce.
    Ack { id: AckId, result: AckResult },
    /// Ask the controller to commit this ISR (AlterPartition).
    ProposeIsr {
        epoch: LeaderEpoch,
        isr: BTreeSet<NodeId>,
    },
    /// The high watermark advanced: consumers may now read below it.
    HighWatermark(i64),
}

#[derive(Clone, Debug)]
struct Follower {
    /// Its log end, as it last reported in this epoch (`None`: not yet).
    log_end: Option<i64>,
    /// When it last had everything the leader had (Kafka's lastCaughtUpTime).
    last_caught_up_ms: i64,
    /// The leader's log end and the time at its previous report.
    prev_report: Option<(i64, i64)>,
    /// The next offset to stream to it.
    next_send: Option<i64>,
}

pub struct LeaderState {
    node: NodeId,
    epoch: LeaderEpoch,
    config: LeaderConfig,
    followers: BTreeMap<NodeId, Follower>,
    /// The ISR as the controller committed it (this node included).
    isr: BTreeSet<NodeId>,
    /// A proposal not yet committed.
    proposed: Option<BTreeSet<NodeId>>,
    /// The controller refused a proposal: followers rejoin from the next
    /// tick, not from their next ack (a follower that reconnects before its
    /// broker is unfenced would otherwise be proposed, and refused, on
    /// every ack: a Raft write each time).
    expand_on_tick_only: bool,
    /// The log end when this epoch began: a follower joins the ISR only once
    /// it has everything of earlier epochs.
    epoch_start_offset: i64,
    log_end: i64,
    /// The end of what the local flush policy has made durable.
    local_durable: i64,
    high_watermark: i64,
    /// `acks=all` produces by the end offset they need, in append order.
    waiters: VecDeque<(i64, AckId)>,
}

impl LeaderState {
    /// Becomes leader of `epoch`. `replicas` are all assigned replicas, `isr`
    /// the committed ISR (both may include this node); `high_watermark` is
    /// what this node knew as a follower.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: NodeId,
        epoch: LeaderEpoch,
        config: LeaderConfig,
        replicas: &[NodeId],
        isr: &[NodeId],
        log_end: i64,
        local_durable: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> LeaderState {
        let mut committed: BTreeSet<NodeId> = isr.iter().copied().collect();
        committed.insert(node);
        let followers = replicas
            .iter()
            .filter(|&&r| r != node)
            .map(|&r| {
                let f = Follower {
                    log_end: None,
                    // Kafka: ISR members count as caught up when leadership starts.
                    last_caught_up_ms: if committed.contains(&r) { now_ms } else { 0 },
                    prev_report: None,
                    next_send: None,
                };
                (r, f)
            })
            .collect();
        LeaderState {
            node,
            epoch,
            config,
            followers,
            isr: committed,
            proposed: None,
            expand_on_tick_only: false,
            epoch_start_offset: log_end,
            log_end,
            local_durable,
            high_watermark: high_watermark.min(log_end),
            waiters: VecDeque::new(),
        }
    }

    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn log_end(&self) -> i64 {
        self.log_end
    }

    /// The committed ISR.
    pub fn isr(&self) -> &BTreeSet<NodeId> {
        &self.isr
    }

    /// The committed ISR plus any replica a pending proposal adds.
    pub fn maximal_isr(&self) -> BTreeSet<NodeId> {
        let mut m = self.isr.clone();
        if let Some(p) = &self.proposed {
            m.extend(p.iter().copied());
        }
        m
    }

    pub fn pending_proposal(&self) -> Option<&BTreeSet<NodeId>> {
        self.proposed.as_ref()
    }

    /// Checked before an `acks=all` produce is appended.
    pub fn check_produce(&self, acks_all: bool) -> Result<(), ProduceError> {
        if acks_all && self.isr.len() < self.config.min_insync_replicas {
            return Err(ProduceError::NotEnoughReplicas {
                isr: self.isr.len(),
                min: self.config.min_insync_replicas,
            });
        }
        Ok(())
    }

    /// The local log grew to `log_end` (an append was assigned offsets).
    pub fn on_appended(&mut self, log_end: i64, now_ms: i64) {
        assert!(
            log_end >= self.log_end,
            "the leader's log end never goes back"
        );
        // A follower that had everything until now was caught up until now:
        // with a push stream an idle follower sends nothing, where Kafka's
        // follower would have kept fetching and refreshing this time.
        for f in self.followers.values_mut() {
            if f.log_end == Some(self.log_end) {
                f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
            }
        }
        self.log_end = log_end;
    }

    /// The local flush policy is met up to `durable_end`.
    pub fn on_local_durable(&mut self, durable_end: i64, now_ms: i64) -> Vec<LeaderOutput> {
        debug_assert!(durable_end <= self.log_end);
        self.local_durable = self.local_durable.max(durable_end);
        let mut out = Vec::new();
        self.advance(now_ms, &mut out);
        out
    }

    /// Waits for every offset below `end_offset` to be committed.
    pub fn wait(&mut self, id: AckId, end_offset: i64) -> Vec<LeaderOutput> {
        debug_assert!(end_offset <= self.log_end);
        if end_offset <= self.high_watermark {
            return vec![LeaderOutput::Ack {
                id,
                result: self.commit_result(),
            }];
        }
        let at = self.waiters.partition_point(|&(e, _)| e <= end_offset);
        self.waiters.insert(at, (end_offset, id));
        Vec::new()
    }

    /// The produce `id` stopped waiting (its request timed out): forget it.
    /// Its batch stays appended and commits like any other.
    pub fn cancel_wait(&mut self, id: AckId) {
        self.waiters.retain(|&(_, w)| w != id);
    }

    /// A follower (re)starts its stream at `log_end`, after its truncation:
    /// what was sent to it before is forgotten.
    pub fn on_follower_subscribe(
        &mut self,
        from: NodeId,
        epoch: LeaderEpoch,
        log_end: i64,
        now_ms: i64,
    ) -> Vec<LeaderOutput> {
        if epoch == self.epoch && log_end <= self.log_end {
            if let Some(f) = self.followers.get_mut(&from) {
                f.next_send = Some(log_end);
                f.log_end = None;
            }
        }
        self.on_follower_ack(from, epoch, log_end, now_ms)
    }

    /// A follower's report of its log end in `epoch` (what its flush policy
    /// has made durable). Reports of other epochs (a follower that has not
    /// yet seen this leadership, or a stale leader's follower), from
    /// non-replicas, and from followers that never subscribed are ignored.
    pub fn on_follower_ack(
        &mut self,
        from: NodeId,
        epoch: LeaderEpoch,
        log_end: i64,
        now_ms: i64,
    ) -> Vec<LeaderOutput> {
        let mut out = Vec::new();
        if epoch != self.epoch {
            return out;
        }
        let leader_end = self.log_end;
        let Some(f) = self.followers.get_mut(&from) else {
            return out;
        };
        // A report past our end is a follower with history we do not have:
        // it has not truncated; ignore it.
        if log_end > leader_end || f.next_send.is_none() {
            return out;
        }
        // Log ends only grow within an epoch's stream.
        if f.log_end.is_some_and(|e| log_end < e) {
            return out;
        }
        // Kafka's rule: caught up now if it has all we have; caught up at the
        // previous report if it has all we had then.
        if log_end >= leader_end {
            f.last_caught_up_ms = now_ms;
        } else if let Some((prev_end, prev_ms)) = f.prev_report {
            if log_end >= prev_end {
                f.last_caught_up_ms = f.last_caught_up_ms.max(prev_ms);
            }
        }
        f.prev_report = Some((leader_end, now_ms));
        f.log_end = Some(log_end);
        if !self.expand_on_tick_only {
            self.maybe_expand(from, &mut out);
        }
        self.advance(now_ms, &mut out);
        out
    }

    /// Time passes: followers that have not caught up within
    /// `replica.lag.time.max.ms` are proposed out of the ISR.
    pub fn tick(&mut self, now_ms: i64) -> Vec<LeaderOutput> {
        let mut out = Vec::new();
        if self.proposed.is_some() {
            return out;
        }
        let lagging: Vec<NodeId> = self
            .isr
            .iter()
            .filter(|&&r| r != self.node)
            .filter(|r| {
                // Kafka's rule: out of sync when it lacks some of our log and
                // has not been caught up for the lag time. A follower with
                // everything stays, however long the partition is idle.
                self.followers.get(r).is_some_and(|f| {
                    f.log_end != Some(self.log_end)
                        && now_ms - f.last_caught_up_ms > self.config.replica_lag_time_max_ms
                })
            })
            .copied()
            .collect();
        if !lagging.is_empty() {
            let mut isr = self.isr.clone();
            for r in lagging {
                isr.remove(&r);
            }
            self.propose(isr, &mut out);
            return out;
        }
        // A caught-up follower outside the ISR (the controller took it out,
        // e.g. fenced it while it restarted) rejoins even when the partition
        // is idle and no new ack would come to trigger it. At the tick's
        // pace, so a refused proposal is not retried in a loop.
        self.expand_on_tick_only = false;
        let outside: Vec<NodeId> = self
            .followers
            .keys()
            .filter(|r| !self.isr.contains(r))
            .copied()
            .collect();
        for r in outside {
            self.maybe_expand(r, &mut out);
        }
        out
    }

    /// The controller committed `isr` (this or another proposal; it may also
    /// have refused ours, then `isr` is the one it holds).
    pub fn on_isr_committed(&mut self, isr: &[NodeId], now_ms: i64) -> Vec<LeaderOutput> {
        self.isr = isr.iter().copied().collect();
        self.isr.insert(self.node);
        self.proposed = None;
        let mut out = Vec::new();
        self.advance(now_ms, &mut out);
        out
    }

    /// The controller refused our proposal (or it was lost); `isr` is the
    /// one it holds. Like [`LeaderState::on_isr_committed`], and a follower
    /// is proposed again only from the next [`LeaderState::tick`].
    pub fn on_isr_refused(&mut self, isr: &[NodeId], now_ms: i64) -> Vec<LeaderOutput> {
        self.expand_on_tick_only = true;
        self.on_isr_committed(isr, now_ms)
    }

    /// Leadership moved on: every waiting produce fails.
    pub fn resign(&mut self) -> Vec<LeaderOutput> {
        self.waiters
            .drain(..)
            .map(|(_, id)| LeaderOutput::Ack {
                id,
                result: AckResult::NotLeader,
            })
            .collect()
    }

    /// The followers to stream to: (follower, first offset to send), for
    /// those that have reported and are behind the leader's log end.
    pub fn to_send(&self) -> Vec<(NodeId, i64)> {
        self.followers
            .iter()
            .filter_map(|(&r, f)| f.next_send.filter(|&n| n < self.log_end).map(|n| (r, n)))
            .collect()
    }

    /// Whether follower `to` has a stream (it subscribed, and was not told
    /// to start over since), caught up or not: it is sent the high
    /// watermark and the log start when they move.
    pub fn is_streaming_to(&self, to: NodeId) -> bool {
        self.followers
            .get(&to)
            .is_some_and(|f| f.next_send.is_some())
    }

    /// Every follower with a stream: (follower, next offset to send),
    /// caught-up ones included (compare [`LeaderState::to_send`]).
    pub fn streams(&self) -> Vec<(NodeId, i64)> {
        self.followers
            .iter()
            .filter_map(|(&r, f)| f.next_send.map(|n| (r, n)))
            .collect()
    }

    /// Whether follower `to` must restart its log at `log_start`, this
    /// leader's log start: its stream would continue below it, at offsets
    /// retention or DeleteRecords removed here (or it is a new replica with
    /// an empty log at 0). Kafka's follower gets `OFFSET_OUT_OF_RANGE` and
    /// truncates fully to the leader's log start. Nothing more is streamed to
    /// it until it subscribes again.
    pub fn start_over(&mut self, to: NodeId, log_start: i64) -> Option<i64> {
        let f = self.followers.get_mut(&to)?;
        if f.next_send? >= log_start {
            return None;
        }
        f.next_send = None;
        Some(log_start)
    }

    /// The connection to `to` was lost: send nothing more until it
    /// subscribes again (what was sent may not have arrived), and forget its
    /// log end: it may come back with less (a replica that lost its disk
    /// returns empty), and a tick before it subscribes again must not
    /// propose it into the ISR on the log end it had (the replication
    /// simulation found that: an emptied replica rejoined the ISR).
    pub fn on_disconnected(&mut self, to: NodeId) {
        if let Some(f) = self.followers.get_mut(&to) {
            f.next_send = None;
            f.log_end = None;
            f.prev_report = None;
        }
    }

    /// Everything below `next` has been sent to `to`.
    pub fn on_sent(&mut self, to: NodeId, next: i64) {
        if let Some(f) = self.followers.get_mut(&to) {
            debug_assert!(next <= self.log_end);
            f.next_send = Some(next);
        }
    }

    fn maybe_expand(&mut self, r: NodeId, out: &mut Vec<LeaderOutput>) {
        if self.proposed.is_some() || self.isr.contains(&r) {
            return;
        }
        let Some(f) = self.followers.get(&r) else {
            return;
        };
        let caught_up = f
            .log_end
            .is_some_and(|e| e >= self.high_watermark && e >= self.epoch_start_offset);
        if caught_up {
            let mut isr = self.isr.clone();
            isr.insert(r);
            self.propose(isr, out);
        }
    }

    fn propose(&mut self, isr: BTreeSet<NodeId>, out: &mut Vec<LeaderOutput>) {
        debug_assert!(isr.contains(&self.node));
        self.proposed = Some(isr.clone());
        out.push(LeaderOutput::ProposeIsr {
            epoch: self.epoch,
            isr,
        });
    }

    /// Moves the high watermark to the smallest log end over the maximal ISR
    /// (never back), and answers the produces it passes.
    fn advance(&mut self, _now_ms: i64, out: &mut Vec<LeaderOutput>) {
        let mut candidate = self.local_durable.min(self.log_end);
        for r in self.maximal_isr() {
            if r == self.node {
                continue;
            }
            match self.followers.get(&r).and_then(|f| f.log_end) {
                Some(e) => candidate = candidate.min(e),
                // A member that has not reported in this epoch holds it still.
                None => return,
            }
        }
        if candidate <= self.high_watermark {
            return;
        }
        self.high_watermark = candidate;
        out.push(LeaderOutput::HighWatermark(candidate));
        let result = self.commit_result();
        while self
            .waiters
            .front()
            .is_some_and(|&(e, _)| e <= self.high_watermark)
        {
            if let Some((_, id)) = self.waiters.pop_front() {
                out.push(LeaderOutput::Ack { id, result });
            }
        }
    }

    fn commit_result(&self) -> AckResult {
        if self.isr.len() < self.config.min_insync_replicas {
            AckResult::NotEnoughReplicasAfterAppend
        } else {
            AckResult::Committed
        }
    }
}

impl LeaderState {
    /// The topic's configs changed under this leadership (a config change
    /// reaches every replica through the controller): later produces and
    /// ISR checks use the new `min.insync.replicas` and lag time.
    pub fn set_config(&mut self, config: LeaderConfig) {
        self.config = config;
    }

    /// The assigned replicas changed under this leadership (a reassignment
    /// added or removed some): new ones are followed from now on, outside the
    /// ISR until they catch up; removed ones are forgotten, so they neither
    /// hold the high watermark nor get proposed back into the ISR.
    pub fn set_replicas(&mut self, replicas: &[NodeId]) {
        self.followers.retain(|r, _| replicas.contains(r));
        for &r in replicas {
            if r != self.node {
                self.followers.entry(r).or_insert(Follower {
                    log_end: None,
                    last_caught_up_ms: 0,
                    prev_report: None,
                    next_send: None,
                });
            }
        }
    }

    /// Whether `node` is a replica this leader streams to.
    pub fn is_follower(&self, node: NodeId) -> bool {
        self.followers.contains_key(&node)
    }
}

/// What a consumer's fetch at `offset` may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadBound {
    /// Read `[offset, end)`.
    Upto(i64),
    /// Within the log but at or above the high watermark: an empty answer
    /// (after a failover the new leader's high watermark may trail what a
    /// consumer already saw; that is not out of range).
    Empty,
    /// Outside `[log start, log end]`: `OFFSET_OUT_OF_RANGE`.
    OutOfRange,
}

pub fn consumer_read_bound(
    offset: i64,
    log_start: i64,
    high_watermark: i64,
    log_end: i64,
) -> ReadBound {
    debug_assert!(high_watermark <= log_end);
    if offset < log_start || offset > log_end {
        ReadBound::OutOfRange
    } else if offset >= high_watermark {
        ReadBound::Empty
    } else {
        ReadBound::Upto(high_watermark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N1: NodeId = NodeId(1);
    const N2: NodeId = NodeId(2);
    const N3: NodeId = NodeId(3);
    const E: LeaderEpoch = LeaderEpoch(4);

    fn leader(isr: &[NodeId], min_isr: usize) -> LeaderState {
        let config = LeaderConfig {
            min_insync_replicas: min_isr,
            replica_lag_time_max_ms: 100,
        };
        LeaderState::new(N1, E, config, &[N1, N2, N3], isr, 10, 10, 10, 0)
    }

    #[test]
    fn a_pending_expansion_counts_for_the_hw_but_not_for_min_insync() {
        let mut l = leader(&[N1, N2], 3);
        assert!(l.check_produce(true).is_err());
        assert!(l.check_produce(false).is_ok());
        l.on_follower_subscribe(N2, E, 10, 1);
        let out = l.on_follower_subscribe(N3, E, 10, 1);
        let proposed = BTreeSet::from([N1, N2, N3]);
        assert_eq!(
            out,
            vec![LeaderOutput::ProposeIsr {
                epoch: E,
                isr: proposed.clone()
            }]
        );
        assert_eq!(l.maximal_isr(), proposed);
        l.on_appended(12, 0);
        assert!(l.wait(AckId(1), 12).is_empty());
        l.on_local_durable(12, 2);
        // N3 is only proposed, yet the HW waits for it.
        assert!(l.on_follower_ack(N2, E, 12, 3).is_empty());
        assert_eq!(l.high_watermark(), 10);
        let out = l.on_follower_ack(N3, E, 12, 3);
        assert_eq!(
            out,
            vec![
                LeaderOutput::HighWatermark(12),
                LeaderOutput::Ack {
                    id: AckId(1),
                    result: AckResult::NotEnoughReplicasAfterAppend
                }
            ]
        );
        l.on_isr_committed(&[N1, N2, N3], 4);
        assert!(l.check_produce(true).is_ok());
    }

    #[test]
    fn a_caught_up_follower_taken_out_of_the_isr_rejoins_on_the_tick_while_idle() {
        let mut l = leader(&[N1, N2, N3], 2);
        l.on_follower_subscribe(N2, E, 10, 1);
        l.on_follower_subscribe(N3, E, 10, 1);
        // The controller takes N3 out (it was fenced while restarting); the
        // partition is idle, so no ack from N3 comes to trigger a rejoin.
        l.on_isr_committed(&[N1, N2], 2);
        assert_eq!(
            l.tick(3),
            vec![LeaderOutput::ProposeIsr {
                epoch: E,
                isr: BTreeSet::from([N1, N2, N3])
            }]
        );
        assert!(l.tick(4).is_empty(), "one proposal in flight");
        // Refused (the controller keeps its ISR): tried again at the next tick only.
        assert!(l.on_isr_committed(&[N1, N2], 5).is_empty());
        assert_eq!(l.tick(6).len(), 1);
    }

    #[test]
    fn a_refused_expansion_is_retried_on_the_tick_not_on_every_ack() {
        let mut l = leader(&[N1, N2], 1);
        l.on_follower_subscribe(N2, E, 10, 1);
        let propose = vec![LeaderOutput::ProposeIsr {
            epoch: E,
            isr: BTreeSet::from([N1, N2, N3]),
        }];
        assert_eq!(l.on_follower_subscribe(N3, E, 10, 1), propose);
        // Refused: N3's broker is still fenced. Its acks under load do not
        // propose it again (each would be a refused controller write).
        assert!(l.on_isr_refused(&[N1, N2], 2).is_empty());
        for end in 11..15 {
            l.on_appended(end, 3);
            l.on_local_durable(end, 3);
            l.on_follower_ack(N2, E, end, 4);
            let out = l.on_follower_ack(N3, E, end, 4);
            assert!(
                !out.iter()
                    .any(|o| matches!(o, LeaderOutput::ProposeIsr { .. })),
                "{out:?}"
            );
        }
        assert_eq!(l.tick(5), propose, "the tick retries");
        // Committed this time.
        l.on_isr_committed(&[N1, N2, N3], 6);
        assert_eq!(l.isr(), &BTreeSet::from([N1, N2, N3]));
    }

    #[test]
    fn acks_of_other_epochs_unsubscribed_followers_and_going_back_are_ignored() {
        let mut l = leader(&[N1, N2, N3], 1);
        l.on_appended(14, 0);
        l.on_local_durable(14, 0);
        assert!(l.on_follower_ack(N2, E, 14, 1).is_empty(), "not subscribed");
        l.on_follower_subscribe(N2, E, 12, 1);
        l.on_follower_subscribe(N3, LeaderEpoch(3), 14, 1);
        assert!(l.on_follower_ack(N3, LeaderEpoch(3), 14, 1).is_empty());
        assert_eq!(l.high_watermark(), 10);
        l.on_follower_subscribe(N3, E, 14, 1);
        assert_eq!(l.high_watermark(), 12);
        assert!(l.on_follower_ack(N2, E, 11, 2).is_empty(), "went back");
        assert!(l.on_follower_ack(N2, E, 15, 2).is_empty(), "past our end");
        assert_eq!(l.to_send(), vec![(N2, 12)]);
    }

    #[test]
    fn an_idle_caught_up_follower_stays_and_a_lagging_one_goes_after_the_lag_time() {
        let mut l = leader(&[N1, N2, N3], 1);
        l.on_follower_subscribe(N2, E, 10, 0);
        l.on_follower_subscribe(N3, E, 10, 0);
        assert!(l.tick(1_000).is_empty(), "idle, both have everything");
        l.on_appended(12, 1_000);
        l.on_local_durable(12, 1_000);
        l.on_follower_ack(N2, E, 12, 1_050);
        assert!(l.tick(1_100).is_empty());
        assert_eq!(
            l.tick(1_101),
            vec![LeaderOutput::ProposeIsr {
                epoch: E,
                isr: BTreeSet::from([N1, N2])
            }]
        );
        assert!(l.tick(5_000).is_empty(), "one proposal at a time");
        assert_eq!(
            l.on_isr_committed(&[N1, N2], 5_000),
            vec![LeaderOutput::HighWatermark(12)]
        );
    }

    #[test]
    fn resigning_fails_every_waiter_and_reads_above_the_hw_are_empty() {
        let mut l = leader(&[N1], 1);
        l.on_appended(20, 0);
        assert!(l.wait(AckId(7), 20).is_empty());
        assert_eq!(
            l.resign(),
            vec![LeaderOutput::Ack {
                id: AckId(7),
                result: AckResult::NotLeader
            }]
        );
        assert_eq!(consumer_read_bound(15, 5, 10, 20), ReadBound::Empty);
        assert_eq!(consumer_read_bound(20, 5, 10, 20), ReadBound::Empty);
        assert_eq!(consumer_read_bound(21, 5, 10, 20), ReadBound::OutOfRange);
        assert_eq!(consumer_read_bound(4, 5, 10, 20), ReadBound::OutOfRange);
        assert_eq!(consumer_read_bound(5, 5, 10, 20), ReadBound::Upto(10));
    }

    #[test]
    fn a_replica_added_by_a_reassignment_is_streamed_to_and_joins_once_caught_up() {
        const N4: NodeId = NodeId(4);
        let mut l = leader(&[N1, N2, N3], 2);
        l.on_follower_subscribe(N2, E, 10, 0);
        l.on_follower_subscribe(N3, E, 10, 0);
        assert!(!l.is_follower(N4));
        // Reassigned from [1, 2, 3] to [1, 2, 4]: 4 is added, 3 stays until
        // the reassignment completes.
        l.set_replicas(&[N1, N2, N4, N3]);
        assert!(l.is_follower(N4));
        l.on_follower_subscribe(N4, E, 0, 1);
        assert_eq!(l.to_send(), vec![(N4, 0)]);
        l.on_sent(N4, 10);
        assert_eq!(
            l.on_follower_ack(N4, E, 10, 2),
            vec![LeaderOutput::ProposeIsr {
                epoch: E,
                isr: BTreeSet::from([N1, N2, N3, N4])
            }]
        );
        // The controller completes it: 3 leaves the replicas and the ISR,
        // and is not proposed back.
        l.set_replicas(&[N1, N2, N4]);
        l.on_isr_committed(&[N1, N2, N4], 3);
        assert!(!l.is_follower(N3));
        assert!(l.tick(100_000).is_empty());
        l.on_appended(12, 4);
        l.on_local_durable(12, 4);
        l.on_follower_ack(N2, E, 12, 5);
        assert_eq!(
            l.on_follower_ack(N4, E, 12, 5),
            vec![LeaderOutput::HighWatermark(12)]
        );
    }

    #[test]
    fn a_follower_below_the_log_start_is_told_to_start_over_once_then_streamed_to() {
        let mut l = leader(&[N1, N2], 1);
        // A new replica's empty log; this leader's log starts at 6 now.
        l.on_follower_subscribe(N3, E, 0, 1);
        assert_eq!(l.start_over(N2, 6), None, "not subscribed");
        assert_eq!(l.start_over(N3, 6), Some(6));
        assert_eq!(l.start_over(N3, 6), None, "once, until it subscribes again");
        assert!(l.to_send().is_empty());
        l.on_follower_subscribe(N3, E, 6, 2);
        assert_eq!(l.start_over(N3, 6), None);
        assert_eq!(l.to_send(), vec![(N3, 6)]);
        l.on_sent(N3, 10);
        assert_eq!(
            l.on_follower_ack(N3, E, 10, 3),
            vec![LeaderOutput::ProposeIsr {
                epoch: E,
                isr: BTreeSet::from([N1, N2, N3])
            }]
        );
    }

    #[test]
    fn a_cancelled_wait_is_never_answered() {
        let mut l = leader(&[N1, N2], 1);
        l.on_follower_subscribe(N2, E, 10, 0);
        l.on_appended(14, 0);
        assert!(l.wait(AckId(1), 12).is_empty());
        assert!(l.wait(AckId(2), 14).is_empty());
        l.cancel_wait(AckId(1));
        l.on_local_durable(14, 1);
        assert_eq!(
            l.on_follower_ack(N2, E, 14, 2),
            vec![
                LeaderOutput::HighWatermark(14),
                LeaderOutput::Ack {
                    id: AckId(2),
                    result: AckResult::Committed
                }
            ]
        );
        assert!(l.resign().is_empty());
    }
}
