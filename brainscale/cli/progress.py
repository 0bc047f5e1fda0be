"""A tiny dependency-free text progress bar.

On a terminal the bar redraws in place with '\\r'; otherwise (CI logs, pipes)
it prints one line about every 10% of the way.
"""
from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar", "format_duration"]


def format_duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # nan / inf
        return "?"
    seconds = int(round(seconds))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """``bar = ProgressBar(total, desc="train")``; ``bar.update(n=1, loss=...)``
    after each step; ``bar.close()`` at the end (or use it as a context
    manager). Shows steps done/total, steps per second, ETA and the latest
    loss."""

    def __init__(self, total: int, desc: str = "", width: int = 24, stream=None,
                 tty: bool | None = None, every: float = 0.1):
        self.total = max(int(total), 1)
        self.desc = desc
        self.width = width
        self.stream = stream if stream is not None else sys.stdout
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty = tty
        self.every = every
        self.n = 0
        self.loss = None
        self.start = time.perf_counter()
        self._next_print = 0.0  # fraction at which the next non-tty line is due
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def render(self) -> str:
        frac = min(self.n / self.total, 1.0)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        loss = f" loss {self.loss:.4f}" if self.loss is not None else ""
        desc = f"{self.desc} " if self.desc else ""
        return (f"{desc}[{bar}] {self.n}/{self.total} {rate:.1f} it/s "
                f"elapsed {format_duration(elapsed)} eta {format_duration(eta)}{loss}")

    def update(self, n: int = 1, loss: float | None = None) -> None:
        self.n += n
        if loss is not None:
            self.loss = float(loss)
        if self.tty:
            self.stream.write("\r" + self.render())
            self.stream.flush()
        else:
            frac = self.n / self.total
            if frac >= self._next_print or self.n >= self.total:
                print(self.render(), file=self.stream, flush=True)
                while self._next_print <= frac:
                    self._next_print += self.every

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.tty:
            self.stream.write("\r" + self.render() + "\n")
            self.stream.flush()
