"""Episode controls on a real arm (architecture.md §Robots): keys start and end episodes, re-record one,
or stop everything; Ctrl-C stops too.

    Enter, Space or Right arrow   start the next episode / end the one in progress (it is kept)
    r or Left arrow               end the episode in progress and record it again (it is discarded)
    Esc or q                      stop: the robot holds where it is, then disconnects

Keys are read from the terminal in cbreak mode (one key at a time, no Enter needed; Ctrl-C still
raises SIGINT) by a daemon thread. Without a terminal there are no keys: episodes start at once and end
at their step limit, and Ctrl-C stops. `Controls` is plain state, so tests press keys by calling it.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
from collections.abc import Iterator

NEXT, RERECORD, STOP = "next", "rerecord", "stop"
KEYS = {"\r": NEXT, "\n": NEXT, " ": NEXT, "\x1b[C": NEXT, "r": RERECORD, "\x1b[D": RERECORD}
KEYS |= {"\x1b": STOP, "q": STOP}
HELP = "keys: Enter/Space/Right = start or end an episode, r/Left = re-record it, Esc/q = stop"


def decode_keys(chunk: str) -> list[str]:
    """The events in one read from a terminal (an arrow key arrives as one escape sequence)."""
    events, i = [], 0
    while i < len(chunk):
        if chunk.startswith("\x1b[", i) and i + 2 < len(chunk):
            key, i = chunk[i : i + 3], i + 3
        else:
            key, i = chunk[i], i + 1
        if key in KEYS:
            events.append(KEYS[key])
    return events


class Controls:
    """What the operator asked for, set from the key thread, a signal handler or a test."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.stopped = False
        self._next = False
        self._rerecord = False

    def press(self, event: str) -> None:
        with self._cond:
            if event == STOP:
                self.stopped = True
            elif event == RERECORD:
                self._rerecord = True
            self._next = True
            self._cond.notify_all()

    def stop(self) -> None:
        self.press(STOP)

    def episode_should_end(self) -> bool:
        return self._next or self.stopped

    def wait_start(self) -> bool:
        """Block until the operator starts an episode (True) or stops (False)."""
        with self._cond:
            while not (self._next or self.stopped):
                self._cond.wait(0.2)  # a timeout, so Ctrl-C's handler always gets to run
            started = not self.stopped
            self._next = self._rerecord = False
            return started

    def begin_episode(self) -> None:
        """Forget keys pressed before this episode (episodes that start without a key)."""
        with self._cond:
            self._next = self._rerecord = False

    def take_rerecord(self) -> bool:
        """Whether the episode just ended is to be discarded and recorded again."""
        with self._cond:
            again, self._rerecord = self._rerecord and not self.stopped, False
            self._next = False
            return again


@contextlib.contextmanager
def keyboard(controls: Controls, stream: object = None) -> Iterator[bool]:
    """Feed `controls` from the terminal's keys for the duration of the block; yields whether there is
    a terminal (False: no keys, episodes run to their step limit)."""
    stream = stream if stream is not None else sys.stdin
    fileno = getattr(stream, "fileno", None)
    try:
        fd = fileno() if fileno is not None else -1
    except (OSError, ValueError):
        fd = -1
    if fd < 0 or not os.isatty(fd):
        yield False
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    done = threading.Event()

    def read_keys() -> None:
        while not done.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                for event in decode_keys(os.read(fd, 32).decode(errors="replace")):
                    controls.press(event)

    tty.setcbreak(fd)
    thread = threading.Thread(target=read_keys, daemon=True, name="keys")
    thread.start()
    try:
        yield True
    finally:
        done.set()
        thread.join(1.0)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
