//! Leader elections asked for by an operator or by the controller's
//! automatic rebalancing (Kafka's ElectLeaders, KIP-460), as part of the pure
//! state machine: [`Command::ElectLeaders`] is applied here.
//!
//! - **Preferred**: the first replica of the assignment leads again, if it is
//!   on a live broker and in the ISR. Nothing is lost: it has everything
//!   committed.
//! - **Unclean**: a partition without a leader (every ISR member fenced)
//!   takes any live replica as leader, which becomes the whole ISR. Records
//!   it lacks are gone: this trades acknowledged writes for availability,
//!   and only an operator asks for it (sluice never does it on its own).
//!
//! Every election bumps the leader epoch (and the partition epoch), so the
//! replicas take their new roles from the metadata as after a failover.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{ClusterMetadata, Outcome};
use crate::ids::NodeId;

/// Kafka's `ElectionType` (0 preferred, 1 unclean).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

/// Why one partition got no new leader; each is one Kafka error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionError {
    /// `UNKNOWN_TOPIC_OR_PARTITION`.
    UnknownTopicOrPartition,
    /// `ELECTION_NOT_NEEDED`: the preferred replica leads already (preferred),
    /// or the partition has a leader (unclean).
    ElectionNotNeeded,
    /// `PREFERRED_LEADER_NOT_AVAILABLE`: the preferred replica is fenced or
    /// out of the ISR.
    PreferredLeaderNotAvailable,
    /// `ELIGIBLE_LEADERS_NOT_AVAILABLE`: no replica is on a live broker.
    EligibleLeadersNotAvailable,
}

/// One partition's election: the new leader, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionResult {
    pub topic: String,
    pub partition: i32,
    pub result: Result<NodeId, ElectionError>,
}

impl ClusterMetadata {
    /// Elects leaders for `partitions`, or for every partition when `None`
    /// (then, as Kafka does, partitions that need no election are left out
    /// of the results). Never refused as a whole: each partition has its
    /// own result, and partitions that fail are unchanged.
    pub(super) fn elect_leaders(
        &mut self,
        election: ElectionType,
        partitions: Option<&[(String, i32)]>,
    ) -> Outcome {
        let live: BTreeSet<NodeId> = self.live_brokers().map(|b| b.registration.node).collect();
        let wanted: Vec<(String, i32)> = match partitions {
            Some(p) => p.to_vec(),
            None => self
                .topics
                .iter()
                .flat_map(|(name, t)| {
                    (0..t.partitions.len()).map(move |i| (name.clone(), i as i32))
                })
                .collect(),
        };
        let mut results = Vec::with_capacity(wanted.len());
        for (topic, partition) in wanted {
            let result = self.elect_one(&live, election, &topic, partition);
            if partitions.is_none() && result == Err(ElectionError::ElectionNotNeeded) {
                continue;
            }
            results.push(ElectionResult {
                topic,
                partition,
                result,
            });
        }
        Outcome::LeadersElected { results }
    }

    fn elect_one(
        &mut self,
        live: &BTreeSet<NodeId>,
        election: ElectionType,
        topic: &str,
        partition: i32,
    ) -> Result<NodeId, ElectionError> {
        let state = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(usize::try_from(partition).ok()?))
            .ok_or(ElectionError::UnknownTopicOrPartition)?;
        let leader = match election {
            ElectionType::Preferred => {
                let preferred = state
                    .replicas
                    .first()
                    .expect("a partition has replicas (invariant)")
                    .node;
                if state.leader == Some(preferred) {
                    return Err(ElectionError::ElectionNotNeeded);
                }
                if !live.contains(&preferred) || !state.isr.contains(&preferred) {
                    return Err(ElectionError::PreferredLeaderNotAvailable);
                }
                preferred
            }
            ElectionType::Unclean => {
                if state.leader.is_some() {
                    return Err(ElectionError::ElectionNotNeeded);
                }
                // A live ISR member would lead already (invariant); take one
                // first all the same, so nothing is lost when one exists.
                let nodes = || state.replicas.iter().map(|r| r.node);
                let chosen = nodes()
                    .find(|n| live.contains(n) && state.isr.contains(n))
                    .or_else(|| nodes().find(|n| live.contains(n)))
                    .ok_or(ElectionError::EligibleLeadersNotAvailable)?;
                if !state.isr.contains(&chosen) {
                    state.isr = vec![chosen];
                }
                chosen
            }
        };
        state.leader = Some(leader);
        state.leader_epoch += 1;
        state.partition_epoch += 1;
        Ok(leader)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::{BrokerRegistration, Command};
    use super::*;

    fn reg(node: i32) -> Command {
        Command::RegisterBroker(BrokerRegistration {
            node: NodeId(node),
            host: format!("127.0.0.{node}"),
            port: 9092,
            shards: 1,
            replication_ports: Vec::new(),
        })
    }

    fn create(name: &str, partitions: i32, rf: i16) -> Command {
        Command::CreateTopic {
            name: name.to_string(),
            topic_id: [partitions as u8; 16],
            partitions,
            replication_factor: rf,
            configs: BTreeMap::new(),
        }
    }

    fn elect(election: ElectionType, partitions: Option<&[(&str, i32)]>) -> Command {
        Command::ElectLeaders {
            election,
            partitions: partitions.map(|p| p.iter().map(|(t, i)| (t.to_string(), *i)).collect()),
        }
    }

    fn results(outcome: Outcome) -> Vec<(String, i32, Result<NodeId, ElectionError>)> {
        let Outcome::LeadersElected { results } = outcome else {
            panic!("not an election outcome");
        };
        results
            .into_iter()
            .map(|r| (r.topic, r.partition, r.result))
            .collect()
    }

    /// Three brokers, topic `t` with one partition of three replicas.
    fn three() -> ClusterMetadata {
        let mut m = ClusterMetadata::new();
        for n in 1..=3 {
            m.apply(&reg(n)).expect("register");
        }
        m.apply(&create("t", 1, 3)).expect("create");
        m
    }

    #[test]
    fn preferred_election_moves_leadership_back_once_the_preferred_replica_is_in_sync() {
        let mut m = three();
        let preferred = m.topics["t"].partitions[0].replicas[0].node;
        let p = Some(&[("t", 0)][..]);
        assert_eq!(
            results(m.apply(&elect(ElectionType::Preferred, p)).expect("apply")),
            vec![("t".into(), 0, Err(ElectionError::ElectionNotNeeded))]
        );
        // Fenced: it leaves the ISR and the leadership moves.
        m.apply(&Command::FenceBroker { node: preferred })
            .expect("fence");
        let before = m.clone();
        assert_eq!(
            results(m.apply(&elect(ElectionType::Preferred, p)).expect("apply")),
            vec![(
                "t".into(),
                0,
                Err(ElectionError::PreferredLeaderNotAvailable)
            )]
        );
        assert_eq!(m, before, "a failed election changes nothing");
        // Back, but not in the ISR yet: still not available.
        m.apply(&Command::UnfenceBroker { node: preferred })
            .expect("unfence");
        assert_eq!(
            results(m.apply(&elect(ElectionType::Preferred, p)).expect("apply")),
            vec![(
                "t".into(),
                0,
                Err(ElectionError::PreferredLeaderNotAvailable)
            )]
        );
        // In sync again: it leads, in a new epoch.
        let ps = m.topics["t"].partitions[0].clone();
        let leader = ps.leader.expect("a leader");
        m.apply(&Command::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader,
            leader_epoch: ps.leader_epoch,
            isr: ps.replicas.iter().map(|r| r.node).collect(),
        })
        .expect("rejoin the ISR");
        assert_eq!(
            results(
                m.apply(&elect(ElectionType::Preferred, None))
                    .expect("apply")
            ),
            vec![("t".into(), 0, Ok(preferred))]
        );
        let now = &m.topics["t"].partitions[0];
        assert_eq!(now.leader, Some(preferred));
        assert_eq!(now.leader_epoch, ps.leader_epoch + 1);
        assert!(now.partition_epoch > ps.partition_epoch);
        // Everything is balanced now: "all partitions" lists nothing.
        assert_eq!(
            results(
                m.apply(&elect(ElectionType::Preferred, None))
                    .expect("apply")
            ),
            vec![]
        );
        assert_eq!(m.check_invariants(), Ok(()));
    }

    #[test]
    fn unclean_election_takes_a_live_out_of_sync_replica_only_without_a_leader() {
        let mut m = three();
        let replicas: Vec<NodeId> = m.topics["t"].partitions[0]
            .replicas
            .iter()
            .map(|r| r.node)
            .collect();
        let p = Some(&[("t", 0)][..]);
        assert_eq!(
            results(m.apply(&elect(ElectionType::Unclean, p)).expect("apply")),
            vec![("t".into(), 0, Err(ElectionError::ElectionNotNeeded))]
        );
        // Fence all three in turn: the last one stays the ISR, leaderless.
        for n in &replicas {
            m.apply(&Command::FenceBroker { node: *n }).expect("fence");
        }
        assert_eq!(m.topics["t"].partitions[0].leader, None);
        assert_eq!(m.topics["t"].partitions[0].isr, vec![replicas[2]]);
        assert_eq!(
            results(m.apply(&elect(ElectionType::Unclean, p)).expect("apply")),
            vec![(
                "t".into(),
                0,
                Err(ElectionError::EligibleLeadersNotAvailable)
            )]
        );
        // An out-of-sync replica comes back: no clean leader, so it leads
        // only when asked for an unclean election.
        m.apply(&Command::UnfenceBroker { node: replicas[0] })
            .expect("unfence");
        assert_eq!(m.topics["t"].partitions[0].leader, None);
        let epoch = m.topics["t"].partitions[0].leader_epoch;
        assert_eq!(
            results(m.apply(&elect(ElectionType::Preferred, p)).expect("apply")),
            vec![(
                "t".into(),
                0,
                Err(ElectionError::PreferredLeaderNotAvailable)
            )]
        );
        assert_eq!(
            results(m.apply(&elect(ElectionType::Unclean, None)).expect("apply")),
            vec![("t".into(), 0, Ok(replicas[0]))]
        );
        let now = &m.topics["t"].partitions[0];
        assert_eq!(now.leader, Some(replicas[0]));
        assert_eq!(now.isr, vec![replicas[0]]);
        assert_eq!(now.leader_epoch, epoch + 1);
        assert_eq!(m.check_invariants(), Ok(()));
        // The old ISR member returns as a follower; the leader stays.
        m.apply(&Command::UnfenceBroker { node: replicas[2] })
            .expect("unfence");
        assert_eq!(m.topics["t"].partitions[0].leader, Some(replicas[0]));
    }

    #[test]
    fn unknown_partitions_have_their_own_result() {
        let mut m = three();
        assert_eq!(
            results(
                m.apply(&elect(
                    ElectionType::Preferred,
                    Some(&[("t", 1), ("u", 0), ("t", -1)])
                ))
                .expect("apply")
            ),
            vec![
                ("t".into(), 1, Err(ElectionError::UnknownTopicOrPartition)),
                ("u".into(), 0, Err(ElectionError::UnknownTopicOrPartition)),
                ("t".into(), -1, Err(ElectionError::UnknownTopicOrPartition)),
            ]
        );
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        let node = 1..=4i32;
        let election = prop_oneof![Just(ElectionType::Preferred), Just(ElectionType::Unclean)];
        prop_oneof![
            node.clone().prop_map(reg),
            node.clone()
                .prop_map(|n| Command::FenceBroker { node: NodeId(n) }),
            node.clone()
                .prop_map(|n| Command::UnfenceBroker { node: NodeId(n) }),
            (0..3u8, 1..6i32, 1..4i16).prop_map(|(t, p, rf)| create(&format!("t{t}"), p, rf)),
            (0..3u8, 0..6i32, node.clone()).prop_map(|(t, p, n)| Command::AlterIsr {
                topic: format!("t{t}"),
                partition: p,
                leader: NodeId(n),
                leader_epoch: 0,
                isr: (1..=n).map(NodeId).collect(),
            }),
            (
                election,
                proptest::option::of(proptest::collection::vec((0..3u8, 0..6i32), 0..4))
            )
                .prop_map(|(e, p)| Command::ElectLeaders {
                    election: e,
                    partitions: p
                        .map(|p| p.into_iter().map(|(t, i)| (format!("t{t}"), i)).collect()),
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Elections keep every invariant, are deterministic, only ever
        /// change the partitions they report as elected (bumping their
        /// leader epoch by one), and a preferred election leaves the
        /// preferred replica leading.
        #[test]
        fn elections_keep_invariants_and_change_only_what_they_report(
            commands in proptest::collection::vec(arb_command(), 1..60)
        ) {
            let mut m = ClusterMetadata::new();
            let mut replay = ClusterMetadata::new();
            for cmd in &commands {
                let before = m.clone();
                let result = m.apply(cmd);
                prop_assert_eq!(&replay.apply(cmd), &result);
                prop_assert_eq!(m.check_invariants(), Ok(()));
                let (Command::ElectLeaders { election, .. }, Ok(Outcome::LeadersElected { results })) =
                    (cmd, &result)
                else {
                    continue;
                };
                let elected: BTreeMap<(String, i32), NodeId> = results
                    .iter()
                    .filter_map(|r| Some(((r.topic.clone(), r.partition), r.result.ok()?)))
                    .collect();
                for (name, t) in &m.topics {
                    for (i, p) in t.partitions.iter().enumerate() {
                        let old = &before.topics[name].partitions[i];
                        match elected.get(&(name.clone(), i as i32)) {
                            Some(leader) => {
                                prop_assert_eq!(p.leader, Some(*leader));
                                prop_assert_eq!(p.leader_epoch, old.leader_epoch + 1);
                                if *election == ElectionType::Preferred {
                                    prop_assert_eq!(*leader, p.replicas[0].node);
                                    prop_assert_eq!(&p.isr, &old.isr);
                                }
                            }
                            None => prop_assert_eq!(p, old),
                        }
                    }
                }
            }
            prop_assert_eq!(m, replay);
        }
    }
}
