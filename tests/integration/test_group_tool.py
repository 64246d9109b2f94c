"""Issue #6: Apache Kafka's own `kafka-consumer-groups` tool (kafka-tools 4.4,
org.apache.kafka.tools.consumer.group.ConsumerGroupCommand) against a group
that committed offsets through confluent-kafka: --list shows it; --describe
shows CURRENT-OFFSET, LOG-END-OFFSET and LAG per partition; --reset-offsets
--to-earliest --execute (group inactive) rewinds the committed offsets, as the
tool's describe and a consumer resuming from offset 0 both see; --delete
removes the group. Each tool run is a JVM start (a few seconds).
"""
import os
import subprocess
import time

import pytest

import brokers
import runners

TOPIC, GROUP, PARTITIONS, PER_PARTITION = "tool-t", "g-tool", 3, 30
COMMITTED = {0: 10, 1: 20, 2: 30}
TOOL_TIMEOUT = 60


@pytest.fixture(scope="module")
def tool_broker(tmp_path_factory):
    old = os.environ.get("SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS")
    os.environ["SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS"] = "0"
    b = brokers.make_broker(tmp_path_factory.mktemp("group-tool"))
    try:
        b.start()
        yield b
    finally:
        b.close()
        if old is None:
            os.environ.pop("SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS", None)
        else:
            os.environ["SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS"] = old


def tool(bootstrap, *args):
    """Runs kafka-consumer-groups; returns stdout (exit status must be 0)."""
    argv = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dlog4j2.level=warn",
            "-cp", f"{runners.CACHE}/kafka/lib/*",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server", bootstrap, "--timeout", "20000", *args]
    r = subprocess.run(argv, capture_output=True, timeout=TOOL_TIMEOUT, stdin=subprocess.DEVNULL)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    assert r.returncode == 0, f"kafka-consumer-groups {args}: exit {r.returncode}\n{out}\n{err[-3000:]}"
    return out


def describe(bootstrap):
    """{partition: (current, log_end, lag)} from --describe."""
    out = tool(bootstrap, "--describe", "--group", GROUP)
    rows = {}
    header = None
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "GROUP":
            header = f
        elif header and len(f) == len(header) and f[0] == GROUP:
            row = dict(zip(header, f))
            assert row["TOPIC"] == TOPIC, out
            rows[int(row["PARTITION"])] = (int(row["CURRENT-OFFSET"]), int(row["LOG-END-OFFSET"]),
                                           int(row["LAG"]))
    return rows, out


def consumer(bootstrap, **extra):
    from confluent_kafka import Consumer
    conf = {"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    conf.update(extra)
    return Consumer(conf)


@pytest.mark.timeout(120)
def test_kafka_consumer_groups_tool(tool_broker, timings):
    from confluent_kafka import Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    b = tool_broker.bootstrap
    a = AdminClient({"bootstrap.servers": b})
    for f in a.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        f.result(timeout=30)
    p = Producer({"bootstrap.servers": b, "linger.ms": 5})
    for i in range(PARTITIONS * PER_PARTITION):
        p.produce(TOPIC, value=f"v{i}".encode(), partition=i % PARTITIONS)
    assert p.flush(30) == 0

    with timings.phase("commit"):
        c = consumer(b, **{"auto.offset.reset": "earliest"})
        c.subscribe([TOPIC])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(c.assignment()) < PARTITIONS:
            c.poll(0.2)
        assert len(c.assignment()) == PARTITIONS, c.assignment()
        res = c.commit(offsets=[TopicPartition(TOPIC, q, o) for q, o in COMMITTED.items()],
                       asynchronous=False)
        assert all(tp.error is None for tp in res), res
        c.close()  # leaves: the group is inactive (Empty) from here on

    with timings.phase("list"):
        assert GROUP in tool(b, "--list").split()
    with timings.phase("describe"):
        rows, out = describe(b)
        assert rows == {q: (o, PER_PARTITION, PER_PARTITION - o) for q, o in COMMITTED.items()}, out

    with timings.phase("reset"):
        out = tool(b, "--reset-offsets", "--group", GROUP, "--topic", TOPIC, "--to-earliest",
                   "--execute")
        assert "NEW-OFFSET" in out, out
        rows, out = describe(b)
        assert rows == {q: (0, PER_PARTITION, PER_PARTITION) for q in COMMITTED}, out

    with timings.phase("resume"):
        # "latest" for a partition without a commit: reading offset 0 proves the reset commit.
        c = consumer(b, **{"auto.offset.reset": "latest"})
        c.subscribe([TOPIC])
        first = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(first) < PARTITIONS:
            m = c.poll(0.2)
            if m is not None and not m.error():
                first.setdefault(m.partition(), m.offset())
        committed = c.committed([TopicPartition(TOPIC, q) for q in COMMITTED], timeout=10)
        c.close()
        assert first == {q: 0 for q in COMMITTED}, first
        assert [tp.offset for tp in committed] == [0] * PARTITIONS, committed

    with timings.phase("delete"):
        out = tool(b, "--delete", "--group", GROUP)
        assert "successful" in out, out
        assert GROUP not in tool(b, "--list").split()
