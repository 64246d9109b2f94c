//! Which brokers are alive, as the controller leader sees them: Kafka's
//! broker heartbeats and session timeout (KIP-631), without the Raft log.
//!
//! Heartbeats are not Raft writes (a cluster of idle brokers would otherwise
//! grow the log every two seconds); only their consequences are: a broker
//! silent for longer than the session timeout is fenced (`FenceBroker`, its
//! leaderships move to in-sync replicas), and a fenced broker that
//! heartbeats again is unfenced. The tracker lives on the leader only. A new
//! leader knows nobody's last heartbeat, so it counts every broker as seen
//! when it took over: a broker is fenced no sooner than one session timeout
//! after a leader change.
//!
//! Pure state with the time passed in, so the rules are tested without
//! clocks or sockets.

use std::collections::{BTreeMap, BTreeSet};

use super::metadata::{ClusterMetadata, Command};
use crate::ids::NodeId;

#[derive(Debug)]
pub struct Liveness {
    session_timeout_ms: u64,
    /// When this node began to lead; `None` while it does not.
    leading_since_ms: Option<u64>,
    last_heartbeat_ms: BTreeMap<NodeId, u64>,
    /// The broker epoch each broker had when last seen: a new one is a new
    /// registration, which counts as a heartbeat.
    broker_epochs: BTreeMap<NodeId, u64>,
    /// Brokers with a fence or unfence command in flight: no second one
    /// until it settles.
    pending: BTreeSet<NodeId>,
}

impl Liveness {
    pub fn new(session_timeout_ms: u64) -> Self {
        Liveness {
            session_timeout_ms,
            leading_since_ms: None,
            last_heartbeat_ms: BTreeMap::new(),
            broker_epochs: BTreeMap::new(),
            pending: BTreeSet::new(),
        }
    }

    pub fn is_leading(&self) -> bool {
        self.leading_since_ms.is_some()
    }

    /// This node became the controller leader at `now_ms`: every broker
    /// starts a fresh session.
    pub fn lead(&mut self, now_ms: u64) {
        self.leading_since_ms = Some(now_ms);
        self.last_heartbeat_ms.clear();
        self.broker_epochs.clear();
        self.pending.clear();
    }

    /// This node no longer leads: it forgets what it tracked.
    pub fn follow(&mut self) {
        self.leading_since_ms = None;
        self.last_heartbeat_ms.clear();
        self.broker_epochs.clear();
        self.pending.clear();
    }

    /// A heartbeat from `node`: the command to write, if any (unfencing a
    /// fenced broker). Call only while leading.
    pub fn heartbeat(
        &mut self,
        node: NodeId,
        now_ms: u64,
        metadata: &ClusterMetadata,
    ) -> Option<Command> {
        self.last_heartbeat_ms.insert(node, now_ms);
        let fenced = metadata.brokers.get(&node).is_some_and(|b| b.fenced);
        (fenced && self.pending.insert(node)).then_some(Command::UnfenceBroker { node })
    }

    /// The fences due at `now_ms`: every registered, unfenced broker whose
    /// last heartbeat (or registration, or this leadership's start,
    /// whichever is latest) is older than the session timeout.
    pub fn due(&mut self, now_ms: u64, metadata: &ClusterMetadata) -> Vec<Command> {
        let Some(since) = self.leading_since_ms else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (node, broker) in &metadata.brokers {
            // A broker that registered again (a restart) starts a new session:
            // without this, a broker back within a session of being fenced
            // was unfenced by its registration and at once fenced again.
            let known = self.broker_epochs.insert(*node, broker.broker_epoch);
            if known.is_some_and(|e| e != broker.broker_epoch) {
                self.last_heartbeat_ms.insert(*node, now_ms);
            }
            if broker.fenced || self.pending.contains(node) {
                continue;
            }
            let seen = self
                .last_heartbeat_ms
                .get(node)
                .copied()
                .unwrap_or(since)
                .max(since);
            if now_ms.saturating_sub(seen) > self.session_timeout_ms {
                self.pending.insert(*node);
                out.push(Command::FenceBroker { node: *node });
            }
        }
        out
    }

    /// The command for `node` was applied or failed: it may be sent again.
    pub fn settled(&mut self, node: NodeId) {
        self.pending.remove(&node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::metadata::BrokerRegistration;
    use proptest::prelude::*;

    const TIMEOUT: u64 = 9_000;

    fn cluster(nodes: &[i32]) -> ClusterMetadata {
        let mut m = ClusterMetadata::new();
        for &n in nodes {
            m.apply(&Command::RegisterBroker(BrokerRegistration {
                node: NodeId(n),
                host: "127.0.0.1".into(),
                port: 9092,
                shards: 1,
                replication_ports: Vec::new(),
            }))
            .expect("register");
        }
        m
    }

    fn fenced(commands: &[Command]) -> Vec<i32> {
        commands
            .iter()
            .filter_map(|c| match c {
                Command::FenceBroker { node } => Some(node.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_silent_broker_is_fenced_once_and_unfenced_by_its_next_heartbeat() {
        let mut m = cluster(&[1, 2, 3]);
        let mut l = Liveness::new(TIMEOUT);
        assert!(l.due(100_000, &m).is_empty(), "a follower fences nobody");
        l.lead(0);
        for t in (0..=TIMEOUT).step_by(2_000) {
            assert!(l.heartbeat(NodeId(1), t, &m).is_none());
            assert!(l.heartbeat(NodeId(2), t, &m).is_none());
        }
        assert!(
            l.due(TIMEOUT, &m).is_empty(),
            "within the timeout of the leadership's start"
        );
        let due = l.due(TIMEOUT + 1, &m);
        assert_eq!(fenced(&due), vec![3], "only the silent broker");
        assert!(
            l.due(TIMEOUT + 500, &m).is_empty(),
            "no second fence while the first is in flight"
        );
        m.apply(&due[0]).expect("fence");
        l.settled(NodeId(3));
        assert!(
            l.due(TIMEOUT * 5, &m)
                .iter()
                .all(|c| !matches!(c, Command::FenceBroker { node } if node.0 == 3)),
            "a fenced broker is not fenced again"
        );
        let back = l.heartbeat(NodeId(3), TIMEOUT * 5, &m);
        assert_eq!(back, Some(Command::UnfenceBroker { node: NodeId(3) }));
        assert!(
            l.heartbeat(NodeId(3), TIMEOUT * 5 + 1, &m).is_none(),
            "one unfence in flight"
        );
    }

    #[test]
    fn a_broker_that_registers_again_starts_a_new_session() {
        let mut m = cluster(&[1, 2]);
        let mut l = Liveness::new(TIMEOUT);
        l.lead(0);
        l.heartbeat(NodeId(2), TIMEOUT, &m);
        let due = l.due(TIMEOUT + 1, &m);
        assert_eq!(fenced(&due), vec![1]);
        m.apply(&due[0]).expect("fence");
        l.settled(NodeId(1));
        // It restarts: registering unfences it, before any heartbeat.
        m.apply(&Command::RegisterBroker(BrokerRegistration {
            node: NodeId(1),
            host: "127.0.0.1".into(),
            port: 9092,
            shards: 1,
            replication_ports: Vec::new(),
        }))
        .expect("register again");
        assert!(!m.brokers[&NodeId(1)].fenced);
        let t = TIMEOUT + 2;
        assert!(
            fenced(&l.due(t, &m)).is_empty(),
            "not fenced again for the silence before its restart"
        );
        l.heartbeat(NodeId(2), t + TIMEOUT, &m);
        assert_eq!(
            fenced(&l.due(t + TIMEOUT + 1, &m)),
            vec![1],
            "its new session times out like any other"
        );
    }

    #[test]
    fn a_new_leader_gives_every_broker_a_full_session() {
        let m = cluster(&[1, 2]);
        let mut l = Liveness::new(TIMEOUT);
        l.lead(0);
        l.heartbeat(NodeId(1), 0, &m);
        l.follow();
        assert!(!l.is_leading());
        // Leads again much later: nobody has heartbeated to it yet.
        l.lead(50_000);
        assert!(l.due(50_000 + TIMEOUT, &m).is_empty());
        assert_eq!(fenced(&l.due(50_001 + TIMEOUT, &m)), vec![1, 2]);
    }

    proptest! {
        /// Against a model: a broker is fenced at `now` exactly when it is
        /// registered, unfenced, has no command in flight, and neither a
        /// heartbeat nor the leadership's start lies within the timeout.
        #[test]
        fn fences_follow_the_model(
            steps in proptest::collection::vec((0u8..4, 1i32..4, 0u64..5_000), 1..80)
        ) {
            let mut m = cluster(&[1, 2, 3]);
            let mut l = Liveness::new(TIMEOUT);
            let mut now = 0u64;
            l.lead(now);
            let mut last: BTreeMap<i32, u64> = BTreeMap::new();
            let mut since = 0u64;
            for (kind, node, dt) in steps {
                now += dt;
                match kind {
                    0 => {
                        let cmd = l.heartbeat(NodeId(node), now, &m);
                        last.insert(node, now);
                        let was_fenced = m.brokers[&NodeId(node)].fenced;
                        prop_assert_eq!(cmd.is_some(), was_fenced);
                        if let Some(c) = cmd {
                            m.apply(&c).expect("unfence");
                            l.settled(NodeId(node));
                        }
                    }
                    1 | 2 => {
                        let due = l.due(now, &m);
                        for n in 1..4 {
                            let seen = last.get(&n).copied().unwrap_or(since).max(since);
                            let expect = !m.brokers[&NodeId(n)].fenced && now - seen > TIMEOUT;
                            prop_assert_eq!(fenced(&due).contains(&n), expect, "node {} at {}", n, now);
                        }
                        for c in &due {
                            m.apply(c).expect("fence");
                            if let Command::FenceBroker { node } = c {
                                l.settled(*node);
                            }
                        }
                    }
                    _ => {
                        l.lead(now);
                        since = now;
                        last.clear();
                    }
                }
            }
        }
    }
}
