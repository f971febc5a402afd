"""Audio to 16 kHz mono as the official VGGish front end makes it: the channels averaged, then
resampy's `kaiser_best` windowed sinc, rendered by libswresample (through PyAV) with the same
filter: cutoff 0.917347 of the output Nyquist, a Kaiser window of beta 12.9846, 50 zero crossings
a side (swresample's `filter_size` counts both sides at the cutoff: 2 x 50 x 0.917347 = 92).

    y = resample_to_16k(x, 44100)            # (n,) or (n, channels) -> (ceil(n * 16000 / 44100),)
    stream = StreamResampler(48000)          # live: any block sizes, the same samples
    y = np.concatenate([stream.push(b) for b in blocks] + [stream.flush()])

Both treat the signal as zero before its start and after its end, like resampy (swresample's own
edges differ: the zeros are fed to it and the matching output dropped). soxr does not fit here:
its passband is flat to ~7.4 kHz whatever the quality, while kaiser_best is already down to 0.37
at 7.4 kHz, which moves the top mel band (6.9-7.5 kHz) by 0.5 log units on noise.
Light: numpy only; PyAV is imported when a resampler is made.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np

SAMPLE_RATE = 16000
KAISER_BEST = {"cutoff": 0.917347, "kaiser_beta": 12.9846, "zero_crossings": 50}
FILTER_SIZE = round(2 * KAISER_BEST["zero_crossings"] * KAISER_BEST["cutoff"])  # 92
EDGE_SAMPLES = 256  # input zeros fed before the start (> half the filter: 50 / (16k / 48k))


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(n,) or (n, channels) -> (n,) float64, the mean of the channels (VGGish's own rule)."""
    x = np.asarray(samples, np.float64)
    if x.ndim == 2:
        return x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"expected samples (n,) or (n, channels), got shape {x.shape}")
    return x


def output_length(n: int, rate: int) -> int:
    """Samples at 16 kHz of n samples at `rate`: ceil(n * 16000 / rate), as resampy."""
    return -(-n * SAMPLE_RATE // rate)


class StreamResampler:
    """Mono or multichannel blocks at `rate` -> float32 16 kHz mono; the output depends on the
    samples only, never on how they were cut into blocks."""

    def __init__(self, rate: int) -> None:
        if rate <= 0:
            raise ValueError(f"sample rate must be > 0, got {rate}")
        self.rate = rate
        self.received = 0  # input samples pushed
        self.emitted = 0  # output samples returned
        self._pts = 0
        step = rate // math.gcd(rate, SAMPLE_RATE)  # input samples per whole output step
        self._edge_in = -(-EDGE_SAMPLES // step) * step
        self._skip = self._edge_in * SAMPLE_RATE // rate  # output of the leading zeros
        self._graph = None if rate == SAMPLE_RATE else self._build()
        if self._graph is not None:
            self._emit(self._feed(np.zeros(self._edge_in)))  # all dropped

    def _build(self) -> object:
        import av

        graph = av.filter.Graph()
        src = graph.add_abuffer(format="dbl", sample_rate=self.rate, layout="mono",
                                time_base=Fraction(1, self.rate))
        options = (f"{SAMPLE_RATE}:filter_size={FILTER_SIZE}:cutoff={KAISER_BEST['cutoff']}:"
                   f"kaiser_beta={KAISER_BEST['kaiser_beta']}:filter_type=kaiser:"
                   f"internal_sample_fmt=dblp")
        chain = [src, graph.add("aresample", options),
                 graph.add("aformat", f"sample_fmts=dbl:sample_rates={SAMPLE_RATE}:"
                                      f"channel_layouts=mono"),
                 graph.add("abuffersink")]
        for a, b in itertools.pairwise(chain):
            a.link_to(b)
        graph.configure()
        return graph

    def _feed(self, mono: np.ndarray | None) -> np.ndarray:
        """Push float64 mono (None: end of stream) and pull what is ready."""
        import av

        graph = self._graph
        if mono is None:
            graph.push(None)
        elif len(mono):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(mono[None]), format="dbl",
                                               layout="mono")
            frame.sample_rate, frame.pts = self.rate, self._pts
            frame.time_base = Fraction(1, self.rate)
            self._pts += len(mono)
            graph.push(frame)
        out = []
        while True:
            try:
                out.append(graph.pull().to_ndarray().reshape(-1))
            except (av.error.BlockingIOError, av.error.EOFError):
                break
        return np.concatenate(out) if out else np.zeros(0)

    def _emit(self, y: np.ndarray, limit: int | None = None) -> np.ndarray:
        """Drop what the leading zeros made; stop at `limit` output samples in all."""
        drop = min(self._skip, len(y))
        self._skip -= drop
        y = y[drop:]
        if limit is not None:
            y = y[:max(limit - self.emitted, 0)]
        self.emitted += len(y)
        return y.astype(np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """One block (n,) or (n, channels) -> the 16 kHz samples ready so far."""
        mono = to_mono(samples)
        self.received += len(mono)
        if self._graph is None:
            self.emitted += len(mono)
            return mono.astype(np.float32)
        return self._emit(self._feed(mono))

    def flush(self) -> np.ndarray:
        """The end of the stream: the last samples (zeros after the end, like resampy)."""
        if self._graph is None:
            return np.zeros(0, np.float32)
        total = output_length(self.received, self.rate)
        tail = self._emit(self._feed(np.zeros(self._edge_in)), total)
        return np.concatenate([tail, self._emit(self._feed(None), total)])


def resample_to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """A whole signal (n,) or (n, channels) at `rate` -> float32 16 kHz mono."""
    stream = StreamResampler(rate)
    return np.concatenate([stream.push(samples), stream.flush()])
