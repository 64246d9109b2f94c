//! The follower's side of one partition: which leader and epoch it follows,
//! the truncation handshake (KIP-101 with KIP-279's repeated query), then the
//! stream of batches.
//!
//! A follower never acknowledges before its log is a prefix of the leader's:
//! it first asks the leader where its latest epoch ends, truncates there, and
//! only then subscribes at its log end. When the leader no longer holds the
//! offsets that would continue its log (the leader's log start moved past
//! them), the leader says where its log starts and the follower empties its
//! log and restarts it there (Kafka's `truncateFullyAndStartAt`). The
//! leader's log start comes with every batch, and the follower's log start
//! follows it (Kafka's follower does `maybeIncrementLogStartOffset`), never
//! past what it holds durably below the high watermark.

use bytes::Bytes;

use super::epochs::{truncation_point, Truncation};
use super::LeaderEpoch;
use crate::NodeId;

/// What the driver must do for the follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowerAction {
    /// Ask the leader where `requested` ends (OffsetsForLeaderEpoch).
    QueryEpoch { requested: i32 },
    /// Cut the local log to this offset (engine `truncate_to`); never below
    /// the log start (that is a [`FollowerAction::StartAt`]).
    Truncate(i64),
    /// Empty the local log and restart it at this offset, which becomes its
    /// log start and log end (engine `truncate_fully_and_start_at`).
    StartAt(i64),
    /// Start the stream at this log end (after any truncation). The leader
    /// counts it as this replica's durable end: make the log durable up to
    /// here before sending it (`truncate_to` does; otherwise flush).
    Subscribe { log_end: i64 },
    /// Append these whole batches with the leader's offsets (engine
    /// `append_replica`, one batch at a time).
    Append(Bytes),
    /// The leader's high watermark, as far as this log has it.
    HighWatermark(i64),
    /// The leader's log start, which this log holds durably and below the
    /// high watermark: advance the local log start to it (engine
    /// `advance_log_start`), dropping the segments wholly below.
    LogStart(i64),
    /// Report this durable log end to the leader.
    Ack { log_end: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FollowerError {
    #[error("stream of leader epoch {got} refused: following epoch {ours}")]
    StaleEpoch { got: i32, ours: i32 },
    #[error("stream of leader epoch {got}: this replica has not learned of it (following {ours})")]
    UnknownEpoch { got: i32, ours: i32 },
    #[error("message from {from}, but the leader is {leader}")]
    NotTheLeader { from: NodeId, leader: NodeId },
    #[error("batches before the truncation handshake ended")]
    NotStreaming,
    #[error("batches start at {base_offset}, the log ends at {log_end}")]
    Gap { base_offset: i64, log_end: i64 },
    #[error("malformed batches from the leader: {0}")]
    Malformed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the leader's answer about this epoch.
    Querying {
        requested: i32,
    },
    Streaming,
}

pub struct FollowerState {
    leader: NodeId,
    epoch: LeaderEpoch,
    phase: Phase,
    high_watermark: i64,
    /// The last log end reported to the leader in this stream.
    reported: Option<i64>,
    /// The leader's log start, as last heard.
    leader_log_start: i64,
    /// This log's start as far as this state knows it (from the driver, or
    /// the last [`FollowerAction::LogStart`]).
    log_start: i64,
}

impl FollowerState {
    /// Starts following `leader` in `epoch`. `own_cache` is the local log's
    /// leader-epoch cache, `[log_start, log_end)` its offsets,
    /// `high_watermark` the last one known (the fallback cut when epochs
    /// cannot tell).
    pub fn new(
        leader: NodeId,
        epoch: LeaderEpoch,
        own_cache: &[(i32, i64)],
        log_start: i64,
        log_end: i64,
        high_watermark: i64,
    ) -> (FollowerState, Vec<FollowerAction>) {
        debug_assert!(log_start <= log_end);
        let mut state = FollowerState {
            leader,
            epoch,
            phase: Phase::Streaming,
            high_watermark: high_watermark.min(log_end),
            reported: None,
            leader_log_start: log_start,
            log_start,
        };
        let actions = match own_cache.last() {
            Some(&(latest, _)) => {
                state.phase = Phase::Querying { requested: latest };
                vec![FollowerAction::QueryEpoch { requested: latest }]
            }
            // No epochs: either an empty log (perhaps restarted at a leader's
            // log start), or one whose history cannot be checked; keep only
            // what was known committed, and never cut below the log start.
            None => {
                let cut = state.high_watermark.max(log_start);
                state.high_watermark = cut;
                let mut a = cut_to(cut, log_start, log_end);
                a.push(FollowerAction::Subscribe { log_end: cut });
                state.reported = Some(cut);
                a
            }
        };
        (state, actions)
    }

    /// The connection to the leader was lost and is back: what was streamed
    /// meanwhile may be lost, so the handshake starts over (asking about our
    /// epochs again is harmless, and covers a leader that lost data too).
    pub fn reconnect(
        &mut self,
        own_cache: &[(i32, i64)],
        log_start: i64,
        log_end: i64,
    ) -> Vec<FollowerAction> {
        let (state, actions) = FollowerState::new(
            self.leader,
            self.epoch,
            own_cache,
            log_start,
            log_end,
            self.high_watermark,
        );
        *self = state;
        actions
    }

    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }

    pub fn leader(&self) -> NodeId {
        self.leader
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The leader's log start as last heard (this log's own before that).
    pub fn leader_log_start(&self) -> i64 {
        self.leader_log_start
    }

    pub fn is_streaming(&self) -> bool {
        self.phase == Phase::Streaming
    }

    /// The leader answered the query about `requested` with (epoch, end
    /// offset).
    #[allow(clippy::too_many_arguments)]
    pub fn on_epoch_answer(
        &mut self,
        from: NodeId,
        leader_epoch: LeaderEpoch,
        requested: i32,
        answer: (i32, i64),
        own_cache: &[(i32, i64)],
        log_start: i64,
        log_end: i64,
    ) -> Result<Vec<FollowerAction>, FollowerError> {
        self.check_sender(from, leader_epoch)?;
        // Only the answer to the question now open counts: a late answer (to
        // a query before a reconnect or a KIP-279 second round) is about an
        // epoch our log may no longer end with.
        if self.phase != (Phase::Querying { requested }) {
            return Ok(Vec::new());
        }
        let mut actions = Vec::new();
        // Below the log start nothing is kept anyway.
        let fallback = self.high_watermark.max(log_start);
        match truncation_point(own_cache, log_end, answer, fallback) {
            Truncation::Final(cut) => {
                actions.extend(cut_to(cut, log_start, log_end));
                self.high_watermark = self.high_watermark.min(cut);
                self.phase = Phase::Streaming;
                self.reported = Some(cut);
                actions.push(FollowerAction::Subscribe { log_end: cut });
            }
            Truncation::AskAgain(cut) => {
                actions.extend(cut_to(cut, log_start, log_end));
                self.high_watermark = self.high_watermark.min(cut);
                // Our latest epoch once the cut is made (none left when the
                // log was emptied).
                let latest = own_cache
                    .iter()
                    .rev()
                    .find(|&&(_, start)| start < cut && cut >= log_start);
                match latest {
                    Some(&(e, _)) => {
                        self.phase = Phase::Querying { requested: e };
                        actions.push(FollowerAction::QueryEpoch { requested: e });
                    }
                    None => {
                        self.phase = Phase::Streaming;
                        self.reported = Some(cut);
                        actions.push(FollowerAction::Subscribe { log_end: cut });
                    }
                }
            }
        }
        Ok(actions)
    }

    /// Batches streamed by the leader (possibly none: an update of its high
    /// watermark and log start). `records` are whole batches, the first at
    /// `log_end`, or holding it when the log is empty (`log_start ==
    /// log_end`) and was restarted at a leader's log start inside a batch:
    /// the log then restarts at that batch's base offset (Kafka does the
    /// same). `durable_end` is where this log is durable now.
    #[allow(clippy::too_many_arguments)]
    pub fn on_batches(
        &mut self,
        from: NodeId,
        leader_epoch: LeaderEpoch,
        leader_high_watermark: i64,
        leader_log_start: i64,
        records: Bytes,
        log_start: i64,
        log_end: i64,
        durable_end: i64,
    ) -> Result<Vec<FollowerAction>, FollowerError> {
        self.check_sender(from, leader_epoch)?;
        if self.phase != Phase::Streaming {
            return Err(FollowerError::NotStreaming);
        }
        let mut end = log_end;
        let mut at = 0usize;
        // Batches we already have: sent before our last Subscribe reached
        // the leader (the log is a prefix of the leader's in this epoch).
        let mut skip = 0usize;
        let mut restart = None;
        while at < records.len() {
            let h = sluice_records::BatchHeader::parse(&records[at..])
                .map_err(|e| FollowerError::Malformed(e.to_string()))?;
            let len = h.total_len();
            if records.len() - at < len {
                return Err(FollowerError::Malformed(format!(
                    "batch of {len} bytes, {} left",
                    records.len() - at
                )));
            }
            if end == log_end && h.next_offset() <= log_end {
                skip = at + len;
            } else if end == log_end && h.base_offset < log_end && log_start == log_end {
                restart = Some(h.base_offset);
                end = h.next_offset();
            } else if h.base_offset != end {
                if end == log_end && h.base_offset > log_end {
                    // Something sent was lost: restart the stream here.
                    return Ok(vec![FollowerAction::Subscribe { log_end }]);
                }
                return Err(FollowerError::Gap {
                    base_offset: h.base_offset,
                    log_end: end,
                });
            } else {
                end = h.next_offset();
            }
            at += len;
        }
        let mut actions = Vec::new();
        self.log_start = log_start;
        if let Some(base) = restart {
            actions.push(FollowerAction::StartAt(base));
            self.log_start = base;
        }
        if skip < records.len() {
            actions.push(FollowerAction::Append(records.slice(skip..)));
        }
        let hw = leader_high_watermark.min(end);
        if hw > self.high_watermark {
            self.high_watermark = hw;
            actions.push(FollowerAction::HighWatermark(hw));
        }
        self.leader_log_start = leader_log_start;
        // A restarted log has nothing durable yet.
        let durable = if restart.is_some() { 0 } else { durable_end };
        actions.extend(self.follow_log_start(durable));
        Ok(actions)
    }

    /// The log start to move to, if the leader's has moved past this log's
    /// and this log holds it durably below the high watermark (what is
    /// above the high watermark may still be cut; what is not durable may
    /// be lost in a crash, and the log start must stay inside the log).
    fn follow_log_start(&mut self, durable_end: i64) -> Option<FollowerAction> {
        let target = self
            .leader_log_start
            .min(self.high_watermark)
            .min(durable_end);
        (target > self.log_start).then(|| {
            self.log_start = target;
            FollowerAction::LogStart(target)
        })
    }

    /// The leader's log starts at `leader_log_start`, past this log's end:
    /// what would continue this log is gone there (retention or
    /// DeleteRecords on the leader; a new replica's empty log at 0). Empty
    /// the log, restart it at the leader's log start and subscribe there.
    /// When the log already reaches that far (the leader answered a stale
    /// subscription), the stream restarts at the log end instead: the leader
    /// sends nothing until this replica subscribes again. During the epoch
    /// handshake it is dropped (a subscription follows anyway).
    pub fn on_start_at(
        &mut self,
        from: NodeId,
        leader_epoch: LeaderEpoch,
        leader_log_start: i64,
        log_end: i64,
    ) -> Result<Vec<FollowerAction>, FollowerError> {
        self.check_sender(from, leader_epoch)?;
        if self.phase != Phase::Streaming {
            return Ok(Vec::new());
        }
        if leader_log_start <= log_end {
            return Ok(vec![FollowerAction::Subscribe { log_end }]);
        }
        self.reported = Some(leader_log_start);
        self.leader_log_start = leader_log_start;
        self.log_start = leader_log_start;
        let mut actions = vec![FollowerAction::StartAt(leader_log_start)];
        // Everything below the leader's log start was committed there.
        if leader_log_start > self.high_watermark {
            self.high_watermark = leader_log_start;
            actions.push(FollowerAction::HighWatermark(leader_log_start));
        }
        actions.push(FollowerAction::Subscribe {
            log_end: leader_log_start,
        });
        Ok(actions)
    }

    /// The local flush policy is met up to `durable_end`: tell the leader
    /// when that is news, and follow the leader's log start as far as the
    /// log is now durable.
    pub fn on_local_durable(&mut self, durable_end: i64) -> Vec<FollowerAction> {
        if self.phase != Phase::Streaming {
            return Vec::new();
        }
        let mut actions = Vec::new();
        if self.reported.is_none_or(|r| durable_end > r) {
            self.reported = Some(durable_end);
            actions.push(FollowerAction::Ack {
                log_end: durable_end,
            });
        }
        actions.extend(self.follow_log_start(durable_end));
        actions
    }

    /// Stale epochs are refused (KIP-101 fencing); newer ones too, until the
    /// controller tells this replica about them.
    fn check_sender(&self, from: NodeId, epoch: LeaderEpoch) -> Result<(), FollowerError> {
        if epoch < self.epoch {
            return Err(FollowerError::StaleEpoch {
                got: epoch.0,
                ours: self.epoch.0,
            });
        }
        if epoch > self.epoch {
            return Err(FollowerError::UnknownEpoch {
                got: epoch.0,
                ours: self.epoch.0,
            });
        }
        if from != self.leader {
            return Err(FollowerError::NotTheLeader {
                from,
                leader: self.leader,
            });
        }
        Ok(())
    }
}

/// The actions that cut a log of `[log_start, log_end)` to `cut`: none at
/// its end, a truncation inside it, a restart below its start.
fn cut_to(cut: i64, log_start: i64, log_end: i64) -> Vec<FollowerAction> {
    if cut < log_start {
        vec![FollowerAction::StartAt(cut)]
    } else if cut < log_end {
        vec![FollowerAction::Truncate(cut)]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_records::{BatchBuilder, Compression};

    const L: NodeId = NodeId(1);
    const E: LeaderEpoch = LeaderEpoch(5);

    /// Stored batches of two records each, from `base`, `n` of them.
    fn batches(base: i64, n: usize) -> Bytes {
        let mut out = Vec::new();
        for i in 0..n {
            let mut b = BatchBuilder::new(Compression::None);
            b.push(0, None, Some(b"a"), &[]);
            b.push(0, None, Some(b"b"), &[]);
            let mut b = b.build().to_vec();
            sluice_records::set_base_offset(&mut b, base + 2 * i as i64).expect("header");
            out.extend_from_slice(&b);
        }
        Bytes::from(out)
    }

    fn streaming() -> FollowerState {
        let (mut f, a) = FollowerState::new(L, E, &[(3, 0)], 0, 6, 4);
        assert_eq!(a, vec![FollowerAction::QueryEpoch { requested: 3 }]);
        let a = f
            .on_epoch_answer(L, E, 3, (3, 6), &[(3, 0)], 0, 6)
            .expect("answer");
        assert_eq!(a, vec![FollowerAction::Subscribe { log_end: 6 }]);
        f
    }

    #[test]
    fn stale_newer_and_foreign_streams_are_refused() {
        let mut f = streaming();
        assert_eq!(
            f.on_batches(L, LeaderEpoch(4), 8, 0, batches(6, 1), 0, 6, 6),
            Err(FollowerError::StaleEpoch { got: 4, ours: 5 })
        );
        assert_eq!(
            f.on_batches(L, LeaderEpoch(6), 8, 0, batches(6, 1), 0, 6, 6),
            Err(FollowerError::UnknownEpoch { got: 6, ours: 5 })
        );
        assert_eq!(
            f.on_batches(NodeId(2), E, 8, 0, batches(6, 1), 0, 6, 6),
            Err(FollowerError::NotTheLeader {
                from: NodeId(2),
                leader: L
            })
        );
    }

    #[test]
    fn batches_already_held_are_skipped_and_a_hole_restarts_the_stream() {
        let mut f = streaming();
        let all = batches(2, 3); // offsets 2..8, the log ends at 6
        let a = f
            .on_batches(L, E, 7, 0, all.clone(), 0, 6, 6)
            .expect("batches");
        let second = batches(2, 2).len();
        assert_eq!(
            a,
            vec![
                FollowerAction::Append(all.slice(second..)),
                FollowerAction::HighWatermark(7)
            ]
        );
        assert_eq!(
            f.on_batches(L, E, 9, 0, batches(10, 1), 0, 8, 8)
                .expect("hole"),
            vec![FollowerAction::Subscribe { log_end: 8 }]
        );
        let mut torn = batches(8, 1).to_vec();
        torn.truncate(torn.len() - 1);
        assert!(matches!(
            f.on_batches(L, E, 9, 0, Bytes::from(torn), 0, 8, 8),
            Err(FollowerError::Malformed(_))
        ));
        // The HW never passes what this log holds.
        assert_eq!(
            f.on_batches(L, E, 100, 0, Bytes::new(), 0, 8, 8)
                .expect("hw"),
            vec![FollowerAction::HighWatermark(8)]
        );
    }

    #[test]
    fn acks_only_when_news_and_only_after_the_handshake() {
        let (mut f, _) = FollowerState::new(L, E, &[(3, 0)], 0, 6, 4);
        assert!(f.on_local_durable(6).is_empty(), "still querying");
        assert!(matches!(
            f.on_batches(L, E, 4, 0, batches(6, 1), 0, 6, 6),
            Err(FollowerError::NotStreaming)
        ));
        // An answer to another question is not ours.
        assert!(f
            .on_epoch_answer(L, E, 2, (2, 1), &[(3, 0)], 0, 6)
            .expect("ignored")
            .is_empty());
        f.on_epoch_answer(L, E, 3, (3, 5), &[(3, 0)], 0, 6)
            .expect("answer");
        assert!(f.on_local_durable(5).is_empty(), "subscribe reported 5");
        assert_eq!(
            f.on_local_durable(7),
            vec![FollowerAction::Ack { log_end: 7 }]
        );
        assert!(f.on_local_durable(7).is_empty());
    }

    #[test]
    fn a_second_round_when_the_leader_answers_an_epoch_we_never_had() {
        let cache = [(1, 0), (3, 10)];
        let (mut f, _) = FollowerState::new(L, E, &cache, 0, 20, 0);
        let a = f
            .on_epoch_answer(L, E, 3, (2, 15), &cache, 0, 20)
            .expect("answer");
        assert_eq!(
            a,
            vec![
                FollowerAction::Truncate(10),
                FollowerAction::QueryEpoch { requested: 1 }
            ]
        );
        let cache = [(1, 0)];
        let a = f
            .on_epoch_answer(L, E, 1, (1, 8), &cache, 0, 10)
            .expect("answer");
        assert_eq!(
            a,
            vec![
                FollowerAction::Truncate(8),
                FollowerAction::Subscribe { log_end: 8 }
            ]
        );
    }

    #[test]
    fn a_log_below_the_leaders_start_is_emptied_and_restarted_there() {
        // A new replica: an empty log at 0, no epochs.
        let (mut f, a) = FollowerState::new(L, E, &[], 0, 0, 0);
        assert_eq!(a, vec![FollowerAction::Subscribe { log_end: 0 }]);
        assert_eq!(
            f.on_start_at(L, LeaderEpoch(4), 60, 0),
            Err(FollowerError::StaleEpoch { got: 4, ours: 5 })
        );
        assert_eq!(
            f.on_start_at(L, E, 60, 0).expect("start at"),
            vec![
                FollowerAction::StartAt(60),
                FollowerAction::HighWatermark(60),
                FollowerAction::Subscribe { log_end: 60 }
            ]
        );
        assert_eq!(
            f.on_start_at(L, E, 60, 60).expect("again"),
            vec![FollowerAction::Subscribe { log_end: 60 }],
            "not news: the stream restarts at the log end"
        );
        assert!(f.on_local_durable(60).is_empty(), "subscribe reported 60");
        // The leader's log start lies inside a batch (DeleteRecords): the
        // batch holding it restarts the empty log at its base.
        let b = batches(59, 2); // 59..=60, 61..=62
        let a = f
            .on_batches(L, E, 63, 60, b.clone(), 60, 60, 60)
            .expect("batches");
        assert_eq!(
            a,
            vec![
                FollowerAction::StartAt(59),
                FollowerAction::Append(b),
                FollowerAction::HighWatermark(63)
            ]
        );
        // Into a log that holds data, a batch across its end is a gap.
        assert!(matches!(
            f.on_batches(L, E, 63, 0, batches(62, 1), 0, 63, 63),
            Err(FollowerError::Gap { .. })
        ));
        // Once durable, its log start moves up to the leader's (inside the
        // batch, as the leader's is).
        assert_eq!(
            f.on_local_durable(63),
            vec![
                FollowerAction::Ack { log_end: 63 },
                FollowerAction::LogStart(60)
            ]
        );
    }

    #[test]
    fn the_log_start_follows_the_leaders_once_durable_and_below_the_high_watermark() {
        let mut f = streaming(); // the log holds [0, 6) durably, HW 4
                                 // The leader's log start is past the HW this replica knows: up to the HW.
        assert_eq!(
            f.on_batches(L, E, 4, 5, Bytes::new(), 0, 6, 6)
                .expect("update"),
            vec![FollowerAction::LogStart(4)]
        );
        // Appended but not yet durable: only as far as the log is durable.
        let b = batches(6, 1); // 6..=7
        assert_eq!(
            f.on_batches(L, E, 8, 7, b.clone(), 4, 6, 6)
                .expect("batches"),
            vec![
                FollowerAction::Append(b),
                FollowerAction::HighWatermark(8),
                FollowerAction::LogStart(6)
            ]
        );
        assert_eq!(
            f.on_local_durable(8),
            vec![
                FollowerAction::Ack { log_end: 8 },
                FollowerAction::LogStart(7)
            ]
        );
        assert!(f.on_local_durable(8).is_empty(), "not news");
        // A leader whose log starts lower (a new one) moves nothing back.
        assert!(f
            .on_batches(L, E, 8, 2, Bytes::new(), 7, 8, 8)
            .expect("update")
            .is_empty());
        assert_eq!(f.leader_log_start(), 2);
    }

    #[test]
    fn a_restarted_empty_log_is_not_cut_below_its_start_and_divergence_below_it_restarts_it() {
        // Restarted at 60 earlier, no epochs, the high watermark forgotten.
        let (_, a) = FollowerState::new(L, E, &[], 60, 60, 0);
        assert_eq!(a, vec![FollowerAction::Subscribe { log_end: 60 }]);
        // Epochs that say the logs agree only below this log's start.
        let cache = [(3, 30)];
        let (mut f, _) = FollowerState::new(L, E, &cache, 55, 70, 0);
        let a = f
            .on_epoch_answer(L, E, 3, (3, 40), &cache, 55, 70)
            .expect("answer");
        assert_eq!(
            a,
            vec![
                FollowerAction::StartAt(40),
                FollowerAction::Subscribe { log_end: 40 }
            ]
        );
    }
}
