"""Microphone capture with sounddevice (PortAudio), by name or index; imported only when used.

    producer = MicrophoneProducer("USB")     # raises UserError now: no PortAudio, no such mic

PortAudio calls back on its own thread with blocks of samples; the callback copies them to
mono float32, resamples to 16 kHz if the device cannot record at that rate (the resampler of
every audio path, model.extractors.resample, whatever the block sizes), stamps them on the
stream clock and queues them (dropping the oldest when the consumer is behind). Timestamps
count samples from the first block's ADC time, so blocks are contiguous; an input overflow
(samples PortAudio lost) is counted as a drop and re-anchors the count on the ADC time.

A microphone that goes away (unplugged, its sound server killed) raises nothing in PortAudio:
the stream just goes inactive and the callbacks stop. A watchdog thread looks at the stream
every WATCH_S and ends the source with MicrophoneLost (one line) when it is no longer active.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from model.errors import UserError
from model.extractors.resample import StreamResampler
from model.extractors.vggish_frontend import SAMPLE_RATE
from streamer.clock import Clock
from streamer.sources import AUDIO, Audio, ItemQueue

BLOCK = 0  # frames per callback: PortAudio's choice (a fixed 1024 stalls PulseAudio's ALSA plugin)
WATCH_S = 0.25  # how often the watchdog checks that the stream is still active


class MicrophoneLost(UserError):
    pass


def import_sounddevice() -> Any:
    try:
        import sounddevice
    except OSError:
        raise UserError("PortAudio library not found, needed for the microphone: install it "
                        "(sudo apt-get install libportaudio2), or use --replay FILE / "
                        "--synthetic") from None
    return sounddevice


def parse_device(device: str | int | None) -> str | int | None:
    if device is None:
        return None
    s = str(device)
    return int(s) if s.isdigit() else s


class MicrophoneProducer:
    kinds = (AUDIO,)

    def __init__(self, device: str | int | None = None, block: int = BLOCK) -> None:
        self.sd = import_sounddevice()
        self.device = parse_device(device)
        self.block = block
        inputs = [d for d in self.sd.query_devices() if d.get("max_input_channels", 0) > 0]
        if not inputs:
            raise UserError("no microphone found: connect one (or check `python -m sounddevice`"
                            "), or use --replay FILE / --synthetic")
        try:
            info = self.sd.query_devices(self.device, "input")
        except (ValueError, self.sd.PortAudioError):
            raise UserError(f"no microphone {self.device!r}: list them with `python -m "
                            "sounddevice` and pass --mic NAME or INDEX") from None
        self.name = str(info.get("name", self.device))
        self.default_rate = int(info.get("default_samplerate") or SAMPLE_RATE)
        self.overflows = 0
        self._stream: Any = None
        self._lock = threading.Lock()
        self._queue: ItemQueue | None = None
        self._watchdog: threading.Thread | None = None

    def _open(self, rate: int, callback: Any, finished: Any) -> Any:
        return self.sd.InputStream(device=self.device, channels=1, samplerate=rate,
                                   dtype="float32", blocksize=self.block, callback=callback,
                                   finished_callback=finished)

    def start(self, queue: ItemQueue, clock: Clock) -> None:
        queue.register()
        self._queue = queue
        anchor: dict[str, float] = {}  # "t0": stream time of sample 0 of the count; "n": count
        resample: StreamResampler | None = None
        stopping = threading.Event()
        self._stopping = stopping

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            x = np.array(indata, dtype=np.float32).reshape(frames, -1).mean(axis=1)  # copy
            adc = getattr(time_info, "inputBufferAdcTime", 0.0) or 0.0
            t_now = (adc + anchor["offset"]) if adc > 0 else clock.now() - frames / rate
            if getattr(status, "input_overflow", False):
                self.overflows += 1
                queue.count_drop(AUDIO)
                anchor.pop("t0", None)  # samples were lost: re-anchor on the ADC time
            if resample is not None:
                x = resample.push(x)
            if "t0" not in anchor:
                anchor["t0"], anchor["n"] = t_now, 0
            t = anchor["t0"] + anchor["n"] / SAMPLE_RATE
            anchor["n"] += len(x)
            if len(x):
                queue.put(Audio(t, x, SAMPLE_RATE))

        def finished() -> None:
            if not stopping.is_set():
                queue.fail(self.lost())

        rate = SAMPLE_RATE
        try:
            try:
                stream = self._open(rate, callback, finished)
            except self.sd.PortAudioError:  # the device cannot record at 16 kHz: resample
                rate = self.default_rate
                resample = StreamResampler(rate)
                stream = self._open(rate, callback, finished)
            anchor["offset"] = clock.now() - float(stream.time)  # PortAudio time -> stream time
            stream.start()
        except self.sd.PortAudioError as e:
            queue.done()
            raise UserError(f"cannot open microphone {self.name!r} ({e}): close other programs "
                            "using it or pick another with --mic") from None
        self._stream = stream
        self._watchdog = threading.Thread(target=self._watch, args=(stream, queue, stopping),
                                          name="jca-mic-watchdog", daemon=True)
        self._watchdog.start()

    def lost(self) -> MicrophoneLost:
        return MicrophoneLost(f"microphone {self.name!r} stopped delivering audio: check it is "
                              "plugged in (and its sound server running), then restart")

    def _watch(self, stream: Any, queue: ItemQueue, stopping: threading.Event) -> None:
        """End the source once the stream goes inactive without being stopped."""
        while not stopping.wait(WATCH_S):
            if not stream.active:
                if not stopping.is_set():
                    queue.fail(self.lost())
                return

    def stop(self) -> None:
        if self._stream is None:
            return
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.join()
        stream, self._stream = self._stream, None
        try:
            stream.stop()
            stream.close()
        finally:
            if self._queue is not None:
                self._queue.done()
