"""Admin APIs through real clients: IncrementalAlterConfigs, AlterConfigs and
DescribeConfigs (confluent-kafka), DeleteRecords (confluent-kafka, with a
restart), DescribeProducers and DescribeLogDirs (kafka-python), and
OffsetForLeaderEpoch (raw request through kafka-python's connection manager).

Checks that are sluice's own choices (broker configs static, segment files
deleted at once) run only against sluice. Compaction itself is tested in
test_compaction.py.
"""
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewTopic, ResourceType)
from kafka import KafkaAdminClient
from kafka import TopicPartition as KpTopicPartition
from kafka.protocol.consumer.offsets import OffsetForLeaderEpochRequest

import brokers

SLUICE = brokers.target() == "sluice"
TIMEOUT = 30


def _admin(b):
    return AdminClient({"bootstrap.servers": b.bootstrap, "socket.timeout.ms": 10000})


def _topic(prefix):
    return f"{prefix}-{int(time.time() * 1000)}"


def _create(admin, topic, partitions=1, config=None):
    futs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                         config=config or {})], request_timeout=TIMEOUT)
    futs[topic].result(timeout=TIMEOUT)


def _produce(b, topic, count, partition=0, size=100, idempotent=False):
    p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": idempotent,
                  "linger.ms": 5, "message.timeout.ms": 30000})
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    for i in range(count):
        p.produce(topic, value=(b"%08d" % i) * (size // 8), partition=partition,
                  on_delivery=on_delivery)
        if i % 100 == 0:
            p.poll(0)
    assert p.flush(TIMEOUT) == 0, "records left undelivered"
    return errors


def _configs(admin, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)


def _incremental(admin, topic, entries, validate_only=False, rtype=ResourceType.TOPIC):
    res = ConfigResource(rtype, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=op) for name, op, value in entries])
    fut = admin.incremental_alter_configs([res], validate_only=validate_only,
                                          request_timeout=TIMEOUT)[res]
    return fut.result(timeout=TIMEOUT)


def _error(fn):
    with pytest.raises(KafkaException) as e:
        fn()
    return e.value.args[0]


def _watermarks(b, topic, partition=0):
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "admin-it-unused"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT)
    finally:
        c.close()


@pytest.mark.timeout(120)
def test_admin_incremental_alter_configs(shared_broker):
    b = shared_broker
    admin = _admin(b)
    topic = _topic("admin-iac")
    _create(admin, topic)

    _incremental(admin, topic, [("retention.ms", AlterConfigOpType.SET, "123456"),
                                ("max.message.bytes", AlterConfigOpType.SET, "2000")])
    cfg = _configs(admin, topic)
    assert cfg["retention.ms"].value == "123456"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["max.message.bytes"].value == "2000"

    # Applied to the open log at once: a 5000-byte record is now too large.
    errors = _produce(b, topic, 1, size=5000)
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE], errors

    # validate_only changes nothing.
    _incremental(admin, topic, [("retention.ms", AlterConfigOpType.SET, "999")],
                 validate_only=True)
    assert _configs(admin, topic)["retention.ms"].value == "123456"

    # DELETE goes back to the default; the small record limit goes too.
    _incremental(admin, topic, [("retention.ms", AlterConfigOpType.DELETE, None),
                                ("max.message.bytes", AlterConfigOpType.DELETE, None)])
    cfg = _configs(admin, topic)
    assert cfg["retention.ms"].value == "604800000"
    assert cfg["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert _produce(b, topic, 1, size=5000) == []

    # Unknown key and bad value: INVALID_CONFIG, the message names the key.
    err = _error(lambda: _incremental(admin, topic,
                                      [("no.such.config", AlterConfigOpType.SET, "7")]))
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert "no.such.config" in err.str(), err
    err = _error(lambda: _incremental(admin, topic,
                                      [("retention.ms", AlterConfigOpType.SET, "soon")]))
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert "retention.ms" in err.str(), err
    if SLUICE:
        assert "soon" in err.str(), err

    # Unknown topic.
    err = _error(lambda: _incremental(admin, topic + "-missing",
                                      [("retention.ms", AlterConfigOpType.SET, "1000")]))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err

    # APPEND / SUBTRACT on a list config; on a non-list one, INVALID_CONFIG.
    _incremental(admin, topic, [("cleanup.policy", AlterConfigOpType.APPEND, "delete")])
    assert _configs(admin, topic)["cleanup.policy"].value == "delete"
    err = _error(lambda: _incremental(admin, topic,
                                      [("retention.ms", AlterConfigOpType.APPEND, "5")]))
    assert err.code() == KafkaError.INVALID_CONFIG, err

    # APPEND compact makes the topic compacted too; SUBTRACT takes it back.
    _incremental(admin, topic, [("cleanup.policy", AlterConfigOpType.APPEND, "compact")])
    assert set(_configs(admin, topic)["cleanup.policy"].value.split(",")) == {"delete", "compact"}
    _incremental(admin, topic, [("cleanup.policy", AlterConfigOpType.SUBTRACT, "compact")])
    assert _configs(admin, topic)["cleanup.policy"].value == "delete"
    err = _error(lambda: _incremental(admin, topic,
                                      [("cleanup.policy", AlterConfigOpType.SET, "shred")]))
    assert err.code() == KafkaError.INVALID_CONFIG, err
    if SLUICE:        # Broker configs are static: refused with a message that says so.
        node = str(next(iter(admin.list_topics(timeout=TIMEOUT).brokers)))
        err = _error(lambda: _incremental(admin, node,
                                          [("log.retention.ms", AlterConfigOpType.SET, "1000")],
                                          rtype=ResourceType.BROKER))
        assert err.code() == KafkaError.INVALID_REQUEST, err
        assert "static" in err.str(), err


@pytest.mark.timeout(120)
def test_admin_alter_configs_legacy(shared_broker):
    admin = _admin(shared_broker)
    topic = _topic("admin-ac")
    _create(admin, topic)

    def alter(configs, validate_only=False):
        res = ConfigResource(ResourceType.TOPIC, topic, set_config=configs)
        admin.alter_configs([res], validate_only=validate_only,
                            request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)

    alter({"retention.ms": "120000", "segment.ms": "3600000"})
    cfg = _configs(admin, topic)
    assert (cfg["retention.ms"].value, cfg["segment.ms"].value) == ("120000", "3600000")
    alter({"retention.ms": "1"}, validate_only=True)
    assert _configs(admin, topic)["retention.ms"].value == "120000"
    # The whole set is replaced: segment.ms goes back to its default.
    alter({"retention.ms": "240000"})
    cfg = _configs(admin, topic)
    assert cfg["retention.ms"].value == "240000"
    assert cfg["segment.ms"].value == "604800000"
    assert cfg["segment.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    err = _error(lambda: alter({"segment.ms": "later"}))
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert "segment.ms" in err.str(), err


@pytest.mark.timeout(180)
def test_admin_delete_records(broker):
    b = broker
    admin = _admin(b)
    topic = _topic("admin-dr")
    # 1 MiB segments (Kafka's minimum), ~3 MiB of records: several segments.
    _create(admin, topic, partitions=2, config={"segment.bytes": "1048576"})
    assert _produce(b, topic, 300, size=10_000) == []
    assert _watermarks(b, topic) == (0, 300)

    def kp_sizes():
        kp = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            dirs = kp.describe_log_dirs()
        finally:
            kp.close()
        return {(t["name"], p["partition_index"]): p["partition_size"]
                for d in dirs for r in d["log_dirs"] for t in r["topics"]
                for p in t["partitions"] if t["name"] == topic}

    size_before = kp_sizes()[(topic, 0)]

    def delete(partition, offset):
        tp = TopicPartition(topic, partition, offset)
        futs = admin.delete_records([tp], request_timeout=TIMEOUT)
        return next(iter(futs.values())).result(timeout=TIMEOUT)

    assert delete(0, 150).low_watermark == 150
    assert _watermarks(b, topic) == (150, 300)
    # Below the current start: nothing changes.
    assert delete(0, 10).low_watermark == 150
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    err = _error(lambda: delete(0, 301))
    assert err.code() == KafkaError.OFFSET_OUT_OF_RANGE, err
    # Unknown partition: librdkafka finds no leader for it and does not ask.
    err = _error(lambda: delete(7, 1))
    assert err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._NOENT), err
    # An empty partition: -1 (the high watermark) is 0.
    assert delete(1, -1).low_watermark == 0

    # Reading from the beginning starts at the new log start.
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "admin-it-dr",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, -2)])  # OFFSET_BEGINNING
    msg = None
    deadline = time.monotonic() + TIMEOUT
    while msg is None and time.monotonic() < deadline:
        msg = c.poll(1.0)
        if msg is not None and msg.error():
            raise AssertionError(msg.error())
    c.close()
    assert msg is not None and msg.offset() == 150

    if SLUICE:
        # Whole segments below the start are deleted at once.
        assert kp_sizes()[(topic, 0)] < size_before

    # The start survives a restart; -1 then deletes everything.
    b.restart()
    assert _watermarks(b, topic) == (150, 300)
    admin = _admin(b)
    assert delete(0, -1).low_watermark == 300
    assert _watermarks(b, topic) == (300, 300)


@pytest.mark.timeout(120)
def test_admin_describe_producers_and_log_dirs(shared_broker):
    b = shared_broker
    admin = _admin(b)
    topic = _topic("admin-dp")
    _create(admin, topic, partitions=2)
    assert _produce(b, topic, 50, partition=0, idempotent=True) == []

    kp = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        states = kp.describe_producers([KpTopicPartition(topic, 0), KpTopicPartition(topic, 1)])
        producers = states[KpTopicPartition(topic, 0)].active_producers
        assert len(producers) == 1, producers
        p = producers[0]
        assert p.producer_id >= 0 and p.producer_epoch >= 0
        assert p.last_sequence == 49, p
        assert p.last_timestamp > 0
        assert (p.coordinator_epoch, p.current_transaction_start_offset) == (-1, -1)
        assert states[KpTopicPartition(topic, 1)].active_producers == []

        dirs = kp.describe_log_dirs()
        assert len(dirs) == 1, dirs
        results = dirs[0]["log_dirs"]
        if SLUICE:
            # One log dir per shard (AlterReplicaLogDirs moves a replica
            # between them).
            assert [r["log_dir"] for r in results] == [f"shard-{i}" for i in range(b.shards)]
        else:
            assert len(results) == 1, results
        for r in results:
            assert r["error_code"] == 0 and r["log_dir"]
            assert r["total_bytes"] > 0 and 0 <= r["usable_bytes"] <= r["total_bytes"], r
        listed = [p for r in results for t in r["topics"] if t["name"] == topic
                  for p in t["partitions"]]
        parts = {p["partition_index"]: p for p in listed}
        assert sorted(p["partition_index"] for p in listed) == [0, 1], results
        assert parts[0]["partition_size"] > 0
        assert parts[1]["partition_size"] == 0
        assert all(p["offset_lag"] == 0 and not p["is_future_key"] for p in parts.values())

        # Only the partitions asked for.
        dirs = kp.describe_log_dirs(topic_partitions={topic: [1]})
        topics = [t for r in dirs[0]["log_dirs"] for t in r["topics"]]
        assert [(t["name"], [p["partition_index"] for p in t["partitions"]])
                for t in topics] == [(topic, [1])]
    finally:
        kp.close()


@pytest.mark.timeout(120)
def test_admin_offset_for_leader_epoch(shared_broker):
    b = shared_broker
    admin = _admin(b)
    topic = _topic("admin-ofle")
    _create(admin, topic, partitions=2)
    assert _produce(b, topic, 40, partition=0) == []

    kp = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        kp.list_topics()
        node_id = next(iter(kp._manager.cluster.brokers())).node_id
        part = OffsetForLeaderEpochRequest.OffsetForLeaderTopic.OffsetForLeaderPartition

        def ask(topic_name, partitions):
            req = OffsetForLeaderEpochRequest(replica_id=-1, topics=[(topic_name, [
                part(partition=p, current_leader_epoch=cur, leader_epoch=ep)
                for p, cur, ep in partitions])])

            async def go():
                return await kp._manager.send(req, node_id=node_id)

            resp = kp._manager.run(go)
            return [(x.partition, x.error_code, x.leader_epoch, x.end_offset)
                    for t in resp.topics for x in t.partitions]

        assert ask(topic, [(0, -1, 0), (1, 0, 0), (0, -1, 5), (0, 3, 0), (9, -1, 0)]) == [
            (0, 0, 0, 40),     # the latest epoch ends at the log end
            (1, 0, 0, 0),      # an empty partition
            (0, 0, -1, -1),    # an epoch the leader never had
            (0, 75, -1, -1),   # UNKNOWN_LEADER_EPOCH: the client is ahead of the leader
            (9, 3, -1, -1),    # UNKNOWN_TOPIC_OR_PARTITION
        ]
        assert ask(topic + "-missing", [(0, -1, 0)]) == [(0, 3, -1, -1)]
    finally:
        kp.close()
