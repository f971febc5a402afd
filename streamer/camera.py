"""Camera capture with OpenCV, by index (`0`), device path (`/dev/video2`) or URL
(`rtsp://cam.local/live`, through OpenCV's FFmpeg backend with open and read timeouts set): the
picture only; the sound comes from the microphone (`--mic`).

    producer = CameraProducer("0")        # raises UserError now if there is no such camera

Frames are converted to RGB and stamped on the stream clock when read. A camera lost mid-stream
is reopened with backoff (0.5, 1, 2, 4, 8 s); if it stays away the stream ends with a clear
error, after the segments made so far are flushed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from model.errors import UserError
from streamer.clock import Clock
from streamer.network import OPEN_TIMEOUT_S, READ_TIMEOUT_S, is_url
from streamer.sources import VIDEO, Frame, ItemQueue, ThreadProducer, backoff_delays, retry

MAX_BAD_READS = 5  # consecutive failed reads before the camera counts as lost


class CameraLost(UserError):
    pass


def parse_device(device: str | int) -> str | int:
    """"0" -> 0 (an index); anything else is a path or URL."""
    s = str(device)
    return int(s) if s.isdigit() else s


def _open_cv(device: str | int) -> Any:
    import cv2

    if isinstance(device, str) and is_url(device):
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(OPEN_TIMEOUT_S * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(READ_TIMEOUT_S * 1000)]
        return cv2.VideoCapture(device, cv2.CAP_FFMPEG, timeouts)
    return cv2.VideoCapture(device)


class CameraProducer(ThreadProducer):
    kinds = (VIDEO,)
    name = "camera"

    def __init__(self, device: str | int, open_capture: Callable[[str | int], Any] = _open_cv,
                 delays: list[float] | None = None) -> None:
        super().__init__()
        self.device = parse_device(device)
        self.open_capture = open_capture
        self.delays = backoff_delays() if delays is None else delays
        self.reconnects = 0
        self.cap = self._open()
        if self.cap is None:
            raise UserError(f"no camera at {self.device!r}: connect one, pass another "
                            "--camera index or device path, or use --replay FILE / --synthetic")

    def _open(self) -> Any | None:
        cap = self.open_capture(self.device)
        if cap is not None and cap.isOpened():
            return cap
        if cap is not None:
            cap.release()
        return None

    def _reconnect(self) -> bool:
        self.cap = self._open()
        self.reconnects += 1
        return self.cap is not None

    def capture(self, queue: ItemQueue, clock: Clock, stop: threading.Event) -> None:
        import cv2

        bad = 0
        try:
            while not stop.is_set():
                ok, bgr = self.cap.read() if self.cap is not None else (False, None)
                t = clock.now()
                if ok and bgr is not None:
                    bad = 0
                    if not queue.put(Frame(t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))):
                        return
                    continue
                bad += 1
                if bad < MAX_BAD_READS:
                    continue
                if self.cap is not None:
                    self.cap.release()
                    self.cap = None
                if not retry(self._reconnect, self.delays, stop):
                    if stop.is_set():
                        return
                    raise CameraLost(f"camera {self.device!r} was lost and did not come back "
                                     f"after {len(self.delays)} tries: check its cable, then "
                                     "restart")
                bad = 0
        finally:
            if self.cap is not None:
                self.cap.release()
                self.cap = None

    def stop(self) -> None:
        super().stop()
        if self.cap is not None and self._thread is None:
            self.cap.release()
            self.cap = None
