"""Events -> dense float32 frames ``(n_frames, *frame_shape)``.

Time bins, with ``t0`` the first event's time (``origin="first"``, tonic's
choice) or 0 (``origin="zero"``) and ``t_max`` the last event's time:

* ``time_window=None``: ``T`` equal bins over the sample,
  ``k = floor((t - t0) * T / (t_max - t0 + 1))``; every event lands in a bin
  (tonic's ``n_time_bins`` floors the bin width and drops the remainder).
* ``time_window=w`` (us): ``k = floor((t - t0) / w)``; frames ``0 .. k_max``
  (tonic's ``ToFrame(time_window=w, include_incomplete=True)``), cut after
  ``T`` frames when ``T`` is given.

Space: ``downsample`` is tonic's ``Downsample`` (``x' = trunc(x * f)``) with a
factor ``f`` in (0, 1] or a target size ``(W', H')``; polarity is kept as a
channel or merged. A frame holds event counts, or ``count > 0`` when
``binary``; shape ``(P', H', W')`` or flattened ``(P' H' W',)``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from brainscale.datasets.errors import DatasetError, require
from brainscale.datasets.events import check_events

__all__ = ["FrameSpec", "to_frames", "check_frames", "ORIGINS"]

ORIGINS = ("first", "zero")


@dataclass(frozen=True)
class FrameSpec:
    """How a sample's events become frames; see the module docstring.
    ``sensor_size`` is the source sensor ``(W, H, P)`` (tonic's order)."""

    sensor_size: tuple
    T: int | None = None
    time_window: int | None = None
    origin: str = "first"
    downsample: float | tuple | None = None
    merge_polarity: bool = False
    binary: bool = False
    flatten: bool = True

    def __post_init__(self):
        size = tuple(int(v) for v in self.sensor_size)
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"sensor_size must be (W, H, P) positive ints, got {self.sensor_size}")
        object.__setattr__(self, "sensor_size", size)
        if self.T is None and self.time_window is None:
            raise ValueError("give T (number of frames), time_window (us), or both")
        if self.T is not None:
            if int(self.T) < 1:
                raise ValueError(f"T must be a positive number of frames, got {self.T}")
            object.__setattr__(self, "T", int(self.T))
        if self.time_window is not None:
            if int(self.time_window) != self.time_window or int(self.time_window) < 1:
                raise ValueError(f"time_window must be a positive integer number of "
                                 f"microseconds, got {self.time_window}")
            object.__setattr__(self, "time_window", int(self.time_window))
        if self.origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, got {self.origin!r}")
        d = self.downsample
        if d is not None:
            if isinstance(d, (list, tuple)):
                if len(d) != 2 or any(int(v) != v or v < 1 for v in d):
                    raise ValueError(f"downsample as a target size is (W', H') positive ints, "
                                     f"got {d}")
                d = (int(d[0]), int(d[1]))
                if d[0] > size[0] or d[1] > size[1]:
                    raise ValueError(f"downsample target {d} exceeds the sensor size {size}")
            elif isinstance(d, (int, float)) and not isinstance(d, bool) and 0 < d <= 1:
                d = float(d)
            else:
                raise ValueError(f"downsample must be None, a factor in (0, 1] or a target "
                                 f"size [W', H'], got {d!r}")
            object.__setattr__(self, "downsample", d)
        for name in ("merge_polarity", "binary", "flatten"):
            object.__setattr__(self, name, bool(getattr(self, name)))

    @property
    def target_size(self) -> tuple:
        """``(W', H')`` after downsampling."""
        W, H, _ = self.sensor_size
        d = self.downsample
        if d is None:
            return (W, H)
        if isinstance(d, tuple):
            return d
        return (int((W - 1) * d) + 1, int((H - 1) * d) + 1)

    @property
    def frame_shape(self) -> tuple:
        W, H = self.target_size
        P = 1 if self.merge_polarity else self.sensor_size[2]
        return (P * H * W,) if self.flatten else (P, H, W)

    def params(self) -> dict:
        """Every parameter, JSON-friendly (for cache keys and logs)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


def _time_bins(t: np.ndarray, spec: FrameSpec, source):
    """Bin index of every event and the number of frames."""
    if len(t) == 0:
        return t.astype(np.int64), spec.T or 1
    t0 = int(t.min()) if spec.origin == "first" else 0
    if int(t.min()) < t0:
        raise DatasetError(source, f"negative event time {int(t.min())} us with origin='zero'")
    rel = t.astype(np.int64) - t0
    if spec.time_window is None:
        k = rel * spec.T // (int(rel.max()) + 1)
        return k, spec.T
    k = rel // spec.time_window
    n = int(k.max()) + 1 if spec.T is None else spec.T
    return k, n


def to_frames(events: np.ndarray, spec: FrameSpec, source="events") -> np.ndarray:
    """float32 frames ``(n_frames, *spec.frame_shape)`` of one sample's events
    (structured array with fields x, y, t, p). ``source`` names the sample in
    error messages."""
    check_events(events, spec.sensor_size, source)
    if spec.downsample is not None and len(events):
        Downsample = require("tonic.transforms").Downsample
        if isinstance(spec.downsample, tuple):
            events = Downsample(sensor_size=spec.sensor_size, target_size=spec.downsample)(events)
        else:
            events = Downsample(spatial_factor=spec.downsample)(events)
    W, H = spec.target_size
    P = 1 if spec.merge_polarity else spec.sensor_size[2]
    k, n = _time_bins(events["t"], spec, source)
    keep = k < n
    p = np.zeros_like(events["p"]) if spec.merge_polarity else events["p"]
    flat = ((k * P + p) * H + events["y"]) * W + events["x"]
    counts = np.bincount(flat[keep], minlength=n * P * H * W)
    frames = counts.reshape((n, P, H, W)).astype(np.float32)
    if spec.binary:
        frames = (frames > 0).astype(np.float32)
    check_frames(frames, source)
    return frames.reshape((n,) + spec.frame_shape)


def check_frames(frames: np.ndarray, source) -> None:
    """Frames must be finite: a ``DatasetError`` naming the source and the
    first bad frame otherwise."""
    bad = ~np.isfinite(frames)
    if bad.any():
        first = int(np.argwhere(bad.reshape(len(frames), -1).any(1))[0, 0])
        raise DatasetError(source, f"frames hold {int(bad.sum())} non-finite value(s) "
                                   f"(NaN or inf), first in frame {first}")
