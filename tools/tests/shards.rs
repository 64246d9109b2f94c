//! Two shards: partitions live on both, connections land on either (the
//! kernel spreads them over the SO_REUSEPORT listeners), and every
//! partition is reachable from every connection.

mod common;

use std::collections::BTreeSet;

use common::{batch, records_of, Broker, Stored};
use shard_router::partition_shard;

const TOPIC: &str = "spread";
const PARTITIONS: i32 = 6;
/// Enough connections that both shards almost surely accept some; the test
/// does not depend on where they land.
const CONNECTIONS: usize = 10;

#[test]
fn every_partition_works_from_every_connection_with_two_shards() {
    let broker = Broker::start(&["--shards", "2"]);
    let owners: BTreeSet<u16> = (0..PARTITIONS)
        .map(|p| partition_shard(TOPIC, p, 2).0)
        .collect();
    assert_eq!(owners, BTreeSet::from([0, 1]), "partitions on both shards");

    let mut clients: Vec<_> = (0..CONNECTIONS).map(|_| broker.connect()).collect();
    let created = clients[0].create_topic(TOPIC, PARTITIONS, &[]);
    assert_eq!(created.num_partitions, PARTITIONS);

    // Each connection writes one keyed record to every partition.
    let mut written: Vec<Vec<Stored>> = vec![Vec::new(); PARTITIONS as usize];
    for (c, client) in clients.iter_mut().enumerate() {
        for p in 0..PARTITIONS {
            let key = format!("conn{c}-part{p}").into_bytes();
            let value = format!("value from connection {c}").into_bytes();
            let answer = client.produce(TOPIC, p, batch(&[(&key, &value)]));
            assert_eq!(
                answer.error_code, 0,
                "connection {c}, partition {p}: {:?}",
                answer.error_message
            );
            written[p as usize].push((answer.base_offset, key, value));
        }
    }
    for (p, records) in written.iter().enumerate() {
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        let dense: Vec<i64> = (0..CONNECTIONS as i64).collect();
        assert_eq!(offsets, dense, "partition {p}: offsets in write order");
    }

    // Every connection reads every partition back, written by all of them.
    for (c, client) in clients.iter_mut().enumerate() {
        for p in 0..PARTITIONS {
            let fetched = client.fetch(TOPIC, p, 0);
            assert_eq!(fetched.error_code, 0, "connection {c}, partition {p}");
            assert_eq!(fetched.high_watermark, CONNECTIONS as i64);
            assert_eq!(
                records_of(&fetched.records),
                written[p as usize],
                "connection {c}, partition {p}"
            );
            assert_eq!(client.latest_offset(TOPIC, p), CONNECTIONS as i64);
        }
    }
}
