//! DescribeLogDirs v1-v5: the broker's one log dir (the data dir) with the size
//! of each partition it holds (read on the owning shard), offset lag 0 and no
//! future replicas, and the filesystem's total and usable bytes (v4+).
//! Partitions asked for that do not exist are left out, as Kafka does.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use futures::future::join_all;
use shard_router::ShardId;
use sluice_codec::describe_log_dirs_request::DescribeLogDirsRequest;
use sluice_codec::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResponse, DescribeLogDirsResult, DescribeLogDirsTopic,
};

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

/// Groups partition sizes into the response's topics, by name and index. Pure.
pub(crate) fn group_by_topic(sizes: Vec<(String, i32, u64)>) -> Vec<DescribeLogDirsTopic> {
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for (topic, partition_index, size_bytes) in sizes {
        topics
            .entry(topic)
            .or_default()
            .push(DescribeLogDirsPartition {
                partition_index,
                partition_size: i64::try_from(size_bytes).unwrap_or(i64::MAX),
                offset_lag: 0,
                is_future_key: false,
            });
    }
    topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
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

/// Runs on the owning shard: the sizes of the partitions it holds.
fn sizes_on_shard(s: &ShardState, partitions: Vec<(String, i32)>) -> Vec<(String, i32, u64)> {
    partitions
        .into_iter()
        .filter_map(|(topic, p)| {
            let size = s.log(&topic, p)?.borrow().size_bytes();
            Some((topic, p, size))
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
    let wanted = wanted_partitions(&table, filter.as_deref());
    let mut by_shard: BTreeMap<ShardId, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, p) in wanted {
        by_shard
            .entry(state.owner(&topic, p))
            .or_default()
            .push((topic, p));
    }
    let answers = join_all(by_shard.into_iter().map(|(shard, partitions)| {
        state.router.call(shard, move |s: &Rc<ShardState>| {
            let sizes = sizes_on_shard(s, partitions);
            Box::pin(async move { sizes })
        })
    }))
    .await;
    let mut sizes = Vec::new();
    for answer in answers {
        match answer {
            Ok(s) => sizes.extend(s),
            Err(e) => tracing::warn!(error = %e, "DescribeLogDirs: a shard did not answer"),
        }
    }
    let dir = &state.config.data_dir;
    let log_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
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
        results: vec![DescribeLogDirsResult {
            error_code: 0,
            log_dir: log_dir.display().to_string(),
            topics: group_by_topic(sizes),
            total_bytes,
            usable_bytes,
            is_cordoned: false,
        }],
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

    #[test]
    fn grouped_and_sorted() {
        let topics = group_by_topic(vec![
            ("b".into(), 0, 10),
            ("a".into(), 1, 20),
            ("a".into(), 0, 30),
        ]);
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
                ("a".into(), 0, 30, 0, false),
                ("a".into(), 1, 20, 0, false),
                ("b".into(), 0, 10, 0, false),
            ]
        );
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
