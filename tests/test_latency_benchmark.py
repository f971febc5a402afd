"""benchmarks.latency: it runs main.py's runtime (stand-in extractors and a narrow model here),
writes its files, labels every segment of every run and variant it was asked for (in
interleaved repeats, at each variant's own K, through the shared workers with --streams), and
its measurements are coherent (every stage inside close -> label, ordered percentiles). Never
its speed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from stream_fakes import CLASSES, FakeAudio, FakeVisual, tiny_model

from benchmarks.latency import benchmark, main, parse_args
from benchmarks.latency_run import STAGES, Parts
from model.backends import live_backend
from model.errors import UserError
from model.extractors.sampling import select_frames
from model.inference import InferenceModel
from model.provenance import Provenance
from model.segments import Segmenter, segment_count
from streamer.batching import Batcher
from streamer.options import app_options
from streamer.runtime import Runtime
from streamer.sources import Audio, Frame
from streamer.synthetic import Script, write_media

ROOT = Path(__file__).resolve().parents[1]
TOL = 0.004  # ms: the pipeline rounds each latency to 0.001 ms


pytestmark = pytest.mark.usefixtures("one_thread")


def fake_parts(argv: list[str], k: int) -> Parts:
    """The benchmark's parts for these flags around a runtime of stand-ins."""
    opts = app_options(parse_args(argv), log=None, events=None, headless=True)
    model = InferenceModel(tiny_model(), CLASSES, None, 1.0, 0.0, Provenance.UNTRAINED, "tiny")
    rt = Runtime(model, FakeVisual().frame_features, FakeAudio(),
                 live_backend("eager", model.net), "cpu", k, Provenance.UNTRAINED)
    return Parts(opts, rt)


def check_run(run: dict, k: int | None = None) -> None:
    """One run's JSON object: every segment labelled and logged once, in order per stream, and
    coherent measurements."""
    recs = run["records"]
    assert run["segments"] == run["log_records"] == run["expected_segments"] == len(recs) > 0
    for i in sorted({r.get("stream", 0) for r in recs}):  # each stream's records in order
        mine = [r["segment"] for r in recs if r.get("stream", 0) == i]
        assert mine == list(range(len(mine)))
    for r in recs:  # every stage runs inside the close -> label interval
        for stage in ("extraction", "model", "output", "wait"):
            assert -TOL <= r[stage] <= r["close_to_label"] + TOL
    for stage in STAGES:
        d = run["stages"][stage]
        assert d["n"] == (len(run["frame_ms"]) if stage == "frame" else len(recs))
        assert d["p50"] <= d["p95"] <= d["p99"] <= d["max"]
    if k is not None:  # 25 fps: every target takes its own frame, each computed once
        assert run["stages"]["frame"]["n"] == k * run["segments"]
    if "busy_s" in run:
        assert 0 < run["busy_s"] <= run["wall_s"] + 0.01 and run["rtf"] > 0


def test_benchmark_synthetic_consistent(tmp_path, capsys):
    out = tmp_path / "lat.json"
    argv = ["--synthetic", "--random-weights", "--fast", "--duration", "3", "--backend", "eager",
            "--frames-per-segment", "2", "--compare", "incremental", "frames", "backends",
            "--backends", "eager", "--frames", "1", "4", "--compare-seconds", "2",
            "--repeat", "2", "--streams", "1", "3", "--streams-seconds", "2",
            "--json", str(out), "--markdown", str(tmp_path / "md" / "table.md")]
    report = benchmark(argv, fake_parts(argv, k=2))
    printed = capsys.readouterr().out

    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    table = (tmp_path / "md" / "table.md").read_text()
    assert table.strip() in printed and "segment close -> label" in table
    png = out.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG")
    cfg = report["config"]
    assert (cfg["device"], cfg["backend"], cfg["backend_precision"], cfg["k"]) == \
        ("cpu", "eager", "fp32", 2)

    main_run = report["main"]
    assert main_run["mode"] == "fast" and main_run["k"] == 2
    assert main_run["segments"] == segment_count(3.0)
    assert main_run["drops"] == {"video": 0, "audio": 0}
    check_run(main_run, k=2)

    comps = {c["name"]: c for c in report["comparisons"]}
    assert set(comps) == {"incremental", "frames", "backends"}
    for comp in comps.values():
        names = [v["variant"] for v in comp["variants"]]
        assert len(comp["runs"]) == 2 * len(names)
        assert [r["name"] for r in comp["runs"]] == names * 2  # interleaved repeats
        for r in comp["runs"]:
            check_run(r, k=r["k"])  # each variant ran at its own K
            assert r["segments"] == segment_count(2.0)
        baseline = next(v for v in comp["variants"] if v["variant"] == comp["baseline"])
        assert baseline["ratio_close_to_label_p50"] == [1.0, 1.0]
    assert [r["incremental"] for r in comps["incremental"]["runs"][:2]] == [True, False]
    assert [v["k"] for v in comps["frames"]["variants"]] == [1, 4]

    streams = report["streams"]
    assert [r["streams"] for r in streams["runs"]][:1] == [1]
    for r in streams["runs"]:
        assert r["mode"] == "realtime" and len(r["per_stream"]) == r["streams"]
        check_run(r, k=2)
        assert r["segments"] == r["streams"] * segment_count(2.0)
        w = r["workers"]  # every request went through the shared workers
        assert w["vgg19"]["items"] == r["stages"]["frame"]["n"] == 2 * r["segments"]
        assert w["vggish"]["items"] == w["model"]["items"] == r["segments"]

    assert [t["met"] for t in report["targets"]] == [None, None]  # K = 2 is not the default


def test_benchmark_replay_realtime(tmp_path):
    video = write_media(tmp_path / "clip.mkv", Script(duration=2.6, size=(48, 64)), fps=25,
                        audio_rate=22050)
    argv = ["--replay", str(video), "--random-weights", "--streams", "2",
            "--streams-seconds", "5", "--json", str(tmp_path / "r.json")]
    report = benchmark(argv, fake_parts(argv, k=1))
    main_run = report["main"]
    assert main_run["mode"] == "realtime" and report["config"]["source"] == "replay clip.mkv"
    assert main_run["segments"] == segment_count(2.6) == 3
    assert main_run["stream_s"] == pytest.approx(2.6)
    check_run(main_run, k=1)
    run = report["streams"]["runs"][0]  # the file is shorter than --streams-seconds
    check_run(run, k=1)
    assert run["segments"] == 2 * 3
    assert [t["met"] is not None for t in report["targets"]] == [True, True]


def segment_items(fps: float, seconds: float, size=(24, 32)) -> list:
    script = Script(duration=seconds, size=size, fps=fps)
    items = [Frame(i / fps, script.frame(i / fps)) for i in range(script.frame_count())]
    n = script.sample_count()
    items += [Audio(s / 16000, script.samples(s, min(4000, n - s)), 16000)
              for s in range(0, n, 4000)]
    return sorted(items, key=lambda x: x.t)


@pytest.mark.parametrize(("fps", "k"), [(25.0, 4), (3.0, 8), (3.0, 2), (1.0, 1)])
def test_at_close_extraction_matches_incremental(fps, k):
    items = segment_items(fps, 3.0)
    out = {}
    for incremental in (True, False):
        vis = FakeVisual()
        seg = Segmenter(vis.frame_features, k)
        closed, calls_before_close = [], []
        for item in items:
            before = vis.calls
            got = seg.push(item)
            while incremental and seg.compute_next():
                pass
            if not got and not incremental:
                calls_before_close.append(vis.calls - before)
            closed += got
        closed += seg.finish()
        out[incremental] = closed
        if not incremental:
            assert sum(calls_before_close) == 0  # nothing extracted until a segment closes
    assert len(out[True]) == len(out[False]) == 3
    frames = [it for it in items if isinstance(it, Frame)]
    ref_vis = FakeVisual()
    for i, (a, b) in enumerate(zip(out[True], out[False], strict=True)):
        mine = [f for f in frames if i <= f.t < i + 1]
        idx = select_frames([f.t - i for f in mine], k)
        feats = ref_vis.frame_features(np.stack([mine[j].rgb for j in idx])).astype(np.float64)
        np.testing.assert_allclose(b.visual, feats.mean(axis=0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(a.visual, b.visual, rtol=1e-6, atol=1e-6)


def test_batcher_serves_threads_and_splits_outputs():
    seen = []

    def fn(x, y):
        seen.append(len(x))
        return (x * 2 + y, None) if len(x) else None

    b = Batcher(fn, "t")
    results = {}

    def call(i):
        results[i] = b(np.full((i % 3 + 1, 2), i, np.float32), np.ones((i % 3 + 1, 2)))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    b.close()
    for i, (got, none) in results.items():
        np.testing.assert_array_equal(got, np.full((i % 3 + 1, 2), 2 * i + 1))
        assert none is None
    assert sum(seen) == sum(i % 3 + 1 for i in range(12)) == b.stats(1.0)["items"]
    assert len(seen) == b.stats(1.0)["calls"]

    def boom(x):
        raise ValueError("bad batch")

    b = Batcher(boom, "boom")
    with pytest.raises(ValueError, match="bad batch"):
        b(np.zeros((1, 2)))
    b.close()


@pytest.mark.parametrize(("argv", "message"), [
    (["--camera", "0", "--random-weights"], "--replay FILE or --synthetic"),
    (["--synthetic", "--fast", "--realtime"], "exclude each other"),
    (["--synthetic", "--repeat", "0"], "--repeat"),
    (["--synthetic", "--compare-seconds", "0"], "--compare-seconds"),
])
def test_bad_flags_are_user_errors(argv, message):
    with pytest.raises(UserError, match=message):
        main(argv)


def test_cli_real_extractors(tmp_path):
    """The command itself, with main.py's real (random-weight) extractors and model."""
    out = tmp_path / "cli.json"
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.latency", "--synthetic", "--random-weights",
         "--fast", "--duration", "2", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(out.read_text())
    k = report["config"]["k"]  # the auto K: what this machine keeps up with, 1..16
    assert 1 <= k <= 16 and report["config"]["frames_default"] is True
    assert report["config"]["device"] == "cpu"
    assert report["config"]["untrained"] is True
    check_run(report["main"], k=k)
    assert "segment close -> label" in res.stdout
    assert out.with_suffix(".md").is_file() and out.with_suffix(".png").is_file()

    bad = subprocess.run([sys.executable, "-m", "benchmarks.latency", "--replay",
                          str(tmp_path / "missing.mp4"), "--random-weights"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_streams_real_extractors(tmp_path):
    """The CUDA path: extractors and model on the GPU, batched across streams."""
    argv = ["--synthetic", "--random-weights", "--device", "cuda", "--fast", "--duration", "3",
            "--streams", "2", "--streams-seconds", "3", "--json", str(tmp_path / "g.json")]
    report = benchmark(argv)
    assert report["config"]["device"].startswith("cuda") and report["config"]["k"] == 16
    check_run(report["main"], k=16)
    run = report["streams"]["runs"][0]
    check_run(run, k=16)
    assert run["workers"]["vgg19"]["items"] == 16 * run["segments"]
