//! Requests pipelined on one connection: appended in the order sent,
//! answered in the order sent (ARCHITECTURE, "net").

mod common;

use common::{
    batch, produce_request, records_of, single_produce_answer, Broker, Stored, PRODUCE_VERSION,
};
use shard_router::partition_shard;
use sluice_codec::{ApiKey, RequestBody, ResponseBody};

const REQUESTS: usize = 12;
const RECORDS_PER_REQUEST: usize = 3;

fn record(request: usize, index: usize) -> (Vec<u8>, Vec<u8>) {
    (
        format!("req{request:02}-rec{index}").into_bytes(),
        format!("value {request}/{index}").into_bytes(),
    )
}

/// Sends every produce at once (acks=-1), to `partitions` in turn, then reads
/// the answers; returns (partition, base offset) per request, in send order.
fn pipeline(broker: &Broker, topic: &str, partitions: &[i32]) -> Vec<(i32, i64)> {
    let mut client = broker.connect();
    let mut sent = Vec::new();
    for r in 0..REQUESTS {
        let records: Vec<(Vec<u8>, Vec<u8>)> =
            (0..RECORDS_PER_REQUEST).map(|i| record(r, i)).collect();
        let pairs: Vec<(&[u8], &[u8])> = records.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let partition = partitions[r % partitions.len()];
        let correlation_id = client.send(
            PRODUCE_VERSION,
            &produce_request(topic, partition, batch(&pairs)),
        );
        sent.push((correlation_id, partition));
    }
    let mut offsets = Vec::new();
    for (correlation_id, partition) in sent {
        let (got, body) = client.recv(ApiKey::Produce, PRODUCE_VERSION);
        assert_eq!(got, correlation_id, "responses come back in request order");
        let ResponseBody::Produce(r) = body else {
            panic!("not a Produce response")
        };
        let answer = single_produce_answer(r, topic, partition);
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
        offsets.push((partition, answer.base_offset));
    }
    offsets
}

/// Offsets of each partition's requests increase in send order, densely,
/// and a fetch returns the records in send order.
fn check(broker: &Broker, topic: &str, partitions: &[i32], offsets: &[(i32, i64)]) {
    let mut client = broker.connect();
    for &partition in partitions {
        let requests: Vec<usize> = (0..REQUESTS)
            .filter(|r| offsets[*r].0 == partition)
            .collect();
        let bases: Vec<i64> = requests.iter().map(|&r| offsets[r].1).collect();
        let expected: Vec<i64> = (0..requests.len() as i64)
            .map(|i| i * RECORDS_PER_REQUEST as i64)
            .collect();
        assert_eq!(
            bases, expected,
            "partition {partition}: base offsets in send order"
        );
        let fetched = records_of(&client.fetch(topic, partition, 0).records);
        let expected: Vec<Stored> = requests
            .iter()
            .flat_map(|&r| (0..RECORDS_PER_REQUEST).map(move |i| (r, i)))
            .enumerate()
            .map(|(offset, (r, i))| {
                let (k, v) = record(r, i);
                (offset as i64, k, v)
            })
            .collect();
        assert_eq!(
            fetched, expected,
            "partition {partition}: records in send order"
        );
    }
}

#[test]
fn pipelined_produces_are_appended_and_answered_in_order() {
    let broker = Broker::start(&[]);
    broker.connect().create_topic("pipe", 1, &[]);
    let offsets = pipeline(&broker, "pipe", &[0]);
    check(&broker, "pipe", &[0], &offsets);
}

/// With two shards the partitions of one pipeline are on different shards,
/// so at least one is forwarded across cores whichever shard accepted the
/// connection; the order per partition and of responses must still hold.
#[test]
fn pipelined_produces_across_shards_keep_their_order() {
    let broker = Broker::start(&["--shards", "2"]);
    let topic = "pipe2";
    let on_shard = |s: u16| {
        (0..8)
            .find(|&p| partition_shard(topic, p, 2).0 == s)
            .expect("a partition")
    };
    let partitions = [on_shard(0), on_shard(1)];
    broker.connect().create_topic(topic, 8, &[]);
    let offsets = pipeline(&broker, topic, &partitions);
    check(&broker, topic, &partitions, &offsets);
}

/// acks=0: no response at all, so the next response on the connection is
/// the next request's; the records are stored in order all the same.
#[test]
fn acks_zero_produces_get_no_response() {
    let broker = Broker::start(&[]);
    let mut client = broker.connect();
    client.create_topic("fire", 1, &[]);
    for r in 0..REQUESTS {
        let (k, v) = record(r, 0);
        let RequestBody::Produce(mut req) = produce_request("fire", 0, batch(&[(&k, &v)])) else {
            unreachable!("a produce request")
        };
        req.acks = 0;
        client.send(PRODUCE_VERSION, &RequestBody::Produce(req));
    }
    let after = client.send(3, &RequestBody::ApiVersions(common::api_versions_request()));
    let (correlation_id, body) = client.recv(ApiKey::ApiVersions, 3);
    assert_eq!(
        correlation_id, after,
        "the first response is the ApiVersions one"
    );
    assert!(matches!(body, ResponseBody::ApiVersions(_)));
    let expected: Vec<Stored> = (0..REQUESTS)
        .map(|r| {
            let (k, v) = record(r, 0);
            (r as i64, k, v)
        })
        .collect();
    assert_eq!(records_of(&client.fetch("fire", 0, 0).records), expected);
}
