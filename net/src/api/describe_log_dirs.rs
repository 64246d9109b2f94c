//! DescribeLogDirs v1-v5: one log dir per shard, named `shard-N` (the name
//! AlterReplicaLogDirs takes to move a replica to that shard), each with the
//! replicas whose log is open there: size, offset lag (Kafka's: a follower's
//! log end below the high watermark it knows) and, while a move to another
//! shard is under way, the replica again under the target shard as a future
//! replica. All shards share the data dir, so each reports the total and
//! usable bytes of its filesystem (v4+). Partitions asked for that do not
//! exist are left out, as Kafka does.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use shard_router::NodeId;
use sluice_codec::describe_log_dirs_request::DescribeLogDirsRequest;
use sluice_codec::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};

use crate::api::alter_replica_log_dirs::path_of_shard;
use crate::state::ShardState;
use crate::topics::TopicTable;

/// The (topic, partition) pairs asked for that exist: every partition when
/// `filter` is `None`. Pure.
pub(crate) fn wanted_partitions(
    table: &TopicTable,
    filter: Option<&[(String, Vec<i32>)]>,
) -> Vec<(String, i32)> {
    match filter {
        None => table
            .topics
            .values()
            .flat_map(|m| (0..m.partitions).map(move |p| (m.name.clone(), p)))
            .collect(),
        Some(asked) => {
            let mut seen = HashSet::new();
            let mut wanted = Vec::new();
            for (topic, partitions) in asked {
                let Some(meta) = table.get(topic) else {
                    continue;
                };
                for &p in partitions {
                    if p >= 0 && p < meta.partitions && seen.insert((topic.as_str(), p)) {
                        wanted.push((topic.clone(), p));
                    }
                }
            }
            wanted
        }
    }
}

/// One replica in a log dir (a shard), as DescribeLogDirs lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DirEntry {
    pub topic: String,
    pub partition: i32,
    pub size_bytes: u64,
    /// Kafka's offset lag: for a current replica, how far its log end is
    /// below the high watermark it knows; for a future one, how far it is
    /// behind the current one (0 here: the data does not move).
    pub offset_lag: i64,
    pub is_future: bool,
}

/// The log dirs of this node, one per shard (`shard-N`), each with the
/// replicas it holds. `held` is what each shard has open: (shard, entry).
/// A replica the controller has placed on another shard of this node
/// (`target`) that has not opened it yet is also listed there as a future
/// replica, as Kafka lists a replica being moved between log dirs, so
/// `kafka-reassign-partitions --verify` sees the move in progress. Pure.
pub(crate) fn log_dirs(
    shards: u16,
    held: Vec<(u16, DirEntry)>,
    target: impl Fn(&str, i32) -> Option<u16>,
) -> Vec<(u16, Vec<DirEntry>)> {
    let mut dirs: Vec<(u16, Vec<DirEntry>)> = (0..shards).map(|s| (s, Vec::new())).collect();
    for (shard, entry) in held {
        let future = target(&entry.topic, entry.partition)
            .filter(|&t| t != shard && t < shards)
            .map(|t| {
                (
                    t,
                    DirEntry {
                        offset_lag: 0,
                        is_future: true,
                        ..entry.clone()
                    },
                )
            });
        if let Some((_, entries)) = dirs.get_mut(usize::from(shard)) {
            entries.push(entry);
        }
        if let Some((t, entry)) = future {
            dirs[usize::from(t)].1.push(entry);
        }
    }
    dirs
}

/// Groups a log dir's replicas into the response's topics, by name and
/// index. Pure.
pub(crate) fn group_by_topic(entries: Vec<DirEntry>) -> Vec<DescribeLogDirsTopic> {
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for e in entries {
        topics
            .entry(e.topic)
            .or_default()
            .push(DescribeLogDirsPartition {
                partition_index: e.partition,
                partition_size: i64::try_from(e.size_bytes).unwrap_or(i64::MAX),
                offset_lag: e.offset_lag,
                is_future_key: e.is_future,
            });
    }
    topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| (p.partition_index, p.is_future_key));
            DescribeLogDirsTopic { name, partitions }
        })
        .collect()
}

/// Total and usable (available to an unprivileged user) bytes of the
/// filesystem holding `path`.
#[allow(unsafe_code)]
pub(crate) fn filesystem_bytes(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and
    // `stat` is a plain struct the call fills; zeroed is a valid value of it.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fragment = stat.f_frsize as u64;
    Ok((
        (stat.f_blocks as u64).saturating_mul(fragment),
        (stat.f_bavail as u64).saturating_mul(fragment),
    ))
}

/// Runs on each shard: the asked partitions whose log is open there.
fn held_on_shard(s: &ShardState, wanted: &[(String, i32)]) -> Vec<(u16, DirEntry)> {
    wanted
        .iter()
        .filter_map(|(topic, p)| {
            let log = s.log(topic, *p)?;
            let (size_bytes, log_end) = {
                let l = log.borrow();
                (l.size_bytes(), l.log_end_offset())
            };
            let tp = (topic.clone(), *p);
            Some((
                s.shard.0,
                DirEntry {
                    topic: topic.clone(),
                    partition: *p,
                    size_bytes,
                    offset_lag: crate::replication::offset_lag(s, &tp, log_end),
                    is_future: false,
                },
            ))
        })
        .collect()
}

pub async fn handle(
    state: &Rc<ShardState>,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let table = state.topics();
    let filter: Option<Vec<(String, Vec<i32>)>> = req
        .topics
        .map(|ts| ts.into_iter().map(|t| (t.topic, t.partitions)).collect());
    let wanted = Arc::new(wanted_partitions(&table, filter.as_deref()));
    let held = state
        .router
        .broadcast(move |s: &Rc<ShardState>| {
            let held = held_on_shard(s, &wanted);
            Box::pin(async move { held })
        })
        .await;
    let held: Vec<(u16, DirEntry)> = match held {
        Ok(h) => h.into_iter().flatten().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "DescribeLogDirs: a shard did not answer");
            Vec::new()
        }
    };
    // Where the controller places this node's replica now: a shard move in
    // progress shows as a future replica there.
    let metadata = state.config.controller.as_ref().map(|c| c.metadata());
    let node = NodeId(state.config.node_id);
    let target = |topic: &str, partition: i32| {
        let t = metadata.as_ref()?.topics.get(topic)?;
        let p = t.partitions.get(usize::try_from(partition).ok()?)?;
        Some(p.replica_on(node)?.shard.0)
    };
    let dirs = log_dirs(state.shards, held, target);
    let dir = &state.config.data_dir;
    let (total_bytes, usable_bytes) = match filesystem_bytes(dir) {
        Ok((total, usable)) => (
            i64::try_from(total).unwrap_or(i64::MAX),
            i64::try_from(usable).unwrap_or(i64::MAX),
        ),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "statvfs of the data dir failed");
            (-1, -1)
        }
    };
    DescribeLogDirsResponse {
        results: dirs
            .into_iter()
            .map(|(shard, entries)| DescribeLogDirsResult {
                error_code: 0,
                log_dir: path_of_shard(shard),
                topics: group_by_topic(entries),
                total_bytes,
                usable_bytes,
                is_cordoned: false,
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::topics::TopicMeta;

    fn table() -> TopicTable {
        let mut t = TopicTable::default();
        for (name, partitions) in [("a", 2), ("b", 1)] {
            t.topics.insert(
                name.to_string(),
                TopicMeta {
                    name: name.to_string(),
                    id: Uuid::new_v4(),
                    partitions,
                    configs: BTreeMap::new(),
                    internal: false,
                    replicas: Vec::new(),
                },
            );
        }
        t
    }

    #[test]
    fn all_or_the_existing_asked_partitions() {
        let t = table();
        assert_eq!(
            wanted_partitions(&t, None),
            vec![("a".into(), 0), ("a".into(), 1), ("b".into(), 0)]
        );
        let asked = vec![
            ("a".to_string(), vec![1, 1, 5, -1]),
            ("missing".to_string(), vec![0]),
        ];
        assert_eq!(wanted_partitions(&t, Some(&asked)), vec![("a".into(), 1)]);
        assert!(wanted_partitions(&t, Some(&[])).is_empty());
    }

    fn entry(topic: &str, partition: i32, size_bytes: u64) -> DirEntry {
        DirEntry {
            topic: topic.into(),
            partition,
            size_bytes,
            offset_lag: 0,
            is_future: false,
        }
    }

    #[test]
    fn grouped_and_sorted() {
        let mut lagging = entry("a", 0, 30);
        lagging.offset_lag = 7;
        let topics = group_by_topic(vec![entry("b", 0, 10), entry("a", 1, 20), lagging]);
        let flat: Vec<(String, i32, i64, i64, bool)> = topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        t.name.clone(),
                        p.partition_index,
                        p.partition_size,
                        p.offset_lag,
                        p.is_future_key,
                    )
                })
            })
            .collect();
        assert_eq!(
            flat,
            vec![
                ("a".into(), 0, 30, 7, false),
                ("a".into(), 1, 20, 0, false),
                ("b".into(), 0, 10, 0, false),
            ]
        );
    }

    #[test]
    fn one_log_dir_per_shard_and_a_move_in_progress_is_a_future_replica() {
        let held = vec![
            (0, entry("a", 0, 10)),
            (1, entry("a", 1, 20)),
            (1, entry("moving", 0, 30)),
            // A shard this node no longer runs is not listed.
            (5, entry("gone", 0, 1)),
        ];
        // The controller placed "moving"-0 on shard 2; "a"-1 on a shard
        // the node does not run (refused by the controller, never listed).
        let target = |topic: &str, p: i32| match (topic, p) {
            ("moving", 0) => Some(2),
            ("a", 1) => Some(9),
            ("a", 0) => Some(0),
            _ => None,
        };
        let dirs = log_dirs(3, held, target);
        let mut future = entry("moving", 0, 30);
        future.is_future = true;
        assert_eq!(
            dirs,
            vec![
                (0, vec![entry("a", 0, 10)]),
                (1, vec![entry("a", 1, 20), entry("moving", 0, 30)]),
                (2, vec![future]),
            ]
        );
        // Every shard is a log dir, even an empty one.
        assert_eq!(log_dirs(2, Vec::new(), |_, _| None).len(), 2);
    }

    #[test]
    fn filesystem_space() {
        let (total, usable) = filesystem_bytes(Path::new("/")).expect("statvfs /");
        assert!(
            total > 0 && usable <= total,
            "total {total}, usable {usable}"
        );
        assert!(filesystem_bytes(Path::new("/no/such/dir")).is_err());
    }
}
