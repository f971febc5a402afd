"""`make demo` (streamer.demo + streamer.demo_clips) and the README's "Your own events"
walk-through, on generated clips at a tiny size: every README command is run here."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from model.annotations import read_annotations, segment_labels
from model.errors import UserError
from model.extractors import vgg19, vggish
from model.items import Audio
from model.media import decode, open_media
from streamer import demo, demo_clips
from streamer.demo_clips import BACKGROUND, CLASSES, Clip, Part

ROOT = Path(__file__).resolve().parents[1]


# ---- the clips -----------------------------------------------------------------------------

def test_held_out_clip_has_every_class_and_both_kinds_of_distractor():
    clip = demo_clips.held_out_clip()
    truth = clip.truths()
    assert len(truth) == 24 and clip.duration > 10
    assert set(truth) == {*CLASSES, BACKGROUND}
    shows = {p.show for p in clip.parts}
    assert shows == {"av", "audio", "visual"}
    for s in clip.distractor_seconds():  # one modality only: background by AVE's definition
        assert truth[s] == BACKGROUND
        here = [p for p in clip.parts if p.start <= s + 0.5 < p.end]
        assert here and all(p.show != "av" for p in here)


def test_truth_is_the_part_seen_and_heard_at_each_midpoint():
    clip = Clip("c", 6.0, (Part("horn", 1, 2.5, "av"), Part("bell", 3, 4, "visual"),
                          Part("bird", 4, 6, "audio")))
    assert clip.truths() == ["background", "horn", "background", "background", "background",
                             "background"]  # 2.5 is not < 2.5: second 2 is background
    assert clip.distractor_seconds() == [3, 4, 5]


def test_training_clips_are_seeded_balanced_and_full_of_distractors():
    a, b = demo_clips.training_clips(30, seed=3), demo_clips.training_clips(30, seed=3)
    assert a == b and a != demo_clips.training_clips(30, seed=4)
    many = demo_clips.training_clips(300, seed=3)
    with_event = [(i, [p.label for p in c.parts if p.event]) for i, c in enumerate(many)]
    assert 0.85 <= sum(bool(e) for _, e in with_event) / len(many) <= 0.95  # no_event=0.1
    assert all(e == [CLASSES[i % 3]] for i, e in with_event if e)  # one event, classes in turn
    assert all(c.distractor_seconds() for c in a)  # every clip has a one-modality stretch
    for c in a:  # parts never overlap
        covered = [t for p in c.parts for t in range(int(p.start), int(p.end))]
        assert len(covered) == len(set(covered))


def test_written_clip_and_csv_give_model_extract_the_truth(tmp_path):
    """The mp4 holds the parts where the clip says (picture and sound decoded back), and the
    CSV read by model.extract labels every second as Clip.truths()."""
    clip = Clip("c", 4.0, (Part("horn", 1, 2, "av", 0.5, 0.5), Part("bell", 2, 3, "visual"),
                          Part("bird", 3, 4, "audio")), scene=2)
    path = demo_clips.write_clip(tmp_path / "c.mp4", clip)
    with open_media(path) as c:
        audio = np.concatenate([a.samples for a in decode(c) if isinstance(a, Audio)])
    rms = [float(np.sqrt(np.mean(audio[s * 16000:(s + 1) * 16000] ** 2))) for s in range(4)]
    assert rms[1] > 5 * rms[0] and rms[3] > 5 * rms[0] and rms[2] < 2 * rms[0]
    import av

    with av.open(str(path)) as c:
        frames = {round(f.time, 2): f.to_ndarray(format="rgb24").astype(int)
                  for f in c.decode(video=0)}
    empty = replace(clip, parts=())  # the room alone, under the same light
    diff = [np.abs(frames[s + 0.5] - empty.frame(s + 0.5)).mean() for s in (0, 1, 2, 3)]
    assert diff[1] > 5 * diff[0] and diff[2] > 5 * diff[0]  # horn and bell are seen
    assert diff[3] < 2 * diff[0]  # the bird is only heard

    csv = demo_clips.write_annotations(tmp_path / "events.csv", [clip, replace(clip, name="d",
                                                                 parts=())])
    ann = read_annotations(csv)
    assert ann.categories == ["horn"]
    by_file = {f.file: f.events for f in ann.files}
    labels = segment_labels(by_file["c.mp4"], 0.0, ann.categories)
    assert [ann.categories[i] if i < 1 else BACKGROUND for i in labels[:4]] == clip.truths()
    assert by_file["d.mp4"] == []  # a file with no event: all background


# ---- scoring and cache keys ----------------------------------------------------------------

def test_score_counts_seconds_distractors_and_warmup():
    clip = demo_clips.held_out_clip()
    truth = clip.truths()
    records = [{"segment": i, "label": t, "warmup": i < 9} for i, t in enumerate(truth)]
    wrong = {2: BACKGROUND, 7: "horn", 20: BACKGROUND}  # 7 is a distractor second
    for i, label in wrong.items():
        records[i]["label"] = label
    s = demo.score(records, clip)
    assert (s.seconds, s.correct) == (24, 22) and s.accuracy == pytest.approx(22 / 24)
    assert s.distractor_seconds == 6 and s.distractor_background == pytest.approx(5 / 6)
    assert s.warmup_accuracy == pytest.approx(7 / 9)
    assert s.wrong == ((2, "bell", BACKGROUND), (7, BACKGROUND, "horn"))


def test_each_step_is_keyed_by_the_settings_it_depends_on(tmp_path):
    base = demo.DemoOptions(work=str(tmp_path))

    def keys(**kw):
        paths, _ = demo.plan(replace(base, **kw), True, {"random_seed": 0})
        return paths.clips.name, paths.features.name, paths.model.name

    c, f, m = keys()
    assert keys() == (c, f, m)
    assert keys(epochs=3)[:2] == (c, f) and keys(epochs=3)[2] != m
    assert keys(frames_per_segment=2)[0] == c and keys(frames_per_segment=2)[1] != f
    assert len({*keys(clips=5), c, f, m}) == 6  # new clips rebuild everything
    assert keys(fast=True, headless=True, backend="eager") == (c, f, m)  # replay only
    assert keys(lookahead=2)[:2] == (c, f) and keys(lookahead=2)[2] != m  # trained for it
    assert keys(online=False)[2] != m
    assert keys(online=False, lookahead=2) == keys(online=False)  # then only the replay's


def test_the_demo_trains_online_and_main_py_takes_the_lookahead_from_it(tmp_path):
    """The default demo trains for lookahead 0 and leaves main.py to read it from the
    checkpoint; --no-online trains on whole clips and passes --lookahead itself."""
    opts = demo.DemoOptions(work=str(tmp_path))
    assert (opts.online, opts.lookahead) == (True, 0)
    paths, _ = demo.plan(opts, True, {"random_seed": 0})
    train = demo.train_cmd(opts, paths)
    assert "--online" in train and train[train.index("--lookahead") + 1] == "0"
    assert "--lookahead" not in demo.replay_cmd(opts, paths, "auto")
    paper = demo.parse_args(["--no-online", "--lookahead", "2"])
    assert "--online" not in demo.train_cmd(paper, paths)
    replay = demo.replay_cmd(paper, paths, "auto")
    assert replay[replay.index("--lookahead") + 1] == "2"


def test_real_weights_are_used_when_the_cache_has_them(tmp_path):
    opts = demo.DemoOptions(weights_dir=str(tmp_path))
    assert demo.use_random_weights(opts) == (True, {"random_seed": 0})
    (tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"v")
    assert demo.use_random_weights(opts)[0]  # VGGish still missing
    (tmp_path / "vggish.pt").write_bytes(b"aa")  # the torchaudio layout also counts
    random_weights, key = demo.use_random_weights(opts)
    assert not random_weights and key["audio"][:2] == ["vggish.pt", 2]
    assert demo.use_random_weights(replace(opts, weights="random"))[0]
    cmd = demo.extract_cmd(opts, demo.plan(opts, False, key)[0], False, tty=False)
    assert "--random-weights" not in cmd and cmd[cmd.index("--weights-dir") + 1] == str(tmp_path)


def test_bad_settings_are_one_line_errors(tmp_path):
    from model.errors import UserError

    with pytest.raises(UserError, match="--clips"):
        demo.DemoOptions(clips=2)
    with pytest.raises(UserError, match="--lookahead"):
        demo.DemoOptions(lookahead=10)
    with pytest.raises(UserError, match=r"model\.weights fetch"):
        demo.use_random_weights(demo.DemoOptions(weights="real", weights_dir=str(tmp_path)))


def test_auto_frames_extracts_at_the_k_the_live_run_picks(tmp_path, monkeypatch):
    """--frames-per-segment auto (the default): the features at the probe's K, main.py at auto
    (it reads the same per-machine probe)."""
    assert demo.parse_args([]).frames_per_segment is None
    ran: list[list[str]] = []
    monkeypatch.setattr(demo, "pick_frames", lambda: 3)
    def step(what, cmd, **kw):  # the folder a step writes, nothing in it
        ran.append(cmd)
        if "--out" in cmd:
            Path(cmd[cmd.index("--out") + 1]).mkdir(parents=True)

    monkeypatch.setattr(demo, "run_step", step)
    monkeypatch.setattr(demo, "make_clips", lambda opts, out, console: out.mkdir(parents=True))
    monkeypatch.setattr(demo, "run_training", lambda cmd, *a: step("train", cmd))
    monkeypatch.setattr(demo, "_best_val", lambda checkpoint: None)
    with pytest.raises(UserError, match="prediction log"):  # no live log is written here
        demo.run(demo.DemoOptions(work=str(tmp_path), fast=True, headless=True))
    extract, replay = ran[0], ran[-1]
    assert extract[extract.index("--frames-per-segment") + 1] == "3"
    assert replay[replay.index("--frames-per-segment") + 1] == "auto"


# ---- the whole demo, tiny ------------------------------------------------------------------

def test_demo_end_to_end_then_cached(tmp_path, monkeypatch, capsys):
    """Every step at a tiny size (3 clips of 3 s, 1 epoch, 5 s replayed as fast as it goes),
    then a second run that goes straight to the replay."""
    monkeypatch.setenv("JCA_LIVE_WEIGHTS", str(tmp_path / "no-weights"))
    ran: list[list[str]] = []
    real_popen = subprocess.Popen

    def spy(cmd, **kw):  # subprocess.run goes through Popen too
        ran.append(cmd)
        return real_popen(cmd, **kw)

    monkeypatch.setattr(subprocess, "Popen", spy)
    argv = ["--work", str(tmp_path / "work"), "--clips", "3", "--clip-seconds", "3",
            "--epochs", "1", "--duration", "5", "--fast", "--headless", "--target", "0",
            "--backend", "eager", "--frames-per-segment", "1"]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "RANDOM extractor weights" in out and "live accuracy" in out

    steps = [c[2] if c[1] == "-m" else Path(c[1]).name for c in ran]
    assert steps == ["model.extract", "model.train", "main.py", "streamer.plot"]
    work = tmp_path / "work"
    paths, _ = demo.plan(demo.parse_args(argv), True, {"random_seed": 0})
    recipe = json.loads((paths.features / "recipe.json").read_text())
    assert recipe["visual_weights"] == "random:seed=0" and recipe["frames_per_segment"] == 1
    assert len(list((paths.clips / "videos").glob("*.mp4"))) == 3
    records = [json.loads(x) for x in (paths.live / "predictions.jsonl").read_text().splitlines()]
    assert [r["segment"] for r in records] == list(range(5))
    assert all(r["lookahead"] <= 3 for r in records)
    score = json.loads((paths.live / "score.json").read_text())
    truth = demo_clips.held_out_clip().truths()
    assert score["seconds"] == 5
    assert score["correct"] == sum(r["label"] == truth[r["segment"]] for r in records)
    assert (paths.live / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert str(paths.live / "timeline.png") in out

    ran.clear()
    assert demo.main([*argv, "--target", "1.01"]) == 1  # under the target: exit status 1
    assert [Path(c[1]).name if c[1] != "-m" else c[2] for c in ran] == ["main.py",
                                                                        "streamer.plot"]
    assert capsys.readouterr().out.count("cached:") == 3
    assert sorted(p.name.split("-")[0] for p in work.iterdir()) == ["clips", "features", "live",
                                                                    "model"]


# ---- README: "Your own events" -------------------------------------------------------------

def readme_commands(section: str) -> list[str]:
    """The commands of a README section: code lines (indented 4 or more) starting with
    `python`, backslash continuations joined."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    joined = re.sub(r"\\\n\s*", "", body)
    return [ln.split("#", 1)[0].strip() for ln in joined.splitlines()
            if re.match(r" {4,}python ", ln)]


def make_weights(directory: Path) -> None:
    """Stand-ins for the real VGG19 / VGGish files, in their published layouts and names."""
    directory.mkdir(parents=True)
    net = vgg19.VGG19()
    net.init_random(7)
    vgg19.save_keras_h5(directory / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                        vgg19.torchvision_to_keras(net.state_dict()))
    audio = vggish.VGGish()
    audio.init_random(8)
    torch.save(audio.state_dict(), directory / "vggish-10086976.pth")


def test_readme_walkthrough_runs_on_generated_clips(tmp_path):
    """Each command of the README's walk-through, run as written from a folder holding
    generated recordings (`my_clips/`, `my_events.csv`, a test recording `my_test.mp4` with
    `my_test.csv`) and weight files in the published names and layouts. For the test:
    --camera 0 becomes --replay my_test.mp4, replays are --fast --headless --backend eager
    (no engine compile), the extractors run on fp32 (no path probe), training runs 2 epochs;
    the fetch command needs the internet (its download, resume and checksum code is tested in
    tests/test_weights.py)."""
    commands = readme_commands("Your own events")
    names = [c.split()[2] if c.split()[1] == "-m" else c.split()[1] for c in commands]
    for needed in ("model.weights", "model.extract", "model.train", "model.evaluate",
                   "calibrate.confidence", "main.py", "streamer.plot"):
        assert needed in names, f"README walk-through lost its {needed} step"

    clips = [replace(c, name=f"rec_{i}", duration=4.0) for i, c in
             enumerate(demo_clips.training_clips(3, seed=5))]
    (tmp_path / "my_clips").mkdir()
    for c in clips:
        demo_clips.write_clip(tmp_path / "my_clips" / f"{c.name}.mp4", c)
    demo_clips.write_annotations(tmp_path / "my_events.csv", clips)
    test = replace(demo_clips.held_out_clip(), name="my_test", duration=5.0)
    demo_clips.write_clip(tmp_path / "my_test.mp4", test)
    demo_clips.write_annotations(tmp_path / "my_test.csv", [test])
    make_weights(tmp_path / "weights")
    env = {**os.environ, "JCA_LIVE_WEIGHTS": str(tmp_path / "weights"),
           "PYTHONPATH": str(ROOT)}

    for cmd in commands:
        if "model.weights fetch" in cmd:
            continue
        cmd = cmd.replace("--camera 0", "--replay my_test.mp4")
        cmd = re.sub(r"--epochs \d+", "--epochs 2", cmd)
        if cmd.startswith("python main.py"):
            cmd += " --fast --headless --backend eager"
        if cmd.startswith(("python main.py", "python -m model.extract")):
            cmd += " --extractor-path fp32"  # no probe of these weights (tests/test_hermetic.py)
        argv = shlex.split(cmd)
        argv[0] = sys.executable
        if argv[1] == "main.py":
            argv[1] = str(ROOT / "main.py")
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-2000:]}"

    recipe = json.loads((tmp_path / "runs/mine/recipe.json").read_text())
    assert recipe["visual_weights"].startswith("vgg19_weights_tf")  # not random
    from model.checkpoint import read_checkpoint

    ckpt, _ = read_checkpoint(tmp_path / "runs/mine.pt")
    assert ckpt.meta["calibration"]["temperature"] > 0
    assert not ckpt.meta["random_features"]
    log = tmp_path / "runs/predictions.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(records) == 5 and not any(r["untrained"] for r in records)
    assert (tmp_path / "runs/timeline.png").is_file()
