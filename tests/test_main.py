"""main.py end to end: the real extractors (random seeded weights, K=1) and the real JCANet.
In process through its two halves (streamer.options.parse_args, streamer.app.run), and as a
subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from stream_fakes import CLASSES, tiny_model

from model.calibration import softmax
from model.checkpoint import load_checkpoint, save_checkpoint
from model.data import window_for_segment
from model.errors import UserError
from model.extractors import build_extractors
from model.file_features import ClipPolicy, extract_file
from model.provenance import Provenance
from streamer.app import build, run
from streamer.options import AppOptions, parse_args
from streamer.synthetic import Script, write_media

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_KEYS = {"segment", "start", "end", "label", "class_id", "confidence", "probs",
                 "lookahead", "warmup", "latency_ms"}


@pytest.fixture(scope="module")
def random_extractors():
    return build_extractors(random_weights=True, seed=0, frames_per_segment=1)


def checkpoint(path: Path, recipe, meta=None) -> Path:
    save_checkpoint(path, tiny_model(seed=1), list(CLASSES), recipe, meta=meta)
    return path


def test_replay_with_real_extractors_equals_offline(tmp_path, random_extractors, capsys):
    video = write_media(tmp_path / "clip.mkv", Script.demo(2.6), fps=25, audio_rate=44100,
                        channels=2)
    ckpt = checkpoint(tmp_path / "jca.pt", random_extractors.recipe,
                      meta={"calibration": {"temperature": 1.5}})
    log, events = tmp_path / "log.jsonl", tmp_path / "events.jsonl"
    opts = AppOptions(source="replay", replay=str(video), checkpoint=str(ckpt), device="cpu",
                      frames_per_segment=1, fast=True, log=str(log), events=str(events))
    summary = run(opts)
    out, err = capsys.readouterr()
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert summary.segments == len(recs) == 3  # 2 full seconds + a partial 0.6 s
    # a trained model on random extractor features: flagged, but not called untrained
    assert all(r["untrained"] is False and r["random_features"] is True for r in recs)
    assert "RANDOM FEATURES" in err and "3 segments" in err
    assert "UNTRAINED" not in err and "meaningless" not in err
    assert "RANDOM FEATURES" in out and len(out.splitlines()) == 4  # header + plain lines
    assert "UNTRAINED" not in out and "meaningless" not in out

    offline = extract_file(video, random_extractors, ClipPolicy())  # padded to 10 s
    audio, visual = offline.audio[0, :3], offline.visual[0, :3]
    net, _ = load_checkpoint(ckpt)
    for r in recs:
        a, pos = window_for_segment(audio, r["segment"], 0)
        v, _ = window_for_segment(visual, r["segment"], 0)
        with torch.no_grad():
            logits = net(torch.from_numpy(a)[None], torch.from_numpy(v)[None])  # (1, 10, C)
        np.testing.assert_allclose(r["probs"], softmax(logits[0, pos].double().numpy(), 1.5),
                                   atol=1e-5)
    assert [t for t in threading.enumerate() if t.name.startswith("jca-")] == []


def test_random_features_checkpoint_vs_random_weights(tmp_path, random_extractors, capsys):
    """A checkpoint trained on random-extractor features (meta says so) is RANDOM FEATURES on
    every output; --random-weights (no trained model) is UNTRAINED, which wins the wording."""
    ckpt = checkpoint(tmp_path / "jca.pt", random_extractors.recipe,
                      meta={"random_features": True})
    common = {"source": "synthetic", "device": "cpu", "frames_per_segment": 1, "fast": True,
              "duration": 2.0, "backend": "eager"}
    log, events = tmp_path / "log.jsonl", tmp_path / "events.jsonl"
    summary = run(AppOptions(checkpoint=str(ckpt), log=str(log), events=str(events), **common))
    out, err = capsys.readouterr()
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    evs = [json.loads(x) for x in events.read_text().splitlines()]
    assert summary.segments == len(recs) == 2 and evs
    assert summary.provenance is Provenance.RANDOM_FEATURES
    assert all(r["untrained"] is False and r["random_features"] is True for r in recs)
    assert all("untrained" not in e and e["random_features"] is True for e in evs)
    assert Provenance.RANDOM_FEATURES.note in err
    assert "python -m model.weights fetch" in err
    assert "meaningless" not in err and "UNTRAINED" not in err
    assert "RANDOM FEATURES" in out.splitlines()[0] and "UNTRAINED" not in out

    summary = run(AppOptions(random_weights=True, log=str(log), events=str(events), **common))
    out, err = capsys.readouterr()
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    evs = [json.loads(x) for x in events.read_text().splitlines()]
    assert summary.provenance is Provenance.UNTRAINED and len(recs) == 2 and evs
    assert all(r["untrained"] is True and r["random_features"] is True for r in recs)
    assert all(e["untrained"] is True and e["random_features"] is True for e in evs)
    assert Provenance.UNTRAINED.note in err
    assert "RANDOM FEATURES" not in err
    assert "UNTRAINED" in out.splitlines()[0] and "RANDOM FEATURES" not in out


def test_online_checkpoint_runs_at_its_lookahead_unless_told(tmp_path, random_extractors,
                                                             capsys):
    """A checkpoint trained with --online runs at the lookahead it was trained for and says so
    once; --lookahead overrides it; a paper-protocol checkpoint runs at 0."""
    online = checkpoint(tmp_path / "online.pt", random_extractors.recipe,
                        meta={"train": {"protocol": {"online": True, "lookahead": 2}}})
    paper = checkpoint(tmp_path / "paper.pt", random_extractors.recipe,
                       meta={"train": {"protocol": {"epochs": 300}}})
    log = tmp_path / "log.jsonl"
    common = {"source": "synthetic", "device": "cpu", "frames_per_segment": 1, "fast": True,
              "duration": 4.0, "backend": "eager", "log": str(log), "events": None}
    said = "lookahead 2 s: online.pt was trained online for it (--lookahead overrides)"
    for ckpt, lookahead, want in ((online, None, [2, 2, 1, 0]), (online, 0, [0, 0, 0, 0]),
                                  (paper, None, [0, 0, 0, 0])):
        run(AppOptions(checkpoint=str(ckpt), lookahead=lookahead, **common))
        err = capsys.readouterr().err
        recs = [json.loads(x) for x in log.read_text().splitlines()]
        assert [r["lookahead"] for r in recs] == want  # the last ones: flushed at the end
        assert err.count(said) == (1 if want[0] == 2 else 0), err


def test_recipe_mismatch_is_refused(tmp_path, random_extractors):
    from dataclasses import replace

    other = replace(random_extractors.recipe, audio_weights="random:seed=5")
    ckpt = checkpoint(tmp_path / "jca.pt", other)
    opts = AppOptions(source="synthetic", checkpoint=str(ckpt), device="cpu", log=None,
                      events=None, frames_per_segment=1)
    with pytest.raises(UserError, match="audio_weights: trained on random:seed=5"):
        build(opts)


@pytest.mark.parametrize("argv,message", [
    (["--synthetic"], "no checkpoint"),
    (["--synthetic", "--random-weights", "--checkpoint", "x.pt"], "exclude each other"),
    (["--synthetic", "--checkpoint", "missing.pt"], "no such checkpoint"),
    (["--synthetic", "--random-weights", "--lookahead", "10"],
     r"^--lookahead must be in 0\.\.9, got 10$"),
    (["--synthetic", "--random-weights", "--frames-per-segment", "0"],
     r"^--frames-per-segment must be in 1\.\.64, got 0$"),
    (["--synthetic", "--random-weights", "--duration", "0"],
     r"^--duration must be a finite number of seconds > 0"),
    (["--synthetic", "--random-weights", "--av-offset", "nan"],
     r"^--av-offset must be a finite .* within ±10, got nan$"),
    (["--synthetic", "--random-weights", "--device", "tpu"], r"unknown --device 'tpu'"),
    (["--camera", "0", "--random-weights", "--fast"], "--fast only applies"),
    (["--replay", "missing.mp4", "--random-weights"], "no such file"),
])
def test_bad_command_lines_are_user_errors(argv, message):
    """What main.py runs: each mistake is one UserError line, before anything is loaded."""
    with pytest.raises(UserError, match=message) as e:
        run(parse_args([*argv, "--log", "", "--events", ""]))
    assert "\n" not in str(e.value)


def test_parse_args_defaults_and_exclusive_sources():
    opts = parse_args(["--replay", "a.mp4", "--log", ""])
    assert (opts.source, opts.replay, opts.log) == ("replay", "a.mp4", None)
    assert opts.lookahead is None  # the checkpoint's, when it was trained online; else 0
    assert (opts.backend, opts.precision) == ("auto", "fp32")
    assert parse_args(["--synthetic", "--precision", "bf16"]).precision == "bf16"
    assert opts.events == "runs/events.jsonl" and opts.frames_per_segment is None
    with pytest.raises(UserError, match="--synthetic is a source of its own"):
        parse_args(["--replay", "a.mp4", "--synthetic"])


def test_cli_help_lists_the_flags():
    p = cli("--help", timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("usage: main.py")
    for flag in ("--camera", "--replay", "--synthetic", "--checkpoint", "--random-weights",
                 "--backend", "--precision", "--device", "--frames-per-segment", "--lookahead",
                 "--duration", "--fast", "--av-offset", "--log", "--events", "--headless",
                 "--min-event", "--min-gap", "--overlay"):
        assert flag in p.stdout


def cli(*args: str, timeout: float = 120, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def test_cli_missing_file_is_one_line_and_exit_2(tmp_path):
    p = cli("--replay", str(tmp_path / "nope.mp4"), "--random-weights", "--log", "")
    assert p.returncode == 2
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith(f"error: no such file: {tmp_path / 'nope.mp4'}; pass an existing ")
    assert p.stdout == ""


def test_cli_headless_prints_only_log_records(tmp_path):
    """The CLI as a user runs it, default backend included (auto: it says what it picked)."""
    log = tmp_path / "log.jsonl"
    p = cli("--synthetic", "--random-weights", "--fast", "--duration", "2", "--headless",
            "--frames-per-segment", "1", "--device", "cpu", "--log", str(log), "--events",
            str(tmp_path / "events.jsonl"), timeout=600,
            env={"JCA_LIVE_ENGINES": str(tmp_path / "engines")})
    assert p.returncode == 0, p.stderr
    assert "backend: auto picked" in p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert [x["segment"] for x in lines] == [0, 1]
    assert all(set(x) >= CONTRACT_KEYS and x["untrained"] is True for x in lines)
    assert lines == [json.loads(x) for x in log.read_text().splitlines()]
    assert "UNTRAINED" in p.stderr and "2 segments" in p.stderr


def test_overlay_flag_writes_the_drawn_stream(tmp_path, random_extractors):
    """--overlay: the replayed stream comes back as a video of the same frames and duration,
    with sound, and its pixels differ from the input where the label is drawn."""
    import av

    video = write_media(tmp_path / "clip.mkv", Script.demo(3.0), fps=25)
    out = tmp_path / "overlay.mp4"
    opts = parse_args(["--replay", str(video), "--random-weights", "--device", "cpu",
                            "--backend", "eager",
                            "--frames-per-segment", "1", "--fast", "--headless", "--log",
                            str(tmp_path / "log.jsonl"), "--events", "",
                            "--overlay", str(out)])
    assert opts.overlay == str(out)
    run(opts)

    def decode(path: Path) -> tuple[list[np.ndarray], bool]:
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            return frames, len(c.streams.audio) == 1

    src, _ = decode(video)
    drawn, has_audio = decode(out)
    assert has_audio
    assert len(drawn) == len(src) == 75
    diff = np.abs(drawn[40].astype(int) - src[40].astype(int)).mean(-1)  # (H, W)
    assert diff.max() > 60  # the label banner and the attention map are drawn
    assert [t for t in threading.enumerate() if t.name.startswith("jca-")] == []
