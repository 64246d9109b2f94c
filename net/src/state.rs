//! A shard's state: its copy of the topic table, the partition logs it owns,
//! its group-commit flusher. Shard 0 also owns topic admin and producer ids.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::cleaner::{CleanerOptions, Pace, PaceOptions, RatePace};
use engine::log::{delete_dropped_files, flush_all, PartitionLog};
use engine::storage::dma::DmaStorage;
use engine::storage::{read_file, write_file_atomic};
use engine::{CacheBudget, LogError};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use shard_router::{partition_shard, Router, ShardId, Shutdown};

/// Group-commit rounds a shard's flusher runs at once.
const MAX_FLUSH_ROUNDS_IN_FLIGHT: u32 = engine::log::MAX_FLUSH_JOBS_IN_FLIGHT;

use crate::config::BrokerConfig;
use crate::topics::{log_config, SharedTopics, TopicTable};

pub type Log = Rc<RefCell<PartitionLog<DmaStorage>>>;

/// How often each replicated partition's high watermark is checkpointed
/// when it moved (Kafka's `replica.high.watermark.checkpoint.interval.ms`);
/// a clean shutdown writes it too.
pub const HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS: i64 = 5_000;

/// How often idle read-aheads are swept: one no fetch used between two
/// sweeps is dropped, giving its share of the shard's read-ahead budget
/// (`engine::log::READ_AHEAD_BUDGET_BYTES`) back to partitions being read.
pub const READ_AHEAD_IDLE_SWEEP_MS: i64 = 5_000;

const TOPICS_FILE: &str = "topics.json";
const PRODUCER_IDS_FILE: &str = "producer-ids";
/// Producer ids are reserved durably in blocks of this size, so an id is never
/// handed out twice, even across a crash.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// The CPU shares of the log cleaner's task queue (the default queue has 1000).
pub const CLEANER_SHARES: usize = 100;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub struct ShardState {
    pub shard: ShardId,
    pub shards: u16,
    pub config: BrokerConfig,
    pub router: Router<ShardState>,
    pub shutdown: Shutdown,
    topics: RefCell<SharedTopics>,
    logs: RefCell<HashMap<(String, i32), Log>>,
    budget: CacheBudget,
    storage: DmaStorage,
    dirty: RefCell<Vec<Log>>,
    flush_signal: LocalSender<()>,
    flush_wake: RefCell<Option<LocalReceiver<()>>>,
    /// Shard 0: the next producer id, and the end of the durably reserved block.
    producer_ids: Cell<(i64, i64)>,
    /// Shard 0: topic admin operations run one at a time.
    pub admin_lock: glommio::sync::Semaphore,
    /// Topic table changes are applied one at a time on each shard.
    apply_lock: glommio::sync::Semaphore,
    /// Logs handed to another shard of this node are closed one at a time,
    /// so a second ask waits for the close in flight (see `release`).
    release_lock: glommio::sync::Semaphore,
    started: Cell<bool>,
    /// Open client connections on this shard.
    pub(crate) connections: Cell<usize>,
    /// Set once this shard stopped reading requests and answered all it had.
    drained: Cell<bool>,
    /// The consumer groups placed on this shard (see `groups`).
    pub groups: RefCell<crate::groups::Coordinator>,
    /// This shard's counters and histograms (see `metrics`).
    pub metrics: Rc<crate::metrics::ShardMetrics>,
    /// Replicated partitions this shard holds, and its role in each.
    pub replicas: crate::replication::Replicas,
    /// The port this shard's replication listener is bound to (0: none).
    pub replication_port: Cell<u16>,
}

impl ShardState {
    pub fn new(
        shard: ShardId,
        shards: u16,
        config: BrokerConfig,
        router: Router<ShardState>,
        shutdown: Shutdown,
    ) -> Self {
        let (tx, rx) = local_channel::new_bounded(1);
        ShardState {
            groups: RefCell::new(crate::groups::Coordinator::new(&config)),
            shard,
            shards,
            budget: CacheBudget::new(config.tail_cache_bytes),
            config,
            router,
            shutdown,
            topics: RefCell::new(Arc::new(TopicTable::default())),
            logs: RefCell::new(HashMap::new()),
            storage: DmaStorage,
            dirty: RefCell::new(Vec::new()),
            flush_signal: tx,
            flush_wake: RefCell::new(Some(rx)),
            producer_ids: Cell::new((0, 0)),
            admin_lock: glommio::sync::Semaphore::new(1),
            apply_lock: glommio::sync::Semaphore::new(1),
            release_lock: glommio::sync::Semaphore::new(1),
            started: Cell::new(false),
            connections: Cell::new(0),
            drained: Cell::new(false),
            metrics: Rc::default(),
            replicas: crate::replication::Replicas::default(),
            replication_port: Cell::new(0),
        }
    }

    pub fn topics(&self) -> SharedTopics {
        self.topics.borrow().clone()
    }

    /// The shard of this node that owns the partition: for a replicated
    /// topic, the shard the controller placed this node's replica on
    /// (shard 0 when this node holds none: it answers that the partition is
    /// not here); else by hash.
    pub fn owner(&self, topic: &str, partition: i32) -> ShardId {
        let topics = self.topics.borrow();
        match topics.get(topic) {
            Some(meta) if meta.is_replicated() => ShardId(
                meta.replica_shard(partition, self.config.node_id)
                    .filter(|&s| s < self.shards)
                    .unwrap_or(0),
            ),
            _ => partition_shard(topic, partition, self.shards),
        }
    }

    /// Whether this shard holds partition `partition` of `meta`.
    fn holds(&self, meta: &crate::topics::TopicMeta, partition: i32) -> bool {
        if meta.is_replicated() {
            meta.replica_shard(partition, self.config.node_id) == Some(self.shard.0)
        } else {
            partition_shard(&meta.name, partition, self.shards) == self.shard
        }
    }

    pub fn log(&self, topic: &str, partition: i32) -> Option<Log> {
        self.logs
            .borrow()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Tail cache (hits, misses, bytes held) of this shard.
    pub fn cache_stats(&self) -> (u64, u64, u64) {
        let b = &self.budget;
        (b.hits(), b.misses(), b.used_bytes() as u64)
    }

    /// (topic, partition, high watermark) of every log this shard owns.
    pub fn high_watermarks(&self) -> Vec<(String, i32, i64)> {
        self.logs
            .borrow()
            .iter()
            .map(|((t, p), l)| (t.clone(), *p, l.borrow().visible_offset()))
            .collect()
    }

    fn log_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Queues `log` for the next group commit.
    pub fn mark_dirty(&self, log: &Log) {
        let mut dirty = self.dirty.borrow_mut();
        if !dirty.iter().any(|l| Rc::ptr_eq(l, log)) {
            dirty.push(log.clone());
        }
        // A full signal channel means a wake-up is already pending.
        let _ = self.flush_signal.try_send(());
    }

    /// Loads the topic table and opens the logs this shard owns.
    pub async fn start(self: &Rc<Self>) -> Result<(), LogError> {
        // glommio marks a device pollable when the first DMA file it opens there is
        // empty, after which every read fails with EOPNOTSUPP (PLATFORM.md).
        let dir = &self.config.data_dir;
        engine::storage::dma::prime_device(dir)
            .await
            .map_err(|e| LogError::io("prime device", dir, &e))?;

        let path = self.config.data_dir.join(TOPICS_FILE);
        let table = match read_file(&self.storage, &path)
            .await
            .map_err(|e| LogError::io("read", &path, &e))?
        {
            Some(data) => {
                serde_json::from_slice::<TopicTable>(&data).map_err(|e| LogError::Corrupt {
                    path: path.clone(),
                    position: 0,
                    reason: e.to_string(),
                })?
            }
            None => TopicTable::default(),
        };
        if self.shard.0 == 0 {
            self.load_producer_ids().await?;
        }
        self.apply_topics(Arc::new(table)).await?;
        self.started.set(true);
        glommio::spawn_local(crate::groups::run(self.clone())).detach();
        Ok(())
    }

    /// Waits until every shard has loaded its logs, so no connection is served
    /// against a half-loaded node.
    pub async fn wait_all_started(&self) {
        self.wait_all(|s| s.started.get()).await
    }

    /// Marks this shard drained (no more requests will be read) and waits until
    /// every shard is: only then may logs close, since a connection on another
    /// shard could still append to this shard's partitions.
    pub async fn wait_all_drained(&self) {
        self.drained.set(true);
        self.wait_all(|s| s.drained.get()).await
    }

    async fn wait_all(&self, done: fn(&ShardState) -> bool) {
        for shard in 0..self.shards {
            loop {
                let ok = self
                    .router
                    .call(ShardId(shard), move |s: &Rc<ShardState>| {
                        let ok = done(s);
                        Box::pin(async move { ok })
                    })
                    .await
                    // A shard that is gone is neither serving nor appending.
                    .unwrap_or(true);
                if ok {
                    break;
                }
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Replaces this shard's copy of the topic table, opening logs of new
    /// partitions it owns and deleting those of deleted topics.
    pub async fn apply_topics(self: &Rc<Self>, table: SharedTopics) -> Result<(), LogError> {
        let _permit = self
            .apply_lock
            .acquire_permit(1)
            .await
            .map_err(|e| LogError::InvalidArgument(e.to_string()))?;
        if table.version < self.topics.borrow().version {
            return Ok(());
        }
        // The new table is installed only once every partition it gives this
        // shard has its log open: a shard never lists a partition it cannot serve.
        let old = self.topics.borrow().clone();
        // Deleted (or deleted and re-created) topics, and partitions a
        // reassignment moved off this shard: drop and delete their logs. A
        // partition that moved to another shard of this node keeps its
        // directory (it is per node): the log is closed, for the new shard
        // to open.
        for (name, meta) in &old.topics {
            let kept = table.get(name).filter(|t| t.id == meta.id);
            for p in 0..meta.partitions {
                if self.holds(meta, p) && !kept.is_some_and(|t| self.holds(t, p)) {
                    let tp = (name.clone(), p);
                    let on_this_node = kept.and_then(|t| t.replica_shard(p, self.config.node_id));
                    if let Some(shard) = on_this_node {
                        tracing::info!(
                            topic = name,
                            partition = p,
                            to_shard = shard,
                            "replica moved to another shard of this node; closing its log"
                        );
                        self.release(&tp).await?;
                        continue;
                    }
                    if kept.is_some() {
                        tracing::info!(
                            topic = name,
                            partition = p,
                            "replica moved off this node; deleting its log"
                        );
                    }
                    crate::replication::forget(self, &tp);
                    self.logs.borrow_mut().remove(&tp);
                    engine::recovery::delete(&self.storage, &self.log_dir(name, p)).await?;
                }
            }
        }
        let now = now_ms();
        for (name, meta) in &table.topics {
            let cfg = log_config(&meta.configs, &self.config.topic_defaults)
                .map_err(LogError::InvalidArgument)?;
            for p in 0..meta.partitions {
                if !self.holds(meta, p) {
                    continue;
                }
                if let Some(log) = self.log(name, p) {
                    log.borrow_mut().set_config(cfg.clone());
                    continue;
                }
                // Moved here from another shard of this node: that shard
                // closes the log first, so it is never open on both.
                let from = old
                    .get(name)
                    .filter(|m| m.id == meta.id && m.is_replicated())
                    .and_then(|m| m.replica_shard(p, self.config.node_id))
                    .filter(|&o| o != self.shard.0 && o < self.shards);
                if let Some(from) = from {
                    let hw = self.take_from(ShardId(from), name, p).await?;
                    crate::replication::took_over(self, &(name.clone(), p), hw);
                    tracing::info!(
                        topic = name,
                        partition = p,
                        from_shard = from,
                        "replica moved here from another shard of this node; opening its log"
                    );
                }
                let log = engine::recovery::open(
                    self.storage,
                    self.log_dir(name, p),
                    cfg.clone(),
                    self.budget.clone(),
                    now,
                )
                .await?;
                // A replica starts from the high watermark it checkpointed
                // (Kafka's replication-offset-checkpoint): a leader right
                // after a restart serves what was committed before it.
                if let Some(hw) = log
                    .checkpointed_high_watermark()
                    .filter(|_| meta.is_replicated())
                {
                    crate::replication::took_over(self, &(name.clone(), p), hw);
                }
                self.logs
                    .borrow_mut()
                    .insert((name.clone(), p), Rc::new(RefCell::new(log)));
            }
        }
        *self.topics.borrow_mut() = table;
        if let Some(controller) = self.config.controller.as_ref().filter(|c| c.caught_up()) {
            // New replicated partitions take their roles now, not at the
            // next metadata change.
            crate::replication::sync(self, &controller.metadata());
        }
        Ok(())
    }

    /// This shard gives up `tp`, which moved to another shard of this node:
    /// its role ends (clients get NOT_LEADER_OR_FOLLOWER, `acks=all` waiters
    /// too), then the log is flushed and closed cleanly, so appends that got
    /// in before are on disk and later ones are refused (`AppendError::Closed`). Returns the high
    /// watermark this shard knew, for the new shard to start from. A second
    /// call (the new shard asks while this shard's own table change is
    /// closing the log) waits for that close and finds nothing left to do.
    pub async fn release(&self, tp: &crate::replication::Tp) -> Result<i64, LogError> {
        let _permit = self
            .release_lock
            .acquire_permit(1)
            .await
            .map_err(|e| LogError::InvalidArgument(e.to_string()))?;
        let hw = crate::replication::hand_over(self, tp);
        let log = self.logs.borrow_mut().remove(tp);
        if let Some(log) = log {
            self.checkpoint_high_watermark(tp, &log).await;
            // A log that cannot close cleanly (a poisoned one) is recovered
            // by the new shard as after a crash: better than no shard
            // serving the partition.
            if let Err(e) = engine::recovery::close(&log, now_ms()).await {
                tracing::warn!(topic = tp.0, partition = tp.1, error = %e, "could not close the log cleanly before handing it over");
            }
        }
        Ok(hw)
    }

    /// Asks shard `from` to release partition `partition` of `topic` and
    /// waits until it has: its high watermark.
    async fn take_from(&self, from: ShardId, topic: &str, partition: i32) -> Result<i64, LogError> {
        let tp = (topic.to_string(), partition);
        self.router
            .call(from, move |s: &Rc<ShardState>| {
                let s = s.clone();
                Box::pin(async move { s.release(&tp).await.map_err(|e| e.to_string()) })
            })
            .await
            .map_err(|e| LogError::InvalidArgument(format!("{from} did not answer: {e}")))?
            .map_err(|e| LogError::InvalidArgument(format!("{from} could not close the log: {e}")))
    }

    /// Shard 0: persists `table` and installs it on every shard.
    pub async fn publish_topics(self: &Rc<Self>, table: TopicTable) -> Result<(), String> {
        debug_assert_eq!(self.shard.0, 0, "topic admin runs on shard 0");
        let path = self.config.data_dir.join(TOPICS_FILE);
        let body = serde_json::to_vec_pretty(&table).map_err(|e| e.to_string())?;
        write_file_atomic(&self.storage, &path, &body)
            .await
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        let table = Arc::new(table);
        let results = self
            .router
            .broadcast(move |s: &Rc<ShardState>| {
                let s = s.clone();
                let t = table.clone();
                Box::pin(async move { s.apply_topics(t).await.map_err(|e| e.to_string()) })
            })
            .await
            .map_err(|e| e.to_string())?;
        results.into_iter().collect()
    }

    async fn load_producer_ids(&self) -> Result<(), LogError> {
        let path = self.config.data_dir.join(PRODUCER_IDS_FILE);
        let reserved_end = match read_file(&self.storage, &path)
            .await
            .map_err(|e| LogError::io("read", &path, &e))?
        {
            Some(d) => std::str::from_utf8(&d)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| LogError::Corrupt {
                    path: path.clone(),
                    position: 0,
                    reason: "not a number".into(),
                })?,
            None => 0,
        };
        // Ids up to the reserved end may have been handed out before a crash:
        // start after them.
        self.producer_ids.set((reserved_end, reserved_end));
        Ok(())
    }

    /// Shard 0: the next never-used producer id.
    pub async fn allocate_producer_id(&self) -> Result<i64, LogError> {
        let (next, end) = self.producer_ids.get();
        if next >= end {
            let new_end = next + PRODUCER_ID_BLOCK;
            let path = self.config.data_dir.join(PRODUCER_IDS_FILE);
            write_file_atomic(&self.storage, &path, new_end.to_string().as_bytes())
                .await
                .map_err(|e| LogError::io("write", &path, &e))?;
            let (next, _) = self.producer_ids.get();
            self.producer_ids.set((next.max(end), new_end));
        }
        let (next, end) = self.producer_ids.get();
        self.producer_ids.set((next + 1, end));
        Ok(next)
    }

    /// The group-commit loop: whenever logs are dirty, flush them all together.
    /// Up to [`MAX_FLUSH_ROUNDS_IN_FLIGHT`] rounds run at once, so appends that
    /// arrive while a round's writes are in flight go to the disk without
    /// waiting for them (a round without fdatasync is short and small).
    pub async fn run_flusher(self: Rc<Self>) {
        let Some(wake) = self.flush_wake.borrow_mut().take() else {
            return;
        };
        let rounds = Rc::new(Cell::new(0u32));
        loop {
            let logs: Vec<Log> = if rounds.get() < MAX_FLUSH_ROUNDS_IN_FLIGHT {
                std::mem::take(&mut *self.dirty.borrow_mut())
            } else {
                Vec::new()
            };
            if logs.is_empty() {
                // Woken by new dirty logs or by a round that ended. Not stopped
                // by shutdown: requests still being answered during the drain
                // need their flushes.
                if wake.recv().await.is_none() {
                    return;
                }
                continue;
            }
            rounds.set(rounds.get() + 1);
            let (state, rounds) = (self.clone(), rounds.clone());
            glommio::spawn_local(async move {
                let bytes = state.metrics.take_unflushed_bytes();
                let started = std::time::Instant::now();
                let flushed = flush_all(&logs, now_ms()).await;
                if flushed > 0 {
                    state.metrics.flushed(flushed, bytes, started.elapsed());
                }
                rounds.set(rounds.get() - 1);
                // Logs skipped because their earlier jobs were in flight, or
                // appended to meanwhile, go into the next round.
                let now = now_ms();
                for log in &logs {
                    if log.borrow().needs_flush(now) {
                        state.mark_dirty(log);
                    }
                }
                let _ = state.flush_signal.try_send(());
            })
            .detach();
        }
    }

    /// Writes the high watermark this shard knows for a replicated
    /// partition to its log's checkpoint, if it changed. A failure is
    /// logged: a restart then starts from an older one (never a newer).
    async fn checkpoint_high_watermark(&self, tp: &crate::replication::Tp, log: &Log) {
        let Some(hw) = crate::replication::checkpointable_high_watermark(self, tp) else {
            return;
        };
        if let Err(e) = engine::recovery::checkpoint_high_watermark(log, hw).await {
            tracing::warn!(topic = tp.0, partition = tp.1, error = %e, "could not checkpoint the high watermark");
        }
    }

    /// Periodic work: interval flushes, retention, high watermark
    /// checkpoints.
    pub async fn run_housekeeping(self: Rc<Self>) {
        let mut last_retention = now_ms();
        let mut last_hw_checkpoint = now_ms();
        let mut last_read_ahead_sweep = now_ms();
        while !self.shutdown.is_set() {
            glommio::timer::sleep(Duration::from_millis(100)).await;
            let now = now_ms();
            let logs: Vec<Log> = self.logs.borrow().values().cloned().collect();
            for log in &logs {
                if log.borrow().needs_flush(now) {
                    self.mark_dirty(log);
                }
            }
            if now - last_read_ahead_sweep >= READ_AHEAD_IDLE_SWEEP_MS {
                last_read_ahead_sweep = now;
                for log in &logs {
                    log.borrow_mut().release_idle_read_ahead();
                }
            }
            if now - last_hw_checkpoint >= HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS {
                last_hw_checkpoint = now;
                let logs: Vec<(crate::replication::Tp, Log)> = self
                    .logs
                    .borrow()
                    .iter()
                    .map(|(tp, log)| (tp.clone(), log.clone()))
                    .collect();
                for (tp, log) in &logs {
                    self.checkpoint_high_watermark(tp, log).await;
                }
            }
            if now - last_retention >= self.config.retention_check_interval_ms as i64 {
                last_retention = now;
                let logs: Vec<(crate::replication::Tp, Log)> = self
                    .logs
                    .borrow()
                    .iter()
                    .map(|(tp, log)| (tp.clone(), log.clone()))
                    .collect();
                let topics = self.topics();
                for (tp, log) in &logs {
                    log.borrow_mut().expire_producers(now);
                    // A replicated partition deletes only below its high
                    // watermark (and a follower only what its leader did).
                    let bound = if topics
                        .get(&tp.0)
                        .is_some_and(crate::topics::TopicMeta::is_replicated)
                    {
                        self.replicas.retention_bound(tp)
                    } else {
                        i64::MAX
                    };
                    let planned = log.borrow_mut().plan_retention_below(now, bound) > 0;
                    if planned || log.borrow().has_pending_deletes() {
                        if let Err(e) = delete_dropped_files(log).await {
                            tracing::warn!(error = %e, "retention could not delete files");
                        }
                    }
                }
            }
        }
    }

    /// The log cleaner of this shard: takes the filthiest due compacted log,
    /// one at a time, cleans it with a bounded key map at a bounded I/O rate,
    /// yielding to the data path; sleeps `log.cleaner.backoff.ms` when no log
    /// is due.
    pub async fn run_cleaner(self: Rc<Self>) {
        let opts = CleanerOptions {
            map_memory_bytes: usize::try_from(self.config.log_cleaner_dedupe_buffer_bytes)
                .unwrap_or(usize::MAX),
            ..CleanerOptions::default()
        };
        let mut pace = ShardPace {
            inner: RatePace::new(pace_options(&self.config)),
            metrics: self.metrics.clone(),
        };
        let backoff = Duration::from_millis(self.config.log_cleaner_backoff_ms.max(1));
        let mut idle_since = std::time::Instant::now();
        let mut first = true;
        while !self.shutdown.is_set() {
            if first || idle_since.elapsed() < backoff {
                // Wake often enough to notice a shutdown.
                glommio::timer::sleep(backoff.min(Duration::from_millis(200))).await;
                if idle_since.elapsed() < backoff {
                    continue;
                }
            }
            first = false;
            let now = now_ms();
            let logs: Vec<Log> = self.logs.borrow().values().cloned().collect();
            let mut filthiest: Option<(f64, Log)> = None;
            let (mut max_ratio, mut max_lag) = (0.0f64, 0i64);
            for log in logs {
                let Some(d) = log.borrow().dirtiness(now) else {
                    continue;
                };
                max_ratio = max_ratio.max(d.ratio);
                max_lag = max_lag.max(d.lag_ms);
                if d.due && filthiest.as_ref().is_none_or(|(r, _)| d.ratio > *r) {
                    filthiest = Some((d.ratio, log.clone()));
                }
            }
            let mut m = self.metrics.cleaner.get();
            m.max_dirty_ratio = max_ratio;
            m.max_lag_ms = max_lag;
            self.metrics.cleaner.set(m);
            let Some((_, log)) = filthiest else {
                idle_since = std::time::Instant::now();
                continue;
            };
            let result = engine::cleaner::clean(&log, now, false, &opts, &mut pace).await;
            let mut m = self.metrics.cleaner.get();
            match result {
                Ok(Some(stats)) => {
                    m.passes += 1;
                    m.bytes_read += stats.bytes_read;
                    m.bytes_written += stats.bytes_written;
                    m.records_removed += stats.records_read - stats.records_kept;
                    tracing::debug!(dir = %log.borrow().dir().display(), ?stats, "cleaned");
                }
                Ok(None) => idle_since = std::time::Instant::now(),
                Err(e) => {
                    m.errors += 1;
                    tracing::warn!(dir = %log.borrow().dir().display(), error = %e, "log cleaner pass failed");
                    idle_since = std::time::Instant::now();
                }
            }
            self.metrics.cleaner.set(m);
            if let Err(e) = delete_dropped_files(&log).await {
                tracing::warn!(error = %e, "could not delete dropped segment files");
            }
        }
    }

    /// Flushes and closes every log cleanly (graceful shutdown).
    pub async fn close_all(&self) {
        let logs: Vec<(String, i32, Log)> = self
            .logs
            .borrow()
            .iter()
            .map(|((t, p), l)| (t.clone(), *p, l.clone()))
            .collect();
        for (topic, partition, log) in logs {
            self.checkpoint_high_watermark(&(topic.clone(), partition), &log)
                .await;
            if let Err(e) = engine::recovery::close(&log, now_ms()).await {
                tracing::error!(topic, partition, error = %e, "could not close the log cleanly");
            }
        }
    }
}

/// The cleaner's pacing from the broker config (the defer wait is capped at
/// [`engine::cleaner::MAX_DEFER_WAIT`]; the config loader refuses more).
pub fn pace_options(config: &BrokerConfig) -> PaceOptions {
    PaceOptions {
        max_bytes_per_second: config.log_cleaner_io_max_bytes_per_second,
        min_bytes_per_second: config.log_cleaner_io_min_bytes_per_second,
        defer_wait: Duration::from_micros(config.log_cleaner_defer_wait_us)
            .min(engine::cleaner::MAX_DEFER_WAIT),
        ..PaceOptions::default()
    }
}

/// The shard's cleaner pacing, publishing what it does to the shard's
/// metrics as it goes (a pass may take minutes).
struct ShardPace {
    inner: RatePace,
    metrics: Rc<crate::metrics::ShardMetrics>,
}

impl ShardPace {
    fn publish(&self) {
        let mut m = self.metrics.cleaner.get();
        m.pace = self.inner.stats();
        self.metrics.cleaner.set(m);
    }
}

impl Pace for ShardPace {
    async fn before_io(&mut self, bytes: u64) {
        self.inner.before_io(bytes).await;
        self.publish();
    }

    async fn pace(&mut self, bytes: u64) {
        self.inner.pace(bytes).await;
        self.publish();
    }
}
