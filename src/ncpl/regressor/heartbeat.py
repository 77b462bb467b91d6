"""Progress through the batches of a training or validation loop, on a terminal and in a log alike."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm


class Heartbeat:
    """Progress through the batches of a loop: tqdm's bar on a terminal, else (logs, CI, nohup) a line every
    `seconds` and at the end with batches done, rate and time left, where tqdm would print nothing."""

    def __init__(
        self,
        iterable: Any,
        desc: str,
        total: int,
        print_fn: Any = print,
        enabled: bool = True,
        seconds: float = 30.0,
        tty: bool | None = None,
    ):
        self.iterable, self.desc, self.total, self.print, self.seconds = iterable, desc, total, print_fn, seconds
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.enabled = enabled
        self.postfix = ""
        self.bar: Any = None

    def __iter__(self):
        if self.tty:
            self.bar = tqdm(self.iterable, desc=self.desc, total=self.total, disable=not self.enabled, leave=False)
            yield from self.bar
            return
        started = last = time.perf_counter()
        done = 0
        for item in self.iterable:
            yield item
            done += 1
            now = time.perf_counter()
            if self.enabled and (now - last >= self.seconds or done == self.total):
                last = now
                rate = done / max(now - started, 1e-9)
                left = (self.total - done) / rate if self.total else 0.0
                self.print(
                    f"{self.desc}: {done}/{self.total} batches, {rate:.2f} batch/s, ETA {left:.0f}s{self.postfix}"
                )

    def set_postfix(self, text: str) -> None:
        self.postfix = f", {text}"
        if self.bar is not None:
            self.bar.set_postfix_str(text)
