//! The group coordinator: consumer groups (classic protocol) and their
//! committed offsets.
//!
//! A group lives on the shard that owns its partition of the internal topic
//! `__consumer_offsets` (partition `abs(java_hash(group_id)) % partitions`, as
//! Kafka places it); requests for it arriving on any other shard are run
//! there through the router. Each shard's [`Coordinator`] holds its groups in
//! memory; every change worth keeping is appended as a record to the group's
//! partition (`storage` documents the format), and a shard replays its
//! partitions when it starts. Until a partition is replayed its groups answer
//! COORDINATOR_LOAD_IN_PROGRESS.
//!
//! `__consumer_offsets` is created with `cleanup.policy=compact`: every record
//! has a key (group, or group + partition) and deletions are tombstones (null
//! values), so the cleaner keeps each group's latest state and load time stays
//! bounded by the live groups and offsets, not by the commits ever made.

pub mod group;
pub mod storage;

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use shard_router::replication::AckResult;
use shard_router::ShardId;
use sluice_codec::ErrorCode;
use sluice_records::{BatchBuilder, BatchIter, Compression};

use crate::config::BrokerConfig;
use crate::state::{now_ms, ShardState};
use group::{Committed, Group, GroupConfig};
use storage::Key;

/// Records to append: (key, value or `None` for a tombstone).
pub type Records = Vec<(Vec<u8>, Option<Vec<u8>>)>;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// How often timeouts (sessions, join and sync phases) are checked.
const TICK_MS: u64 = 50;
/// Largest record batch of `__consumer_offsets` (group metadata of big groups).
const OFFSETS_MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Bytes read per step while replaying a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

/// `String.hashCode()` of Java: the placement of a group must match Kafka's.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group (Kafka's `Utils.abs(hash) % n`).
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0, "the offsets topic has partitions");
    let h = java_string_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

/// What to do when a request names a group this shard does not hold.
pub enum Missing {
    Create,
    Fail(ErrorCode),
}

pub struct Coordinator {
    groups: HashMap<String, Group>,
    /// Partitions of `__consumer_offsets` on this shard that are replayed.
    loaded: HashSet<i32>,
    /// Every partition of this shard was replayed (or failed to).
    load_done: bool,
    /// In a cluster: partitions this shard leads and is replaying, with the
    /// generation of the load (a leadership lost meanwhile voids it).
    loading: HashMap<i32, u64>,
    generation: u64,
    /// `__consumer_offsets` is replicated: groups of a partition this shard
    /// does not lead get NOT_COORDINATOR, not COORDINATOR_LOAD_IN_PROGRESS.
    cluster: bool,
    pub cfg: GroupConfig,
}

impl Coordinator {
    pub fn new(config: &BrokerConfig) -> Self {
        Coordinator {
            groups: HashMap::new(),
            loaded: HashSet::new(),
            load_done: false,
            loading: HashMap::new(),
            generation: 0,
            cluster: false,
            cfg: GroupConfig {
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms as i64,
                offsets_retention_ms: (config.offsets_retention_minutes as i64)
                    .saturating_mul(60_000),
                ..GroupConfig::default()
            },
        }
    }

    pub fn is_loaded(&self, partition: i32) -> bool {
        self.loaded.contains(&partition)
    }

    /// Runs `f` on the group, once its partition is loaded.
    pub fn with_group<R>(
        &mut self,
        group_id: &str,
        partition: i32,
        missing: Missing,
        f: impl FnOnce(&mut Group, &GroupConfig) -> R,
    ) -> Result<R, ErrorCode> {
        if !self.loaded.contains(&partition) {
            if self.cluster && !self.loading.contains_key(&partition) {
                return Err(ErrorCode::NOT_COORDINATOR);
            }
            return Err(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS);
        }
        if !self.groups.contains_key(group_id) {
            match missing {
                Missing::Fail(code) => return Err(code),
                Missing::Create => {
                    self.groups.insert(
                        group_id.to_string(),
                        Group::new(group_id.to_string(), now_ms()),
                    );
                }
            }
        }
        let g = self
            .groups
            .get_mut(group_id)
            .expect("present or just created");
        Ok(f(g, &self.cfg))
    }

    /// Every group on this shard (ListGroups), or `None` while loading.
    pub fn list(&self) -> Option<Vec<(String, String, &'static str)>> {
        self.load_done.then(|| {
            self.groups
                .values()
                .filter(|g| g.state != group::GroupState::Dead)
                .map(|g| {
                    (
                        g.id.clone(),
                        g.protocol_type.clone().unwrap_or_default(),
                        g.state.name(),
                    )
                })
                .collect()
        })
    }

    /// Every committed offset on this shard: (group, topic, partition, offset).
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        self.groups
            .values()
            .flat_map(|g| {
                g.offsets
                    .iter()
                    .map(|((t, p), c)| (g.id.clone(), t.clone(), *p, c.offset))
            })
            .collect()
    }

    pub fn remove(&mut self, group_id: &str) {
        if let Some(mut g) = self.groups.remove(group_id) {
            g.kill(now_ms());
        }
    }

    /// Group metadata records due: (partition, key, value) for dirty groups.
    fn take_dirty(&mut self, partitions: i32) -> Vec<(i32, Vec<u8>, Option<Vec<u8>>)> {
        self.groups
            .values_mut()
            .filter(|g| g.metadata_dirty)
            .map(|g| {
                g.metadata_dirty = false;
                (
                    partition_for(&g.id, partitions),
                    storage::group_key(&g.id),
                    Some(storage::group_value(g)),
                )
            })
            .collect()
    }
}

/// Partitions of `__consumer_offsets`: the topic's own count once it exists.
pub fn offsets_partitions(state: &ShardState) -> Option<i32> {
    state.topics().get(OFFSETS_TOPIC).map(|t| t.partitions)
}

/// The shard and partition of a group, or COORDINATOR_NOT_AVAILABLE before
/// the offsets topic exists.
pub fn locate(state: &ShardState, group_id: &str) -> Result<(ShardId, i32), ErrorCode> {
    let n = offsets_partitions(state).ok_or(ErrorCode::COORDINATOR_NOT_AVAILABLE)?;
    let p = partition_for(group_id, n);
    Ok((state.owner(OFFSETS_TOPIC, p), p))
}

/// Runs `f(shard state, partition)` on the shard that owns `group_id`.
pub async fn on_group_shard<F, R>(
    state: &Rc<ShardState>,
    group_id: &str,
    f: F,
) -> Result<R, ErrorCode>
where
    F: FnOnce(Rc<ShardState>, i32) -> LocalBoxFuture<'static, R> + Send + 'static,
    R: Send + 'static,
{
    if state.shutdown.is_set() {
        return Err(ErrorCode::NOT_COORDINATOR);
    }
    let (shard, partition) = locate(state, group_id)?;
    state
        .router
        .call(shard, move |s: &Rc<ShardState>| f(s.clone(), partition))
        .await
        .map_err(|_| ErrorCode::COORDINATOR_NOT_AVAILABLE)
}

/// Appends records to a partition of `__consumer_offsets` (on this shard) now,
/// returning the wait until they are durable per the topic's flush policy.
///
/// In a cluster the offsets topic is replicated: only the partition's leader
/// appends (NOT_COORDINATOR elsewhere), in its leader epoch, and the wait
/// ends when the high watermark passes the records (Kafka writes group
/// records with acks=all), so a coordinator that fails over never loses a
/// commit it acknowledged. The wait is bounded by `offsets_commit_timeout_ms`
/// (Kafka's `offsets.commit.timeout.ms`): a partition that cannot commit
/// (its followers stopped, still in the ISR) answers `REQUEST_TIMED_OUT`
/// then, as Kafka answers an OffsetCommit; the records stay appended and may
/// still commit, and the waiter goes.
pub fn append(
    s: &Rc<ShardState>,
    partition: i32,
    records: &[(Vec<u8>, Option<Vec<u8>>)],
) -> Result<LocalBoxFuture<'static, Result<(), ErrorCode>>, ErrorCode> {
    let log = s
        .log(OFFSETS_TOPIC, partition)
        .ok_or(ErrorCode::NOT_COORDINATOR)?;
    let leading = if replicated(s) {
        let Some(l) = s.replicas.leader(OFFSETS_TOPIC, partition) else {
            return Err(ErrorCode::NOT_COORDINATOR);
        };
        if l.borrow().state.check_produce(true).is_err() {
            return Err(ErrorCode::COORDINATOR_NOT_AVAILABLE);
        }
        Some(l)
    } else {
        None
    };
    let now = now_ms();
    let mut b = BatchBuilder::new(Compression::None);
    for (k, v) in records {
        b.push(now, Some(k), v.as_deref(), &[]);
    }
    let batch = b.build();
    let epoch = leading.as_ref().map_or(0, |l| l.borrow().state.epoch().0);
    let appended = log.borrow_mut().append(&batch, epoch, now);
    let a = appended.map_err(|e| {
        tracing::warn!(partition, error = %e, "could not append to {OFFSETS_TOPIC}");
        match e {
            engine::AppendError::TooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            _ => ErrorCode::COORDINATOR_NOT_AVAILABLE,
        }
    })?;
    s.mark_dirty(&log);
    if let Some(l) = &leading {
        crate::replication::on_leader_appended(l, log.borrow().log_end_offset());
    }
    let visible = log.borrow_mut().wait_visible(a.last_offset + 1);
    let s = s.clone();
    Ok(Box::pin(async move {
        let failed = |e: &dyn std::fmt::Display| {
            tracing::warn!(partition, error = %e, "{OFFSETS_TOPIC} write failed");
            ErrorCode::COORDINATOR_NOT_AVAILABLE
        };
        visible.await.map_err(|e| failed(&e))?;
        let Some(l) = leading else {
            return Ok(());
        };
        let tp = (OFFSETS_TOPIC.to_string(), partition);
        engine::recovery::checkpoint_leader_epochs(&log)
            .await
            .map_err(|e| failed(&e))?;
        let durable = log.borrow().visible_offset();
        crate::replication::on_leader_durable(&s, &tp, &l, durable);
        let timeout = Duration::from_millis(s.config.offsets_commit_timeout_ms);
        let committed =
            crate::replication::wait_committed_within(&s, &tp, &l, a.last_offset + 1, timeout);
        match committed.await {
            Some(AckResult::Committed) => Ok(()),
            Some(AckResult::NotEnoughReplicasAfterAppend) => {
                Err(ErrorCode::COORDINATOR_NOT_AVAILABLE)
            }
            Some(AckResult::NotLeader) => Err(ErrorCode::NOT_COORDINATOR),
            None => {
                tracing::warn!(
                    partition,
                    timeout_ms = s.config.offsets_commit_timeout_ms,
                    "{OFFSETS_TOPIC} write not replicated in time"
                );
                Err(ErrorCode::REQUEST_TIMED_OUT)
            }
        }
    }))
}

/// A group write that timed out (`REQUEST_TIMED_OUT` from [`append`]) as
/// the group APIs other than OffsetCommit answer it: `COORDINATOR_NOT_AVAILABLE`
/// (Kafka's coordinator maps a timed-out write so, and clients retry it).
pub fn retriable_timeout(code: ErrorCode) -> ErrorCode {
    if code == ErrorCode::REQUEST_TIMED_OUT {
        ErrorCode::COORDINATOR_NOT_AVAILABLE
    } else {
        code
    }
}

/// `__consumer_offsets` is a replicated topic (in a cluster): groups live on
/// the leader of their partition.
pub fn replicated(s: &ShardState) -> bool {
    s.topics()
        .get(OFFSETS_TOPIC)
        .is_some_and(|t| t.is_replicated())
}

/// Writes the metadata of groups that changed (not awaited: a lost group
/// record only makes members rejoin; offsets are written by their commits).
pub fn persist_dirty(s: &Rc<ShardState>) {
    let Some(n) = offsets_partitions(s) else {
        return;
    };
    let dirty = s.groups.borrow_mut().take_dirty(n);
    let mut by_partition: HashMap<i32, Records> = HashMap::new();
    for (p, k, v) in dirty {
        by_partition.entry(p).or_default().push((k, v));
    }
    for (p, records) in by_partition {
        if let Ok(wait) = append(s, p, &records) {
            glommio::spawn_local(async move {
                let _ = wait.await;
            })
            .detach();
        }
    }
}

/// The coordinator's background work on a shard: shard 0 creates the offsets
/// topic; every shard replays its partitions, then applies timeouts and
/// retention until shutdown.
pub async fn run(s: Rc<ShardState>) {
    s.wait_all_started().await;
    if s.shard.0 == 0 {
        ensure_offsets_topic(&s).await;
    }
    let partitions = loop {
        if s.shutdown.is_set() {
            return;
        }
        if let Some(n) = offsets_partitions(&s) {
            break n;
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    };
    let t0 = now_ms();
    let mut groups_loaded = 0;
    let cluster = replicated(&s);
    s.groups.borrow_mut().cluster = cluster;
    for p in 0..partitions {
        // In a cluster a partition is replayed when this shard becomes its
        // leader (`became_leader`), not at start.
        if cluster || s.owner(OFFSETS_TOPIC, p) != s.shard {
            continue;
        }
        match load_partition(&s, p).await {
            Ok(loaded) => {
                groups_loaded += loaded.len();
                s.groups.borrow_mut().groups.extend(loaded);
            }
            Err(e) => {
                // Refuse the partition's groups rather than serve them without
                // their offsets.
                tracing::error!(partition = p, error = %e, "cannot load {OFFSETS_TOPIC}; its groups stay unavailable");
                continue;
            }
        }
        s.groups.borrow_mut().loaded.insert(p);
    }
    s.groups.borrow_mut().load_done = true;
    tracing::info!(
        shard = s.shard.0,
        groups = groups_loaded,
        ms = now_ms() - t0,
        "consumer groups loaded"
    );
    let mut last_sweep = now_ms();
    while !s.shutdown.is_set() {
        glommio::timer::sleep(Duration::from_millis(TICK_MS)).await;
        let now = now_ms();
        {
            let mut c = s.groups.borrow_mut();
            let cfg = c.cfg.clone();
            for g in c.groups.values_mut() {
                g.tick(now, &cfg);
            }
        }
        persist_dirty(&s);
        if now - last_sweep >= s.config.offsets_retention_check_interval_ms as i64 {
            last_sweep = now;
            sweep(&s, now, partitions);
        }
    }
    for g in s.groups.borrow_mut().groups.values_mut() {
        g.fail_waiters(ErrorCode::NOT_COORDINATOR);
    }
}

/// The offsets topic's configs (Kafka's offsets.topic settings).
fn offsets_topic_configs() -> std::collections::BTreeMap<String, String> {
    let mut configs = std::collections::BTreeMap::new();
    // Compaction bounds this topic: commits never expire by time, only when
    // superseded or deleted.
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert("segment.bytes".to_string(), (100u64 << 20).to_string());
    configs.insert("retention.ms".to_string(), "-1".to_string());
    configs.insert("retention.bytes".to_string(), "-1".to_string());
    configs.insert(
        "max.message.bytes".to_string(),
        OFFSETS_MAX_MESSAGE_BYTES.to_string(),
    );
    configs
}

/// In a cluster, every node's shard 0 asks the controller for the replicated
/// offsets topic once `offsets_topic_replication_factor` brokers are live
/// (Kafka waits the same way); the first to get there creates it, the others
/// find it exists. Until then groups get COORDINATOR_NOT_AVAILABLE.
async fn ensure_replicated_offsets_topic(
    s: &Rc<ShardState>,
    controller: &shard_router::controller::ControllerHandle,
) {
    let rf = s.config.offsets_topic_replication_factor.max(1);
    let mut waited_logged = false;
    while !s.shutdown.is_set() && offsets_partitions(s).is_none() {
        let meta = controller.metadata();
        if meta.topics.contains_key(OFFSETS_TOPIC) {
            // Created: the topic table gets it from the metadata.
            glommio::timer::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let live = meta.live_brokers().count();
        if live < usize::try_from(rf).unwrap_or(usize::MAX) {
            if !waited_logged {
                waited_logged = true;
                tracing::info!(
                    live,
                    replication_factor = rf,
                    "waiting for enough live brokers to create {OFFSETS_TOPIC}"
                );
            }
            glommio::timer::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let r = crate::api::admin::create_replicated(
            s,
            controller,
            OFFSETS_TOPIC,
            s.config.offsets_topic_partitions,
            rf,
            offsets_topic_configs(),
            false,
        )
        .await;
        match r {
            Ok(_) => {
                tracing::info!(
                    partitions = s.config.offsets_topic_partitions,
                    replication_factor = rf,
                    "created {OFFSETS_TOPIC}"
                );
                return;
            }
            Err((code, _)) if code == ErrorCode::TOPIC_ALREADY_EXISTS.0 => return,
            Err((code, msg)) => {
                tracing::warn!(code, msg, "cannot create {OFFSETS_TOPIC} yet; retrying");
                glommio::timer::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn ensure_offsets_topic(s: &Rc<ShardState>) {
    if let Some(controller) = s.config.controller.clone() {
        return ensure_replicated_offsets_topic(s, &controller).await;
    }
    for attempt in 0..10u32 {
        if s.shutdown.is_set() || offsets_partitions(s).is_some() {
            return;
        }
        let configs = offsets_topic_configs();
        let topic = crate::api::admin::NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: s.config.offsets_topic_partitions,
            configs,
        };
        let result = crate::api::admin::create(s, vec![topic], false).await;
        match result.into_iter().next().map(|(_, r)| r) {
            Some(Ok(_)) => {
                tracing::info!(
                    partitions = s.config.offsets_topic_partitions,
                    "created {OFFSETS_TOPIC}"
                );
                return;
            }
            Some(Err((code, _))) if code == ErrorCode::TOPIC_ALREADY_EXISTS.0 => return,
            other => {
                tracing::error!(attempt, result = ?other.map(|r| r.err()), "cannot create {OFFSETS_TOPIC}; retrying");
                glommio::timer::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Replays one partition; returns the groups found.
async fn load_partition(
    s: &Rc<ShardState>,
    partition: i32,
) -> Result<Vec<(String, Group)>, String> {
    let log = s
        .log(OFFSETS_TOPIC, partition)
        .ok_or_else(|| format!("partition {partition} is not on this shard"))?;
    let (mut offset, end) = {
        let l = log.borrow();
        (l.log_start_offset(), l.visible_offset())
    };
    let mut metas: HashMap<String, Option<storage::StoredGroup>> = HashMap::new();
    let mut offsets: HashMap<String, HashMap<(String, i32), Committed>> = HashMap::new();
    let mut scratch = Vec::new();
    let mut bad = 0usize;
    while offset < end {
        let read = engine::log::read(&log, offset, LOAD_READ_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        let before = offset;
        for chunk in &read.chunks {
            for item in BatchIter::new(chunk) {
                let (header, range) = item.map_err(|e| format!("{e:?}"))?;
                if header.last_offset() < offset || header.base_offset >= end {
                    continue;
                }
                let batch = &chunk[range];
                sluice_records::visit_records(
                    batch,
                    OFFSETS_MAX_MESSAGE_BYTES * 4,
                    &mut scratch,
                    |_, r| {
                        let Some(key) = r.key else {
                            bad += 1;
                            return Ok(());
                        };
                        match storage::decode_key(key) {
                            Ok(Key::Offset {
                                group,
                                topic,
                                partition,
                            }) => {
                                let map = offsets.entry(group).or_default();
                                match r.value.map(storage::decode_offset_value) {
                                    None => {
                                        map.remove(&(topic, partition));
                                    }
                                    Some(Ok(c)) => {
                                        map.insert((topic, partition), c);
                                    }
                                    Some(Err(_)) => bad += 1,
                                }
                            }
                            Ok(Key::Group { group }) => {
                                match r.value.map(storage::decode_group_value) {
                                    None => {
                                        metas.insert(group, None);
                                    }
                                    Some(Ok(g)) => {
                                        metas.insert(group, Some(g));
                                    }
                                    Some(Err(_)) => bad += 1,
                                }
                            }
                            Err(_) => bad += 1,
                        }
                        Ok(())
                    },
                )
                .map_err(|e| e.to_string())?;
                offset = header.next_offset();
            }
        }
        if offset == before {
            break;
        }
    }
    if bad > 0 {
        tracing::warn!(
            partition,
            records = bad,
            "skipped undecodable records in {OFFSETS_TOPIC}"
        );
    }
    let now = now_ms();
    let mut names: HashSet<String> = metas.keys().cloned().collect();
    names.extend(offsets.keys().cloned());
    let mut loaded = Vec::new();
    for name in names {
        let mut g = match metas.remove(&name).flatten() {
            Some(stored) => storage::restore_group(name.clone(), stored, now),
            None => Group::new(name.clone(), now),
        };
        if let Some(o) = offsets.remove(&name) {
            g.offsets = o.into_iter().collect();
        }
        if g.is_disposable() {
            continue;
        }
        loaded.push((name, g));
    }
    Ok(loaded)
}

/// In a cluster: this shard became the leader of `partition` of
/// `__consumer_offsets`, so it coordinates the partition's groups once it
/// has replayed the partition (they answer COORDINATOR_LOAD_IN_PROGRESS
/// until then). Kafka's coordinator moves with the partition leader the
/// same way.
pub fn became_leader(s: &Rc<ShardState>, partition: i32) {
    let generation = {
        let mut c = s.groups.borrow_mut();
        c.cluster = true;
        c.generation += 1;
        c.loaded.remove(&partition);
        let g = c.generation;
        c.loading.insert(partition, g);
        g
    };
    let s = s.clone();
    glommio::spawn_local(async move {
        let t0 = now_ms();
        let result = load_partition(&s, partition).await;
        let mut c = s.groups.borrow_mut();
        if c.loading.get(&partition) != Some(&generation) {
            // Leadership moved on while loading.
            return;
        }
        c.loading.remove(&partition);
        match result {
            Ok(loaded) => {
                let n = loaded.len();
                c.groups.extend(loaded);
                c.loaded.insert(partition);
                tracing::info!(partition, groups = n, ms = now_ms() - t0, "coordinating the groups of {OFFSETS_TOPIC} partition");
            }
            Err(e) => {
                tracing::error!(partition, error = %e, "cannot load {OFFSETS_TOPIC}; its groups stay unavailable");
            }
        }
    })
    .detach();
}

/// In a cluster: this shard no longer leads `partition` of
/// `__consumer_offsets`: its groups go (members waiting get NOT_COORDINATOR
/// and find the new coordinator).
pub fn lost_leadership(s: &ShardState, partition: i32) {
    let Some(n) = offsets_partitions(s) else {
        return;
    };
    let mut c = s.groups.borrow_mut();
    c.loaded.remove(&partition);
    c.loading.remove(&partition);
    let gone: Vec<String> = c
        .groups
        .keys()
        .filter(|g| partition_for(g, n) == partition)
        .cloned()
        .collect();
    for id in gone {
        if let Some(mut g) = c.groups.remove(&id) {
            g.fail_waiters(ErrorCode::NOT_COORDINATOR);
        }
    }
    tracing::info!(
        partition,
        "no longer coordinating the groups of {OFFSETS_TOPIC} partition"
    );
}

/// Expires offsets (retention of empty groups, deleted topics) and drops
/// empty groups with nothing left, writing tombstones for both.
fn sweep(s: &Rc<ShardState>, now: i64, partitions: i32) {
    let table = s.topics();
    let mut records: HashMap<i32, Records> = HashMap::new();
    {
        let mut c = s.groups.borrow_mut();
        let cfg = c.cfg.clone();
        let mut dead = Vec::new();
        for g in c.groups.values_mut() {
            let p = partition_for(&g.id, partitions);
            let mut expired = g.expired_offsets(now, &cfg);
            expired.extend(
                g.offsets
                    .keys()
                    .filter(|(t, _)| table.get(t).is_none())
                    .cloned(),
            );
            for (topic, partition) in expired {
                if g.offsets.remove(&(topic.clone(), partition)).is_some() {
                    let key = storage::offset_key(&g.id, &topic, partition);
                    records.entry(p).or_default().push((key, None));
                }
            }
            if g.is_disposable() {
                records
                    .entry(p)
                    .or_default()
                    .push((storage::group_key(&g.id), None));
                dead.push(g.id.clone());
            }
        }
        for id in dead {
            c.remove(&id);
        }
    }
    for (p, recs) in records {
        if let Ok(wait) = append(s, p, &recs) {
            glommio::spawn_local(async move {
                let _ = wait.await;
            })
            .detach();
        }
    }
}

/// Topics a consumer subscribes to, from its protocol metadata (Kafka's
/// ConsumerProtocolSubscription: i16 version, then an array of i16-length
/// strings in every version). `None` when it cannot be read.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut at = 2usize;
    let count = i32::from_be_bytes(metadata.get(at..at + 4)?.try_into().ok()?);
    at += 4;
    if count < 0 {
        return None;
    }
    let mut topics = Vec::new();
    for _ in 0..count {
        let len = i16::from_be_bytes(metadata.get(at..at + 2)?.try_into().ok()?);
        at += 2;
        let len = usize::try_from(len).ok()?;
        topics.push(String::from_utf8(metadata.get(at..at + len)?.to_vec()).ok()?);
        at += len;
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_matches_kafka() {
        // Values of Java's "...".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // Utils.abs: MIN_VALUE folds to 0, a negative hash to its absolute value.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("my-group", 50), 1_906_497_762 % 50);
        assert_eq!(partition_for("zzzzzzzzzz", 50), 1_580_979_136 % 50);
    }

    #[test]
    fn subscriptions_are_read() {
        let mut m = vec![0, 1, 0, 0, 0, 2];
        for t in ["a", "topic"] {
            m.extend_from_slice(&(t.len() as i16).to_be_bytes());
            m.extend_from_slice(t.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 0, 0]); // user data etc. follow
        assert_eq!(
            subscribed_topics(&m),
            Some(vec!["a".into(), "topic".into()])
        );
        assert_eq!(subscribed_topics(&m[..9]), None);
        assert_eq!(subscribed_topics(&[]), None);
    }
}
