//! Automatic preferred-leader election (Kafka's `auto.leader.rebalance.enable`):
//! which partitions to move back to their preferred replica.
//!
//! Placement spreads the first replica of each partition (its preferred
//! leader) evenly, but a failover moves leaderships away, and a broker that
//! returns only follows. Without a rebalance a rolling restart ends with
//! every leader on the node restarted first. The controller leader calls
//! [`preferred_elections`] every `leader_imbalance_check_interval_ms` and
//! writes the answer as one preferred [`Command::ElectLeaders`].
//!
//! The rule is Kafka's (ZooKeeper controller's
//! `checkAndTriggerAutoLeaderRebalance`): for each broker, the imbalance
//! ratio is the share of the partitions it prefers to lead that another
//! broker leads; when it exceeds `leader.imbalance.per.broker.percentage`,
//! those partitions get a preferred election, each only if the preferred
//! replica is live (unfenced) and in the ISR, so every election written
//! succeeds.
//!
//! [`Command::ElectLeaders`]: super::Command::ElectLeaders

use std::collections::BTreeMap;

use super::metadata::ClusterMetadata;
use crate::ids::NodeId;

/// Most partitions one check elects (Kafka's KRaft controller's
/// `maxElectionsPerImbalance`); the rest wait for the next check.
pub const MAX_ELECTIONS_PER_CHECK: usize = 1000;

/// A broker's preferred leaderships: how many, and which (topic,
/// partition index) another broker (or none) leads.
type Preferred<'a> = (usize, Vec<(&'a str, usize)>);

/// The partitions a rebalance check moves to their preferred leader, in
/// (topic, partition) order, at most [`MAX_ELECTIONS_PER_CHECK`]. A broker
/// whose imbalance is at most `imbalance_percentage` percent is left as it
/// is. Pure: the same metadata gives the same answer.
pub fn preferred_elections(
    metadata: &ClusterMetadata,
    imbalance_percentage: u32,
) -> Vec<(String, i32)> {
    // Per preferred leader: how many partitions it prefers, and which of
    // them another broker (or none) leads.
    let mut preferred: BTreeMap<NodeId, Preferred<'_>> = BTreeMap::new();
    for (name, topic) in &metadata.topics {
        for (index, p) in topic.partitions.iter().enumerate() {
            // Kafka leaves partitions being reassigned alone: their replica
            // list (and so the preferred replica) is about to change.
            if !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty() {
                continue;
            }
            let Some(first) = p.replicas.first() else {
                continue;
            };
            let entry = preferred.entry(first.node).or_default();
            entry.0 += 1;
            if p.leader != Some(first.node) {
                entry.1.push((name.as_str(), index));
            }
        }
    }
    let mut elections = Vec::new();
    for (node, (total, not_led)) in preferred {
        // ratio > percentage / 100, in integers.
        let imbalanced = not_led.len() * 100 > imbalance_percentage as usize * total;
        let live = metadata.brokers.get(&node).is_some_and(|b| !b.fenced);
        if !imbalanced || !live {
            continue;
        }
        for (name, index) in not_led {
            if metadata.topics[name].partitions[index].isr.contains(&node) {
                elections.push((name.to_string(), index as i32));
            }
        }
    }
    elections.sort();
    elections.truncate(MAX_ELECTIONS_PER_CHECK);
    elections
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::metadata::{
        BrokerRegistration, Command, ElectionType, Outcome, PartitionState,
    };
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

    /// Every replica back in the ISR of every partition (as followers that
    /// caught up would be), through the leader's AlterIsr.
    fn full_isr(m: &mut ClusterMetadata) {
        let all: Vec<(String, usize, PartitionState)> = m
            .topics
            .iter()
            .flat_map(|(n, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .map(move |(i, p)| (n.clone(), i, p.clone()))
            })
            .collect();
        for (name, i, p) in all {
            let Some(leader) = p.leader else { continue };
            let isr: Vec<NodeId> = p
                .replicas
                .iter()
                .map(|r| r.node)
                .filter(|n| p.isr.contains(n) || m.brokers.get(n).is_some_and(|b| !b.fenced))
                .collect();
            m.apply(&Command::AlterIsr {
                topic: name,
                partition: i as i32,
                leader,
                leader_epoch: p.leader_epoch,
                isr,
            })
            .expect("alter isr");
        }
    }

    fn preferred_led(m: &ClusterMetadata) -> bool {
        m.topics
            .values()
            .flat_map(|t| &t.partitions)
            .all(|p| p.leader == Some(p.replicas[0].node))
    }

    #[test]
    fn a_rolling_restart_is_rebalanced_once_every_broker_is_back_in_sync() {
        let mut m = ClusterMetadata::new();
        for n in 1..=3 {
            m.apply(&reg(n)).expect("register");
        }
        m.apply(&create("t", 6, 3)).expect("create");
        assert!(
            preferred_elections(&m, 10).is_empty(),
            "balanced at creation"
        );
        // Restart 1, 2, 3 in turn: each is fenced (its leaderships move),
        // returns, and catches up.
        for n in 1..=3 {
            m.apply(&Command::FenceBroker { node: NodeId(n) })
                .expect("fence");
            // Its partitions cannot go back while it is away.
            assert!(preferred_elections(&m, 10)
                .iter()
                .all(|(t, p)| m.topics[t].partitions[*p as usize].replicas[0].node != NodeId(n)));
            m.apply(&reg(n)).expect("register again");
            full_isr(&mut m);
        }
        assert!(!preferred_led(&m), "node 3 leads nothing after its restart");
        let elections = preferred_elections(&m, 10);
        assert!(!elections.is_empty());
        let out = m
            .apply(&Command::ElectLeaders {
                election: ElectionType::Preferred,
                partitions: Some(elections.clone()),
            })
            .expect("apply");
        let Outcome::LeadersElected { results } = &out else {
            panic!("{out:?}")
        };
        assert!(results.iter().all(|r| r.result.is_ok()), "{results:?}");
        assert!(preferred_led(&m));
        assert!(preferred_elections(&m, 10).is_empty());
    }

    #[test]
    fn a_broker_within_the_allowed_imbalance_is_left_alone() {
        let mut m = ClusterMetadata::new();
        for n in 1..=3 {
            m.apply(&reg(n)).expect("register");
        }
        // 30 partitions: 10 preferred per broker.
        m.apply(&create("t", 30, 3)).expect("create");
        let preferred_by_1: Vec<usize> = m.topics["t"]
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.replicas[0].node == NodeId(1))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(preferred_by_1.len(), 10);
        let move_away = |m: &mut ClusterMetadata, i: usize| {
            let p = &mut m.topics.get_mut("t").expect("topic").partitions[i];
            p.leader = Some(p.replicas[1].node);
            p.leader_epoch += 1;
            p.partition_epoch += 1;
        };
        // One of ten led elsewhere: 10% is not above 10%.
        move_away(&mut m, preferred_by_1[0]);
        assert_eq!(m.check_invariants(), Ok(()));
        assert!(preferred_elections(&m, 10).is_empty());
        assert_eq!(
            preferred_elections(&m, 9),
            vec![("t".to_string(), preferred_by_1[0] as i32)]
        );
        // Two of ten: 20% is, and both go back.
        move_away(&mut m, preferred_by_1[1]);
        assert_eq!(preferred_elections(&m, 10).len(), 2);
        assert!(preferred_elections(&m, 20).is_empty());
        assert!(preferred_elections(&m, 100).is_empty());
    }

    #[test]
    fn a_partition_being_reassigned_is_left_alone() {
        let mut m = ClusterMetadata::new();
        for n in 1..=3 {
            m.apply(&reg(n)).expect("register");
        }
        m.apply(&create("t", 3, 3)).expect("create");
        let p = &mut m.topics.get_mut("t").expect("topic").partitions[0];
        p.leader = Some(p.replicas[1].node);
        p.leader_epoch += 1;
        p.partition_epoch += 1;
        assert_eq!(preferred_elections(&m, 10), vec![("t".to_string(), 0)]);
        // The same partition in the middle of a move: its preferred replica
        // is about to change.
        let p = &mut m.topics.get_mut("t").expect("topic").partitions[0];
        p.removing_replicas = vec![p.replicas[0].node];
        assert!(preferred_elections(&m, 10).is_empty());
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        let node = 1..=4i32;
        prop_oneof![
            node.clone().prop_map(reg),
            node.clone()
                .prop_map(|n| Command::FenceBroker { node: NodeId(n) }),
            node.clone()
                .prop_map(|n| Command::UnfenceBroker { node: NodeId(n) }),
            (0..3u8, 1..8i32, 1..4i16).prop_map(|(t, p, rf)| create(&format!("t{t}"), p, rf)),
            (0..3u8, 0..8i32, node, 0..3i32).prop_map(|(t, p, n, e)| Command::AlterIsr {
                topic: format!("t{t}"),
                partition: p,
                leader: NodeId(n),
                leader_epoch: e,
                isr: vec![NodeId(n)],
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the metadata: every partition named has a live, in-sync
        /// preferred replica that does not lead yet, so its election
        /// succeeds; with 0% every such partition is named; electing them
        /// leaves nothing to do; 100% never names any.
        #[test]
        fn elections_named_succeed_and_converge(
            commands in proptest::collection::vec(arb_command(), 1..60),
            percentage in 0u32..=100,
            rejoin in any::<bool>(),
        ) {
            let mut m = ClusterMetadata::new();
            for cmd in &commands {
                let _ = m.apply(cmd);
            }
            if rejoin {
                full_isr(&mut m);
            }
            prop_assert!(preferred_elections(&m, 100).is_empty());
            let named = preferred_elections(&m, percentage);
            prop_assert_eq!(&named, &preferred_elections(&m, percentage), "deterministic");
            let eligible = |m: &ClusterMetadata, t: &str, i: usize| {
                let p = &m.topics[t].partitions[i];
                let pref = p.replicas[0].node;
                p.leader != Some(pref)
                    && p.isr.contains(&pref)
                    && m.brokers.get(&pref).is_some_and(|b| !b.fenced)
            };
            for (t, i) in &named {
                prop_assert!(eligible(&m, t, *i as usize), "{}-{} not eligible", t, i);
            }
            let all = preferred_elections(&m, 0);
            for (t, topic) in &m.topics {
                for i in 0..topic.partitions.len() {
                    prop_assert_eq!(
                        eligible(&m, t, i),
                        all.contains(&(t.clone(), i as i32)),
                        "{}-{}", t, i
                    );
                }
            }
            let out = m.apply(&Command::ElectLeaders {
                election: ElectionType::Preferred,
                partitions: Some(named.clone()),
            });
            let Ok(Outcome::LeadersElected { results }) = &out else {
                return Err(TestCaseError::fail(format!("{out:?}")));
            };
            prop_assert!(results.iter().all(|r| r.result.is_ok()), "{:?}", results);
            prop_assert_eq!(m.check_invariants(), Ok(()));
            prop_assert!(preferred_elections(&m, percentage).is_empty());
        }
    }
}
