"""SIGKILL under load: no acknowledged record lost, duplicated or reordered.

A Java producer (acks=all, idempotence on) sends a paced numbered stream and
logs every acknowledged (partition, offset, seq); the broker is SIGKILLed and
restarted KILLS times meanwhile; then a consumer reads the whole topic and
checker.py compares.
"""
import os
import time

import pytest

import checker
import runners

KILLS = int(os.environ.get("SLUICE_IT_KILLS", "3"))
STREAM_SECONDS = int(os.environ.get("SLUICE_IT_STREAM_SECONDS", "22"))
RATE = int(os.environ.get("SLUICE_IT_STREAM_RATE", "5000"))


@pytest.mark.timeout(300)
def test_sigkill_under_load(broker, tmp_path, timings):
    java = runners.RUNNERS["java"]
    topic = "sigkill-stream"
    java.create_topics(broker.bootstrap, [topic], 6)
    acks = tmp_path / "acks.txt"
    log = tmp_path / "producer.log"
    t0 = time.monotonic()
    proc = java.start_stream(broker.bootstrap, topic, acks, STREAM_SECONDS, RATE, log)
    try:
        with timings.phase("stream+kills"):
            gap = (STREAM_SECONDS - 4) / KILLS
            for k in range(KILLS):
                # Kill at fixed points of the stream, whatever the restarts cost.
                time.sleep(max(0.0, t0 + 3 + k * gap - time.monotonic()))
                assert proc.poll() is None, f"producer died: {log.read_text()[-2000:]}"
                broker.kill()
                time.sleep(0.3)
                broker.start()
            rc = proc.wait(timeout=STREAM_SECONDS + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_text()
    assert rc == 0, f"producer exit {rc}: {out[-2000:]}"
    with timings.phase("consume"):
        dumps = java.consume(broker.bootstrap, [topic], -1, tmp_path, 6, timeout=90)
    report = checker.check(checker.load_acks(acks), checker.load_consumed(dumps[topic]))
    print(f"producer: {out.strip().splitlines()[-1] if out.strip() else ''}")
    print(f"checker: {report.summary()}")
    assert report.acked > RATE * 2, f"too few acknowledged records: {report.summary()}\n{out[-2000:]}"
    assert report.ok, report.summary()
