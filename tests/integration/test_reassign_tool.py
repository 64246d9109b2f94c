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
import conftest
import runners
from test_cluster import (  # noqa: F401 (fixture)
    FORM_TIMEOUT, _admin, _brokers_listed, _partition_state, _wait, cluster)

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


def _java_tool(main, *args):
    """Runs one of Kafka's tools by its main class; (exit status, stdout, stderr)."""
    argv = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dlog4j2.level=warn",
            "-cp", f"{runners.CACHE}/kafka/lib/*", main, *args]
    r = subprocess.run(argv, capture_output=True, timeout=TOOL_TIMEOUT, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def _log_dirs(bootstrap, topic):
    """kafka-log-dirs --describe: {broker: {(partition, is_future): log dir}} for `topic`."""
    code, out, err = _java_tool("org.apache.kafka.tools.LogDirsCommand",
                                "--bootstrap-server", bootstrap, "--describe",
                                "--broker-list", "1,2,3", "--topic-list", topic)
    assert code == 0, f"kafka-log-dirs: exit {code}\n{out}\n{err[-3000:]}"
    doc = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    where = {}
    for b in doc["brokers"]:
        for d in b["logDirs"]:
            for p in d["partitions"]:
                name, _, index = p["partition"].rpartition("-")
                assert name == topic, p
                where.setdefault(b["broker"], {})[(int(index), p["isFuture"])] = d["logDir"]
    return where


@pytest.fixture
def two_shard_cluster(tmp_path_factory, request):
    c = brokers.SluiceCluster(tmp_path_factory.mktemp("shards"), shards=2)
    try:
        c.start()
        yield c
    finally:
        if request.node.stash.get(conftest._FAILED, False):
            print(c.log_tails(80))
        c.close()


@pytest.mark.timeout(240)
def test_kafka_reassign_partitions_moves_replicas_between_log_dirs(two_shard_cluster, tmp_path):
    """`log_dirs` in the reassignment JSON moves a replica to another shard of
    its broker (sluice's log dirs are its shards, `shard-N`): kafka-log-dirs
    lists one log dir per shard, --execute sends AlterReplicaLogDirs, --verify
    sees each move complete (DescribeLogDirs), and every record reads back."""
    cluster = two_shard_cluster
    topic, count = "moved-between-shards", 1000
    admin = _admin(cluster.bootstrap)
    _wait("three brokers listed", lambda: _brokers_listed(admin) == [1, 2, 3],
          FORM_TIMEOUT, cluster, interval=0.1)
    admin.create_topics([NewTopic(topic, 1, 3)], operation_timeout=20)[topic].result(timeout=30)
    leader, replicas, _ = _wait(
        "a leader with all replicas in sync",
        lambda: (s := _partition_state(admin, topic)) and s[0] > 0 and len(s[2]) == 3 and s,
        30, cluster)
    p = confluent_kafka.Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                                  "enable.idempotence": True, "linger.ms": 5})
    failed = []
    for i in range(count):
        p.produce(topic, value=f"r{i}".encode(), partition=0,
                  on_delivery=lambda e, m: e and failed.append(str(e)))
    assert p.flush(30) == 0 and not failed, failed[:3]

    before = _wait("every replica in a shard-N log dir",
                   lambda: (w := _log_dirs(cluster.bootstrap, topic))
                   and all((0, False) in w.get(n, {}) for n in (1, 2, 3)) and w, 30, cluster)
    follower = next(n for n in (1, 2, 3) if n != leader)
    current = {n: before[n][(0, False)] for n in (1, 2, 3)}
    assert all(d in ("shard-0", "shard-1") for d in current.values()), current
    other = {n: "shard-1" if d == "shard-0" else "shard-0" for n, d in current.items()}
    # The leader's replica and one follower's move; the third stays where it is.
    # The replica order stays (the tool also sends it as a reassignment).
    order = list(admin.list_topics(topic, timeout=5).topics[topic].partitions[0].replicas)
    assert sorted(order) == replicas, (order, replicas)
    log_dirs = [other[n] if n in (leader, follower) else "any" for n in order]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": order, "log_dirs": log_dirs}]}))
    out = tool(cluster.bootstrap, "--execute", "--reassignment-json-file", str(plan))
    for n in (leader, follower):
        assert (f"Successfully started moving log directory to {other[n]} for replica "
                f"{topic}-0 with broker {n}") in out, out
    t0 = time.monotonic()
    while True:
        out = tool(cluster.bootstrap, "--verify", "--preserve-throttles",
                   "--reassignment-json-file", str(plan))
        done = [f"Reassignment of replica {topic}-0-{n} completed successfully" in out
                for n in (leader, follower)]
        if all(done):
            break
        assert time.monotonic() - t0 < MOVE_BOUND, f"not complete after {MOVE_BOUND} s:\n{out}"
        time.sleep(0.5)
    after = _log_dirs(cluster.bootstrap, topic)
    for n in (1, 2, 3):
        want = other[n] if n in (leader, follower) else current[n]
        assert after[n] == {(0, False): want}, (n, after)

    # Every record reads back, from whichever replica leads now.
    c = confluent_kafka.Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "it-shards",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            assert not m.error(), m.error()
            got.append(m.value().decode())
    c.close()
    print(f"\n{topic}-0 replicas of brokers {leader} (leader) and {follower} moved "
          f"{current} -> {after} in {time.monotonic() - t0:.2f} s (as --verify saw it)")
    assert got == [f"r{i}" for i in range(count)]


def _quorum_tool(bootstrap, what):
    """kafka-metadata-quorum describe --status / --replication; stdout."""
    code, out, err = _java_tool("org.apache.kafka.tools.MetadataQuorumCommand",
                                "--bootstrap-server", bootstrap, "describe", what)
    assert code == 0, f"kafka-metadata-quorum describe {what}: exit {code}\n{out}\n{err[-3000:]}"
    return out


@pytest.mark.timeout(180)
def test_kafka_metadata_quorum_describes_the_leaders_view_from_any_node(cluster):
    """kafka-metadata-quorum against each node alone gives the controller
    leader's view (sluice forwards DescribeQuorum to the leader, as Kafka's
    brokers do): the same leader, every voter's log end known, the followers
    caught up with the leader."""
    def status(node):
        out = _quorum_tool(cluster.node(node).bootstrap, "--status")
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in fields.items()}

    def settled():
        views = [status(n) for n in (1, 2, 3)]
        leaders = {v["LeaderId"] for v in views}
        # An idle quorum: the followers have every entry (a follower's own
        # view would give -1 for them, a lag past the high watermark).
        ok = len(leaders) == 1 and all(int(v["MaxFollowerLag"]) == 0 for v in views)
        return ok and views

    views = _wait("every node describing the same quorum, followers caught up",
                  settled, 60, cluster, interval=0.5)
    leader = int(views[0]["LeaderId"])
    assert leader in (1, 2, 3), views
    assert all(int(v["HighWatermark"]) > 0 for v in views), views
    follower = next(n for n in (1, 2, 3) if n != leader)
    out = _quorum_tool(cluster.node(follower).bootstrap, "--replication")
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    by_node = {int(r[0]): r for r in rows}
    assert sorted(by_node) == [1, 2, 3], out
    assert by_node[leader][-1] == "Leader", out
    assert all(by_node[n][-1] == "Follower" for n in (1, 2, 3) if n != leader), out
    # NodeId DirectoryId LogEndOffset Lag ...: every log end known.
    assert all(int(r[2]) > 0 and int(r[3]) >= 0 for r in rows), out
