"""Apache Kafka's own `kafka-reassign-partitions` tool (kafka-tools 4.4,
org.apache.kafka.tools.reassign.ReassignPartitionsCommand) against a
three-node sluice cluster (issue #9): a replication-factor-2 partition
holding records produced by confluent-kafka with acks=all is moved, leader
included, to the other two nodes with --execute; --verify reports it
complete within MOVE_BOUND seconds; Metadata then lists the new replicas,
all in sync; every record reads back from the new leader. --verify runs
with --preserve-throttles (no throttles were set, and clearing them would
alter broker configs). Each tool run is a JVM start (a few seconds).

Sluice only (SluiceCluster); skipped for SLUICE_TEST_TARGET=kafka.
"""
import json
import subprocess
import time

import pytest

import brokers
import runners
from test_cluster import _admin, _partition_state, _wait, cluster  # noqa: F401 (fixture)

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import NewTopic  # noqa: E402

TOPIC, COUNT = "moved-by-kafka-tool", 2000
MOVE_BOUND = 30.0
TOOL_TIMEOUT = 60

pytestmark = pytest.mark.skipif(brokers.target() != "sluice",
                                reason="a sluice cluster (SluiceCluster) only")


def tool(bootstrap, *args):
    """Runs kafka-reassign-partitions; returns stdout (exit status must be 0)."""
    argv = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dlog4j2.level=warn",
            "-cp", f"{runners.CACHE}/kafka/lib/*",
            "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
            "--bootstrap-server", bootstrap, *args]
    r = subprocess.run(argv, capture_output=True, timeout=TOOL_TIMEOUT, stdin=subprocess.DEVNULL)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    assert r.returncode == 0, f"kafka-reassign-partitions {args}: exit {r.returncode}\n{out}\n{err[-3000:]}"
    return out


@pytest.mark.timeout(240)
def test_kafka_reassign_partitions_moves_a_partition_and_its_leader(cluster, tmp_path, timings):
    admin = _admin(cluster.bootstrap)
    admin.create_topics([NewTopic(TOPIC, 1, 2)], operation_timeout=20)[TOPIC].result(timeout=30)
    state = _wait("a leader with both replicas in sync",
                  lambda: (s := _partition_state(admin, TOPIC)) and s[0] > 0 and len(s[2]) == 2
                  and s, 30, cluster)
    leader, replicas, _ = state
    spare = next(n for n in (1, 2, 3) if n not in replicas)
    # The spare node first (it leads once in sync), the old leader left out.
    target = [spare] + [n for n in replicas if n != leader]

    with timings.phase("produce"):
        p = confluent_kafka.Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                                      "enable.idempotence": True, "linger.ms": 5})
        failed = []
        for i in range(COUNT):
            p.produce(TOPIC, value=f"r{i}".encode(), partition=0,
                      on_delivery=lambda e, m: e and failed.append(str(e)))
            if i % 500 == 0:
                p.poll(0)
        assert p.flush(30) == 0 and not failed, failed[:3]

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": TOPIC, "partition": 0, "replicas": target}]}))
    with timings.phase("execute"):
        out = tool(cluster.bootstrap, "--execute", "--reassignment-json-file", str(plan))
    assert f"Successfully started partition reassignment for {TOPIC}-0" in out, out
    t0 = time.monotonic()
    with timings.phase("verify"):
        while True:
            out = tool(cluster.bootstrap, "--verify", "--preserve-throttles",
                       "--reassignment-json-file", str(plan))
            if f"Reassignment of partition {TOPIC}-0 is completed" in out:
                break
            assert "is still in progress" in out, out
            assert time.monotonic() - t0 < MOVE_BOUND, f"not complete after {MOVE_BOUND} s:\n{out}"
            time.sleep(0.5)
    took = time.monotonic() - t0
    new_leader, new_replicas, isr = _wait(
        "Metadata listing the new replicas in sync",
        lambda: (s := _partition_state(admin, TOPIC)) and s[1] == sorted(target)
        and s[2] == sorted(target) and s, 30, cluster)
    assert new_leader in target and new_leader != leader

    c = confluent_kafka.Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "it-moved",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([confluent_kafka.TopicPartition(TOPIC, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < COUNT and time.monotonic() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            assert not m.error(), m.error()
            got.append(m.value().decode())
    c.close()
    print(f"\n{TOPIC}-0 moved from {replicas} (leader {leader}) to {target} "
          f"(leader {new_leader}) in {took:.2f} s (as --verify saw it)")
    assert got == [f"r{i}" for i in range(COUNT)]


def _cluster_tool(bootstrap, *args):
    """Runs kafka-cluster (org.apache.kafka.tools.ClusterTool); (exit status, output)."""
    argv = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dlog4j2.level=warn",
            "-cp", f"{runners.CACHE}/kafka/lib/*",
            "org.apache.kafka.tools.ClusterTool", *args, "--bootstrap-server", bootstrap]
    r = subprocess.run(argv, capture_output=True, timeout=TOOL_TIMEOUT, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


@pytest.mark.timeout(180)
def test_topic_configs_are_cluster_wide_and_kafka_cluster_tool_unregister(cluster):
    """A config change of a replicated topic through node 2 reads back from
    nodes 1 and 3 (it is cluster metadata, written through the controller);
    Kafka's `kafka-cluster unregister` speaks UnregisterBroker to sluice: a
    controller voter and an unknown id are refused, each with the reason."""
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)
    topic = "configs-everywhere"
    admin = _admin(cluster.node(1).bootstrap)
    admin.create_topics([NewTopic(topic, 1, 3)], operation_timeout=20)[topic].result(timeout=30)
    _wait("the topic led, all in sync",
          lambda: (s := _partition_state(admin, topic)) and s[0] > 0 and len(s[2]) == 3,
          30, cluster)
    on2 = _admin(cluster.node(2).bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7654321", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("unclean.leader.election.enable", "true",
                    incremental_operation=AlterConfigOpType.SET)])
    for fut in on2.incremental_alter_configs([res]).values():
        fut.result(timeout=30)

    def seen(node):
        a = _admin(cluster.node(node).bootstrap)
        [fut] = a.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
        c = fut.result(timeout=10)
        return (c["retention.ms"].value, c["unclean.leader.election.enable"].value)

    for node in (1, 3):
        _wait(f"node {node} showing the new configs",
              lambda: seen(node) == ("7654321", "true"), 10, cluster)

    code, out = _cluster_tool(cluster.bootstrap, "unregister", "--id", "1")
    assert code != 0 and "voter" in out, out
    code, out = _cluster_tool(cluster.bootstrap, "unregister", "--id", "42")
    assert code != 0 and "not registered" in out, out
