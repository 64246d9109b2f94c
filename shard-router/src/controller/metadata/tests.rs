//! Harness-style tests of the metadata state machine: commands in, state
//! out, no sockets and no clocks. `reg`, `create` and `cluster` serve the
//! tests of the submodules too.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

pub(super) fn reg(node: i32, shards: u16) -> Command {
    Command::RegisterBroker(BrokerRegistration {
        node: NodeId(node),
        host: format!("127.0.0.{node}"),
        port: 9092,
        shards,
        replication_ports: Vec::new(),
    })
}

pub(super) fn create(name: &str, partitions: i32, rf: i16) -> Command {
    Command::CreateTopic {
        name: name.to_string(),
        topic_id: [partitions as u8; 16],
        partitions,
        replication_factor: rf,
        configs: BTreeMap::new(),
    }
}

pub(super) fn cluster(nodes: &[(i32, u16)]) -> ClusterMetadata {
    let mut m = ClusterMetadata::new();
    for &(n, s) in nodes {
        m.apply(&reg(n, s)).expect("register");
    }
    m
}

fn spread(counts: impl Iterator<Item = usize>) -> usize {
    let v: Vec<usize> = counts.collect();
    v.iter().max().copied().unwrap_or(0) - v.iter().min().copied().unwrap_or(0)
}

#[test]
fn create_topic_places_replicas_on_distinct_nodes_with_full_isr() {
    let mut m = cluster(&[(1, 2), (2, 2), (3, 2)]);
    let out = m.apply(&create("orders", 6, 3)).expect("create");
    assert_eq!(out, Outcome::TopicCreated { topic_id: [6; 16] });
    let t = &m.topics["orders"];
    assert_eq!(t.partitions.len(), 6);
    for p in &t.partitions {
        assert_eq!(p.replicas.len(), 3);
        assert_eq!(p.leader, Some(p.replicas[0].node));
        assert_eq!(p.isr.len(), 3);
        assert_eq!(p.leader_epoch, 0);
        assert!(m.offline_replicas(p).is_empty());
    }
    // Two leaders per node, one per shard.
    for node in 1..=3 {
        let led: Vec<&Replica> = t
            .partitions
            .iter()
            .map(|p| &p.replicas[0])
            .filter(|r| r.node == NodeId(node))
            .collect();
        assert_eq!(led.len(), 2, "node {node}");
        assert_ne!(led[0].shard, led[1].shard, "node {node}");
    }
}

#[test]
fn replication_factor_beyond_live_brokers_is_refused() {
    let mut m = cluster(&[(1, 1), (2, 1)]);
    assert_eq!(
        m.apply(&create("t", 1, 3)),
        Err(MetadataError::InvalidReplicationFactor {
            requested: 3,
            available: 2
        })
    );
    assert_eq!(
        m.apply(&create("t", 1, 0)),
        Err(MetadataError::InvalidReplicationFactor {
            requested: 0,
            available: 2
        })
    );
    m.apply(&Command::FenceBroker { node: NodeId(2) })
        .expect("fence");
    assert!(matches!(
        m.apply(&create("t", 1, 2)),
        Err(MetadataError::InvalidReplicationFactor { available: 1, .. })
    ));
    assert!(m.topics.is_empty());
}

#[test]
fn bad_topic_requests_are_refused_without_change() {
    let mut m = cluster(&[(1, 1)]);
    let before = m.clone();
    for (cmd, want) in [
        (
            create("", 1, 1),
            MetadataError::InvalidTopicName(String::new()),
        ),
        (
            create("a/b", 1, 1),
            MetadataError::InvalidTopicName("a/b".into()),
        ),
        (
            create("t", 0, 1),
            MetadataError::InvalidPartitions {
                requested: 0,
                max: MAX_PARTITIONS_PER_TOPIC,
            },
        ),
        (
            create("t", MAX_PARTITIONS_PER_TOPIC + 1, 1),
            MetadataError::InvalidPartitions {
                requested: MAX_PARTITIONS_PER_TOPIC + 1,
                max: MAX_PARTITIONS_PER_TOPIC,
            },
        ),
        (
            Command::DeleteTopic { name: "t".into() },
            MetadataError::UnknownTopic("t".into()),
        ),
        (
            Command::FenceBroker { node: NodeId(9) },
            MetadataError::UnknownBroker(NodeId(9)),
        ),
    ] {
        assert_eq!(m.apply(&cmd), Err(want));
        assert_eq!(m, before);
    }
    m.apply(&create("t", MAX_PARTITIONS_PER_TOPIC, 1))
        .expect("the limit itself is allowed");
    assert_eq!(
        m.apply(&create("t", 1, 1)),
        Err(MetadataError::TopicExists("t".into()))
    );
}

#[test]
fn fencing_moves_leadership_to_an_in_sync_replica_and_bumps_epochs() {
    let mut m = cluster(&[(1, 1), (2, 1), (3, 1)]);
    m.apply(&create("t", 3, 3)).expect("create");
    let led_by_1: Vec<usize> = (0..3)
        .filter(|&i| m.topics["t"].partitions[i].leader == Some(NodeId(1)))
        .collect();
    assert_eq!(led_by_1.len(), 1);
    let out = m
        .apply(&Command::FenceBroker { node: NodeId(1) })
        .expect("fence");
    assert_eq!(
        out,
        Outcome::BrokerFenced {
            leaderships_moved: 1
        }
    );
    for (i, p) in m.topics["t"].partitions.iter().enumerate() {
        assert!(!p.isr.contains(&NodeId(1)));
        assert_ne!(p.leader, Some(NodeId(1)));
        assert!(p.leader.is_some());
        assert_eq!(m.offline_replicas(p), vec![NodeId(1)]);
        let moved = led_by_1.contains(&i);
        assert_eq!(p.leader_epoch, i32::from(moved), "partition {i}");
        assert_eq!(p.partition_epoch, 1, "partition {i}");
    }
}

#[test]
fn last_in_sync_replica_keeps_its_place_and_takes_leadership_back() {
    let mut m = cluster(&[(1, 1), (2, 1)]);
    m.apply(&create("t", 1, 2)).expect("create");
    let first = m.topics["t"].partitions[0].leader.expect("leader");
    let second = if first == NodeId(1) {
        NodeId(2)
    } else {
        NodeId(1)
    };
    m.apply(&Command::FenceBroker { node: second })
        .expect("fence");
    assert_eq!(m.topics["t"].partitions[0].isr, vec![first]);
    m.apply(&Command::FenceBroker { node: first })
        .expect("fence");
    let p = &m.topics["t"].partitions[0];
    assert_eq!(p.leader, None, "no unclean election");
    assert_eq!(p.leader_id(), NO_LEADER);
    assert_eq!(p.isr, vec![first]);
    assert_eq!(p.leader_epoch, 1);
    // The out-of-sync replica returning does not lead.
    m.apply(&Command::UnfenceBroker { node: second })
        .expect("unfence");
    assert_eq!(m.topics["t"].partitions[0].leader, None);
    let out = m
        .apply(&Command::UnfenceBroker { node: first })
        .expect("unfence");
    assert_eq!(
        out,
        Outcome::BrokerUnfenced {
            leaderships_taken: 1
        }
    );
    let p = &m.topics["t"].partitions[0];
    assert_eq!(p.leader, Some(first));
    assert_eq!(p.leader_epoch, 2);
}

#[test]
fn alter_isr_checks_leader_epoch_and_membership() {
    let mut m = cluster(&[(1, 1), (2, 1), (3, 1)]);
    m.apply(&create("t", 1, 3)).expect("create");
    let p = m.topics["t"].partitions[0].clone();
    let leader = p.leader.expect("leader");
    let follower = p
        .isr
        .iter()
        .copied()
        .find(|n| *n != leader)
        .expect("follower");
    let shrink = |leader, epoch, isr: Vec<NodeId>| Command::AlterIsr {
        topic: "t".into(),
        partition: 0,
        leader,
        leader_epoch: epoch,
        isr,
    };
    assert_eq!(
        m.apply(&shrink(follower, 0, vec![follower])),
        Err(MetadataError::NotLeader {
            given: follower,
            leader: Some(leader)
        })
    );
    assert_eq!(
        m.apply(&shrink(leader, 7, vec![leader])),
        Err(MetadataError::StaleLeaderEpoch {
            given: 7,
            current: 0
        })
    );
    assert!(matches!(
        m.apply(&shrink(leader, 0, vec![follower])),
        Err(MetadataError::InvalidIsr(_))
    ));
    assert!(matches!(
        m.apply(&shrink(leader, 0, vec![leader, NodeId(42)])),
        Err(MetadataError::InvalidIsr(_))
    ));
    assert!(matches!(
        m.apply(&shrink(leader, 0, vec![leader, leader])),
        Err(MetadataError::InvalidIsr(_))
    ));
    assert!(matches!(
        m.apply(&Command::AlterIsr {
            topic: "t".into(),
            partition: -1,
            leader,
            leader_epoch: 0,
            isr: vec![leader]
        }),
        Err(MetadataError::UnknownPartition { .. })
    ));
    assert_eq!(
        m.apply(&shrink(leader, 0, vec![leader])),
        Ok(Outcome::IsrAltered { partition_epoch: 1 })
    );
    // A fenced replica may not come back into the ISR.
    m.apply(&Command::FenceBroker { node: follower })
        .expect("fence");
    assert!(matches!(
        m.apply(&shrink(leader, 0, vec![leader, follower])),
        Err(MetadataError::InvalidIsr(_))
    ));
    m.apply(&Command::UnfenceBroker { node: follower })
        .expect("unfence");
    m.apply(&shrink(leader, 0, vec![follower, leader]))
        .expect("expand");
    let isr = &m.topics["t"].partitions[0].isr;
    let in_replica_order: Vec<NodeId> = p
        .replicas
        .iter()
        .map(|r| r.node)
        .filter(|n| *n == leader || *n == follower)
        .collect();
    assert_eq!(isr, &in_replica_order);
}

#[test]
fn reregistering_with_fewer_shards_than_placed_moves_replicas_onto_the_shards_left() {
    let mut m = cluster(&[(1, 4)]);
    m.apply(&create("t", 4, 1)).expect("create");
    assert_eq!(
        m.apply(&reg(1, 2)),
        Ok(Outcome::BrokerRegistered { broker_epoch: 2 })
    );
    let shards: Vec<u16> = m.topics["t"]
        .partitions
        .iter()
        .map(|p| p.replicas[0].shard.0)
        .collect();
    assert_eq!(shards, vec![0, 1, 0, 1], "two replicas per shard left");
    assert_eq!(m.check_invariants(), Ok(()));
    assert_eq!(
        m.apply(&reg(1, 8)),
        Ok(Outcome::BrokerRegistered { broker_epoch: 3 })
    );
    assert!(matches!(
        m.apply(&reg(-1, 1)),
        Err(MetadataError::InvalidRegistration(_))
    ));
    assert!(matches!(
        m.apply(&reg(2, 0)),
        Err(MetadataError::InvalidRegistration(_))
    ));
}

#[test]
fn topics_one_after_another_stay_balanced_over_the_cluster() {
    let mut m = cluster(&[(1, 2), (2, 2), (3, 2)]);
    for i in 0..7 {
        m.apply(&create(&format!("t{i}"), 1, 2)).expect("create");
    }
    let mut per_node: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut per_shard: BTreeMap<Replica, usize> = BTreeMap::new();
    for p in m.topics.values().flat_map(|t| t.partitions.iter()) {
        for r in &p.replicas {
            *per_node.entry(r.node).or_default() += 1;
            *per_shard.entry(*r).or_default() += 1;
        }
    }
    assert_eq!(per_node.values().sum::<usize>(), 14);
    assert!(spread(per_node.values().copied()) <= 1, "{per_node:?}");
    assert_eq!(per_shard.len(), 6, "every shard got a replica");
    assert!(spread(per_shard.values().copied()) <= 1, "{per_shard:?}");
}

#[test]
fn metadata_round_trips_through_json() {
    let mut m = cluster(&[(1, 2), (2, 1)]);
    m.apply(&create("t", 3, 2)).expect("create");
    let bytes = serde_json::to_vec(&m).expect("encode");
    let back: ClusterMetadata = serde_json::from_slice(&bytes).expect("decode");
    assert_eq!(back, m);
}

fn unclean(topic: &str, on: bool) -> Command {
    let mut configs = BTreeMap::new();
    configs.insert(UNCLEAN_LEADER_ELECTION_ENABLE.to_string(), on.to_string());
    Command::AlterTopicConfigs {
        name: topic.to_string(),
        configs,
        expected: None,
    }
}

/// Three brokers, `t` with one partition of three replicas whose followers
/// were fenced (ISR: the leader alone), then the leader fenced too: no
/// leader, ISR the old leader. Returns the metadata, the old leader and
/// the two followers.
fn leaderless() -> (ClusterMetadata, NodeId, [NodeId; 2]) {
    let mut m = cluster(&[(1, 1), (2, 1), (3, 1)]);
    m.apply(&create("t", 1, 3)).expect("create");
    let p = &m.topics["t"].partitions[0];
    let leader = p.leader.expect("leader");
    let followers = [p.replicas[1].node, p.replicas[2].node];
    for f in followers {
        m.apply(&Command::FenceBroker { node: f }).expect("fence");
    }
    m.apply(&Command::FenceBroker { node: leader })
        .expect("fence");
    let p = &m.topics["t"].partitions[0];
    assert_eq!((p.leader, p.isr.clone()), (None, vec![leader]));
    (m, leader, followers)
}

#[test]
fn an_out_of_sync_replica_leads_only_once_unclean_election_is_enabled() {
    let (mut m, leader, [f1, _]) = leaderless();
    // Back, out of sync, with the default: no leader.
    m.apply(&Command::UnfenceBroker { node: f1 })
        .expect("unfence");
    let p = &m.topics["t"].partitions[0];
    assert_eq!((p.leader, p.isr.clone()), (None, vec![leader]));
    let epoch = p.leader_epoch;
    // Enabling the config elects it at once, alone in the ISR.
    assert_eq!(
        m.apply(&unclean("t", true)),
        Ok(Outcome::TopicConfigsAltered)
    );
    let p = &m.topics["t"].partitions[0];
    assert_eq!((p.leader, p.isr.clone()), (Some(f1), vec![f1]));
    assert!(p.leader_epoch > epoch);
    // The old leader returns as a follower, out of the ISR.
    m.apply(&Command::UnfenceBroker { node: leader })
        .expect("unfence");
    let p = &m.topics["t"].partitions[0];
    assert_eq!((p.leader, p.isr.clone()), (Some(f1), vec![f1]));
}

#[test]
fn the_cluster_default_counts_for_topics_that_do_not_set_unclean_election() {
    let (mut m, _, [f1, _]) = leaderless();
    m.apply(&Command::UnfenceBroker { node: f1 })
        .expect("unfence");
    assert_eq!(m.topics["t"].partitions[0].leader, None);
    // The topic sets nothing: turning the default on elects at once.
    assert_eq!(
        m.apply(&Command::SetUncleanElectionDefault { enabled: true }),
        Ok(Outcome::UncleanElectionDefaultSet)
    );
    assert!(m.unclean_election_default);
    let p = &m.topics["t"].partitions[0];
    assert_eq!((p.leader, p.isr.clone()), (Some(f1), vec![f1]));

    // A topic that turns it off keeps waiting for its last in-sync replica,
    // whatever the default.
    let (mut m, leader, [f1, _]) = leaderless();
    m.apply(&unclean("t", false)).expect("config");
    m.apply(&Command::SetUncleanElectionDefault { enabled: true })
        .expect("default");
    m.apply(&Command::UnfenceBroker { node: f1 })
        .expect("unfence");
    let p = &m.topics["t"].partitions[0];
    assert_eq!((p.leader, p.isr.clone()), (None, vec![leader]));
    // Without its own setting it follows the default again.
    m.apply(&Command::AlterTopicConfigs {
        name: "t".into(),
        configs: BTreeMap::new(),
        expected: None,
    })
    .expect("config");
    assert_eq!(m.topics["t"].partitions[0].leader, Some(f1));
}

#[test]
fn with_unclean_election_on_a_fenced_last_leader_hands_over_at_once() {
    let mut m = cluster(&[(1, 1), (2, 1), (3, 1)]);
    m.apply(&create("t", 1, 3)).expect("create");
    m.apply(&unclean("t", true)).expect("config");
    let p = m.topics["t"].partitions[0].clone();
    let leader = p.leader.expect("leader");
    let (f1, f2) = (p.replicas[1].node, p.replicas[2].node);
    // The ISR shrinks to the leader; the followers stay live.
    m.apply(&Command::AlterIsr {
        topic: "t".into(),
        partition: 0,
        leader,
        leader_epoch: p.leader_epoch,
        isr: vec![leader],
    })
    .expect("shrink");
    m.apply(&Command::FenceBroker { node: leader })
        .expect("fence");
    let p = &m.topics["t"].partitions[0];
    assert_eq!((p.leader, p.isr.clone()), (Some(f1), vec![f1]));
    // Off again: nothing moves back, and a partition that loses its only
    // ISR member then waits for it.
    m.apply(&unclean("t", false)).expect("config");
    m.apply(&Command::FenceBroker { node: f1 }).expect("fence");
    let p = &m.topics["t"].partitions[0];
    assert_eq!((p.leader, p.isr.clone()), (None, vec![f1]));
    assert!(!m.brokers[&f2].fenced);
}

#[test]
fn unregister_refuses_live_brokers_and_replica_holders() {
    let (mut m, leader, [f1, _]) = leaderless();
    m.apply(&reg(4, 1)).expect("register 4");
    assert_eq!(
        m.apply(&Command::UnregisterBroker { node: NodeId(4) }),
        Err(MetadataError::BrokerLive(NodeId(4)))
    );
    assert!(matches!(
        m.apply(&Command::UnregisterBroker { node: f1 }),
        Err(MetadataError::BrokerHoldsReplicas { replicas: 1, .. })
    ));
    m.apply(&Command::FenceBroker { node: NodeId(4) })
        .expect("fence");
    assert_eq!(
        m.apply(&Command::UnregisterBroker { node: NodeId(4) }),
        Ok(Outcome::BrokerUnregistered)
    );
    assert!(!m.brokers.contains_key(&NodeId(4)));
    assert_eq!(
        m.apply(&Command::UnregisterBroker { node: NodeId(4) }),
        Err(MetadataError::UnknownBroker(NodeId(4)))
    );
    // Once its topic is gone, a fenced broker may go.
    m.apply(&Command::DeleteTopic { name: "t".into() })
        .expect("delete");
    m.apply(&Command::UnregisterBroker { node: leader })
        .expect("unregister");
    assert_eq!(m.check_invariants(), Ok(()));
}

#[test]
fn configs_of_a_topic_are_replaced_whole() {
    let mut m = cluster(&[(1, 1)]);
    m.apply(&create("t", 1, 1)).expect("create");
    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_string(), "1000".to_string());
    let alter = Command::AlterTopicConfigs {
        name: "t".into(),
        configs: configs.clone(),
        expected: None,
    };
    m.apply(&alter).expect("alter");
    assert_eq!(m.topics["t"].configs, configs);
    assert_eq!(
        m.apply(&Command::AlterTopicConfigs {
            name: "nope".into(),
            configs,
            expected: None,
        }),
        Err(MetadataError::UnknownTopic("nope".into()))
    );
}

#[test]
fn a_config_change_computed_from_configs_that_changed_meanwhile_is_refused() {
    let mut m = cluster(&[(1, 1)]);
    m.apply(&create("t", 1, 1)).expect("create");
    let before = m.topics["t"].configs.clone();
    let with = |k: &str, v: &str| {
        let mut c = before.clone();
        c.insert(k.to_string(), v.to_string());
        c
    };
    // Two brokers compute their changes from the same configs; the first wins.
    let first = Command::AlterTopicConfigs {
        name: "t".into(),
        configs: with("retention.ms", "1000"),
        expected: Some(before.clone()),
    };
    let second = Command::AlterTopicConfigs {
        name: "t".into(),
        configs: with("segment.bytes", "1048576"),
        expected: Some(before.clone()),
    };
    m.apply(&first).expect("first");
    assert_eq!(
        m.apply(&second),
        Err(MetadataError::ConfigsChanged("t".into()))
    );
    assert_eq!(m.topics["t"].configs, with("retention.ms", "1000"));
    // Computed again from what is there now, it goes through.
    let mut both = with("retention.ms", "1000");
    both.insert("segment.bytes".into(), "1048576".into());
    m.apply(&Command::AlterTopicConfigs {
        name: "t".into(),
        configs: both.clone(),
        expected: Some(with("retention.ms", "1000")),
    })
    .expect("recomputed");
    assert_eq!(m.topics["t"].configs, both);
}

#[test]
fn a_config_change_logged_without_expected_configs_still_decodes() {
    let json = r#"{"AlterTopicConfigs":{"name":"t","configs":{"retention.ms":"1"}}}"#;
    let c: Command = serde_json::from_str(json).expect("decode");
    assert_eq!(
        c,
        Command::AlterTopicConfigs {
            name: "t".into(),
            configs: BTreeMap::from([("retention.ms".to_string(), "1".to_string())]),
            expected: None,
        }
    );
}

fn arb_command(nodes: i32) -> impl Strategy<Value = Command> {
    let node = 1..=nodes;
    prop_oneof![
        (node.clone(), 1u16..4).prop_map(|(n, s)| reg(n, s)),
        node.clone()
            .prop_map(|n| Command::FenceBroker { node: NodeId(n) }),
        node.clone()
            .prop_map(|n| Command::UnfenceBroker { node: NodeId(n) }),
        (0..4u8, -1..12i32, 0..5i16).prop_map(|(t, p, rf)| create(&format!("t{t}"), p, rf)),
        (0..4u8).prop_map(|t| Command::DeleteTopic {
            name: format!("t{t}")
        }),
        (0..4u8, any::<bool>()).prop_map(|(t, on)| unclean(&format!("t{t}"), on)),
        // A topic that sets nothing follows the cluster's default.
        (0..4u8).prop_map(|t| Command::AlterTopicConfigs {
            name: format!("t{t}"),
            configs: BTreeMap::new(),
            expected: None,
        }),
        any::<bool>().prop_map(|enabled| Command::SetUncleanElectionDefault { enabled }),
        node.clone()
            .prop_map(|n| Command::UnregisterBroker { node: NodeId(n) }),
        (
            0..4u8,
            0..4i32,
            node.clone(),
            0..4i32,
            proptest::collection::vec(node, 0..4)
        )
            .prop_map(|(t, p, l, e, isr)| Command::AlterIsr {
                topic: format!("t{t}"),
                partition: p,
                leader: NodeId(l),
                leader_epoch: e,
                isr: isr.into_iter().map(NodeId).collect(),
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// On an empty cluster one topic spreads replicas and leaders over the
    /// nodes within one, and each node's replicas over its shards within one.
    #[test]
    fn placement_is_balanced(
        shards in proptest::collection::vec(1u16..5, 1..7),
        partitions in 1i32..60,
        rf_pick in 0usize..7,
    ) {
        let nodes: Vec<(i32, u16)> = shards.iter().enumerate().map(|(i, s)| (i as i32 + 1, *s)).collect();
        let mut m = cluster(&nodes);
        let rf = (rf_pick % nodes.len()) as i16 + 1;
        m.apply(&create("t", partitions, rf)).expect("create");
        let t = &m.topics["t"];
        let mut node_replicas: BTreeMap<NodeId, usize> = nodes.iter().map(|(n, _)| (NodeId(*n), 0)).collect();
        let mut node_leaders = node_replicas.clone();
        let mut shard_replicas: BTreeMap<Replica, usize> = BTreeMap::new();
        for &(n, s) in &nodes {
            for shard in 0..s {
                shard_replicas.insert(Replica { node: NodeId(n), shard: ShardId(shard) }, 0);
            }
        }
        for p in &t.partitions {
            prop_assert_eq!(p.replicas.len(), rf as usize);
            *node_leaders.get_mut(&p.replicas[0].node).expect("known node") += 1;
            for r in &p.replicas {
                *node_replicas.get_mut(&r.node).expect("known node") += 1;
                *shard_replicas.get_mut(r).expect("shard within the node's count") += 1;
            }
        }
        prop_assert!(spread(node_replicas.values().copied()) <= 1, "replicas {:?}", node_replicas);
        prop_assert!(spread(node_leaders.values().copied()) <= 1, "leaders {:?}", node_leaders);
        for &(n, _) in &nodes {
            let on_node = shard_replicas.iter().filter(|(r, _)| r.node == NodeId(n)).map(|(_, c)| *c);
            prop_assert!(spread(on_node) <= 1, "shards of node {}: {:?}", n, shard_replicas);
        }
        prop_assert_eq!(m.check_invariants(), Ok(()));
    }

    /// Any sequence of commands keeps every invariant, refusals change
    /// nothing, epochs never go back, and replaying the same commands gives
    /// the same state.
    #[test]
    fn any_command_sequence_keeps_invariants(
        commands in proptest::collection::vec(arb_command(5), 1..80)
    ) {
        let mut m = ClusterMetadata::new();
        let mut replay = ClusterMetadata::new();
        for cmd in &commands {
            let before = m.clone();
            let result = m.apply(cmd);
            prop_assert_eq!(&replay.apply(cmd), &result);
            if result.is_err() {
                prop_assert_eq!(&m, &before);
            }
            prop_assert_eq!(m.check_invariants(), Ok(()));
            for (name, t) in &before.topics {
                let Some(now) = m.topics.get(name) else { continue };
                if now.topic_id != t.topic_id { continue; }
                for (old, new) in t.partitions.iter().zip(&now.partitions) {
                    prop_assert!(new.leader_epoch >= old.leader_epoch);
                    prop_assert!(new.partition_epoch >= old.partition_epoch);
                    if new.leader != old.leader {
                        prop_assert!(new.leader_epoch > old.leader_epoch);
                    }
                    // A node back with fewer shards moves its replicas
                    // between its shards, never to another node.
                    let nodes = |p: &PartitionState| p.replicas.iter().map(|r| r.node).collect::<Vec<_>>();
                    prop_assert_eq!(nodes(new), nodes(old));
                    if new.replicas != old.replicas {
                        prop_assert!(new.partition_epoch > old.partition_epoch);
                    }
                }
            }
        }
        prop_assert_eq!(m, replay);
    }
}
