"""A sender of live MPEG-TS over loopback TCP, for the tests and benchmarks.network_streams: a
file's packets remuxed in real time (by their timestamps) to each client that connects, as an
encoder or IP camera would send them.

    with Sender([clip]) as s:            # listens on 127.0.0.1, a port the system picked
        producer = NetworkProducer(s.url)

`clips`: one per connection, in order (a sender that stops and restarts serves the next clip to
the next connection after `gap_s` without listening); `freeze_after`: stop sending after that
many seconds of the clip but keep the connection open (a frozen sender) until the sender closes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import av

ACCEPT_S = 30.0  # a client that never comes ends the sender after this long


class SocketWriter:
    """The file-like object PyAV writes a container to: bytes go to a connected socket."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def write(self, data: bytes) -> int:
        self.conn.sendall(data)
        return len(data)


def listen(port: int = 0) -> socket.socket:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    srv.settimeout(ACCEPT_S)
    return srv


class Sender:
    def __init__(self, clips: list[str | Path], gap_s: float = 0.0,
                 freeze_after: float | None = None) -> None:
        self.clips, self.gap_s, self.freeze_after = [Path(c) for c in clips], gap_s, freeze_after
        self._srv: socket.socket | None = listen()
        self.port = self._srv.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.started: list[float] = []  # monotonic time of each connection's stream time 0
        self.finished = threading.Event()  # every clip sent (or the sender closed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-sender", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            for i, clip in enumerate(self.clips):
                if i and (self._stop.wait(self.gap_s) or not self._relisten()):
                    return
                assert self._srv is not None
                try:
                    conn, _ = self._srv.accept()
                except OSError:
                    return
                self._srv.close()  # one client per connection: reconnects are refused
                self._srv = None
                with conn:
                    self._send(clip, conn)
        finally:
            self.finished.set()

    def _relisten(self) -> bool:
        try:
            self._srv = listen(self.port)
        except OSError:
            return False
        return True

    def _send(self, clip: Path, conn: socket.socket) -> None:
        src = av.open(str(clip))
        out = av.open(SocketWriter(conn), "w", format="mpegts")
        tracks = {s.index: out.add_stream_from_template(s) for s in src.streams}
        first: float | None = None
        t0 = time.monotonic()
        self.started.append(t0)
        try:
            for pkt in src.demux():
                if pkt.dts is None:
                    continue
                ts = float(pkt.dts * pkt.time_base)
                first = ts if first is None else first
                if self.freeze_after is not None and ts - first >= self.freeze_after:
                    self._stop.wait()  # frozen: the connection stays open, nothing comes
                    return
                if self._stop.wait(max(0.0, t0 + ts - first - time.monotonic())):
                    return
                pkt.stream = tracks[pkt.stream.index]
                out.mux(pkt)
            out.close()
        except OSError:  # the client went away
            return
        finally:
            src.close()

    def close(self) -> None:
        self._stop.set()
        if self._srv is not None:
            with contextlib.suppress(OSError):
                self._srv.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept
            self._srv.close()
        self._thread.join()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
