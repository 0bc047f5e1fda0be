"""Progress of a training loop whose first step compiles.

The first step's time (tracing and XLA compilation plus one step) is said
on its own line; rate and ETA count the steps after it, so the estimate is
the steady state's from the second step on. On a terminal the bar is
``tqdm``'s; in a log (CI, a pipe) one line about every 10% of the way.
"""
from __future__ import annotations

import sys
import time

from tqdm.std import tqdm

__all__ = ["ProgressBar", "format_duration"]


def format_duration(seconds: float) -> str:
    """``mm:ss`` or ``h:mm:ss``; ``?`` for nan or inf."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    return tqdm.format_interval(int(round(seconds)))


class ProgressBar:
    """``bar = ProgressBar(total, desc="digits/es_d_rtrl")``;
    ``bar.update(1, loss=...)`` after each step; ``bar.close()`` at the end
    (or ``with ProgressBar(...) as bar``). ``compiled=True``: the loop was
    compiled ahead of time, so the first step is an ordinary one."""

    def __init__(self, total: int, desc: str = "", stream=None, tty: bool | None = None,
                 every: float = 0.1, compiled: bool = False):
        self.total = max(int(total), 1)
        self.desc = desc
        self.stream = stream if stream is not None else sys.stdout
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty, self.every = tty, every
        self.n, self.loss = 0, None
        self.first_step_s = None
        self._skip = 0 if compiled else 1     # steps left out of the rate
        self._t0 = time.perf_counter()      # start of the first step, then of the second
        self._next_print = every
        self._bar = None
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def rate(self) -> float:
        """Steps per second after the first step (0 before two steps)."""
        steady = self.n - self._skip
        elapsed = time.perf_counter() - self._t0
        return steady / elapsed if steady > 0 and elapsed > 0 else 0.0

    def render(self) -> str:
        rate = self.rate()
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        loss = f" loss {self.loss:.4f}" if self.loss is not None else ""
        desc = f"{self.desc} " if self.desc else ""
        return (f"{desc}{self.n}/{self.total} {rate:.2f} steps/s eta {format_duration(eta)}"
                f"{loss}")

    def update(self, n: int = 1, loss: float | None = None) -> None:
        if loss is not None:
            self.loss = float(loss)
        if self.n == 0 and n > 0:
            if self._skip:
                self.first_step_s = time.perf_counter() - self._t0
                self._t0 = time.perf_counter()
                print(f"{self.desc}: first step (compilation included) "
                      f"{self.first_step_s:.1f} s", file=self.stream, flush=True)
            if self.tty:
                self._bar = tqdm(total=self.total, initial=n if self._skip else 0,
                                 desc=self.desc, file=self.stream, smoothing=0, unit="step",
                                 dynamic_ncols=True)
                if not self._skip:
                    self._bar.update(n)
            self.n = n
            return
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            if self.loss is not None:
                self._bar.set_postfix(loss=f"{self.loss:.4f}", refresh=False)
            return
        if self.tty:
            return
        frac = self.n / self.total
        if frac >= self._next_print or self.n >= self.total:
            print(self.render(), file=self.stream, flush=True)
            while self._next_print <= frac:
                self._next_print += self.every

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
