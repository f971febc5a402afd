"""Overlay video: drawing, late predictions, and the file decoding back like its input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from model.errors import UserError
from model.provenance import Provenance
from streamer.overlay import (
    PROVENANCE_INK,
    OverlayOptions,
    OverlayWriter,
    draw_overlay,
    heat_weights,
)
from streamer.palette import class_color

W, H, FPS, SR, SECONDS = 160, 120, 25, 16000, 3
N_CLASSES = 5
HOT = (5, 5)  # the attended cell of the 7x7 map


def frame_at(i: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    r = (xx * 255 // W + i) % 256
    g = yy * 255 // H
    b = np.full_like(xx, 90)
    return np.stack([r, g, b], -1).astype(np.uint8)  # (H, W, 3)


def make_clip(path: Path) -> None:
    """A generated clip: smooth moving gradient at 25 fps and a 440 Hz tone, SECONDS long."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.options = {"crf": "12"}
        a = out.add_stream("aac", rate=SR, layout="mono")
        for i in range(FPS * SECONDS):
            f = av.VideoFrame.from_ndarray(frame_at(i), format="rgb24")
            f.pts = i
            f.time_base = Fraction(1, FPS)
            for p in v.encode(f):
                out.mux(p)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(SR * SECONDS) / SR)).astype(np.float32)
        for k in range(0, len(tone), 1024):
            f = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="flt", layout="mono")
            f.sample_rate, f.pts, f.time_base = SR, k, Fraction(1, SR)
            for p in a.encode(f):
                out.mux(p)
        for s in (v, a):
            for p in s.encode(None):
                out.mux(p)


def decode(path: Path) -> tuple[list[tuple[float, np.ndarray]], list[tuple[float, np.ndarray]]]:
    frames, audio = [], []
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
    with av.open(str(path)) as c:
        for packet in c.demux():
            for f in packet.decode():
                if packet.stream.type == "video":
                    frames.append((float(f.time), f.to_ndarray(format="rgb24")))
                else:
                    for r in resampler.resample(f):
                        audio.append((float(r.time), r.to_ndarray().reshape(-1)))
    return frames, audio


def record(seg: int, cid: int, attention=None) -> dict:
    probs = np.full(N_CLASSES, 0.05)
    probs[cid] = 1 - 0.05 * (N_CLASSES - 1)
    if attention is None:
        attention = np.zeros((7, 7))
        attention[HOT] = 1.0
    return {"segment": seg, "start": float(seg), "end": float(seg + 1), "label": f"class {cid}",
            "class_id": cid, "confidence": float(probs[cid]), "probs": probs.tolist(),
            "lookahead": 0, "warmup": False, "latency_ms": {"total": 1.0},
            "attention": np.asarray(attention).tolist()}


def test_draw_overlay_touches_banner_and_attended_cell_only():
    rgb = frame_at(0)
    out = draw_overlay(rgb, record(0, 1))
    changed = np.abs(out.astype(int) - rgb).max(-1) > 0  # (H, W)
    bh = max(20, H // 9)
    assert changed[:bh].mean() > 0.9  # the banner
    cy, cx = int((HOT[0] + 0.5) * H / 7), int((HOT[1] + 0.5) * W / 7)
    assert np.abs(out[cy, cx].astype(int) - rgb[cy, cx]).sum() > 60  # the attended cell
    assert not changed[bh:H // 2, : W // 2].any()  # far from both: untouched
    # flat attention: nothing to show below the banner
    flat = draw_overlay(rgb, record(0, 1, attention=np.ones((7, 7))))
    assert np.array_equal(flat[bh:], rgb[bh:])
    assert heat_weights(None, (W, H)) is None


def test_banner_names_the_provenance_in_its_colour():
    rgb = np.zeros((240, 320, 3), np.uint8)
    bh = max(20, 240 // 9)

    def inked(rec: dict, ink: tuple[int, int, int]) -> int:
        banner = draw_overlay(rgb, rec)[:bh].astype(int)
        return int((np.abs(banner - ink).max(-1) <= 10).sum())

    trained = record(0, 1)
    for provenance, ink in PROVENANCE_INK.items():
        rec = {**trained, **provenance.fields()}
        assert inked(rec, ink) > 20, provenance  # the tag, drawn in its colour
        assert inked(trained, ink) == 0, provenance
    # an untrained run also has random features: it is worded UNTRAINED, in red
    both = {**trained, "untrained": True, "random_features": True}
    assert inked(both, PROVENANCE_INK[Provenance.UNTRAINED]) > 20
    assert inked(both, PROVENANCE_INK[Provenance.RANDOM_FEATURES]) == 0


def test_heat_weights_are_normalised_and_upsampled():
    a = np.arange(49, dtype=float).reshape(7, 7)
    w = heat_weights(a, (70, 35))
    assert w.shape == (35, 70) and w.min() >= 0 and w.max() <= 1
    # the cell centres keep the normalised value (cubic interpolation passes through them)
    centres = w[2::5, 5::10]  # (7, 7)
    np.testing.assert_allclose(centres, a / 48, atol=0.02)


def test_overlay_of_a_generated_clip(tmp_path):
    src, dst = tmp_path / "in.mp4", tmp_path / "overlay.mp4"
    make_clip(src)
    frames, audio = decode(src)
    assert len(frames) == FPS * SECONDS

    classes = [0, 2, 1]  # segment -> class
    writer = OverlayWriter(dst, FPS, (W, H), SR)
    a_i = 0
    for i, (t, rgb) in enumerate(frames):
        writer.add_frame(t, rgb)
        while a_i < len(audio) and audio[a_i][0] <= t:
            writer.add_audio(*audio[a_i])
            a_i += 1
        # each prediction arrives 1.5 s after its segment started closing (lookahead-like)
        if i >= FPS and (i - FPS) % FPS == FPS // 2 and (i - FPS) // FPS < len(classes):
            s = (i - FPS) // FPS
            writer.on_segment(record(s, classes[s]))
    for k in range(a_i, len(audio)):
        writer.add_audio(*audio[k])
    writer.on_segment(record(2, classes[2]))  # the last one comes at the end
    writer.close()
    assert writer.frames_written == len(frames) and writer.frames_drawn == len(frames)

    out_frames, out_audio = decode(dst)
    with av.open(str(dst)) as c:
        assert len(c.streams.audio) == 1 and len(c.streams.video) == 1
        v = c.streams.video[0]
        v_dur = float(v.duration * v.time_base)
    with av.open(str(src)) as c:
        v = c.streams.video[0]
        src_dur = float(v.duration * v.time_base)
    assert len(out_frames) == len(frames)
    assert abs(v_dur - src_dur) <= 1 / FPS + 1e-9
    samples = sum(len(x) for _, x in out_audio)
    assert abs(samples / SR - SECONDS) < 0.1
    out_tone = np.concatenate([x for _, x in out_audio])[SR // 2: SR // 2 + 4096]
    assert np.abs(out_tone).max() > 0.1  # the tone, not silence

    for i, ((t, rgb_in), (t_out, rgb_out)) in enumerate(zip(frames, out_frames, strict=True)):
        assert t_out == pytest.approx(t, abs=1e-6)
        rec = record(int(t), classes[int(t)])
        drawn = np.abs(draw_overlay(rgb_in, rec).astype(int) - rgb_in).max(-1)  # (H, W)
        diff = np.abs(rgb_out.astype(int) - rgb_in).mean(-1)
        assert diff[drawn > 60].mean() > 25, i  # the drawing is there
        assert diff[drawn == 0].mean() < 4, i  # and nothing else changed beyond codec noise
        swatch = rgb_out[4:12, 1:3].reshape(-1, 3).mean(0)  # the class colour block, top left
        hexc = class_color(classes[int(t)], N_CLASSES)
        want = np.array([int(hexc[k:k + 2], 16) for k in (1, 3, 5)])
        assert np.abs(swatch - want).max() < 30, (i, swatch, want)


def test_frames_without_predictions_are_written_plain(tmp_path):
    dst = tmp_path / "plain.mp4"
    opt = OverlayOptions(max_buffer_s=0.5, threaded=False)
    writer = OverlayWriter(dst, FPS, (W, H), SR, options=opt)
    n = FPS * 2
    for i in range(n):
        writer.add_frame(i / FPS, frame_at(i))
        if i == FPS // 2:  # one block, then a gap: the sound is padded to the picture
            writer.add_audio(0.5, np.full(SR // 4, 0.1, np.float32))
        # the buffer stays bounded while no prediction comes: older frames go out plain
        assert i + 1 - writer.frames_written <= 0.5 * FPS + 2
    writer.close()
    assert writer.frames_written == n and writer.frames_drawn == 0
    frames, audio = decode(dst)
    assert len(frames) == n
    assert abs(sum(len(x) for _, x in audio) / SR - n / FPS) < 0.1
    for i, (_, rgb) in enumerate(frames):
        assert np.abs(rgb.astype(int) - frame_at(i)).mean() < 4


def test_bad_overlay_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        OverlayWriter(tmp_path / "nope" / "x.mp4", FPS, (W, H))
    with pytest.raises(UserError, match=r"\.mp4"):
        OverlayWriter(tmp_path / "x.unknownext", FPS, (W, H))


def test_frames_keep_their_own_times(tmp_path):
    """A 30 fps camera with jitter and a dropped frame, into a writer told 25 fps and no size;
    the sound starts before the first frame."""
    dst = tmp_path / "vfr.mp4"
    writer = OverlayWriter(dst, fps=25, size=None, sample_rate=SR,
                           options=OverlayOptions(threaded=False))
    writer.add_audio(0.0, np.full(SR * 2, 0.05, np.float32))
    rng = np.random.default_rng(0)
    times = [i / 30 + rng.uniform(0, 0.004) + 0.01 for i in range(60) if i != 31]
    for i, t in enumerate(times):
        writer.add_frame(t, frame_at(i)[:, :W - 1])  # odd width: made even
        if i == 20:
            writer.on_segment(record(0, 1))
    writer.close()
    frames, audio = decode(dst)
    assert len(frames) == len(times)
    np.testing.assert_allclose([t for t, _ in frames], times, atol=0.0011)
    assert frames[0][1].shape == (H, W - 2, 3)
    assert abs(sum(len(x) for _, x in audio) / SR - 2.0) < 0.1
    assert writer.frames_drawn == sum(t < 1.0 for t in times)


def test_an_overlay_that_cannot_be_written_closes_what_opened_before_it(tmp_path, monkeypatch):
    """The log and the console are open when the overlay writer refuses its path: build closes
    them (and the source) before the one-line error."""
    from streamer import app
    from streamer.options import AppOptions

    closed: list[str] = []

    class Spy:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    monkeypatch.setattr(app, "make_sinks", lambda *a: [Spy("log"), Spy("console")])
    opts = AppOptions(source="synthetic", random_weights=True, backend="eager", duration=2,
                      frames_per_segment=1, headless=True,
                      overlay=str(tmp_path / "missing" / "x.mp4"))
    with pytest.raises(UserError, match="does not exist"):
        app.build(opts)
    assert closed == ["log", "console"]
