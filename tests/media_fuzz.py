"""A corpus of broken media files and the harness that replays and extracts each, for
tests/test_fuzz_media.py.

    cases = build_corpus(folder)        # {name: path}: a few good clips and dozens derived
    python tests/media_fuzz.py OUT.jsonl FILE...   # one process: replay + extraction of each

The corpus is fixed by SEED: truncations at random offsets, bytes flipped in the header and
mid-stream, a run of zeroed bytes (lost packets), odd picture sizes (1x1, 4000x8), audio only,
video only, tracks without a packet, an empty file, odd display matrices (singular, mirrored).

The harness runs main.py's body (streamer.app.run, the options of `--replay FILE --fast
--headless --random-weights`) on each file with the runtime loaded once (the random-weights
JCA model, stand-in extractors: the media path, not VGG19, is under test), then the file's
offline extraction (model.file_features.extract_file). It writes one JSON line per file as soon
as the file is done, after a line naming the file it starts, so a crash or a hang names its file.
A user error is an outcome (its one line is kept); any other exception is a bug, reported with
its traceback.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 14
SECONDS = 3.0
RATE = 16000
FPS = 10
SIZE = (48, 64)  # (H, W) of the generated clips
HEADER_BYTES = 1024  # "the header": where the container describes its tracks
TRUNCATIONS = 3  # random cut offsets per good clip
FLIPS = 2  # files with flipped bytes per good clip, header and mid-stream each
FLIPPED_BYTES = 8
ZEROED_BYTES = 2048
MIRROR = [-1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30]  # a display matrix: flip left-right


def write_clip(path: Path, video: str | None = "mpeg4", audio: str | None = "pcm_s16le",
               size: tuple[int, int] = SIZE, pix_fmt: str = "yuv420p", frames: int | None = None,
               samples: int | None = None, options: dict[str, str] | None = None,
               seconds: float = SECONDS, display_matrix: list[int] | None = None) -> Path:
    """A clip with a moving bar and a tone (either track may be None); `frames` / `samples`
    override `seconds` (0: a track without a packet)."""
    import av

    h, w = size
    n_frames = round(seconds * FPS) if frames is None else frames
    n_samples = round(seconds * RATE) if samples is None else samples
    with av.open(str(path), "w", options=options or {}) as c:
        vs = c.add_stream(video, rate=FPS) if video else None
        if vs is not None:
            vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
            if display_matrix is not None:
                vs.set_display_matrix(display_matrix)
        st = c.add_stream(audio, rate=RATE, layout="mono") if audio else None
        c.start_encoding()  # the header, even for tracks without a packet
        if vs is not None:
            for i in range(n_frames):
                img = np.full((h, w, 3), 40, np.uint8)
                img[:, (i * 3) % w] = 230
                f = av.VideoFrame.from_ndarray(img, format="rgb24")
                f.pts, f.time_base = i, Fraction(1, FPS)
                c.mux(vs.encode(f))
            c.mux(vs.encode())
        if st is not None:
            t = np.arange(n_samples) / RATE
            x = 0.3 * np.sin(2 * np.pi * (300 + 100 * np.floor(t)) * t)
            fmt = st.codec_context.format.name
            step = st.codec_context.frame_size or 1024
            for s in range(0, n_samples, step):
                block = x[s:s + step][None]  # (1, n): mono, packed or planar alike
                block = (np.round(block * 32767).astype(np.int16) if fmt.startswith("s16")
                         else block.astype(np.float32))
                f = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format=fmt,
                                               layout="mono")
                f.rate, f.pts, f.time_base = RATE, s, Fraction(1, RATE)
                c.mux(st.encode(f))
            c.mux(st.encode())
    return path


def derived(data: bytes, rng: np.random.Generator) -> dict[str, bytes]:
    """Broken copies of one file's bytes."""
    out = {}
    for i, cut in enumerate(sorted(rng.integers(1, len(data), TRUNCATIONS))):
        out[f"cut{i}@{cut}"] = data[:cut]
    for where, lo, hi in (("header", 0, min(HEADER_BYTES, len(data))),
                          ("mid", len(data) // 3, 2 * len(data) // 3)):
        for i in range(FLIPS):
            b = bytearray(data)
            for pos in rng.integers(lo, hi, FLIPPED_BYTES):
                b[pos] ^= int(rng.integers(1, 256))
            out[f"flip-{where}{i}"] = bytes(b)
    b = bytearray(data)
    start = int(rng.integers(len(data) // 4, len(data) // 2))
    b[start:start + ZEROED_BYTES] = bytes(min(ZEROED_BYTES, len(data) - start))
    out[f"zeroed@{start}"] = bytes(b)
    return out


def build_corpus(folder: Path) -> dict[str, Path]:
    """{case name: file}: the good clips, the broken copies of each, the odd files."""
    folder.mkdir(parents=True, exist_ok=True)
    good = {
        "mkv": write_clip(folder / "good.mkv"),
        "mp4": write_clip(folder / "good.mp4", audio="aac", options={"movflags": "faststart"}),
        "ts": write_clip(folder / "good.ts", audio="mp2"),
    }
    cases = {f"good-{k}": p for k, p in good.items()}
    rng = np.random.default_rng(SEED)
    for k, p in good.items():
        for name, data in derived(p.read_bytes(), rng).items():
            q = folder / f"{k}-{name}{p.suffix}"
            q.write_bytes(data)
            cases[f"{k}-{name}"] = q
    odd = {  # name: (suffix, writer)
        "1x1": (".mkv", lambda p: write_clip(p, video="ffv1", size=(1, 1), pix_fmt="yuv444p")),
        "4000x8": (".avi", lambda p: write_clip(p, video="rawvideo", size=(8, 4000),
                                                 pix_fmt="rgb24", frames=12)),
        "audio-only": (".mkv", lambda p: write_clip(p, video=None)),
        "video-only": (".mkv", lambda p: write_clip(p, audio=None)),
        "no-packets": (".mkv", lambda p: write_clip(p, frames=0, samples=0)),
        "no-packets-mp4": (".mp4", lambda p: write_clip(p, frames=0, samples=0)),
        "no-audio-packets": (".mkv", lambda p: write_clip(p, samples=0)),
        "empty-file": (".mp4", lambda p: p.write_bytes(b"")),
        "singular-matrix": (".mp4", lambda p: write_clip(p, display_matrix=[0] * 9)),
        "mirror-matrix": (".mov", lambda p: write_clip(p, display_matrix=MIRROR)),
    }
    for name, (suffix, write) in odd.items():
        p = folder / f"{name}{suffix}"
        write(p)
        cases[name] = p
    return cases


# ---------------------------------------------------------------- the harness (a child process)
def replay(path: Path, log: Path) -> dict:
    """main.py's body on `path` (with the runtime `main` loads once)."""
    from model.errors import UserError
    from streamer import app
    from streamer.options import AppOptions

    opts = AppOptions(source="replay", replay=str(path), random_weights=True, fast=True,
                      headless=True, log=str(log), events="", device="cpu",
                      frames_per_segment=1)
    try:
        summary, error = app.run(opts), None
    except UserError as e:
        summary, error = None, e
    records = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    outcome = "ok" if error is None else "fault" if records else "refused"
    return {"outcome": outcome, "segments": None if summary is None else summary.segments,
            "probs": [r["probs"] for r in records], "message": str(error or "")}


def extract(path: Path) -> dict:
    """The file's offline extraction: features, or the ClipError the batch reports."""
    from stream_fakes import fake_extractors

    from model.file_features import ClipError, ClipPolicy, extract_file

    try:
        ff = extract_file(path, fake_extractors(1), ClipPolicy(no_audio="silence"))
    except ClipError as e:
        return {"outcome": "clip error", "message": str(e)}
    return {"outcome": "ok", "windows": len(ff.starts)}


def attempt(fn: Callable[..., dict], *args: object) -> dict:
    try:
        return fn(*args)
    except Exception:  # a bug: anything but the documented outcomes
        return {"outcome": "bug", "traceback": traceback.format_exc()}


def stand_in_runtime():
    """What --random-weights loads, with stand-in extractors (tests/stream_fakes) and the
    eager backend: the random-weights JCA model, K = 1 on the CPU."""
    from stream_fakes import FakeAudio, FakeVisual

    from model.backends.build import live_backend
    from model.inference import load_model
    from model.provenance import Provenance
    from streamer.runtime import Runtime

    model = load_model(None, random_weights=True, seed=0)
    return Runtime(model, FakeVisual().frame_features, FakeAudio(),
                   live_backend("eager", model.net, "cpu", "fp32"), "cpu", 1,
                   Provenance.UNTRAINED)


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    from streamer import app

    runtime = stand_in_runtime()
    app.load_runtime = lambda opts: runtime  # loaded once, for every file
    out = Path(argv[0])
    with open(out, "w") as f:
        for i, path in enumerate(map(Path, argv[1:])):
            print(json.dumps({"start": path.name}), file=f, flush=True)
            log = out.parent / f"{out.stem}.{i}.jsonl"
            result = {"file": path.name, "replay": attempt(replay, path, log),
                      "extract": attempt(extract, path)}
            print(json.dumps(result), file=f, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
