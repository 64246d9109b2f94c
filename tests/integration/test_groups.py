"""Issue #6: consumer groups through real clients.

Java KafkaConsumer members (tests/java GroupMember, one JVM each): 3 members
share a 6-partition topic 2 each; a 4th joins and the partitions are spread
again; one killed with SIGKILL (no LeaveGroup) loses its partitions to the
others after the session timeout; with cooperative-sticky, members keep the
partitions not moved. confluent-kafka: the same sharing in one process, and
offsets committed before a broker restart (SIGTERM, then SIGKILL) resume
exactly after the last commit. The broker runs with
group.initial.rebalance.delay.ms=0 and members use 6 s sessions.
"""
import os
import signal
import subprocess
import threading
import time

import pytest

import brokers
import runners

PARTITIONS = 6
SESSION_MS = 6000
ALL = set(range(PARTITIONS))


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory):
    """A broker for this module, with no initial rebalance delay."""
    old = os.environ.get("SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS")
    os.environ["SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS"] = "0"
    b = brokers.make_broker(tmp_path_factory.mktemp("groups-broker"))
    try:
        b.start()
        yield b
    finally:
        b.close()
        if old is None:
            os.environ.pop("SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS", None)
        else:
            os.environ["SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS"] = old


@pytest.fixture
def restartable(broker_factory):
    old = os.environ.get("SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS")
    os.environ["SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS"] = "0"
    try:
        yield broker_factory()
    finally:
        if old is None:
            os.environ.pop("SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS", None)
        else:
            os.environ["SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS"] = old


def create_topic(bootstrap, name, partitions=PARTITIONS):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap})
    for f in a.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(timeout=30)


def produce(bootstrap, topic, count, partitions=PARTITIONS):
    """count records spread evenly; value = "<partition>:<i>"."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(count):
        part = i % partitions
        p.produce(topic, value=f"{part}:{i}".encode(), partition=part)
    assert p.flush(30) == 0


class JavaMember:
    """One GroupMember JVM; `history` is every assignment it reported
    (lines "ASSIGNED p,p,..." on its stdout)."""

    def __init__(self, bootstrap, group, topic, assignor, tmp_path, name):
        self.stop_file = tmp_path / f"stop-{name}"
        self.log = tmp_path / f"member-{name}.log"
        self._start(self.argv(bootstrap, group, topic, assignor))

    def argv(self, bootstrap, group, topic, assignor):
        return ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp", runners.JavaRunner.classpath(), "sluice.it.GroupMember",
                "--bootstrap", bootstrap, "--group", group, "--topic", topic,
                "--assignor", assignor, "--session-ms", str(SESSION_MS),
                "--stop-file", str(self.stop_file)]

    def _start(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(self.log, "wb"),
                                     stdin=subprocess.DEVNULL)
        self.history = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.decode().strip()
            if line.startswith("ASSIGNED"):
                parts = line.split(" ", 1)[1] if " " in line else ""
                with self.lock:
                    self.history.append({int(x) for x in parts.split(",") if x})

    @property
    def assignment(self):
        with self.lock:
            return set(self.history[-1]) if self.history else None

    def mark(self):
        with self.lock:
            return len(self.history)

    def since(self, mark):
        with self.lock:
            return [set(h) for h in self.history[mark:]]

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.stop_file.touch()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def describe(self):
        return f"{type(self).__name__} pid {self.proc.pid} exit {self.proc.poll()} history {self.history} " \
               f"stderr {self.log.read_text(errors='replace')[-1500:] if self.log.exists() else ''}"


class FranzMember(JavaMember):
    """One franz-go kgo.ConsumerGroup member (tests/go `group` mode)."""

    def argv(self, bootstrap, group, topic, assignor):
        return runners.FranzRunner().argv(bootstrap) + [
            "group", "--group", group, "--balancer", assignor, "--session-ms", str(SESSION_MS),
            "--stop-file", str(self.stop_file), "--timeout", "300", topic]


def wait_for(cond, timeout, what, members=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(0.1)
    state = "\n".join(m.describe() for m in members)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{state}")


def balanced(members, sizes):
    """Every member has an assignment, they are disjoint, cover all partitions,
    and their sizes are `sizes` (sorted)."""
    got = [m.assignment for m in members]
    if any(a is None for a in got):
        return False
    union = set().union(*got)
    return (union == ALL and sum(len(a) for a in got) == PARTITIONS
            and sorted(len(a) for a in got) == sorted(sizes))


@pytest.mark.timeout(150)
@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_java_group_rebalances(assignor, group_broker, tmp_path, timings):
    rebalance_scenario(JavaMember, "java", assignor, group_broker, tmp_path, timings)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_franz_group_rebalances(assignor, group_broker, tmp_path, timings):
    rebalance_scenario(FranzMember, "franz", assignor, group_broker, tmp_path, timings)


def rebalance_scenario(Member, client, assignor, group_broker, tmp_path, timings):
    """3 members x 2 partitions; a 4th joins (1,1,2,2; cooperative-sticky:
    nobody loses a partition it keeps); one SIGKILLed loses its partitions
    after the session timeout; the rest leave cleanly."""
    b = group_broker.bootstrap
    topic = f"grp-{client}-{assignor}"
    group = f"g-{client}-{assignor}"
    create_topic(b, topic)
    produce(b, topic, 600)
    members = []
    try:
        with timings.phase("three"):
            members = [Member(b, group, topic, assignor, tmp_path, str(i)) for i in range(3)]
            wait_for(lambda: balanced(members, [2, 2, 2]), 60, "3 members x 2 partitions", members)
        before = [m.assignment for m in members]
        marks = [m.mark() for m in members]
        with timings.phase("fourth"):
            members.append(Member(b, group, topic, assignor, tmp_path, "3"))
            wait_for(lambda: balanced(members, [1, 1, 2, 2]), 60, "4 members sharing 6", members)
        if assignor == "cooperative-sticky":
            for m, old, mark in zip(members, before, marks):
                final = m.assignment
                assert final <= old, f"a member gained {final - old} while giving up partitions"
                # Kept partitions were never revoked on the way (incremental rebalance).
                for snap in m.since(mark):
                    assert final <= snap, f"kept partitions {final} missing from {snap}"
        with timings.phase("kill"):
            victim = members[0]
            lost = victim.assignment
            victim.kill()
            killed_at = time.monotonic()
            rest = members[1:]
            moved_at = wait_for(lambda: balanced(rest, [2, 2, 2]), 60,
                                f"partitions {lost} of the killed member to move", rest)
            # No LeaveGroup was sent: only the session timeout can have moved them.
            assert moved_at - killed_at >= SESSION_MS / 1000 - 1.5, \
                f"moved after {moved_at - killed_at:.1f}s, before the session timeout"
        with timings.phase("leave"):
            for m in rest:
                m.stop()
            assert all(m.proc.returncode == 0 for m in rest), [m.describe() for m in rest]
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait()


def confluent_consumer(bootstrap, group, **extra):
    from confluent_kafka import Consumer
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": 500}
    conf.update(extra)
    return Consumer(conf)


@pytest.mark.timeout(90)
def test_confluent_group_shares_partitions(group_broker):
    b = group_broker.bootstrap
    topic, group = "grp-confluent", "g-confluent"
    create_topic(b, topic)
    produce(b, topic, 600)
    consumers = [confluent_consumer(b, group) for _ in range(3)]
    seen = {}
    try:
        for c in consumers:
            c.subscribe([topic])

        def pump(cs, seconds=0.2):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for i, c in enumerate(cs):
                    m = c.poll(0.02)
                    if m is not None and not m.error():
                        seen.setdefault((m.partition(), m.offset()), i)

        def sizes(cs):
            asg = [{tp.partition for tp in c.assignment()} for c in cs]
            return sorted(len(a) for a in asg), set().union(*asg)

        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and sizes(consumers) != ([2, 2, 2], ALL):
            pump(consumers)
        assert sizes(consumers) == ([2, 2, 2], ALL), sizes(consumers)
        consumers.append(confluent_consumer(b, group))
        consumers[-1].subscribe([topic])
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and sizes(consumers) != ([1, 1, 2, 2], ALL):
            pump(consumers)
        assert sizes(consumers) == ([1, 1, 2, 2], ALL), sizes(consumers)
        # The group is visible with 4 members through the admin API.
        from confluent_kafka.admin import AdminClient
        a = AdminClient({"bootstrap.servers": b})
        desc = a.describe_consumer_groups([group])[group].result(timeout=10)
        assert len(desc.members) == 4
        # Members carry the client id and host the broker saw (Kafka: host "/ip").
        for m in desc.members:
            assert m.client_id, m
            assert m.host.lstrip("/") == "127.0.0.1", m.host
        assert group in [g.group_id for g in a.list_consumer_groups().result(timeout=10).valid]
    finally:
        for c in consumers:
            c.close()


def consume_and_commit(bootstrap, group, topic, per_partition, partitions):
    """Reads `per_partition` records of each partition, commits exactly after
    the last one read, closes. Returns {partition: [offsets read]}."""
    from confluent_kafka import TopicPartition
    c = confluent_consumer(bootstrap, group)
    c.subscribe([topic])
    got = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and any(len(v) < per_partition for v in got.values()):
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        if len(got[m.partition()]) < per_partition:
            got[m.partition()].append(m.offset())
    assert all(len(v) == per_partition for v in got.values()), \
        {p: len(v) for p, v in got.items()}
    # The metadata string must come back unchanged from OffsetFetch.
    commits = [TopicPartition(topic, p, v[-1] + 1, metadata=f"sluice-{p}") for p, v in got.items()]
    res = c.commit(offsets=commits, asynchronous=False)
    assert all(tp.error is None for tp in res), res
    c.close()
    return got


@pytest.mark.timeout(150)
def test_offsets_survive_restart(restartable, timings):
    """Committed offsets survive SIGTERM and SIGKILL: each consumer resumes
    exactly after the previous one's last commit (no gap, no re-delivery)."""
    from confluent_kafka import TopicPartition
    broker = restartable
    b = broker.bootstrap
    topic, group, parts = "grp-restart", "g-restart", 3
    create_topic(b, topic, parts)
    produce(b, topic, 900, parts)  # 300 per partition
    expected_next = {p: 0 for p in range(parts)}
    for step, restart in enumerate([broker.restart, broker.kill_and_restart, None]):
        with timings.phase(f"round-{step}"):
            got = consume_and_commit(b, group, topic, 100, parts)
            for p, offs in got.items():
                assert offs == list(range(expected_next[p], expected_next[p] + 100)), \
                    f"round {step} partition {p}: read {offs[:3]}..{offs[-1:]}, " \
                    f"expected from {expected_next[p]}"
                expected_next[p] = offs[-1] + 1
        if restart:
            with timings.phase(f"restart-{step}"):
                restart()
            c = confluent_consumer(b, group)
            committed = c.committed([TopicPartition(topic, p) for p in range(parts)], timeout=20)
            c.close()
            for tp in committed:
                assert tp.offset == expected_next[tp.partition], committed
                assert tp.metadata == f"sluice-{tp.partition}", committed


def franz_read_and_commit(bootstrap, group, topic, per_partition, partitions):
    """A franz-go group member reads `per_partition` records of each partition,
    commits exactly after the last one read and leaves: {partition: [offsets]}."""
    import json
    out = runners.run(runners.FranzRunner().argv(bootstrap) + [
        "group", "--group", group, "--balancer", "cooperative-sticky",
        "--session-ms", str(SESSION_MS), "--read", str(per_partition),
        "--partitions", str(partitions), "--timeout", "45", topic],
        timeout=75, what="franz-go group --read")
    line = [x for x in out.splitlines() if x.startswith("{")][-1]
    return {int(p): offs for p, offs in json.loads(line)["read"].items()}


@pytest.mark.timeout(150)
def test_franz_offsets_survive_restart(restartable, timings):
    """franz-go group commits survive SIGTERM and SIGKILL: each member resumes
    exactly after the previous one's commit."""
    broker = restartable
    b = broker.bootstrap
    topic, group, parts = "grp-franz-restart", "g-franz-restart", 3
    create_topic(b, topic, parts)
    produce(b, topic, 900, parts)
    expected_next = {p: 0 for p in range(parts)}
    for step, restart in enumerate([broker.restart, broker.kill_and_restart, None]):
        with timings.phase(f"round-{step}"):
            got = franz_read_and_commit(b, group, topic, 100, parts)
        for p in range(parts):
            offs = got[p]
            assert offs == list(range(expected_next[p], expected_next[p] + 100)), \
                f"round {step} partition {p}: read {offs[:3]}..{offs[-1:]}, " \
                f"expected from {expected_next[p]}"
            expected_next[p] = offs[-1] + 1
        if restart:
            with timings.phase(f"restart-{step}"):
                restart()


@pytest.mark.timeout(60)
def test_bad_commits_change_nothing(group_broker):
    """Raw OffsetCommit (kafka-python's protocol classes): a commit from an
    unknown member, or a simple one while the group has members, or with a
    generation for a group that does not exist, is refused and stores nothing;
    a simple commit to a memberless group is stored."""
    from kafka.admin import KafkaAdminClient
    from kafka.protocol.consumer.group import OffsetCommitRequest
    b = group_broker.bootstrap
    topic, group = "grp-bad-commits", "g-bad-commits"
    create_topic(b, topic, 1)
    produce(b, topic, 10, 1)
    live = confluent_consumer(b, group)
    live.subscribe([topic])
    kp = KafkaAdminClient(bootstrap_servers=b)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not live.assignment():
            live.poll(0.2)
        assert live.assignment(), "the live member never got its partition"
        node_id = next(iter(kp._manager.cluster.brokers())).node_id
        T, P = OffsetCommitRequest.OffsetCommitRequestTopic, \
            OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition

        def commit(group_id, generation, member_id, offset):
            req = OffsetCommitRequest(
                group_id=group_id, generation_id_or_member_epoch=generation,
                member_id=member_id, group_instance_id=None, retention_time_ms=-1,
                topics=[T(name=topic, partitions=[P(partition_index=0, committed_offset=offset,
                                                     committed_leader_epoch=-1,
                                                     committed_metadata="m")])])

            async def go():
                return await kp._manager.send(req, node_id=node_id)

            resp = kp._manager.run(go)
            return [p.error_code for t in resp.topics for p in t.partitions]

        assert commit(group, 1, "nobody", 5) == [25]          # UNKNOWN_MEMBER_ID
        assert commit(group, -1, "", 5) == [25]               # members present: no simple commit
        assert commit("g-bad-none", 3, "m", 5) == [22]        # ILLEGAL_GENERATION
        assert commit("g-bad-simple", -1, "", 7) == [0]       # memberless: accepted
        from confluent_kafka import TopicPartition

        def committed(group_id):
            c = confluent_consumer(b, group_id)
            try:
                # Offsets only: confluent-kafka 2.x reads this 1-byte metadata
                # "m" past its end (librdkafka hands it over without a NUL;
                # the same happens against Apache Kafka, whose OffsetFetch
                # answer is byte-identical: test_short_metadata_round_trips).
                return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
            finally:
                c.close()

        assert committed(group) < 0, "a refused commit was stored"
        assert committed("g-bad-none") < 0, "a refused commit was stored"
        assert committed("g-bad-simple") == 7
    finally:
        kp.close()
        live.close()


class RawConn:
    """One connection speaking kafka-python's protocol classes, for requests a
    client library would not send (its own coordinator logic would intervene)."""

    def __init__(self, bootstrap):
        import socket
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.cid = 0

    def call(self, req, version):
        import struct
        self.cid += 1
        req.with_header(correlation_id=self.cid, client_id="raw-test")
        self.sock.sendall(req.encode(version=version, header=True, framed=True))

        def exactly(n):
            b = b""
            while len(b) < n:
                chunk = self.sock.recv(n - len(b))
                assert chunk, "connection closed"
                b += chunk
            return b

        data = exactly(struct.unpack(">i", exactly(4))[0])
        import sys
        resp = getattr(sys.modules[type(req).__module__],
                       type(req).__name__.replace("Request", "Response"))
        return resp.decode(data, version=version, header=True)

    def close(self):
        self.sock.close()


def subscription(topic):
    """ConsumerProtocolSubscription v0: [topic], null user data."""
    import struct
    t = topic.encode()
    return struct.pack(">hih", 0, 1, len(t)) + t + struct.pack(">i", -1)


@pytest.mark.timeout(60)
def test_commits_fenced_by_generation_and_rebalance(group_broker):
    """Raw JoinGroup/SyncGroup/OffsetCommit: once a rebalance has moved the
    group to generation 2, a commit with generation 1 gets ILLEGAL_GENERATION;
    a commit with generation 2 before the leader's SyncGroup (the group is
    CompletingRebalance) gets REBALANCE_IN_PROGRESS; neither stores anything.
    After the SyncGroup, the same commit is accepted."""
    import concurrent.futures
    from kafka.protocol.consumer.group import (JoinGroupRequest, OffsetCommitRequest,
                                               OffsetFetchRequest, SyncGroupRequest)
    b = group_broker.bootstrap
    topic, group = "grp-fenced", "g-fenced"
    create_topic(b, topic, 1)
    produce(b, topic, 10, 1)
    proto = [JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=subscription(topic))]
    conns = [RawConn(b), RawConn(b)]

    def join(conn, member_id=""):
        while True:  # v5: the first join answers MEMBER_ID_REQUIRED (79) with an id
            r = conn.call(JoinGroupRequest(
                group_id=group, session_timeout_ms=SESSION_MS, rebalance_timeout_ms=10000,
                member_id=member_id, group_instance_id=None, protocol_type="consumer",
                protocols=proto), 5)
            if r.error_code != 79:
                assert r.error_code == 0, r
                return r
            member_id = r.member_id

    def sync(conn, j, assignments):
        A = SyncGroupRequest.SyncGroupRequestAssignment
        r = conn.call(SyncGroupRequest(
            group_id=group, generation_id=j.generation_id, member_id=j.member_id,
            group_instance_id=None,
            assignments=[A(member_id=m, assignment=b"") for m in assignments]), 3)
        assert r.error_code == 0, r

    T = OffsetCommitRequest.OffsetCommitRequestTopic
    P = T.OffsetCommitRequestPartition

    def commit(conn, generation, member_id, offset):
        r = conn.call(OffsetCommitRequest(
            group_id=group, generation_id_or_member_epoch=generation, member_id=member_id,
            group_instance_id=None, retention_time_ms=-1,
            topics=[T(name=topic, partitions=[P(partition_index=0, committed_offset=offset,
                                                 committed_leader_epoch=-1,
                                                 committed_metadata="")])]), 7)
        return [p.error_code for t in r.topics for p in t.partitions]

    def committed(conn):
        FT = OffsetFetchRequest.OffsetFetchRequestTopic
        r = conn.call(OffsetFetchRequest(group_id=group, require_stable=False,
                                         topics=[FT(name=topic, partition_indexes=[0])]), 7)
        assert r.error_code == 0, r
        return [p.committed_offset for t in r.topics for p in t.partitions]

    def find_coordinator(conn):
        from kafka.protocol.metadata.find_coordinator import FindCoordinatorRequest
        deadline = time.monotonic() + 30
        while True:  # Kafka creates __consumer_offsets on the first lookup
            r = conn.call(FindCoordinatorRequest(key=group, key_type=0), 2)
            if r.error_code == 0 or time.monotonic() > deadline:
                assert r.error_code == 0, r
                return
            time.sleep(0.2)

    pool = concurrent.futures.ThreadPoolExecutor(2)
    try:
        find_coordinator(conns[0])
        a1 = join(conns[0])
        assert a1.generation_id == 1 and a1.leader == a1.member_id, a1
        sync(conns[0], a1, [a1.member_id])
        assert commit(conns[0], 1, a1.member_id, 3) == [0]
        # B's join starts a rebalance; A rejoins; both get generation 2.
        fb = pool.submit(join, conns[1])
        time.sleep(0.5)
        fa = pool.submit(join, conns[0], a1.member_id)
        a2, b2 = fa.result(timeout=20), fb.result(timeout=20)
        assert a2.generation_id == b2.generation_id == 2, (a2, b2)
        leader, lconn = (a2, conns[0]) if a2.leader == a2.member_id else (b2, conns[1])
        other_conn = conns[1] if lconn is conns[0] else conns[0]
        other = b2 if leader is a2 else a2
        # Nobody has synced yet: the group waits for the leader's assignment.
        check = RawConn(b)
        try:
            got = {"old generation, completing rebalance": commit(check, 1, a1.member_id, 5),
                   "current generation, completing rebalance": commit(check, 2, other.member_id, 5),
                   "stored after refusals": committed(check)}
            fo = pool.submit(sync, other_conn, other, [])
            sync(lconn, leader, [a2.member_id, b2.member_id])
            fo.result(timeout=20)
            got.update({"old generation, stable": commit(check, 1, a1.member_id, 5),
                        "stored after refusal": committed(check),
                        "current generation, stable": commit(check, 2, other.member_id, 6),
                        "stored": committed(check)})
            # As Apache Kafka 4.4: the generation is checked before the state,
            # so the old generation is fenced (ILLEGAL_GENERATION, 22) and the
            # current one told to retry (REBALANCE_IN_PROGRESS, 27).
            assert got == {"old generation, completing rebalance": [22],
                           "current generation, completing rebalance": [27],
                           "stored after refusals": [3],
                           "old generation, stable": [22],
                           "stored after refusal": [3],
                           "current generation, stable": [0],
                           "stored": [6]}, got
        finally:
            check.close()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for c in conns:
            c.close()


@pytest.mark.timeout(60)
def test_short_metadata_round_trips(group_broker):
    """A 1-byte commit metadata "m" (what kafka-python commits above) comes back
    unchanged from OffsetFetch at every version v1-v9 (v6+ compact strings,
    v8+ grouped): the wire answers are the same as Apache Kafka 4.4's."""
    from kafka.protocol.consumer.group import OffsetCommitRequest, OffsetFetchRequest
    from kafka.protocol.metadata.find_coordinator import FindCoordinatorRequest
    b = group_broker.bootstrap
    topic, group = "grp-short-meta", "g-short-meta"
    create_topic(b, topic, 1)
    conn = RawConn(b)
    try:
        deadline = time.monotonic() + 30
        while conn.call(FindCoordinatorRequest(key=group, key_type=0), 2).error_code != 0:
            assert time.monotonic() < deadline, "no coordinator"
            time.sleep(0.2)
        T = OffsetCommitRequest.OffsetCommitRequestTopic
        P = T.OffsetCommitRequestPartition
        for cv, (offset, meta) in zip((2, 7, 8), ((5, "m"), (6, ""), (7, "m"))):
            r = conn.call(OffsetCommitRequest(
                group_id=group, generation_id_or_member_epoch=-1, member_id="",
                group_instance_id=None, retention_time_ms=-1,
                topics=[T(name=topic, partitions=[P(partition_index=0, committed_offset=offset,
                                                     committed_leader_epoch=-1,
                                                     committed_metadata=meta)])]), cv)
            assert [p.error_code for t in r.topics for p in t.partitions] == [0], r
        for v in range(1, 10):
            if v < 8:
                FT = OffsetFetchRequest.OffsetFetchRequestTopic
                r = conn.call(OffsetFetchRequest(group_id=group, require_stable=False,
                                                 topics=[FT(name=topic, partition_indexes=[0])]), v)
                parts = [p for t in r.topics for p in t.partitions]
            else:
                G = OffsetFetchRequest.OffsetFetchRequestGroup
                r = conn.call(OffsetFetchRequest(require_stable=False, groups=[G(
                    group_id=group, topics=[G.OffsetFetchRequestTopics(
                        name=topic, partition_indexes=[0])])]), v)
                parts = [p for g in r.groups for t in g.topics for p in t.partitions]
            assert [(p.committed_offset, p.metadata, p.error_code) for p in parts] == \
                [(7, "m", 0)], (v, r)
    finally:
        conn.close()
