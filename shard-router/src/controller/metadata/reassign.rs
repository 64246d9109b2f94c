//! Partition reassignment with Kafka's KIP-455 semantics, as part of the
//! pure state machine.
//!
//! Reassigning a partition to the target replicas `R` first grows its
//! replica set to `R ∪ current` (target order first, then the replicas being
//! removed): the new ones (`adding_replicas`) get a shard on their node and
//! start as followers outside the ISR; the leader copies the log to them
//! and adds each to the ISR once it has caught up (an ordinary `AlterIsr`).
//! As soon as every target replica is in the ISR the controller completes
//! the reassignment in the same step: the replica set becomes `R`, the
//! removed replicas leave the ISR, and a leader outside `R` hands over to
//! an in-sync member of `R` in a new leader epoch. Cancelling puts back the
//! replicas as they were before the additions.

use std::collections::BTreeSet;

use super::{ClusterMetadata, Loads, MetadataError, Outcome, PartitionState, Replica};
use crate::ids::{NodeId, ShardId};

impl ClusterMetadata {
    pub(super) fn alter_reassignment(
        &mut self,
        topic: &str,
        partition: i32,
        target: Option<&[NodeId]>,
    ) -> Result<Outcome, MetadataError> {
        let state = self.find_partition(topic, partition)?;
        let changed = match target {
            Some(target) => self.start(state, target)?,
            None => self.revert(state, topic, partition)?,
        };
        let state = self.partition_mut(topic, partition);
        *state = changed;
        self.elect_if_needed(topic, partition);
        self.complete_reassignment(topic, partition);
        let in_progress = is_reassigning(self.partition_mut(topic, partition));
        Ok(Outcome::ReassignmentAltered { in_progress })
    }

    /// After a committed ISR change: the reassignment completes once every
    /// target replica is in sync.
    pub(super) fn after_isr_change(
        &mut self,
        topic: &str,
        partition: i32,
        outcome: Outcome,
    ) -> Outcome {
        if !self.complete_reassignment(topic, partition) {
            return outcome;
        }
        Outcome::IsrAltered {
            partition_epoch: self.partition_mut(topic, partition).partition_epoch,
        }
    }

    /// The partition with its replica set grown to `target ∪ current`.
    fn start(
        &self,
        state: &PartitionState,
        target: &[NodeId],
    ) -> Result<PartitionState, MetadataError> {
        let invalid = |why: String| Err(MetadataError::InvalidReplicaAssignment(why));
        if target.is_empty() {
            return invalid("no replicas given".into());
        }
        let unique: BTreeSet<NodeId> = target.iter().copied().collect();
        if unique.len() != target.len() {
            return invalid(format!("{target:?} names a broker twice"));
        }
        let mut loads = Loads::of(self);
        let mut replicas = Vec::with_capacity(target.len() + state.replicas.len());
        let mut adding = Vec::new();
        for &node in target {
            if let Some(r) = state.replica_on(node) {
                replicas.push(r);
                continue;
            }
            let Some(broker) = self.brokers.get(&node) else {
                return invalid(format!("broker {} is not registered", node.0));
            };
            if broker.fenced {
                return invalid(format!("broker {} is fenced", node.0));
            }
            let r = loads.pick_follower_shard(node, broker.registration.shards);
            replicas.push(r);
            adding.push(node);
        }
        let removing: Vec<NodeId> = state
            .replicas
            .iter()
            .map(|r| r.node)
            .filter(|n| !unique.contains(n))
            .collect();
        replicas.extend(
            state
                .replicas
                .iter()
                .copied()
                .filter(|r| removing.contains(&r.node)),
        );
        let mut next = state.clone();
        next.replicas = replicas;
        next.adding_replicas = adding;
        next.removing_replicas = removing;
        if next != *state {
            next.partition_epoch += 1;
        }
        Ok(next)
    }

    /// The partition as it was before the reassignment added replicas.
    fn revert(
        &self,
        state: &PartitionState,
        topic: &str,
        partition: i32,
    ) -> Result<PartitionState, MetadataError> {
        if !is_reassigning(state) {
            return Err(MetadataError::NoReassignmentInProgress {
                topic: topic.to_string(),
                partition,
            });
        }
        let mut next = state.clone();
        next.replicas
            .retain(|r| !state.adding_replicas.contains(&r.node));
        next.isr = in_replica_order(&next.replicas, &state.isr);
        if next.isr.is_empty() {
            return Err(MetadataError::InvalidReplicaAssignment(format!(
                "cancelling would leave no in-sync replica: only {:?}, being added, are in sync",
                state.isr
            )));
        }
        next.adding_replicas.clear();
        next.removing_replicas.clear();
        next.partition_epoch += 1;
        Ok(next)
    }

    /// Completes the partition's reassignment if every target replica is in
    /// the ISR; true if it did.
    fn complete_reassignment(&mut self, topic: &str, partition: i32) -> bool {
        let state = self.partition_mut(topic, partition);
        if !is_reassigning(state) {
            return false;
        }
        let removing = std::mem::take(&mut state.removing_replicas);
        let target: Vec<Replica> = state
            .replicas
            .iter()
            .copied()
            .filter(|r| !removing.contains(&r.node))
            .collect();
        if !target.iter().all(|r| state.isr.contains(&r.node)) {
            state.removing_replicas = removing;
            return false;
        }
        state.replicas = target;
        state.adding_replicas.clear();
        state.isr = in_replica_order(&state.replicas, &state.isr);
        state.partition_epoch += 1;
        self.elect_if_needed(topic, partition);
        true
    }

    /// A leader outside the ISR (or none while a live ISR member exists)
    /// gives way to the first live in-sync replica, in a new leader epoch.
    fn elect_if_needed(&mut self, topic: &str, partition: i32) {
        let live: BTreeSet<NodeId> = self.live_brokers().map(|b| b.registration.node).collect();
        let state = self.partition_mut(topic, partition);
        if state.leader.is_some_and(|l| state.isr.contains(&l)) {
            return;
        }
        let leader = state
            .replicas
            .iter()
            .map(|r| r.node)
            .find(|n| state.isr.contains(n) && live.contains(n));
        if leader != state.leader {
            state.leader = leader;
            state.leader_epoch += 1;
            state.partition_epoch += 1;
        }
    }

    fn partition_mut(&mut self, topic: &str, partition: i32) -> &mut PartitionState {
        self.topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(usize::try_from(partition).ok()?))
            .expect("the caller checked the partition exists")
    }
}

/// The members of `isr` among `replicas`, in replica order (as every ISR
/// is kept, so it reads the same on every node).
fn in_replica_order(replicas: &[Replica], isr: &[NodeId]) -> Vec<NodeId> {
    replicas
        .iter()
        .map(|r| r.node)
        .filter(|n| isr.contains(n))
        .collect()
}

fn is_reassigning(state: &PartitionState) -> bool {
    !state.adding_replicas.is_empty() || !state.removing_replicas.is_empty()
}

/// The reassignment invariants of one partition.
pub(super) fn check(p: &PartitionState) -> Result<(), String> {
    let nodes: BTreeSet<NodeId> = p.replicas.iter().map(|r| r.node).collect();
    for n in p.adding_replicas.iter().chain(&p.removing_replicas) {
        if !nodes.contains(n) {
            return Err(format!("reassigned {n} is not a replica"));
        }
    }
    if p.adding_replicas
        .iter()
        .any(|n| p.removing_replicas.contains(n))
    {
        return Err("a replica both added and removed".into());
    }
    if p.removing_replicas.len() >= p.replicas.len() {
        return Err("a reassignment removes every replica".into());
    }
    Ok(())
}

impl Loads {
    /// The shard of `node` with the fewest replicas, for a new follower.
    pub(super) fn pick_follower_shard(&mut self, node: NodeId, shards: u16) -> Replica {
        let replica = (0..shards)
            .map(|s| Replica {
                node,
                shard: ShardId(s),
            })
            .min_by_key(|r| (self.shard_replicas.get(r).copied().unwrap_or(0), r.shard))
            .expect("a registered broker has at least one shard");
        self.count(replica, false);
        replica
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::Command;
    use super::*;

    use super::super::tests::{cluster, reg};

    fn create(m: &mut ClusterMetadata, name: &str, partitions: i32, rf: i16) {
        let command = super::super::tests::create(name, partitions, rf);
        m.apply(&command).expect("create");
    }

    fn reassign(topic: &str, partition: i32, nodes: Option<&[i32]>) -> Command {
        Command::AlterReassignment {
            topic: topic.into(),
            partition,
            replicas: nodes.map(|n| n.iter().copied().map(NodeId).collect()),
        }
    }

    fn nodes(p: &PartitionState) -> Vec<i32> {
        p.replicas.iter().map(|r| r.node.0).collect()
    }

    fn ids(v: &[NodeId]) -> Vec<i32> {
        v.iter().map(|n| n.0).collect()
    }

    /// The leader adds `node` to the ISR (it caught up).
    fn caught_up(m: &ClusterMetadata, topic: &str, partition: i32, node: i32) -> Command {
        let p = &m.topics[topic].partitions[partition as usize];
        let mut isr = p.isr.clone();
        isr.push(NodeId(node));
        Command::AlterIsr {
            topic: topic.into(),
            partition,
            leader: p.leader.expect("a leader"),
            leader_epoch: p.leader_epoch,
            isr,
        }
    }

    /// Three nodes and topic `t` of one partition with replication factor
    /// 2: the metadata, the partition as created, its leader, its follower
    /// and the node without a replica.
    fn rf2_on_three() -> (ClusterMetadata, PartitionState, i32, i32, i32) {
        let mut m = cluster(&[(1, 1), (2, 1), (3, 1)]);
        create(&mut m, "t", 1, 2);
        let before = m.topics["t"].partitions[0].clone();
        let leader = before.leader.expect("leader").0;
        let follower = nodes(&before)
            .into_iter()
            .find(|&n| n != leader)
            .expect("rf 2");
        let spare = (1..=3)
            .find(|n| !nodes(&before).contains(n))
            .expect("a spare node");
        (m, before, leader, follower, spare)
    }

    #[test]
    fn a_follower_moves_once_its_replacement_is_in_sync() {
        let (mut m, before, leader, follower, spare) = rf2_on_three();

        let out = m.apply(&reassign("t", 0, Some(&[leader, spare])));
        assert_eq!(out, Ok(Outcome::ReassignmentAltered { in_progress: true }));
        let p = m.topics["t"].partitions[0].clone();
        assert_eq!(nodes(&p), vec![leader, spare, follower]);
        assert_eq!(ids(&p.adding_replicas), vec![spare]);
        assert_eq!(ids(&p.removing_replicas), vec![follower]);
        assert_eq!(p.isr, before.isr, "the new replica is not in sync yet");
        assert_eq!(p.leader, before.leader);
        assert_eq!(p.leader_epoch, before.leader_epoch);
        assert!(p.partition_epoch > before.partition_epoch);

        // The leader's ISR expansion completes it.
        m.apply(&caught_up(&m, "t", 0, spare)).expect("expand");
        let p = m.topics["t"].partitions[0].clone();
        assert_eq!(nodes(&p), vec![leader, spare]);
        assert_eq!(ids(&p.isr), vec![leader, spare]);
        assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
        assert_eq!(p.leader_epoch, before.leader_epoch, "the leader stays");
        assert_eq!(m.check_invariants(), Ok(()));
    }

    #[test]
    fn a_removed_leader_hands_over_to_an_in_sync_target_replica_in_a_new_epoch() {
        let (mut m, before, leader, follower, spare) = rf2_on_three();

        m.apply(&reassign("t", 0, Some(&[spare, follower])))
            .expect("start");
        assert_eq!(m.topics["t"].partitions[0].leader, before.leader);
        m.apply(&caught_up(&m, "t", 0, spare)).expect("expand");
        let p = m.topics["t"].partitions[0].clone();
        assert_eq!(nodes(&p), vec![spare, follower]);
        assert_eq!(
            p.leader,
            Some(NodeId(spare)),
            "the first in-sync target replica"
        );
        assert_eq!(p.leader_epoch, before.leader_epoch + 1);
        assert!(!p.isr.contains(&NodeId(leader)));
    }

    #[test]
    fn cancelling_puts_the_replicas_back_and_needs_a_reassignment() {
        let mut m = cluster(&[(1, 1), (2, 1), (3, 1), (4, 1)]);
        create(&mut m, "t", 1, 2);
        let before = m.topics["t"].partitions[0].clone();
        let spares: Vec<i32> = (1..=4).filter(|n| !nodes(&before).contains(n)).collect();
        assert_eq!(
            m.apply(&reassign("t", 0, None)),
            Err(MetadataError::NoReassignmentInProgress {
                topic: "t".into(),
                partition: 0
            })
        );
        m.apply(&reassign("t", 0, Some(&spares))).expect("start");
        // One of the two new replicas catches up; cancelling drops both.
        m.apply(&caught_up(&m, "t", 0, spares[0])).expect("expand");
        assert_eq!(
            m.apply(&reassign("t", 0, None)),
            Ok(Outcome::ReassignmentAltered { in_progress: false })
        );
        let p = m.topics["t"].partitions[0].clone();
        assert_eq!(p.replicas, before.replicas);
        assert_eq!(p.isr, before.isr);
        assert_eq!(p.leader, before.leader);
        assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
    }

    #[test]
    fn a_target_already_in_sync_completes_at_once() {
        let mut m = cluster(&[(1, 1), (2, 1), (3, 1)]);
        create(&mut m, "t", 1, 3);
        let out = m.apply(&reassign("t", 0, Some(&[3, 2])));
        assert_eq!(out, Ok(Outcome::ReassignmentAltered { in_progress: false }));
        let p = &m.topics["t"].partitions[0];
        assert_eq!(nodes(p), vec![3, 2]);
        assert_eq!(ids(&p.isr), vec![3, 2]);
        assert!(p.leader.is_some_and(|l| l.0 == 2 || l.0 == 3));
    }

    #[test]
    fn invalid_reassignments_are_refused_without_change() {
        let mut m = cluster(&[(1, 1), (2, 1), (3, 1), (4, 1)]);
        create(&mut m, "t", 2, 2);
        m.apply(&Command::FenceBroker { node: NodeId(4) })
            .expect("fence");
        let before = m.clone();
        let bad = [
            (reassign("u", 0, Some(&[1])), "unknown topic"),
            (reassign("t", 2, Some(&[1])), "unknown partition"),
            (reassign("t", -1, Some(&[1])), "negative partition"),
            (reassign("t", 0, Some(&[])), "no replicas"),
            (reassign("t", 0, Some(&[1, 2, 1])), "duplicate"),
            (reassign("t", 0, Some(&[1, 9])), "unknown broker"),
        ];
        for (command, why) in bad {
            assert!(m.apply(&command).is_err(), "{why}");
            assert_eq!(m, before, "{why}");
        }
        let holds_4 = nodes(&m.topics["t"].partitions[0]).contains(&4);
        if !holds_4 {
            assert!(
                matches!(
                    m.apply(&reassign("t", 0, Some(&[1, 4]))),
                    Err(MetadataError::InvalidReplicaAssignment(_))
                ),
                "a fenced broker takes no new replica"
            );
        }
    }

    #[test]
    fn a_new_replica_goes_to_the_least_loaded_shard_of_its_node() {
        let mut m = cluster(&[(1, 1), (2, 1)]);
        create(&mut m, "t", 2, 2);
        m.apply(&reg(3, 2)).expect("register");
        create(&mut m, "u", 1, 1);
        // Node 3 may hold "u" on shard 0; the new replica goes elsewhere.
        let on3: Vec<ShardId> = m
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.replica_on(NodeId(3)))
            .map(|r| r.shard)
            .collect();
        m.apply(&reassign("t", 0, Some(&[1, 3]))).expect("start");
        let shard = m.topics["t"].partitions[0]
            .replica_on(NodeId(3))
            .expect("placed")
            .shard;
        if on3 == vec![ShardId(0)] {
            assert_eq!(shard, ShardId(1));
        }
        m.apply(&reassign("t", 1, Some(&[2, 3]))).expect("start");
        let shards: BTreeSet<ShardId> = m
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.replica_on(NodeId(3)))
            .map(|r| r.shard)
            .collect();
        assert_eq!(shards.len(), 2, "both shards of node 3 used");
    }

    #[test]
    fn reassignment_state_round_trips_through_json_and_old_state_still_reads() {
        let mut m = cluster(&[(1, 1), (2, 1), (3, 1)]);
        create(&mut m, "t", 1, 2);
        let spare = (1..=3)
            .find(|n| !nodes(&m.topics["t"].partitions[0]).contains(n))
            .expect("spare");
        m.apply(&reassign("t", 0, Some(&[spare]))).expect("start");
        let bytes = serde_json::to_vec(&m).expect("encode");
        let back: ClusterMetadata = serde_json::from_slice(&bytes).expect("decode");
        assert_eq!(back, m);
        m.apply(&reassign("t", 0, None)).expect("cancel");
        let json = serde_json::to_string(&m).expect("encode");
        assert!(!json.contains("adding_replicas"), "{json}");
    }

    /// A step of the random walk: abstract, turned into a command against
    /// the state at the time so that ISR changes come from the real leader.
    #[derive(Clone, Debug)]
    enum Step {
        Reassign(i32, Option<Vec<i32>>),
        CatchUp(i32, usize),
        Fence(i32),
        Unfence(i32),
        Register(i32),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            2 => (0..3i32, proptest::option::weighted(0.85, proptest::collection::vec(1..=6i32, 0..5)))
                .prop_map(|(p, r)| Step::Reassign(p, r)),
            3 => (0..3i32, 0..6usize).prop_map(|(p, i)| Step::CatchUp(p, i)),
            1 => (1..=6i32).prop_map(Step::Fence),
            1 => (1..=6i32).prop_map(Step::Unfence),
            1 => (1..=6i32).prop_map(Step::Register),
        ]
    }

    fn command(m: &ClusterMetadata, step: &Step) -> Command {
        match step {
            Step::Reassign(p, r) => reassign("t", *p, r.as_deref()),
            Step::CatchUp(p, i) => {
                let ps = &m.topics["t"].partitions[*p as usize];
                let outside: Vec<NodeId> = ps
                    .replicas
                    .iter()
                    .map(|r| r.node)
                    .filter(|n| !ps.isr.contains(n))
                    .collect();
                let mut isr = ps.isr.clone();
                if let Some(n) = outside.get(i % outside.len().max(1)) {
                    isr.push(*n);
                }
                Command::AlterIsr {
                    topic: "t".into(),
                    partition: *p,
                    leader: ps.leader.unwrap_or(NodeId(-1)),
                    leader_epoch: ps.leader_epoch,
                    isr,
                }
            }
            Step::Fence(n) => Command::FenceBroker { node: NodeId(*n) },
            Step::Unfence(n) => Command::UnfenceBroker { node: NodeId(*n) },
            Step::Register(n) => reg(*n, 2),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random reassignments, cancels, catch-ups and fencing keep every
        /// invariant; refusals change nothing; epochs never go back; a
        /// completed reassignment leaves exactly the target replicas; and
        /// replay gives the same state.
        #[test]
        fn reassignments_keep_the_invariants(steps in proptest::collection::vec(arb_step(), 1..60)) {
            let mut m = cluster(&[(1, 1), (2, 2), (3, 1), (4, 1)]);
            create(&mut m, "t", 3, 2);
            let mut replay = m.clone();
            for step in &steps {
                let cmd = command(&m, step);
                let before = m.clone();
                let result = m.apply(&cmd);
                prop_assert_eq!(&replay.apply(&cmd), &result);
                prop_assert_eq!(m.check_invariants(), Ok(()));
                if result.is_err() {
                    prop_assert_eq!(&m, &before);
                    continue;
                }
                for (old, new) in before.topics["t"].partitions.iter().zip(&m.topics["t"].partitions) {
                    prop_assert!(new.leader_epoch >= old.leader_epoch);
                    prop_assert!(new.partition_epoch >= old.partition_epoch);
                    if new.leader != old.leader {
                        prop_assert!(new.leader_epoch > old.leader_epoch);
                    }
                    if new.replicas != old.replicas {
                        prop_assert!(new.partition_epoch > old.partition_epoch);
                    }
                }
                if let (Command::AlterReassignment { partition, replicas: Some(target), .. }, Ok(Outcome::ReassignmentAltered { in_progress: false })) = (&cmd, &result) {
                    let p = &m.topics["t"].partitions[*partition as usize];
                    let got: Vec<NodeId> = p.replicas.iter().map(|r| r.node).collect();
                    prop_assert_eq!(&got, target);
                }
            }
            prop_assert_eq!(m, replay);
        }
    }
}
