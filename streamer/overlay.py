"""Overlay video: the stream's frames with the label, confidence and the audio-guided visual
attention map drawn on them (the paper's Fig. 3), muxed with the stream's audio.

    writer = OverlayWriter("out.mp4", fps=25, size=(640, 480), sample_rate=16000)
    writer.add_frame(t, rgb)             # every frame, stream time t, (H, W, 3) uint8
    writer.add_audio(t, samples)         # every audio block, (n,) float32 mono
    writer.on_segment(record)            # every prediction record (a sink, like the dashboard)
    writer.close()                       # draws and writes what is left, finishes the file

A segment's prediction exists only after the segment has closed (and `lookahead` seconds
later), so frames wait in a bounded buffer until the record covering their time arrives, and are
drawn and encoded then. A frame that waits longer than `max_buffer_s` (or past the memory cap),
or that no record covers, is written as it came, without a drawing. Encoding runs on the
writer's own thread; the calls above only enqueue, and wait only when that queue is full (the
recording never drops a frame).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from model.errors import UserError
from model.provenance import Provenance
from streamer.palette import class_color, short_name
from streamer.sinks import OutputFault

# Audio blocks up to this far from where the previous one ended count as contiguous.
AUDIO_JITTER_S = 0.01
# Frames keep their own stream times (to the millisecond): a camera's real rate, jitter or
# dropped frames stay in sync with the sound whatever the nominal fps.
TIME_BASE = Fraction(1, 1000)
TIME_INK = (220, 220, 220)  # the stream time at the banner's right
PROVENANCE_INK = {Provenance.UNTRAINED: (255, 80, 80), Provenance.RANDOM_FEATURES: (255, 210, 0)}


@dataclass(frozen=True)
class OverlayOptions:
    alpha: float = 0.6  # heat-map opacity at the most attended position
    max_buffer_s: float = 12.0  # longest a frame waits for its prediction
    max_buffer_mb: float = 384.0  # memory cap of the waiting frames
    queue_items: int = 64  # items between the caller and the encoding thread
    codec: str = "libx264"
    crf: int = 23
    preset: str = "veryfast"
    audio_codec: str = "aac"
    threaded: bool = True


def _rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode()


def heat_weights(attention: Any, size: tuple[int, int]) -> np.ndarray | None:
    """A (h, w) attention map, min-max normalised and upsampled to `size` (W, H): (H, W) in [0, 1].

    None when the map is absent or flat (nothing to show)."""
    if attention is None:
        return None
    a = np.asarray(attention, dtype=np.float32)
    if a.ndim != 2 or a.size == 0:
        return None
    lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        return None
    a = (a - lo) / (hi - lo)  # (7, 7)
    up = cv2.resize(a, size, interpolation=cv2.INTER_CUBIC)  # (H, W)
    return cv2.max(cv2.min(up, 1.0), 0.0)


def draw_overlay(rgb: np.ndarray, record: Mapping[str, Any], alpha: float = 0.6) -> np.ndarray:
    """A copy of `rgb` (H, W, 3) uint8 with the record's attention heat map, label, confidence."""
    h, w = rgb.shape[:2]
    out = rgb.copy()
    weights = heat_weights(record.get("attention"), (w, h))
    if weights is not None:
        heat = cv2.applyColorMap((weights * 255).astype(np.uint8), cv2.COLORMAP_JET)
        heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)  # (H, W, 3)
        k = (alpha * weights).astype(np.float32)  # (H, W) opacity of the heat map
        out = cv2.blendLinear(out, heat, 1.0 - k, k)

    n = len(record.get("probs", ())) or 0
    color = _rgb(class_color(int(record.get("class_id", -1)), n))
    conf = float(record.get("confidence", 0.0))
    bh = max(20, h // 9)  # banner height
    out[:bh] = cv2.convertScaleAbs(out[:bh], alpha=0.35)  # darken under the text
    scale = bh / 40
    thick = max(1, round(bh / 20))
    cv2.rectangle(out, (0, 0), (max(3, bh // 5), bh - 1), color, -1)
    text = f"{_ascii(short_name(str(record.get('label', '?'))))} {conf:.0%}"
    cv2.putText(out, text, (bh // 5 + 6, int(bh * 0.68)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thick, cv2.LINE_AA)
    right, ink = f"{float(record.get('start', 0.0)):.0f}s", TIME_INK
    provenance = Provenance.from_record(record)
    if provenance.tag:
        right, ink = f"{provenance.tag} {right}", PROVENANCE_INK[provenance]
    (tw, _), _ = cv2.getTextSize(right, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, thick)
    cv2.putText(out, right, (w - tw - 6, int(bh * 0.62)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7,
                ink, thick, cv2.LINE_AA)
    bar = max(2, bh // 8)  # confidence bar along the banner's bottom edge
    cv2.rectangle(out, (0, bh - bar), (round(conf * (w - 1)), bh - 1), color, -1)
    return out


class _Encoder:
    """Single-threaded core: waiting frames, records, and the PyAV container."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int] | None,
                 sample_rate: int | None, opt: OverlayOptions, t0: float) -> None:
        import av

        self.opt, self.t0 = opt, t0
        self.rate = Fraction(fps).limit_denominator(1001)  # nominal; frames keep their own times
        self.sample_rate = sample_rate
        if not path.parent.is_dir():
            raise UserError(f"cannot write the overlay {path}: folder {path.parent} does not "
                            "exist; create it or give another path")
        try:
            self.container = av.open(str(path), mode="w")
        except (OSError, ValueError, av.FFmpegError) as e:
            raise UserError(f"cannot write the overlay {path} ({e}); give a writable path "
                            "ending in .mp4") from None
        self.video = self.audio = None
        self.size: tuple[int, int] | None = None
        self.started = False
        if size is not None:
            self._start(size)
        self.pending: deque[tuple[float, np.ndarray]] = deque()
        self.pending_bytes = 0
        self.records: deque[Mapping[str, Any]] = deque()
        self.last_pts = -1  # in TIME_BASE units
        self.frames_written = 0
        self.frames_drawn = 0
        self.audio_buf = np.zeros(0, np.float32)
        self.audio_next = 0  # index (from t0) of the next audio sample to encode
        self.audio_pts = 0

    def _start(self, size: tuple[int, int] | None) -> None:
        """Add the streams (before anything is muxed): video of `size` (W, H) unless None."""
        self.started = True
        if size is not None:
            self.size = (size[0] - size[0] % 2, size[1] - size[1] % 2)  # yuv420p: even sides
            self.video = self.container.add_stream(self.opt.codec, rate=self.rate)
            self.video.width, self.video.height = self.size
            self.video.pix_fmt = "yuv420p"
            self.video.codec_context.time_base = TIME_BASE
            if self.opt.codec in ("libx264", "h264"):
                self.video.options = {"crf": str(self.opt.crf), "preset": self.opt.preset}
        if self.sample_rate:
            self.audio = self.container.add_stream(self.opt.audio_codec, rate=self.sample_rate,
                                                   layout="mono")

    # -- video ---------------------------------------------------------------------------------
    def add_frame(self, t: float, rgb: np.ndarray) -> None:
        if not self.started:
            self._start(rgb.shape[1::-1])
        self.pending.append((t, rgb))
        self.pending_bytes += rgb.nbytes
        cap = self.opt.max_buffer_mb * 2**20
        while self.pending and (t - self.pending[0][0] > self.opt.max_buffer_s
                                or self.pending_bytes > cap):
            self._emit(*self._pop(), None)  # waited too long: written as it came
        self._flush()

    def on_segment(self, record: Mapping[str, Any]) -> None:
        self.records.append(record)
        self._flush()

    def _pop(self) -> tuple[float, np.ndarray]:
        t, rgb = self.pending.popleft()
        self.pending_bytes -= rgb.nbytes
        return t, rgb

    def _record_for(self, t: float) -> Mapping[str, Any] | None:
        while self.records and float(self.records[0].get("end", 0.0)) <= t:
            if len(self.records) == 1:
                break
            self.records.popleft()  # older than every waiting frame
        for r in self.records:
            if float(r.get("start", 0.0)) <= t < float(r.get("end", 0.0)):
                return r
        return None

    def _flush(self, final: bool = False) -> None:
        while self.pending:
            t = self.pending[0][0]
            record = self._record_for(t)
            covered_later = bool(self.records) and float(self.records[-1].get("end", 0.0)) > t
            if record is None and not covered_later and not final:
                break  # its record may still come
            self._emit(*self._pop(), record)

    def _emit(self, t: float, rgb: np.ndarray, record: Mapping[str, Any] | None) -> None:
        import av

        if rgb.shape[1::-1] != self.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        if record is not None:
            rgb = draw_overlay(rgb, record, self.opt.alpha)
            self.frames_drawn += 1
        pts = max(round((t - self.t0) / TIME_BASE), self.last_pts + 1)
        self.last_pts = pts
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = pts
        frame.time_base = TIME_BASE
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.frames_written += 1

    # -- audio ---------------------------------------------------------------------------------
    def add_audio(self, t: float, samples: np.ndarray, rate: int | None = None) -> None:
        if not self.sample_rate:
            return
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        sr = self.sample_rate
        if rate and rate != sr and len(x):
            n = round(len(x) * sr / rate)
            x = np.interp(np.arange(n) * rate / sr, np.arange(len(x)), x).astype(np.float32)
        start = round((t - self.t0) * sr)
        gap = start - self.audio_next
        if abs(gap) <= AUDIO_JITTER_S * sr:
            gap = 0
        if gap > 0:  # lost audio: silence keeps the picture and sound in sync
            x = np.concatenate([np.zeros(gap, np.float32), x])
        elif gap < 0:  # overlaps what was already written
            x = x[-gap:]
        self.audio_next += len(x)
        self.audio_buf = np.concatenate([self.audio_buf, x])
        if self.audio is not None:  # before the first frame the streams do not exist yet
            self._encode_audio(final=False)

    def _encode_audio(self, final: bool) -> None:
        import av

        size = self.audio.codec_context.frame_size or 1024
        while len(self.audio_buf) >= size or (final and len(self.audio_buf)):
            chunk, self.audio_buf = self.audio_buf[:size], self.audio_buf[size:]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self.audio_pts
            frame.time_base = Fraction(1, self.sample_rate)
            self.audio_pts += len(chunk)
            for packet in self.audio.encode(frame):
                self.container.mux(packet)

    def close(self) -> None:
        try:
            if not self.started:
                self._start(None)  # no frame ever came: sound only
            self._flush(final=True)
            if self.audio is not None:
                # pad the sound to the picture's length (last frame + one frame), so neither
                # ends early
                end = 0
                if self.last_pts >= 0:
                    end = round((self.last_pts * TIME_BASE + 1 / self.rate) * self.sample_rate)
                if end > self.audio_next:
                    self.audio_buf = np.concatenate(
                        [self.audio_buf, np.zeros(end - self.audio_next, np.float32)])
                    self.audio_next = end
                self._encode_audio(final=True)
                for packet in self.audio.encode(None):
                    self.container.mux(packet)
            if self.video is not None:
                for packet in self.video.encode(None):
                    self.container.mux(packet)
        finally:
            self.container.close()


_STOP = object()


class OverlayWriter:
    """Sink that writes the overlay video; see the module docstring for the call order.

    `fps` is the nominal rate written in the file (frames keep their own times); `size` (W, H)
    is the picture size, None for the first frame's; `sample_rate` None writes no sound; `t0`
    is the stream time that becomes 0 in the file (the stream clock starts at 0)."""

    def __init__(self, path: str | Path, fps: float = 25.0, size: tuple[int, int] | None = None,
                 sample_rate: int | None = 16000, *, t0: float = 0.0,
                 options: OverlayOptions | None = None) -> None:
        self.options = options or OverlayOptions()
        self.path = Path(path)
        self._enc = _Encoder(self.path, fps, size, sample_rate, self.options, t0)
        self._error: BaseException | None = None
        self.fault: OutputFault | None = None  # set by close() when the file could not be written
        self._closed = False
        self._queue: queue.Queue | None = None
        if self.options.threaded:
            self._queue = queue.Queue(maxsize=self.options.queue_items)
            self._thread = threading.Thread(target=self._run, name="overlay", daemon=True)
            self._thread.start()

    @property
    def frames_written(self) -> int:
        return self._enc.frames_written

    @property
    def frames_drawn(self) -> int:
        return self._enc.frames_drawn

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is None:
                self._call(*item)

    def _call(self, fn, *args) -> None:
        try:
            fn(*args)
        except BaseException as e:  # reported by close(); the stream goes on
            self._error = e

    def _do(self, fn, *args) -> None:
        if self._closed:
            raise RuntimeError("OverlayWriter is closed")
        if self._error is not None:
            return
        if self._queue is None:
            self._call(fn, *args)
        else:
            self._queue.put((fn, *args))

    def add_frame(self, t: float, rgb: np.ndarray) -> None:
        self._do(self._enc.add_frame, float(t), rgb)

    def add_audio(self, t: float, samples: np.ndarray, rate: int | None = None) -> None:
        self._do(self._enc.add_audio, float(t), samples, rate)

    def add(self, item: Any) -> None:
        """A source item: `Frame(t, rgb)` or `Audio(t, samples, rate)`."""
        if hasattr(item, "rgb"):
            self.add_frame(item.t, item.rgb)
        else:
            self.add_audio(item.t, item.samples, getattr(item, "rate", None))

    def on_segment(self, record: Mapping[str, Any]) -> None:
        self._do(self._enc.on_segment, record)

    def close(self) -> None:
        """Finish the file. A write that failed (a full disk) leaves `fault` and no file: a
        video cut before its end does not play. Any other failure is raised."""
        import av

        if self._closed:
            return
        self._closed = True
        if self._queue is not None:
            self._queue.put(_STOP)
            self._thread.join()
        if self._error is None:
            self._call(self._enc.close)
        else:
            with suppress(OSError, av.FFmpegError):
                self._enc.container.close()
        e = self._error
        if e is None:
            return
        if not isinstance(e, OSError | av.FFmpegError):
            raise RuntimeError(f"overlay {self.path}: {e}") from e
        self.path.unlink(missing_ok=True)
        self.fault = OutputFault(
            f"cannot write the overlay {self.path} ({getattr(e, 'strerror', None) or e}): "
            "removed the unfinished video; free space on its disk or give another --overlay")
