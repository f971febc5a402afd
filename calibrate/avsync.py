"""How far sound and picture are apart, from a clap-or-flash test: pure functions over arrays.

    env = onset_envelope(samples, 16000)                     # (n_hops,) audio onset strength
    change = [brightening(prev, cur) for prev, cur in ...]   # per frame, from grey frames
    result = estimate_offset(samples, 16000, audio_t0, frame_times, change)
    result.offset_ms                                         # > 0: the sound arrives later

Method: the audio onset envelope (rise of the RMS level over the loudest of the previous 20 ms,
at a 1 ms hop) and the visual change signal (mean brightening per pixel between consecutive
frames, dated by the first frame that shows it: the timestamp the segmenter cuts by) are put on
one 1 ms grid (the visual signal linearly interpolated between frames), their noise floors
(medians) removed, and cross-correlated over lags of +-1 s. The peak, refined by a parabola
through its neighbours, is the offset; confidence = 1 - (highest correlation more than two
frames or 100 ms away from the peak) / peak, so a single clear alignment gives about 1 - 1/N
for N events and a repeating pattern (claps at a steady beat) or noise gives about 0.
Events are the peaks of each signal (at least 0.25 s apart, at least 20% of the largest);
the events used are audio events with a visual event within 1.5 frames (at least 60 ms) at the
found offset. Brightening rather than absolute change: a flash that goes off again must not
make a second, equally strong alignment a flash-length away.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from model.errors import UserError


class SyncError(UserError):
    """The recording does not allow a measurement; the message says what to do instead."""


@dataclass(frozen=True)
class SyncOptions:
    hop: float = 0.001  # s: audio onset hop and step of the common grid
    max_lag: float = 1.0  # s: offsets searched in [-max_lag, max_lag]
    lookback: float = 0.02  # s: an onset is a rise over the loudest of this much before it
    min_gap: float = 0.25  # s: two events of one kind are at least this far apart
    event_fraction: float = 0.2  # an event peak is at least this fraction of the largest one
    audio_snr: float = 4.0  # a sound event rises by at least this many times the median level
    video_floor: float = 1.0  # grey levels: a visual event brightens the picture at least this
    min_events: int = 3  # matched events needed for a number
    min_confidence: float = 0.3


@dataclass(frozen=True)
class SyncResult:
    offset_ms: float  # > 0: the audio arrives later than the picture
    confidence: float  # 0..1, the correlation peak's prominence
    events: int  # audio events matched by a visual event at the offset
    audio_events: int
    video_events: int
    frame_ms: float  # median frame interval
    seconds: float  # length of the recording analysed

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def line(self) -> str:
        side = "later" if self.offset_ms >= 0 else "earlier"
        return (f"A/V offset {self.offset_ms:+.1f} ms (audio {abs(self.offset_ms):.1f} ms {side} "
                f"than video), confidence {self.confidence:.2f}, {self.events} events "
                f"(1 frame = {self.frame_ms:.1f} ms)")


def hop_rms(samples: np.ndarray, rate: int, hop: float = 0.001) -> np.ndarray:
    """RMS level of each whole hop: (n,) samples -> (n // hop_samples,) float64."""
    n = max(1, round(hop * rate))
    frames = len(samples) // n
    x = np.asarray(samples[:frames * n], np.float64).reshape(frames, n)
    return np.sqrt(np.mean(x * x, axis=1))


def onset_envelope(samples: np.ndarray, rate: int, hop: float = 0.001,
                   lookback: float = 0.02) -> np.ndarray:
    """Onset strength per hop: how far the hop's RMS rises above the loudest of the `lookback`
    seconds before it (0 when it does not rise). (n,) samples -> (n // hop_samples,) float64."""
    rms = hop_rms(samples, rate, hop)  # (frames,)
    frames = len(rms)
    back = max(1, round(lookback / hop))
    padded = np.concatenate([np.full(back, rms[0] if frames else 0.0), rms])
    prev_max = np.lib.stride_tricks.sliding_window_view(padded[:-1], back).max(axis=1)
    return np.maximum(rms - prev_max, 0.0)


def grey(rgb: np.ndarray, stride: int = 4) -> np.ndarray:
    """(H, W, 3) uint8 -> (H / stride, W / stride) float32 brightness 0..255 (every stride-th
    pixel: enough for a whole-picture change signal, cheap at camera rates)."""
    small = np.asarray(rgb[::stride, ::stride], np.float32)
    return small.mean(axis=-1)


def brightening(prev: np.ndarray, cur: np.ndarray) -> float:
    """Mean brightening per pixel from one grey frame to the next (darkening counts 0)."""
    return float(np.mean(np.maximum(cur - prev, 0.0)))


def on_grid(times: np.ndarray, values: np.ndarray, t0: float, step: float, n: int) -> np.ndarray:
    """Samples of the piecewise-linear signal through (times, values) at t0 + i * step, zero
    outside its span. (n,) float64."""
    grid = t0 + step * np.arange(n)
    return np.interp(grid, times, values, left=0.0, right=0.0)


def cross_correlation(a: np.ndarray, v: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised c[max_lag + L] = sum_t a'[t + L] v'[t] / (|a'| |v'|) for L in -max_lag..max_lag,
    a' and v' the zero-mean signals (same length n). (2 max_lag + 1,) float64."""
    a = np.asarray(a, np.float64) - np.mean(a)
    v = np.asarray(v, np.float64) - np.mean(v)
    norm = np.sqrt(np.sum(a * a) * np.sum(v * v))
    if norm == 0:
        return np.zeros(2 * max_lag + 1)
    size = 1 << int(np.ceil(np.log2(len(a) + max_lag + 1)))
    full = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(v, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    return full[lags % size] / norm


def refine_peak(c: np.ndarray, i: int) -> float:
    """Sub-step position of the maximum at index i: the vertex of the parabola through
    c[i - 1], c[i], c[i + 1] (i itself at an edge or on a flat top)."""
    if i <= 0 or i >= len(c) - 1:
        return float(i)
    left, mid, right = c[i - 1], c[i], c[i + 1]
    curve = left - 2 * mid + right
    if curve >= 0:
        return float(i)
    return i + 0.5 * (left - right) / curve


def pick_events(times: np.ndarray, values: np.ndarray, min_gap: float, fraction: float,
                floor: float = 0.0) -> np.ndarray:
    """Times of the peaks of a signal, largest first kept, at least `min_gap` apart, at least
    `fraction` of the largest value and above `floor`; sorted."""
    values = np.asarray(values, np.float64)
    if len(values) == 0 or values.max() <= floor:
        return np.zeros(0)
    least = max(fraction * values.max(), floor)
    keep: list[float] = []
    for i in np.argsort(-values, kind="stable"):
        if values[i] < least:
            break
        if all(abs(times[i] - t) >= min_gap for t in keep):
            keep.append(float(times[i]))
    return np.sort(np.array(keep))


def match_events(audio: np.ndarray, video: np.ndarray, offset: float, tol: float) -> int:
    """Pairs of (audio event, visual event) within tol of each other once the audio is moved
    `offset` earlier; each event pairs at most once (nearest first)."""
    pairs = sorted((abs(a - offset - v), i, j) for i, a in enumerate(audio)
                   for j, v in enumerate(video) if abs(a - offset - v) <= tol)
    used_a: set[int] = set()
    used_v: set[int] = set()
    for _, i, j in pairs:
        if i not in used_a and j not in used_v:
            used_a.add(i)
            used_v.add(j)
    return len(used_a)


def estimate_offset(audio: np.ndarray, rate: int, audio_t0: float, frame_times: np.ndarray,
                    change: np.ndarray, opts: SyncOptions | None = None) -> SyncResult:
    """The offset of the audio (16 kHz mono samples from stream time audio_t0) against the
    picture (per-frame change signal at frame_times), or SyncError saying why not."""
    opts = opts or SyncOptions()
    frame_times = np.asarray(frame_times, np.float64)
    change = np.asarray(change, np.float64)
    audio = np.asarray(audio)
    if len(frame_times) < 3:
        raise SyncError(f"only {len(frame_times)} video frames recorded: check the camera "
                        "(or the file's video track) and record at least 5 s")
    if len(audio) < rate * opts.hop * 10:
        raise SyncError("no audio recorded: check the microphone (or the file's audio track)")
    frame_s = float(np.median(np.diff(frame_times)))
    env = onset_envelope(audio, rate, opts.hop, opts.lookback)
    env_t = audio_t0 + opts.hop * (np.arange(len(env)) + 0.5)  # hop centres
    level = float(np.median(hop_rms(audio, rate, opts.hop)))
    env = np.maximum(env - np.median(env), 0.0)
    video_noise = float(np.median(change))
    change = np.maximum(change - video_noise, 0.0)
    audio_events = pick_events(env_t, env, opts.min_gap, opts.event_fraction,
                               floor=opts.audio_snr * level)
    video_events = pick_events(frame_times, change, opts.min_gap, opts.event_fraction,
                               floor=max(opts.video_floor, 3 * video_noise))
    seconds = float(max(env_t[-1] if len(env_t) else 0.0, frame_times[-1])
                    - min(audio_t0, frame_times[0]))
    if len(audio_events) == 0:
        raise SyncError("no sound onsets found: the recording is silent or steady; clap (or "
                        "tap) close to the microphone and check it is not muted")
    if len(video_events) == 0:
        raise SyncError("no visual change found: the picture stays still; clap or flash a light "
                        "in view of the camera")

    t0 = min(env_t[0], frame_times[0])
    n = int(np.ceil((max(env_t[-1], frame_times[-1]) - t0) / opts.hop)) + 1
    a = on_grid(env_t, env, t0, opts.hop, n)
    v = on_grid(frame_times, change, t0, opts.hop, n)
    max_lag = round(opts.max_lag / opts.hop)
    c = cross_correlation(a, v, max_lag)
    i = int(np.argmax(c))
    peak = float(c[i])
    offset = (refine_peak(c, i) - max_lag) * opts.hop
    away = max(2 * frame_s, 0.1) / opts.hop
    far = np.abs(np.arange(len(c)) - i) > away
    second = float(c[far].max()) if far.any() else 0.0
    confidence = float(np.clip(1 - max(second, 0.0) / peak, 0.0, 1.0)) if peak > 0 else 0.0
    events = match_events(audio_events, video_events, offset, max(1.5 * frame_s, 0.06))
    result = SyncResult(offset_ms=1000 * offset, confidence=confidence, events=events,
                        audio_events=len(audio_events), video_events=len(video_events),
                        frame_ms=1000 * frame_s, seconds=seconds)
    how = ("clap or flash 5-10 times at irregular intervals (1-3 s apart), close to the "
           "microphone and in view of the camera")
    if confidence < opts.min_confidence:
        raise SyncError(f"sound and picture do not line up clearly (confidence {confidence:.2f}"
                        f", need {opts.min_confidence:.2f}; {len(audio_events)} sound and "
                        f"{len(video_events)} visual events): {how}")
    if events < opts.min_events:
        raise SyncError(f"too few events: {events} matched between sound and picture "
                        f"({len(audio_events)} sound, {len(video_events)} visual), need "
                        f"{opts.min_events}: {how}")
    return result
