"""Log compaction with a real client (confluent-kafka, i.e. librdkafka).

A topic starts with cleanup.policy=delete, takes several rounds of updates to
the same keys (lz4 batches of several records, so the cleaner rewrites
compressed batches) and tombstones, then is switched to compact through
IncrementalAlterConfigs. The cleaner must then leave one record per key: a
fresh consumer reading from the start sees every key's latest value, offsets
strictly increasing, and no older value (so the test fails if the cleaner
never ran). The result survives a restart. Keyless records are refused with
INVALID_RECORD on the compacted topic.
"""
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, \
    NewTopic, ResourceType

TIMEOUT = 30
KEYS = 40
ROUNDS = 6
DELETED = {f"key-{i:03d}" for i in range(0, KEYS, 7)}


def _admin(b):
    return AdminClient({"bootstrap.servers": b.bootstrap, "socket.timeout.ms": 10000})


def _producer(b):
    return Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 20,
                     "compression.type": "lz4", "message.timeout.ms": 30000})


def _send(p, topic, records):
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    for key, value in records:
        p.produce(topic, key=key, value=value, partition=0, on_delivery=on_delivery)
    assert p.flush(TIMEOUT) == 0, "records left undelivered"
    return errors


def _value(key, rnd):
    return f"{key}:round-{rnd}:".encode() + b"v" * 300


def _read_all(b, topic):
    """Every record from the start: [(offset, key, value)]."""
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"compaction-{time.time()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT)
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        rows = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            msg = c.poll(1.0)
            if msg is None:
                if c.position([TopicPartition(topic, 0)])[0].offset >= high:
                    break
                continue
            assert msg.error() is None, msg.error()
            rows.append((msg.offset(), msg.key().decode(), msg.value()))
            if msg.offset() >= high - 1:
                break
        else:
            raise AssertionError(f"could not read {topic} up to {high} in {TIMEOUT}s")
        return rows, high
    finally:
        c.close()


@pytest.mark.timeout(240)
def test_compacted_topic_keeps_the_latest_value_per_key(broker_factory, monkeypatch):
    # The cleaner looks for work every 200 ms instead of every 15 s.
    monkeypatch.setenv("SLUICE_LOG_CLEANER_BACKOFF_MS", "200")
    b = broker_factory()
    admin = _admin(b)
    topic = f"compaction-{int(time.time() * 1000)}"
    # Segments roll every 300 ms of appends; any dirt makes the log due.
    config = {"cleanup.policy": "delete", "segment.ms": "300",
              "min.cleanable.dirty.ratio": "0.01", "retention.ms": "-1"}
    futs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                         config=config)], request_timeout=TIMEOUT)
    futs[topic].result(timeout=TIMEOUT)

    p = _producer(b)
    keys = [f"key-{i:03d}" for i in range(KEYS)]
    produced = 0
    for rnd in range(ROUNDS):
        records = [(k, _value(k, rnd)) for k in keys]
        if rnd == ROUNDS - 1:
            records = [(k, None if k in DELETED else v) for k, v in records]
        assert _send(p, topic, records) == []
        produced += len(records)
        time.sleep(0.4)

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)

    # Compacted now: a record without a key is refused.
    errors = _send(p, topic, [(None, b"no key")])
    assert [e.code() for e in errors] == [KafkaError.INVALID_RECORD], errors
    # One more record rolls the last round's segment, so all rounds are sealed.
    assert _send(p, topic, [("sentinel", b"s")]) == []
    produced += 1

    want = {k: _value(k, ROUNDS - 1) for k in keys if k not in DELETED}
    want["sentinel"] = b"s"

    def check(rows):
        offsets = [o for o, _, _ in rows]
        assert offsets == sorted(set(offsets)), "offsets strictly increasing"
        latest = {}
        for _, k, v in rows:
            latest[k] = v
        for k in DELETED:
            assert latest.get(k) is None, f"deleted {k} came back: {latest.get(k)!r}"
        assert {k: v for k, v in latest.items() if v is not None} == want

    deadline = time.monotonic() + 90
    while True:
        rows, high = _read_all(b, topic)
        check(rows)
        old = [(o, k) for o, k, v in rows if v is not None and b":round-%d:" % (ROUNDS - 1) not in v
               and k != "sentinel"]
        if not old:
            break
        assert time.monotonic() < deadline, \
            f"the cleaner left {len(old)} old values of {len(rows)} records, e.g. {old[:3]}"
        time.sleep(1)
    assert high == produced, "offsets are kept: the log end does not move"
    assert len(rows) < produced / 2, f"the log got smaller: {len(rows)} of {produced} records"
    # Tombstones stay for delete.retention.ms (default: a day).
    assert {k for _, k, v in rows if v is None} == DELETED

    b.restart()
    rows_after, _ = _read_all(b, topic)
    check(rows_after)
    assert rows_after == rows, "the compacted log is the same after a restart"
