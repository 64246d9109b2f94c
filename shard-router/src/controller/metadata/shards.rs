//! Which shard of its node a replica lives on, changed after placement:
//! a move asked for (`MoveReplicaShard`, to cool a hot core) and a node
//! that registers again with fewer shards than its replicas were placed on.
//!
//! A node keeps its partition directories per node, not per shard, so a
//! replica changes shard without copying data: the old shard closes the log,
//! the new one opens it. What the metadata must get right is who notices.
//! Followers stream from the leader *shard's* replication port, so a leader
//! that changes shard does so in a new leader epoch (Kafka bumps it on every
//! leader change): followers handshake again with the new shard, and clients
//! holding the old epoch are fenced and refresh their metadata. A follower
//! that changes shard keeps the leader epoch: it subscribes again from its
//! new shard and the leader takes the newer stream.

use super::{ClusterMetadata, Loads, MetadataError, Outcome, PartitionState, Replica};
use crate::ids::{NodeId, ShardId};

impl ClusterMetadata {
    pub(super) fn move_replica_shard(
        &mut self,
        topic: &str,
        partition: i32,
        node: NodeId,
        shard: ShardId,
    ) -> Result<Outcome, MetadataError> {
        let shards = self
            .brokers
            .get(&node)
            .ok_or(MetadataError::UnknownBroker(node))?
            .registration
            .shards;
        let state = self.find_partition_mut(topic, partition)?;
        if state.replica_on(node).is_none() {
            return Err(MetadataError::NoReplicaOnNode {
                topic: topic.to_string(),
                partition,
                node,
            });
        }
        if shard.0 >= shards {
            return Err(MetadataError::UnknownShard {
                node,
                shard,
                shards,
            });
        }
        let moved = set_shard(state, node, shard);
        Ok(Outcome::ReplicaShardMoved {
            moved,
            leader_epoch: state.leader_epoch,
        })
    }

    /// `node` registered with `shards` shards: each of its replicas on a
    /// shard it no longer runs goes to its least loaded remaining shard.
    pub(super) fn replace_beyond_shards(&mut self, node: NodeId, shards: u16) {
        let mut loads = Loads::of(self);
        for state in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            let Some(r) = state.replica_on(node) else {
                continue;
            };
            if r.shard.0 < shards {
                continue;
            }
            let to = loads.pick_follower_shard(node, shards);
            set_shard(state, node, to.shard);
        }
    }
}

/// Puts `node`'s replica of `state` on `shard`; true if that changed it.
/// A leader's move starts a new leader epoch (its followers must connect to
/// the new shard); every move bumps the partition epoch.
fn set_shard(state: &mut PartitionState, node: NodeId, shard: ShardId) -> bool {
    let Some(r) = state.replicas.iter_mut().find(|r| r.node == node) else {
        return false;
    };
    if r.shard == shard {
        return false;
    }
    *r = Replica { node, shard };
    if state.leader == Some(node) {
        state.leader_epoch += 1;
    }
    state.partition_epoch += 1;
    true
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

    fn mv(topic: &str, partition: i32, node: i32, shard: u16) -> Command {
        Command::MoveReplicaShard {
            topic: topic.into(),
            partition,
            node: NodeId(node),
            shard: ShardId(shard),
        }
    }

    fn shard_of(m: &ClusterMetadata, topic: &str, partition: usize, node: i32) -> u16 {
        m.topics[topic].partitions[partition]
            .replica_on(NodeId(node))
            .expect("a replica")
            .shard
            .0
    }

    #[test]
    fn moving_the_leader_replica_starts_a_new_leader_epoch() {
        let mut m = cluster(&[(1, 2), (2, 2), (3, 2)]);
        create(&mut m, "t", 1, 3);
        let before = m.topics["t"].partitions[0].clone();
        let leader = before.leader.expect("a leader").0;
        let to = 1 - shard_of(&m, "t", 0, leader);

        let out = m.apply(&mv("t", 0, leader, to));
        assert_eq!(
            out,
            Ok(Outcome::ReplicaShardMoved {
                moved: true,
                leader_epoch: before.leader_epoch + 1
            })
        );
        let p = &m.topics["t"].partitions[0];
        assert_eq!(shard_of(&m, "t", 0, leader), to);
        assert_eq!(p.leader, before.leader, "the same node leads");
        assert_eq!(p.leader_epoch, before.leader_epoch + 1);
        assert_eq!(p.partition_epoch, before.partition_epoch + 1);
        assert_eq!(p.isr, before.isr);
        let nodes = |p: &PartitionState| p.replicas.iter().map(|r| r.node).collect::<Vec<_>>();
        assert_eq!(nodes(p), nodes(&before), "replica order kept");

        // Asked again (a forwarded write retried): nothing changes.
        let again = m.clone();
        assert_eq!(
            m.apply(&mv("t", 0, leader, to)),
            Ok(Outcome::ReplicaShardMoved {
                moved: false,
                leader_epoch: before.leader_epoch + 1
            })
        );
        assert_eq!(m, again);
    }

    #[test]
    fn moving_a_follower_replica_keeps_the_leader_epoch() {
        let mut m = cluster(&[(1, 2), (2, 2), (3, 2)]);
        create(&mut m, "t", 1, 3);
        let before = m.topics["t"].partitions[0].clone();
        let follower = before
            .replicas
            .iter()
            .map(|r| r.node)
            .find(|n| Some(*n) != before.leader)
            .expect("rf 3")
            .0;
        let to = 1 - shard_of(&m, "t", 0, follower);
        m.apply(&mv("t", 0, follower, to)).expect("move");
        let p = &m.topics["t"].partitions[0];
        assert_eq!(shard_of(&m, "t", 0, follower), to);
        assert_eq!(p.leader_epoch, before.leader_epoch);
        assert_eq!(p.partition_epoch, before.partition_epoch + 1);
    }

    #[test]
    fn a_shard_the_node_does_not_run_and_a_node_without_a_replica_are_refused() {
        let mut m = cluster(&[(1, 2), (2, 2), (3, 2), (4, 1)]);
        create(&mut m, "t", 1, 3);
        let holder = m.topics["t"].partitions[0].replicas[0].node.0;
        let outside = (1..=4)
            .find(|&n| m.topics["t"].partitions[0].replica_on(NodeId(n)).is_none())
            .expect("four nodes, three replicas");
        let before = m.clone();
        assert_eq!(
            m.apply(&mv("t", 0, holder, 2)),
            Err(MetadataError::UnknownShard {
                node: NodeId(holder),
                shard: ShardId(2),
                shards: 2
            })
        );
        assert_eq!(
            MetadataError::UnknownShard {
                node: NodeId(holder),
                shard: ShardId(2),
                shards: 2
            }
            .to_string(),
            format!("node {holder} runs 2 shard(s) (0 to 1); it has no shard 2")
        );
        assert!(matches!(
            m.apply(&mv("t", 0, outside, 0)),
            Err(MetadataError::NoReplicaOnNode { .. })
        ));
        assert!(matches!(
            m.apply(&mv("t", 0, 9, 0)),
            Err(MetadataError::UnknownBroker(_))
        ));
        assert!(matches!(
            m.apply(&mv("u", 0, holder, 0)),
            Err(MetadataError::UnknownTopic(_))
        ));
        assert!(matches!(
            m.apply(&mv("t", 1, holder, 0)),
            Err(MetadataError::UnknownPartition { .. })
        ));
        assert!(matches!(
            m.apply(&mv("t", -1, holder, 0)),
            Err(MetadataError::UnknownPartition { .. })
        ));
        assert_eq!(m, before, "refusals change nothing");
    }

    #[test]
    fn a_node_back_with_fewer_shards_gets_its_replicas_on_the_shards_it_has() {
        let mut m = cluster(&[(1, 4), (2, 2), (3, 2)]);
        create(&mut m, "t", 8, 3);
        let before = m.clone();
        let on_gone: Vec<usize> = (0..8).filter(|&p| shard_of(&m, "t", p, 1) >= 2).collect();
        assert!(!on_gone.is_empty(), "placement used shards 2 and 3");

        m.apply(&reg(1, 2)).expect("registers with 2 shards");
        assert_eq!(m.check_invariants(), Ok(()));
        let mut per_shard = [0usize; 2];
        for p in 0..8 {
            let shard = shard_of(&m, "t", p, 1);
            per_shard[usize::from(shard)] += 1;
            let (old, new) = (
                &before.topics["t"].partitions[p],
                &m.topics["t"].partitions[p],
            );
            if on_gone.contains(&p) {
                assert!(new.partition_epoch > old.partition_epoch);
                if old.leader == Some(NodeId(1)) {
                    assert!(new.leader_epoch > old.leader_epoch, "followers reconnect");
                }
            } else {
                assert_eq!(new.replicas, old.replicas, "replicas that fit stay put");
                assert_eq!(new.leader_epoch, old.leader_epoch);
            }
            assert_eq!(new.isr, old.isr, "the data stays on the node");
        }
        assert_eq!(per_shard, [4, 4], "balanced over the shards left");
        // One shard: everything on shard 0.
        m.apply(&reg(1, 1)).expect("registers with 1 shard");
        assert!((0..8).all(|p| shard_of(&m, "t", p, 1) == 0));
        // More shards again: nothing moves by itself.
        let one = m.clone();
        m.apply(&reg(1, 4)).expect("registers with 4 shards");
        assert_eq!(m.topics, one.topics);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Random shard moves and re-registrations with any shard count keep
        /// every invariant (each replica on a shard its node runs), the
        /// same replicas and ISR, and a new leader epoch whenever a leader
        /// replica changes shard.
        #[test]
        fn shard_moves_keep_the_invariants(
            steps in proptest::collection::vec((0..4i32, 1..=3i32, 0..4u16, any::<bool>()), 1..40)
        ) {
            let mut m = cluster(&[(1, 3), (2, 2), (3, 4)]);
            create(&mut m, "t", 4, 2);
            let mut replay = m.clone();
            for (partition, node, shard, register) in steps {
                let cmd = if register {
                    reg(node, shard + 1)
                } else {
                    mv("t", partition, node, shard)
                };
                let before = m.clone();
                let result = m.apply(&cmd);
                prop_assert_eq!(&replay.apply(&cmd), &result);
                prop_assert_eq!(m.check_invariants(), Ok(()));
                if result.is_err() {
                    prop_assert_eq!(&m, &before);
                    continue;
                }
                for (old, new) in before.topics["t"].partitions.iter().zip(&m.topics["t"].partitions) {
                    let nodes = |p: &PartitionState| p.replicas.iter().map(|r| r.node).collect::<Vec<_>>();
                    prop_assert_eq!(nodes(new), nodes(old));
                    prop_assert_eq!(&new.isr, &old.isr);
                    if let Some(l) = old.leader {
                        if old.replica_on(l) != new.replica_on(l) {
                            prop_assert!(new.leader_epoch > old.leader_epoch);
                        }
                    }
                    if new.replicas != old.replicas {
                        prop_assert!(new.partition_epoch > old.partition_epoch);
                    }
                }
            }
            prop_assert_eq!(m, replay);
        }
    }
}
