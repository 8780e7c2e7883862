"""The worker pool's Ctrl-C path: SIGINT becomes a flag checked where no lock is held."""

from __future__ import annotations

import os
import signal
import time

import pytest

from visuomotor.sim.workers import SigintFlag, WorkerPool


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_first_ctrl_c_sets_the_flag_and_a_second_interrupts():
    before = signal.getsignal(signal.SIGINT)
    with SigintFlag() as flag:
        assert not flag.is_set()
        flag.check()  # nothing pressed: no interrupt
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs in the main thread between bytecodes
        assert flag.is_set()
        with pytest.raises(KeyboardInterrupt):
            flag.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_next_result_stops_waiting_when_asked():
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3  # asked a few polls in

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), WorkerPool(_sleep, 1) as pool:
        pool.submit(0, 0.0)
        assert pool.next_result() == (0, 0.0)
        pool.submit(1, 60.0)  # would block for a minute
        pool.next_result(stop=stop)
    # The interrupt left the pool's block, which terminated the busy worker instead of waiting for it.
    assert len(calls) == 4 and time.perf_counter() - t0 < 30.0
