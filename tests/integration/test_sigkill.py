"""SIGKILL under load: no acknowledged record lost, duplicated or reordered.

A Java producer (acks=all, idempotence on) sends a paced numbered stream and
logs every acknowledged (partition, offset, seq); the broker is SIGKILLed and
restarted KILLS times meanwhile (each time after UP_SECONDS of service); then a
consumer reads the whole topic and checker.py compares.
"""
import os
import time

import pytest

import checker
import runners

KILLS = int(os.environ.get("SLUICE_IT_KILLS", "3"))
UP_SECONDS = float(os.environ.get("SLUICE_IT_UP_SECONDS", "4"))
RATE = int(os.environ.get("SLUICE_IT_STREAM_RATE", "5000"))


@pytest.mark.timeout(300)
def test_sigkill_under_load(broker, tmp_path, timings):
    java = runners.RUNNERS["java"]
    topic = "sigkill-stream"
    java.create_topics(broker.bootstrap, [topic], 6)
    acks = tmp_path / "acks.txt"
    stop = tmp_path / "stop"
    log = tmp_path / "producer.log"
    proc = java.start_stream(broker.bootstrap, topic, acks, stop, RATE, log)
    try:
        with timings.phase("stream+kills"):
            time.sleep(3)
            for _ in range(KILLS):
                assert proc.poll() is None, f"producer died: {log.read_text()[-2000:]}"
                broker.kill()
                time.sleep(0.3)
                broker.start()
                time.sleep(UP_SECONDS)
            stop.touch()
            rc = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_text()
    assert rc == 0, f"producer exit {rc}: {out[-2000:]}"
    with timings.phase("consume"):
        dumps = java.consume(broker.bootstrap, [topic], -1, tmp_path, 6, timeout=90)
    report = checker.check(checker.load_acks(acks), checker.load_consumed(dumps[topic]))
    last = out.strip().splitlines()[-1] if out.strip() else ""
    print(f"producer: {last}\nchecker: {report.summary()}")
    assert report.acked >= RATE * 5, f"too few acknowledged records: {report.summary()}\n{last}"
    assert report.ok, report.summary()
