"""Fixtures: broker targets (see brokers.py) and a timing summary."""
import time
from collections import OrderedDict

import pytest

import brokers

_TIMINGS = OrderedDict()


class Timer:
    """timings.phase("name") as a context manager; printed in the terminal summary."""

    def __init__(self, test_name):
        self.test = test_name

    def phase(self, name):
        timer = self

        class _P:
            def __enter__(self):
                self.t0 = time.monotonic()

            def __exit__(self, *exc):
                _TIMINGS.setdefault(timer.test, []).append((name, time.monotonic() - self.t0))

        return _P()


@pytest.fixture
def timings(request):
    t0 = time.monotonic()
    t = Timer(request.node.name)
    yield t
    _TIMINGS.setdefault(request.node.name, []).append(("total", time.monotonic() - t0))


@pytest.fixture(scope="session")
def shared_broker(tmp_path_factory):
    """One broker for every test that never restarts it."""
    b = brokers.make_broker(tmp_path_factory.mktemp("shared-broker"))
    b.start()
    yield b
    b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        item.stash[_FAILED] = True


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def broker_factory(tmp_path_factory, request):
    """Own brokers for tests that stop, restart or kill them: make() -> started broker.
    When the test fails, the tail of each broker's log is printed."""
    made = []

    def make():
        b = brokers.make_broker(tmp_path_factory.mktemp("broker"))
        made.append(b)
        b.start()
        return b

    yield make
    for b in made:
        if request.node.stash.get(_FAILED, False):
            print(f"\n--- {b} log tail ---\n{b.log_tail()}")
        try:
            b.close()
        except Exception as e:  # teardown must not hide the test's own failure
            print(f"closing {b}: {e}")


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


def pytest_report_header(config):
    return f"broker target: {brokers.target()} (SLUICE_TEST_TARGET)"


def pytest_terminal_summary(terminalreporter):
    if not _TIMINGS:
        return
    terminalreporter.section("timings (s)")
    for test, phases in _TIMINGS.items():
        terminalreporter.write_line(
            f"{test}: " + ", ".join(f"{n} {d:.1f}" for n, d in phases))
