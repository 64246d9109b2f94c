"""`sluice produce`, `sluice consume` and the admin commands against Apache
Kafka 4.4.0: proof that the CLI is a real Kafka client, not one that only
understands sluice.

The test starts its own Kafka broker (scripts/kafka-broker through
brokers.KafkaBroker), whatever SLUICE_TEST_TARGET says, so it runs in every
`scripts/test-clients` run. The CLI binary is the one brokers.py finds
($SLUICE_BIN, else target/ci/sluice, else target/release/sluice).

Checks: keyed lines land in the partition Kafka's default partitioner picks
(murmur2, as computed by kafka-python); headers and lz4 compression survive;
records written by librdkafka (confluent-kafka) are read back through a
--format template; the default group carries offsets between runs and
`sluice group describe` shows them with lag 0; exit codes for an unknown
topic (4) and an out-of-range offset (2).
"""
import subprocess

import pytest
from confluent_kafka import Consumer, Producer
from kafka.partitioner.default import murmur2

import brokers

TOPIC = "cli-kafka"
PARTITIONS = 3
KEYS = [f"user-{i}" for i in range(30)]
TIMEOUT = 30


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    b = brokers.KafkaBroker(tmp_path_factory.mktemp("cli-kafka"), brokers.free_port(span=2))
    b.start()
    yield b
    b.close()


def sluice(kafka, *args, stdin=None, ok=True):
    binary = brokers.SluiceBroker.find_binary()
    r = subprocess.run([str(binary), *args, "--bootstrap-server", kafka.bootstrap],
                       input=stdin, capture_output=True, timeout=TIMEOUT)
    out = r.stdout.decode(errors="replace")
    err = r.stderr.decode(errors="replace")
    if ok:
        assert r.returncode == 0, f"sluice {args}: exit {r.returncode}\n{out}\n{err}"
    return r.returncode, out, err


def java_partition(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def test_sluice_cli_against_apache_kafka(kafka, timings):
    with timings.phase("topic"):
        _, out, _ = sluice(kafka, "topic", "create", TOPIC, "-p", str(PARTITIONS))
        assert f"created topic {TOPIC}" in out
        _, out, _ = sluice(kafka, "topic", "list")
        assert TOPIC in out.split()

    with timings.phase("produce"):
        lines = "".join(f"{k}:value-of-{k}\n" for k in KEYS).encode()
        sluice(kafka, "produce", TOPIC, "-K", ":", "-H", "origin=sluice", "-z", "lz4",
               stdin=lines)

    with timings.phase("read with librdkafka"):
        # A real Kafka consumer sees every keyed record in the partition the
        # Java client would have chosen, with its header.
        c = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "py-check",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([TOPIC])
        seen = {}
        try:
            for _ in range(60):
                for m in c.consume(num_messages=100, timeout=0.5):
                    assert m.error() is None, m.error()
                    seen[m.key().decode()] = (m.partition(), m.value().decode(), m.headers())
                if len(seen) == len(KEYS):
                    break
        finally:
            c.close()
        assert set(seen) == set(KEYS)
        for k, (p, v, h) in seen.items():
            assert p == java_partition(k), f"{k}: partition {p}, Java picks {java_partition(k)}"
            assert v == f"value-of-{k}"
            assert h == [("origin", b"sluice")]

    with timings.phase("consume"):
        # Records from librdkafka, read back by sluice with a template.
        p = Producer({"bootstrap.servers": kafka.bootstrap, "compression.type": "zstd"})
        p.produce(TOPIC, key=b"from-rdkafka", value=b"hello", partition=1,
                  headers=[("h", b"1")])
        assert p.flush(TIMEOUT) == 0
        _, out, _ = sluice(kafka, "consume", TOPIC, "--exit", "-f", "%t|%p|%k|%s|%h\\n")
        rows = [line.split("|") for line in out.splitlines()]
        assert len(rows) == len(KEYS) + 1, out
        assert [TOPIC, "1", "from-rdkafka", "hello", "h=1"] in rows
        for t, part, k, v, h in rows:
            if k != "from-rdkafka":
                assert int(part) == java_partition(k) and v == f"value-of-{k}" and h == "origin=sluice"
        # The default group committed: a second run reads nothing new.
        _, again, _ = sluice(kafka, "consume", TOPIC, "--exit")
        assert again == ""

    with timings.phase("groups"):
        _, out, _ = sluice(kafka, "group", "list")
        assert "sluice-default" in out.split()
        _, out, _ = sluice(kafka, "group", "describe", "sluice-default")
        assert "Total lag: 0" in out, out
        sluice(kafka, "group", "reset-offsets", "sluice-default", "-t", TOPIC, "-p", "1",
               "--to", "shift:-1", "--execute")
        _, out, _ = sluice(kafka, "consume", TOPIC, "--exit", "-f", "%k\\n")
        assert out.splitlines() == ["from-rdkafka"], out

    with timings.phase("errors"):
        code, _, err = sluice(kafka, "consume", "no-such-topic", "--exit", ok=False)
        assert code == 4 and "does not exist" in err, err
        code, _, err = sluice(kafka, "consume", TOPIC, "--no-group", "--from", "offset:1000000",
                              "--exit", ok=False)
        assert code == 2 and "outside partition" in err, err
        _, out, _ = sluice(kafka, "cluster", "describe")
        assert "Brokers: 1" in out, out
