//! The cluster metadata as a pure, deterministic state machine.
//!
//! [`ClusterMetadata::apply`] takes one [`Command`] and changes the state or
//! rejects it with a [`MetadataError`]; nothing here reads a clock, a socket or
//! a random source, so every controller that applies the same committed log
//! ends in the same state (the Raft log is replayed through this function).
//! Values that must be chosen outside (a topic id, "now") travel inside the
//! command.
//!
//! Leadership follows Kafka's rules: a partition's leader is always a member
//! of its in-sync replica set (ISR) on an unfenced broker, or there is no
//! leader; every change of leader bumps the leader epoch; every change of
//! leader or ISR bumps the partition epoch. When a broker is fenced it leaves
//! every ISR it is in, except where it is the last member (so that the
//! partition's last in-sync copy is still known, and it takes the leadership
//! back when it returns instead of an out-of-date replica: no unclean
//! election), unless the topic sets `unclean.leader.election.enable=true`:
//! then, after every command, a leaderless partition takes its first live
//! replica as leader and sole ISR member (Kafka's unclean election: the
//! records it lacks are lost, the partition serves again).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::{NodeId, ShardId};

mod election;
pub use election::{ElectionError, ElectionResult, ElectionType};
mod shards;

/// Most partitions one topic may have; bounds the work of one command.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;
/// Most shards a broker may declare.
pub const MAX_SHARDS_PER_BROKER: u16 = 1024;
/// Longest topic name (Kafka's limit).
pub const MAX_TOPIC_NAME_BYTES: usize = 249;

/// Kafka's "no leader" value in Metadata responses.
pub const NO_LEADER: i32 = -1;
/// The topic config that lets a leaderless partition elect an out-of-sync
/// replica (off unless set to `true`).
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// One copy of a partition: the broker and the shard on it that owns the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Replica {
    pub node: NodeId,
    pub shard: ShardId,
}

/// What a broker tells the controller about itself when it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node: NodeId,
    /// Host clients connect to (advertised).
    pub host: String,
    /// Kafka port clients connect to (advertised).
    pub port: u16,
    /// Number of shards (cores) the broker runs; replicas go to `0..shards`.
    pub shards: u16,
    /// Replication port of each shard, indexed by shard; empty until
    /// replication exists.
    pub replication_ports: Vec<u16>,
}

/// A registered broker as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    pub registration: BrokerRegistration,
    /// Fenced brokers lead nothing and take no new replicas.
    pub fenced: bool,
    /// Grows with each registration of this node, so a stale incarnation can
    /// be told apart from the current one.
    pub broker_epoch: u64,
}

/// State of one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Assigned replicas, preferred leader first; nodes are distinct.
    pub replicas: Vec<Replica>,
    pub leader: Option<NodeId>,
    pub leader_epoch: i32,
    /// Bumped on every change of leader or ISR (Kafka's partition epoch).
    pub partition_epoch: i32,
    /// In-sync replicas, in replica order; never empty.
    pub isr: Vec<NodeId>,
    /// A reassignment in progress (Kafka's KIP-455): the nodes of `replicas`
    /// it adds (outside the ISR until they catch up) ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<NodeId>,
    /// ... and those it removes once every target replica is in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<NodeId>,
}

impl PartitionState {
    /// Kafka's leader id: the node, or -1.
    pub fn leader_id(&self) -> i32 {
        self.leader.map_or(NO_LEADER, |n| n.0)
    }

    /// The replica on `node`, if it holds one.
    pub fn replica_on(&self, node: NodeId) -> Option<Replica> {
        self.replicas.iter().copied().find(|r| r.node == node)
    }
}

/// A topic: its id and partitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    /// Kafka topic id (a UUID), chosen by whoever proposed the creation.
    pub topic_id: [u8; 16],
    pub partitions: Vec<PartitionState>,
    pub configs: BTreeMap<String, String>,
}

impl TopicState {
    /// Whether unclean election is on for this topic: its
    /// `unclean.leader.election.enable` when it sets one, else `default`
    /// (the cluster's, [`ClusterMetadata::unclean_election_default`]).
    pub fn unclean_election_enabled(&self, default: bool) -> bool {
        match self.configs.get(UNCLEAN_LEADER_ELECTION_ENABLE) {
            Some(v) => v.trim().eq_ignore_ascii_case("true"),
            None => default,
        }
    }
}

/// A change to the metadata. Commands are the entries of the Raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker starts (or restarts, or changes address): it is unfenced.
    RegisterBroker(BrokerRegistration),
    /// The active controller stopped hearing from a broker.
    FenceBroker {
        node: NodeId,
    },
    /// A fenced broker heartbeats again.
    UnfenceBroker {
        node: NodeId,
    },
    CreateTopic {
        name: String,
        topic_id: [u8; 16],
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// A topic's configs become exactly `configs` (computed and validated
    /// by the broker that took the request, from the configs it saw).
    /// With `expected` (the configs it computed them from), refused with
    /// [`MetadataError::ConfigsChanged`] when another change came first, so
    /// two brokers altering different keys at once cannot lose one; the
    /// broker computes again from the newer configs.
    AlterTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected: Option<BTreeMap<String, String>>,
    },
    /// Forget a broker that is gone for good (Kafka's UnregisterBroker).
    /// Refused while it is live or still holds replicas.
    UnregisterBroker {
        node: NodeId,
    },
    /// A partition leader changes its ISR (a follower caught up or fell
    /// behind). Refused unless `leader` and `leader_epoch` are current.
    AlterIsr {
        topic: String,
        partition: i32,
        leader: NodeId,
        leader_epoch: i32,
        isr: Vec<NodeId>,
    },
    /// Move a partition to `replicas` (KIP-455), replacing any reassignment
    /// in progress; `None` cancels the one in progress.
    AlterReassignment {
        topic: String,
        partition: i32,
        replicas: Option<Vec<NodeId>>,
    },
    /// Elect leaders (Kafka's ElectLeaders, see `election.rs`): of these
    /// (topic, partition)s, or of every partition when `None`.
    ElectLeaders {
        election: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// Move `node`'s replica of a partition to another of its shards (see
    /// `shards.rs`). The node keeps the data: its partition directories are
    /// per node, not per shard.
    MoveReplicaShard {
        topic: String,
        partition: i32,
        node: NodeId,
        shard: ShardId,
    },
    /// The default of `unclean.leader.election.enable` for topics that do
    /// not set it: the controller leader's broker default, written by the
    /// leader when the metadata holds another value (Kafka's controller
    /// decides by its own config).
    SetUncleanElectionDefault {
        enabled: bool,
    },
}

/// What an applied command produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    BrokerRegistered {
        broker_epoch: u64,
    },
    BrokerFenced {
        leaderships_moved: usize,
    },
    BrokerUnfenced {
        leaderships_taken: usize,
    },
    TopicCreated {
        topic_id: [u8; 16],
    },
    TopicDeleted,
    TopicConfigsAltered,
    BrokerUnregistered,
    IsrAltered {
        partition_epoch: i32,
    },
    /// A reassignment was started, replaced or cancelled; `in_progress` is
    /// false once nothing is left to do (it completed at once, or was
    /// cancelled).
    ReassignmentAltered {
        in_progress: bool,
    },
    /// One result per partition asked for (all partitions: those that
    /// needed an election).
    LeadersElected {
        results: Vec<ElectionResult>,
    },
    /// The replica is on the shard asked for (`moved` false: it already was).
    ReplicaShardMoved {
        moved: bool,
        leader_epoch: i32,
    },
    UncleanElectionDefaultSet,
}

/// Why a command was refused. The state is unchanged after a refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetadataError {
    #[error("{0} is not registered")]
    UnknownBroker(NodeId),
    #[error("invalid broker registration: {0}")]
    InvalidRegistration(String),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    #[error("the configs of topic {0:?} changed meanwhile")]
    ConfigsChanged(String),
    #[error("invalid topic name {0:?}")]
    InvalidTopicName(String),
    #[error("partition {partition} of topic {topic:?} does not exist")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("a topic needs 1 to {max} partitions, not {requested}")]
    InvalidPartitions { requested: i32, max: i32 },
    #[error("replication factor {requested} needs that many live brokers; {available} are live")]
    InvalidReplicationFactor { requested: i16, available: usize },
    #[error("leader epoch {given} is not the current one ({current})")]
    StaleLeaderEpoch { given: i32, current: i32 },
    #[error("{given} is not the leader (leader: {leader:?})")]
    NotLeader {
        given: NodeId,
        leader: Option<NodeId>,
    },
    #[error("invalid ISR: {0}")]
    InvalidIsr(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("no reassignment of partition {partition} of topic {topic:?} is in progress")]
    NoReassignmentInProgress { topic: String, partition: i32 },
    #[error("{node} holds no replica of partition {partition} of topic {topic:?}")]
    NoReplicaOnNode {
        topic: String,
        partition: i32,
        node: NodeId,
    },
    #[error("{node} runs {shards} shard(s) (0 to {}); it has no shard {}", .shards.saturating_sub(1), .shard.0)]
    UnknownShard {
        node: NodeId,
        shard: ShardId,
        shards: u16,
    },
    #[error("{0} is live (it heartbeats); stop it before unregistering it")]
    BrokerLive(NodeId),
    #[error("{node} still holds {replicas} replicas (first: {first}); move them off (sluice cluster reassign --drain) before unregistering it")]
    BrokerHoldsReplicas {
        node: NodeId,
        replicas: usize,
        first: String,
    },
    #[error(
        "{0} is a controller voter; voters are fixed by configuration and cannot be unregistered"
    )]
    ControllerVoter(NodeId),
}

/// The whole cluster metadata. Cloned wholesale to every shard on change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub brokers: BTreeMap<NodeId, Broker>,
    pub topics: BTreeMap<String, TopicState>,
    /// Source of broker epochs; grows by one per registration.
    next_broker_epoch: u64,
    /// Whether topics that do not set `unclean.leader.election.enable`
    /// elect unclean (see `Command::SetUncleanElectionDefault`).
    #[serde(default)]
    pub unclean_election_default: bool,
}

impl ClusterMetadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply one command. On `Err` the state is unchanged.
    pub fn apply(&mut self, command: &Command) -> Result<Outcome, MetadataError> {
        let outcome = match command {
            Command::RegisterBroker(reg) => self.register(reg),
            Command::FenceBroker { node } => self.fence(*node),
            Command::UnfenceBroker { node } => self.unfence(*node),
            Command::CreateTopic {
                name,
                topic_id,
                partitions,
                replication_factor,
                configs,
            } => self.create_topic(name, *topic_id, *partitions, *replication_factor, configs),
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Ok(Outcome::TopicDeleted),
                None => Err(MetadataError::UnknownTopic(name.clone())),
            },
            Command::AlterTopicConfigs {
                name,
                configs,
                expected,
            } => match self.topics.get_mut(name) {
                Some(t) if expected.as_ref().is_some_and(|e| *e != t.configs) => {
                    Err(MetadataError::ConfigsChanged(name.clone()))
                }
                Some(t) => {
                    t.configs = configs.clone();
                    Ok(Outcome::TopicConfigsAltered)
                }
                None => Err(MetadataError::UnknownTopic(name.clone())),
            },
            Command::UnregisterBroker { node } => self.unregister(*node),
            Command::AlterIsr {
                topic,
                partition,
                leader,
                leader_epoch,
                isr,
            } => self
                .alter_isr(topic, *partition, *leader, *leader_epoch, isr)
                .map(|outcome| self.after_isr_change(topic, *partition, outcome)),
            Command::AlterReassignment {
                topic,
                partition,
                replicas,
            } => self.alter_reassignment(topic, *partition, replicas.as_deref()),
            Command::ElectLeaders {
                election,
                partitions,
            } => Ok(self.elect_leaders(*election, partitions.as_deref())),
            Command::MoveReplicaShard {
                topic,
                partition,
                node,
                shard,
            } => self.move_replica_shard(topic, *partition, *node, *shard),
            Command::SetUncleanElectionDefault { enabled } => {
                self.unclean_election_default = *enabled;
                Ok(Outcome::UncleanElectionDefaultSet)
            }
        };
        if outcome.is_ok() {
            self.elect_unclean_where_enabled();
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
        outcome
    }

    /// Brokers that may lead and take new replicas.
    pub fn live_brokers(&self) -> impl Iterator<Item = &Broker> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Replicas of a partition on fenced or unknown brokers (Kafka's
    /// offline replicas).
    pub fn offline_replicas(&self, partition: &PartitionState) -> Vec<NodeId> {
        partition
            .replicas
            .iter()
            .map(|r| r.node)
            .filter(|n| self.brokers.get(n).is_none_or(|b| b.fenced))
            .collect()
    }

    fn is_live(&self, node: NodeId) -> bool {
        self.brokers.get(&node).is_some_and(|b| !b.fenced)
    }

    fn register(&mut self, reg: &BrokerRegistration) -> Result<Outcome, MetadataError> {
        if reg.node.0 < 0 {
            return Err(MetadataError::InvalidRegistration(format!(
                "node id {} is negative",
                reg.node.0
            )));
        }
        if reg.shards == 0 || reg.shards > MAX_SHARDS_PER_BROKER {
            return Err(MetadataError::InvalidRegistration(format!(
                "a broker runs 1 to {MAX_SHARDS_PER_BROKER} shards, not {}",
                reg.shards
            )));
        }
        if !reg.replication_ports.is_empty()
            && reg.replication_ports.len() != usize::from(reg.shards)
        {
            return Err(MetadataError::InvalidRegistration(format!(
                "{} replication ports for {} shards",
                reg.replication_ports.len(),
                reg.shards
            )));
        }
        if reg.host.is_empty() {
            return Err(MetadataError::InvalidRegistration("empty host".into()));
        }
        self.next_broker_epoch += 1;
        let broker_epoch = self.next_broker_epoch;
        self.brokers.insert(
            reg.node,
            Broker {
                registration: reg.clone(),
                fenced: false,
                broker_epoch,
            },
        );
        // A node back with fewer shards: its replicas on shards it no
        // longer runs move to the ones it has.
        self.replace_beyond_shards(reg.node, reg.shards);
        self.take_leaderless(reg.node);
        Ok(Outcome::BrokerRegistered { broker_epoch })
    }

    fn fence(&mut self, node: NodeId) -> Result<Outcome, MetadataError> {
        let broker = self
            .brokers
            .get_mut(&node)
            .ok_or(MetadataError::UnknownBroker(node))?;
        broker.fenced = true;
        let live: BTreeSet<NodeId> = self.live_brokers().map(|b| b.registration.node).collect();
        let mut moved = 0;
        for partition in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            if partition.replica_on(node).is_none() {
                continue;
            }
            let mut changed = false;
            if partition.isr.len() > 1 && partition.isr.contains(&node) {
                partition.isr.retain(|n| *n != node);
                changed = true;
            }
            if partition.leader == Some(node) {
                partition.leader = partition
                    .replicas
                    .iter()
                    .map(|r| r.node)
                    .find(|n| *n != node && partition.isr.contains(n) && live.contains(n));
                partition.leader_epoch += 1;
                moved += 1;
                changed = true;
            }
            if changed {
                partition.partition_epoch += 1;
            }
        }
        Ok(Outcome::BrokerFenced {
            leaderships_moved: moved,
        })
    }

    fn unregister(&mut self, node: NodeId) -> Result<Outcome, MetadataError> {
        let broker = self
            .brokers
            .get(&node)
            .ok_or(MetadataError::UnknownBroker(node))?;
        if !broker.fenced {
            return Err(MetadataError::BrokerLive(node));
        }
        let held: Vec<String> = self
            .topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.replica_on(node).is_some())
                    .map(move |(i, _)| format!("{name}-{i}"))
            })
            .collect();
        if let Some(first) = held.first() {
            return Err(MetadataError::BrokerHoldsReplicas {
                node,
                replicas: held.len(),
                first: first.clone(),
            });
        }
        self.brokers.remove(&node);
        Ok(Outcome::BrokerUnregistered)
    }

    /// Kafka's unclean election, where a topic enables it: a leaderless
    /// partition takes its first live replica (preferred order) as leader,
    /// which becomes the whole ISR. Runs after every command, so it happens
    /// as soon as a replica is live (registered, unfenced, added) or the
    /// config is turned on, the same on every controller.
    fn elect_unclean_where_enabled(&mut self) {
        let live: BTreeSet<NodeId> = self.live_brokers().map(|b| b.registration.node).collect();
        let default = self.unclean_election_default;
        for topic in self.topics.values_mut() {
            if !topic.unclean_election_enabled(default) {
                continue;
            }
            for partition in topic.partitions.iter_mut() {
                if partition.leader.is_some() {
                    continue;
                }
                let Some(chosen) = partition
                    .replicas
                    .iter()
                    .map(|r| r.node)
                    .find(|n| live.contains(n))
                else {
                    continue;
                };
                partition.leader = Some(chosen);
                partition.isr = vec![chosen];
                partition.leader_epoch += 1;
                partition.partition_epoch += 1;
            }
        }
    }

    fn unfence(&mut self, node: NodeId) -> Result<Outcome, MetadataError> {
        let broker = self
            .brokers
            .get_mut(&node)
            .ok_or(MetadataError::UnknownBroker(node))?;
        broker.fenced = false;
        let taken = self.take_leaderless(node);
        Ok(Outcome::BrokerUnfenced {
            leaderships_taken: taken,
        })
    }

    /// A live `node` leads every leaderless partition whose ISR holds it.
    fn take_leaderless(&mut self, node: NodeId) -> usize {
        let mut taken = 0;
        for partition in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            if partition.leader.is_none() && partition.isr.contains(&node) {
                partition.leader = Some(node);
                partition.leader_epoch += 1;
                partition.partition_epoch += 1;
                taken += 1;
            }
        }
        taken
    }

    fn create_topic(
        &mut self,
        name: &str,
        topic_id: [u8; 16],
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<Outcome, MetadataError> {
        if !valid_topic_name(name) {
            return Err(MetadataError::InvalidTopicName(name.to_string()));
        }
        if self.topics.contains_key(name) {
            return Err(MetadataError::TopicExists(name.to_string()));
        }
        if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
            return Err(MetadataError::InvalidPartitions {
                requested: partitions,
                max: MAX_PARTITIONS_PER_TOPIC,
            });
        }
        let live: Vec<(NodeId, u16)> = self
            .live_brokers()
            .map(|b| (b.registration.node, b.registration.shards))
            .collect();
        if replication_factor < 1 || usize::from(replication_factor.unsigned_abs()) > live.len() {
            return Err(MetadataError::InvalidReplicationFactor {
                requested: replication_factor,
                available: live.len(),
            });
        }
        let mut loads = Loads::of(self);
        let factor = usize::from(replication_factor.unsigned_abs());
        let placed: Vec<PartitionState> = loads
            .place_topic(&live, partitions.unsigned_abs() as usize, factor)
            .into_iter()
            .map(|replicas| PartitionState {
                leader: Some(replicas[0].node),
                isr: replicas.iter().map(|r| r.node).collect(),
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            })
            .collect();
        self.topics.insert(
            name.to_string(),
            TopicState {
                topic_id,
                partitions: placed,
                configs: configs.clone(),
            },
        );
        Ok(Outcome::TopicCreated { topic_id })
    }

    /// The partition, or the error naming the unknown topic or partition.
    fn find_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<&PartitionState, MetadataError> {
        self.topics
            .get(topic)
            .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?
            .partitions
            .get(usize::try_from(partition).unwrap_or(usize::MAX))
            .ok_or_else(|| MetadataError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    /// Like [`ClusterMetadata::find_partition`], to change it.
    fn find_partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionState, MetadataError> {
        self.topics
            .get_mut(topic)
            .ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?
            .partitions
            .get_mut(usize::try_from(partition).unwrap_or(usize::MAX))
            .ok_or_else(|| MetadataError::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })
    }

    fn alter_isr(
        &mut self,
        topic: &str,
        partition: i32,
        leader: NodeId,
        leader_epoch: i32,
        isr: &[NodeId],
    ) -> Result<Outcome, MetadataError> {
        let live: BTreeSet<NodeId> = self.live_brokers().map(|b| b.registration.node).collect();
        let state = self.find_partition_mut(topic, partition)?;
        if state.leader != Some(leader) {
            return Err(MetadataError::NotLeader {
                given: leader,
                leader: state.leader,
            });
        }
        if state.leader_epoch != leader_epoch {
            return Err(MetadataError::StaleLeaderEpoch {
                given: leader_epoch,
                current: state.leader_epoch,
            });
        }
        if !isr.contains(&leader) {
            return Err(MetadataError::InvalidIsr(format!(
                "{leader} leads but is not in {isr:?}"
            )));
        }
        let unique: BTreeSet<NodeId> = isr.iter().copied().collect();
        if unique.len() != isr.len() {
            return Err(MetadataError::InvalidIsr(format!("{isr:?} repeats a node")));
        }
        for node in isr {
            if state.replica_on(*node).is_none() {
                return Err(MetadataError::InvalidIsr(format!(
                    "{node} holds no replica of {topic}-{partition}"
                )));
            }
            if !state.isr.contains(node) && !live.contains(node) {
                return Err(MetadataError::InvalidIsr(format!(
                    "{node} is fenced and cannot join the ISR"
                )));
            }
        }
        // Keep replica order, so the ISR reads the same on every node.
        state.isr = state
            .replicas
            .iter()
            .map(|r| r.node)
            .filter(|n| unique.contains(n))
            .collect();
        state.partition_epoch += 1;
        Ok(Outcome::IsrAltered {
            partition_epoch: state.partition_epoch,
        })
    }

    /// Every rule this module promises; `Err` names the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (name, topic) in &self.topics {
            for (index, p) in topic.partitions.iter().enumerate() {
                let at = format!("{name}-{index}");
                let nodes: BTreeSet<NodeId> = p.replicas.iter().map(|r| r.node).collect();
                if nodes.len() != p.replicas.len() || p.replicas.is_empty() {
                    return Err(format!(
                        "{at}: replicas {:?} not distinct nodes",
                        p.replicas
                    ));
                }
                if p.isr.is_empty() {
                    return Err(format!("{at}: empty ISR"));
                }
                if p.isr.iter().any(|n| !nodes.contains(n)) {
                    return Err(format!("{at}: ISR {:?} outside replicas", p.isr));
                }
                if let Some(leader) = p.leader {
                    if !p.isr.contains(&leader) {
                        return Err(format!("{at}: leader {leader} not in ISR {:?}", p.isr));
                    }
                    if !self.is_live(leader) {
                        return Err(format!("{at}: leader {leader} is fenced"));
                    }
                } else if p.isr.iter().any(|n| self.is_live(*n)) {
                    return Err(format!(
                        "{at}: no leader though ISR {:?} has a live node",
                        p.isr
                    ));
                } else if topic.unclean_election_enabled(self.unclean_election_default)
                    && nodes.iter().any(|n| self.is_live(*n))
                {
                    return Err(format!(
                        "{at}: no leader though unclean election is on and a replica is live"
                    ));
                }
                for r in &p.replicas {
                    if let Some(b) = self.brokers.get(&r.node) {
                        if r.shard.0 >= b.registration.shards {
                            return Err(format!("{at}: {r:?} beyond the node's shards"));
                        }
                    }
                }
                reassign::check(p).map_err(|e| format!("{at}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Kafka's rule: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME_BYTES
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Replica and leader counts per node and per (node, shard), over every
/// topic, so that each new replica goes where the least already is.
struct Loads {
    node_replicas: BTreeMap<NodeId, usize>,
    node_leaders: BTreeMap<NodeId, usize>,
    shard_replicas: BTreeMap<Replica, usize>,
    shard_leaders: BTreeMap<Replica, usize>,
}

impl Loads {
    fn of(metadata: &ClusterMetadata) -> Self {
        let mut loads = Loads {
            node_replicas: BTreeMap::new(),
            node_leaders: BTreeMap::new(),
            shard_replicas: BTreeMap::new(),
            shard_leaders: BTreeMap::new(),
        };
        for p in metadata.topics.values().flat_map(|t| t.partitions.iter()) {
            for (i, r) in p.replicas.iter().enumerate() {
                loads.count(*r, i == 0);
            }
        }
        loads
    }

    fn count(&mut self, r: Replica, preferred_leader: bool) {
        *self.node_replicas.entry(r.node).or_default() += 1;
        *self.shard_replicas.entry(r).or_default() += 1;
        if preferred_leader {
            *self.node_leaders.entry(r.node).or_default() += 1;
            *self.shard_leaders.entry(r).or_default() += 1;
        }
    }

    /// Place a topic's `partitions` x `factor` replicas over `live`
    /// (node, shards); the first replica of each partition leads.
    ///
    /// Each node first gets a quota of leaderships and of replicas: the
    /// totals split evenly, the odd ones going to the nodes that hold the
    /// least over the whole cluster. Each partition is then led by the node
    /// with the most leadership quota left, and followed by the `factor - 1`
    /// other nodes with the most replica quota left (largest first, so
    /// distinct nodes never run out). On each node the shard is the one with the
    /// fewest replicas (then leaderships).
    fn place_topic(
        &mut self,
        live: &[(NodeId, u16)],
        partitions: usize,
        factor: usize,
    ) -> Vec<Vec<Replica>> {
        assert!(factor >= 1 && factor <= live.len(), "checked by the caller");
        let mut order: Vec<(NodeId, u16)> = live.to_vec();
        order.sort_by_key(|(n, _)| {
            (
                self.node_replicas.get(n).copied().unwrap_or(0),
                self.node_leaders.get(n).copied().unwrap_or(0),
                *n,
            )
        });
        let quota = |total: usize, rank: usize| {
            total / order.len() + usize::from(rank < total % order.len())
        };
        let mut leaders_left: Vec<usize> = (0..order.len())
            .map(|rank| quota(partitions, rank))
            .collect();
        let mut replicas_left: Vec<usize> = (0..order.len())
            .map(|rank| quota(partitions * factor, rank))
            .collect();
        let mut placed = Vec::with_capacity(partitions);
        for done in 0..partitions {
            // A node that needs a replica in every partition still to come
            // must be in this one; if `factor` such nodes exist, one leads.
            let to_go = partitions - done;
            let tight: Vec<usize> = (0..order.len())
                .filter(|&r| replicas_left[r] >= to_go)
                .collect();
            let candidates: Vec<usize> = if tight.len() >= factor {
                tight
            } else {
                (0..order.len()).collect()
            };
            let lead = candidates
                .into_iter()
                .min_by_key(|&r| {
                    (
                        std::cmp::Reverse(leaders_left[r]),
                        std::cmp::Reverse(replicas_left[r]),
                        r,
                    )
                })
                .expect("factor >= 1");
            let mut ranks: Vec<usize> = (0..order.len()).filter(|&r| r != lead).collect();
            // Among equals, spare nodes whose quota left is owed to leading.
            ranks.sort_by_key(|&r| {
                (
                    std::cmp::Reverse(replicas_left[r]),
                    std::cmp::Reverse(replicas_left[r].saturating_sub(leaders_left[r])),
                    r,
                )
            });
            ranks.truncate(factor - 1);
            ranks.insert(0, lead);
            leaders_left[lead] = leaders_left[lead].saturating_sub(1);
            for &r in &ranks {
                replicas_left[r] = replicas_left[r].saturating_sub(1);
            }
            let nodes: Vec<(NodeId, u16)> = ranks.iter().map(|&r| order[r]).collect();
            placed.push(self.pick_shards(nodes));
        }
        placed
    }

    /// The least loaded shard on each of `nodes` (leader first).
    fn pick_shards(&mut self, nodes: Vec<(NodeId, u16)>) -> Vec<Replica> {
        let factor = nodes.len();
        let mut replicas = Vec::with_capacity(factor);
        for (i, (node, shards)) in nodes.into_iter().enumerate() {
            let leader = i == 0;
            let shard = (0..shards)
                .map(|s| Replica {
                    node,
                    shard: ShardId(s),
                })
                .min_by_key(|r| {
                    let replicas = self.shard_replicas.get(r).copied().unwrap_or(0);
                    let leaders = self.shard_leaders.get(r).copied().unwrap_or(0);
                    if leader {
                        (replicas, leaders, r.shard)
                    } else {
                        (replicas, 0, r.shard)
                    }
                })
                .expect("a registered broker has at least one shard");
            self.count(shard, leader);
            replicas.push(shard);
        }
        replicas
    }
}

mod reassign;
#[cfg(test)]
mod tests;
