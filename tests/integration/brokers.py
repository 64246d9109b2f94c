"""Broker targets for the integration tests: start / stop / restart / kill.

SLUICE_TEST_TARGET=sluice (default) runs the sluice binary:
    <bin> serve --data-dir <dir> --listen 127.0.0.1:<port> --shards <n> [$SLUICE_ARGS]
  with <bin> = $SLUICE_BIN, else target/ci/sluice, else target/release/sluice;
  <n> = $SLUICE_SHARDS (default 2). Ready when the port answers ApiVersions.
  stop = SIGTERM (SIGKILL after 20 s), kill = SIGKILL.
SLUICE_TEST_TARGET=kafka runs Apache Kafka 4.4.0 through scripts/kafka-broker.
"""
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import probe

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
READY_TIMEOUT = float(os.environ.get("SLUICE_READY_TIMEOUT", "60"))


def target() -> str:
    t = os.environ.get("SLUICE_TEST_TARGET", "sluice")
    if t not in ("sluice", "kafka"):
        raise RuntimeError(f"SLUICE_TEST_TARGET must be sluice or kafka, not {t!r}")
    return t


def free_port(span: int = 1, host: str = HOST) -> int:
    """A port p with p..p+span-1 all free on `host` (best effort)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            p = s.getsockname()[1]
        if p + span >= 65535:
            continue
        ok = True
        for q in range(p + 1, p + span):
            with socket.socket() as s:
                try:
                    s.bind((host, q))
                except OSError:
                    ok = False
        if ok:
            return p
    raise RuntimeError("no free port")


def wait_ready(port: int, timeout: float, alive=lambda: True, what="broker", host=HOST) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not alive():
            raise RuntimeError(f"{what} exited while starting")
        if probe.is_ready(host, port, timeout=1.0):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer ApiVersions on {host}:{port} within {timeout}s")


class Broker:
    """Common interface; `bootstrap` stays the same across restarts."""

    name = "?"

    def __init__(self, data_dir: Path, port: int, host: str = HOST):
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def restart(self):
        self.stop()
        self.start()

    def kill_and_restart(self):
        self.kill()
        self.start()

    def close(self):
        self.stop()

    def __repr__(self):
        return f"<{self.name} broker {self.bootstrap} dir={self.dir}>"


class SluiceBroker(Broker):
    name = "sluice"

    def __init__(self, data_dir, port, shards=None, host=HOST, extra_args=()):
        super().__init__(data_dir, port, host)
        self.extra_args = list(extra_args)
        self.bin = self.find_binary()
        self.shards = int(shards or os.environ.get("SLUICE_SHARDS", "2"))
        self.proc = None
        self.log = self.dir / "sluice.log"

    @staticmethod
    def find_binary() -> Path:
        env = os.environ.get("SLUICE_BIN")
        cands = [Path(env)] if env else [ROOT / "target/ci/sluice", ROOT / "target/release/sluice"]
        for c in cands:
            if c.is_file() and os.access(c, os.X_OK):
                return c
        raise RuntimeError(f"no sluice binary (looked at {', '.join(map(str, cands))}); build it "
                           "with `cargo build --profile ci -p sluice` or set SLUICE_BIN")

    def argv(self):
        return [str(self.bin), "serve", "--data-dir", str(self.dir / "data"),
                "--listen", f"{self.host}:{self.port}", "--shards", str(self.shards),
                *self.extra_args, *shlex.split(os.environ.get("SLUICE_ARGS", ""))]

    def start(self):
        if self.proc and self.proc.poll() is None:
            return
        self.launch()
        self.wait_started()

    def launch(self):
        """Start the process without waiting for it to answer (see wait_started)."""
        (self.dir / "data").mkdir(exist_ok=True)
        logf = open(self.log, "ab")
        logf.write(f"==== start #{self.starts + 1}: {shlex.join(self.argv())}\n".encode())
        logf.flush()
        self.proc = subprocess.Popen(self.argv(), stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()

    def wait_started(self):
        try:
            wait_ready(self.port, READY_TIMEOUT, lambda: self.proc.poll() is None, "sluice",
                       self.host)
        except RuntimeError as e:
            self.kill()
            raise RuntimeError(f"{e}\n--- {self.log} (tail)\n{self.log_tail()}") from None
        self.starts += 1

    def _signal_and_wait(self, sig, timeout):
        if not self.proc or self.proc.poll() is not None:
            return True
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self):
        if not self._signal_and_wait(signal.SIGTERM, 20):
            self._signal_and_wait(signal.SIGKILL, 10)
        self.proc = None

    def kill(self):
        self._signal_and_wait(signal.SIGKILL, 10)
        self.proc = None

    def log_tail(self, n=40):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class KafkaBroker(Broker):
    """Apache Kafka through scripts/kafka-broker (controller on port+1)."""

    name = "kafka"
    script = ROOT / "scripts/kafka-broker"

    def _run(self, cmd, timeout=90):
        r = subprocess.run([str(self.script), cmd, "--port", str(self.port), "--dir", str(self.dir)],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0 and cmd != "status":
            raise RuntimeError(f"kafka-broker {cmd} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        return r

    def start(self):
        self._run("start")
        wait_ready(self.port, READY_TIMEOUT, what="kafka")
        self.starts += 1

    def stop(self):
        self._run("stop")

    def kill(self):
        self._run("kill")

    def log_tail(self, n=40):
        try:
            return "\n".join((self.dir / "logs/server.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class SluiceCluster:
    """Three sluice nodes on 127.0.0.1-3 forming one KRaft-style cluster: node N
    listens on 127.0.0.N with `--node-id N --controller-voters 1@127.0.0.1:P1,...`,
    one shard each (or `shards`) and fast broker liveness (heartbeat 200 ms, session 1.5 s), so
    a SIGKILLed node is fenced within seconds. nodes[i] is node i+1 (a SluiceBroker:
    kill / start / log_tail)."""

    SIZE = 3
    LIVENESS = ["--broker-heartbeat-interval-ms", "200", "--broker-session-timeout-ms", "1500"]
    # A small replicated __consumer_offsets, and groups that rebalance at once.
    GROUPS = ["--offsets-topic-partitions", "6", "--group-initial-rebalance-delay-ms", "0"]

    def __init__(self, base_dir: Path, extra_args=(), shards=1):
        hosts = [f"127.0.0.{n}" for n in range(1, self.SIZE + 1)]
        voters = ",".join(f"{n}@{h}:{free_port(host=h)}" for n, h in enumerate(hosts, 1))
        self.nodes = []
        for n, h in enumerate(hosts, 1):
            args = ["--node-id", str(n), "--controller-voters", voters, "--metrics-listen", "off",
                    *self.LIVENESS, *self.GROUPS, *extra_args]
            self.nodes.append(SluiceBroker(Path(base_dir) / f"node{n}", free_port(host=h),
                                           shards=shards, host=h, extra_args=args))

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> SluiceBroker:
        return self.nodes[node_id - 1]

    def start(self):
        """Starts every node, then waits until each answers ApiVersions."""
        for n in self.nodes:
            if not (n.proc and n.proc.poll() is None):
                n.launch()
        for n in self.nodes:
            n.wait_started()

    def close(self):
        for n in self.nodes:
            try:
                n.stop()
            except Exception as e:  # stop the others anyway
                print(f"stopping {n}: {e}")

    def log_tails(self, n=40):
        return "\n".join(f"--- node {i} ({b.log}) ---\n{b.log_tail(n)}"
                         for i, b in enumerate(self.nodes, 1))


def make_broker(data_dir: Path) -> Broker:
    if target() == "kafka":
        return KafkaBroker(data_dir, free_port(span=2))
    return SluiceBroker(data_dir, free_port(span=2))  # span 2: room for a fake (Kafka) controller
