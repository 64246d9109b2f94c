//! The follower's side of one partition: which leader and epoch it follows,
//! the truncation handshake (KIP-101 with KIP-279's repeated query), then the
//! stream of batches.
//!
//! A follower never acknowledges before its log is a prefix of the leader's:
//! it first asks the leader where its latest epoch ends, truncates there, and
//! only then subscribes at its log end.

use bytes::Bytes;

use super::epochs::{truncation_point, Truncation};
use super::LeaderEpoch;
use crate::NodeId;

/// What the driver must do for the follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowerAction {
    /// Ask the leader where `requested` ends (OffsetsForLeaderEpoch).
    QueryEpoch { requested: i32 },
    /// Cut the local log to this offset (engine `truncate_to`).
    Truncate(i64),
    /// Start the stream at this log end (after any truncation). The leader
    /// counts it as this replica's durable end: make the log durable up to
    /// here before sending it (`truncate_to` does; otherwise flush).
    Subscribe { log_end: i64 },
    /// Append these whole batches with the leader's offsets (engine
    /// `append_replica`, one batch at a time).
    Append(Bytes),
    /// The leader's high watermark, as far as this log has it.
    HighWatermark(i64),
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
}

impl FollowerState {
    /// Starts following `leader` in `epoch`. `own_cache` is the local log's
    /// leader-epoch cache, `high_watermark` the last one known (the fallback
    /// cut when epochs cannot tell).
    pub fn new(
        leader: NodeId,
        epoch: LeaderEpoch,
        own_cache: &[(i32, i64)],
        log_end: i64,
        high_watermark: i64,
    ) -> (FollowerState, Vec<FollowerAction>) {
        let mut state = FollowerState {
            leader,
            epoch,
            phase: Phase::Streaming,
            high_watermark: high_watermark.min(log_end),
            reported: None,
        };
        let actions = match own_cache.last() {
            Some(&(latest, _)) => {
                state.phase = Phase::Querying { requested: latest };
                vec![FollowerAction::QueryEpoch { requested: latest }]
            }
            // No epochs: either an empty log, or one whose history cannot be
            // checked; keep only what was known committed.
            None => {
                let cut = state.high_watermark;
                let mut a = Vec::new();
                if cut < log_end {
                    a.push(FollowerAction::Truncate(cut));
                }
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
    pub fn reconnect(&mut self, own_cache: &[(i32, i64)], log_end: i64) -> Vec<FollowerAction> {
        let (state, actions) = FollowerState::new(
            self.leader,
            self.epoch,
            own_cache,
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
        match truncation_point(own_cache, log_end, answer, self.high_watermark) {
            Truncation::Final(cut) => {
                if cut < log_end {
                    actions.push(FollowerAction::Truncate(cut));
                }
                self.high_watermark = self.high_watermark.min(cut);
                self.phase = Phase::Streaming;
                self.reported = Some(cut);
                actions.push(FollowerAction::Subscribe { log_end: cut });
            }
            Truncation::AskAgain(cut) => {
                if cut < log_end {
                    actions.push(FollowerAction::Truncate(cut));
                }
                self.high_watermark = self.high_watermark.min(cut);
                // Our latest epoch once the cut is made.
                match own_cache.iter().rev().find(|&&(_, start)| start < cut) {
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

    /// Batches streamed by the leader (possibly none: a high watermark
    /// update). `records` are whole batches, the first at `log_end`.
    pub fn on_batches(
        &mut self,
        from: NodeId,
        leader_epoch: LeaderEpoch,
        leader_high_watermark: i64,
        records: Bytes,
        log_end: i64,
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
        if skip < records.len() {
            actions.push(FollowerAction::Append(records.slice(skip..)));
        }
        let hw = leader_high_watermark.min(end);
        if hw > self.high_watermark {
            self.high_watermark = hw;
            actions.push(FollowerAction::HighWatermark(hw));
        }
        Ok(actions)
    }

    /// The local flush policy is met up to `durable_end`: tell the leader
    /// when that is news.
    pub fn on_local_durable(&mut self, durable_end: i64) -> Vec<FollowerAction> {
        if self.phase != Phase::Streaming || self.reported.is_some_and(|r| durable_end <= r) {
            return Vec::new();
        }
        self.reported = Some(durable_end);
        vec![FollowerAction::Ack {
            log_end: durable_end,
        }]
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
        let (mut f, a) = FollowerState::new(L, E, &[(3, 0)], 6, 4);
        assert_eq!(a, vec![FollowerAction::QueryEpoch { requested: 3 }]);
        let a = f
            .on_epoch_answer(L, E, 3, (3, 6), &[(3, 0)], 6)
            .expect("answer");
        assert_eq!(a, vec![FollowerAction::Subscribe { log_end: 6 }]);
        f
    }

    #[test]
    fn stale_newer_and_foreign_streams_are_refused() {
        let mut f = streaming();
        assert_eq!(
            f.on_batches(L, LeaderEpoch(4), 8, batches(6, 1), 6),
            Err(FollowerError::StaleEpoch { got: 4, ours: 5 })
        );
        assert_eq!(
            f.on_batches(L, LeaderEpoch(6), 8, batches(6, 1), 6),
            Err(FollowerError::UnknownEpoch { got: 6, ours: 5 })
        );
        assert_eq!(
            f.on_batches(NodeId(2), E, 8, batches(6, 1), 6),
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
        let a = f.on_batches(L, E, 7, all.clone(), 6).expect("batches");
        let second = batches(2, 2).len();
        assert_eq!(
            a,
            vec![
                FollowerAction::Append(all.slice(second..)),
                FollowerAction::HighWatermark(7)
            ]
        );
        assert_eq!(
            f.on_batches(L, E, 9, batches(10, 1), 8).expect("hole"),
            vec![FollowerAction::Subscribe { log_end: 8 }]
        );
        let mut torn = batches(8, 1).to_vec();
        torn.truncate(torn.len() - 1);
        assert!(matches!(
            f.on_batches(L, E, 9, Bytes::from(torn), 8),
            Err(FollowerError::Malformed(_))
        ));
        // The HW never passes what this log holds.
        assert_eq!(
            f.on_batches(L, E, 100, Bytes::new(), 8).expect("hw"),
            vec![FollowerAction::HighWatermark(8)]
        );
    }

    #[test]
    fn acks_only_when_news_and_only_after_the_handshake() {
        let (mut f, _) = FollowerState::new(L, E, &[(3, 0)], 6, 4);
        assert!(f.on_local_durable(6).is_empty(), "still querying");
        assert!(matches!(
            f.on_batches(L, E, 4, batches(6, 1), 6),
            Err(FollowerError::NotStreaming)
        ));
        // An answer to another question is not ours.
        assert!(f
            .on_epoch_answer(L, E, 2, (2, 1), &[(3, 0)], 6)
            .expect("ignored")
            .is_empty());
        f.on_epoch_answer(L, E, 3, (3, 5), &[(3, 0)], 6)
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
        let (mut f, _) = FollowerState::new(L, E, &cache, 20, 0);
        let a = f
            .on_epoch_answer(L, E, 3, (2, 15), &cache, 20)
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
            .on_epoch_answer(L, E, 1, (1, 8), &cache, 10)
            .expect("answer");
        assert_eq!(
            a,
            vec![
                FollowerAction::Truncate(8),
                FollowerAction::Subscribe { log_end: 8 }
            ]
        );
    }
}
