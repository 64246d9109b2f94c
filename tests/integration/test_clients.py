"""Issue #4: real clients against the broker.

Per client: create a 6-partition topic per codec through the client's admin API,
produce RECORDS keyed records with headers per codec (half, broker restart, other
half), read everything back and check it (verify.py), then ListOffsets by
timestamp through the client. A smoke test per client runs on the shared broker.
"""
import os
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

import probe
import runners
import verify

RECORDS = int(os.environ.get("SLUICE_IT_RECORDS", "100000"))
PARTITIONS = 6
CLIENTS = list(runners.RUNNERS)


def test_api_versions(shared_broker):
    r = probe.api_versions("127.0.0.1", shared_broker.port)
    assert r["error_code"] == 0
    for key in (0, 1, 3, 18, 19):  # Produce, Fetch, Metadata, ApiVersions, CreateTopics
        assert key in r["api_keys"], f"ApiVersions lacks key {key}: {r['api_keys']}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", CLIENTS)
def test_smoke(client, shared_broker, tmp_path):
    """A few records through each client, on the shared broker: a fast first signal."""
    r = runners.RUNNERS[client]
    b = shared_broker.bootstrap
    topic = f"smoke-{client}-{int(time.time() * 1000)}"
    r.create_topics(b, [topic], PARTITIONS)
    base_ts = int(time.time() * 1000) - 60_000
    r.produce(b, [(topic, "none")], 0, 200, base_ts)
    dumps = r.consume(b, [topic], 200, tmp_path, PARTITIONS, timeout=30)
    recs = verify.load_dump(dumps[topic])
    pr = verify.check_records(recs, r.name, "none", 200,
                              base_ts if r.sets_timestamps else None, r.header_names)
    assert not pr, str(pr)


@pytest.mark.timeout(420)
@pytest.mark.parametrize("client", CLIENTS)
def test_client_scenario(client, broker, tmp_path, timings):
    r = runners.RUNNERS[client]
    b = broker.bootstrap
    topics = {c: f"it-{client}-{c}" for c in r.codecs}
    specs = [(t, c) for c, t in topics.items()]
    # CreateTime within Kafka's default log.message.timestamp.after.max.ms (1 h).
    base_ts = int(time.time() * 1000) - 600_000
    half = RECORDS // 2

    with timings.phase("create"):
        r.create_topics(b, list(topics.values()), PARTITIONS)
    with timings.phase("produce-1"):
        r.produce(b, specs, 0, half, base_ts)
    with timings.phase("restart"):
        broker.restart()
    with timings.phase("produce-2"):
        r.produce(b, specs, half, RECORDS - half, base_ts)
    with timings.phase("consume"):
        dumps = r.consume(b, list(topics.values()), RECORDS, tmp_path, PARTITIONS)

    problems = []
    queries = []
    with timings.phase("verify"), ProcessPoolExecutor(max_workers=2) as pool:
        jobs = [pool.submit(_verify_one, str(dumps[t]), t, r.name, c,
                            base_ts if r.sets_timestamps else None, r.header_names)
                for c, t in topics.items()]
        for j in jobs:
            pr, qs = j.result(timeout=120)
            if pr:
                problems.append(pr)
            queries += qs
    with timings.phase("offsets-for-times"):
        got = r.offsets_for_times(b, [q for q, _ in queries])
    for (q, want), g in zip(queries, got):
        if g != want:
            problems.append(f"offsetsForTimes{q}: got {g}, want {want}")
    assert not problems, "\n".join(problems)


def _verify_one(path, topic, client, codec, base_ts, header_names):
    """One codec's dump: (problems text or "", time queries for two partitions)."""
    recs = verify.load_dump(path)
    pr = verify.check_records(recs, client, codec, RECORDS, base_ts, header_names)
    return (str(pr) if pr else ""), verify.time_queries(topic, recs, PARTITIONS)[:4 * 2]
