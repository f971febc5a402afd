"""benchmarks.extractor_labels: extractor paths against fp32 on generated clips, through a
checkpoint's model. A faithful path passes, a degraded one fails, fp32 agrees with itself; the
figures match a NumPy float64 rendering of the bars; bad input is one line."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from stream_fakes import TinyVisualNet, tiny_model
from test_extractor_paths import AVX2, CANDIDATES, fp32_scaled

from benchmarks import extractor_labels as el
from model.checkpoint import save_checkpoint
from model.errors import UserError, run_cli
from model.extractors import Extractors, vggish
from model.extractors.audio import AudioExtractor
from model.extractors.paths import COSINE_FLOOR, PATHS, BuildEnv
from model.extractors.visual import VisualExtractor
from model.file_features import extract_file
from model.inference import load_model
from model.recipe import FeatureRecipe
from streamer import demo_clips
from streamer.demo_clips import BACKGROUND, CLASSES

pytestmark = pytest.mark.usefixtures("one_thread")

CLIPS = 2
SMALL_VGGISH = (4, 8, 8, 16)
# fp32, fp32 times 2 (faithful), one that cannot build, and noise strong enough to move labels
PATHS_HERE = {**CANDIDATES, "degraded": fp32_scaled(1.0, noise=1.0)}
RECIPE = FeatureRecipe.ave(visual_weights="random:seed=0", audio_weights="random:seed=0",
                           frames_per_segment=1)


def tiny_extractors(recipe: FeatureRecipe) -> Extractors:
    """The reference extractors on small networks (fp32, eager)."""
    anet = vggish.VGGish(SMALL_VGGISH, hidden=32)
    anet.init_random(1)
    return Extractors(VisualExtractor(TinyVisualNet(), recipe.visual_preprocess),
                      AudioExtractor(anet, recipe.audio_postprocess), recipe)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """Two generated 10-s clips, their events.csv, a small checkpoint, and the benchmark's report
    of PATHS_HERE on them."""
    root = tmp_path_factory.mktemp("labels")
    clips = demo_clips.training_clips(CLIPS, seed=1)
    (root / "videos").mkdir()
    for c in clips:
        demo_clips.write_clip(root / "videos" / f"{c.name}.mp4", c)
    csv = demo_clips.write_annotations(root / "events.csv", clips)
    ckpt = root / "jca.pt"
    save_checkpoint(ckpt, tiny_model(num_classes=len(CLASSES) + 1), [*CLASSES, BACKGROUND],
                    RECIPE)
    model = load_model(ckpt)
    reference = tiny_extractors(model.recipe)
    files, policy, missing = el.clip_files(root / "videos", csv, reference.recipe, None)
    specs, not_run = el.select_paths(PATHS_HERE, None, AVX2)
    report = el.measure(model.net, reference, files, policy, specs, BuildEnv(1))
    return dict(model=model, reference=reference, files=files, policy=policy, missing=missing,
                not_run=not_run, report=report, results={r.path: r for r in report.results})


def segment_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a_i, b_i) per segment in float64: (W, 10, ...) each."""
    x = a.reshape(-1, int(np.prod(a.shape[2:]))).astype(np.float64)
    y = b.reshape(-1, int(np.prod(b.shape[2:]))).astype(np.float64)
    return (x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1))


def labels(net: torch.nn.Module, audio: np.ndarray, visual: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(audio), torch.from_numpy(visual)).argmax(-1).numpy()


def test_every_clip_and_segment_is_compared(bench):
    report = bench["report"]
    assert bench["missing"] == {} and bench["not_run"] == {}
    assert (report.clips, report.segments, report.skipped) == (CLIPS, CLIPS * 10, {})
    for name in ("fp32", "faithful", "degraded"):
        assert bench["results"][name].segments == CLIPS * 10


def test_fp32_agrees_with_itself_and_a_faithful_path_passes(bench):
    for name in ("fp32", "faithful"):  # "faithful": fp32's output times 2
        r = bench["results"][name]
        assert r.not_run is None and r.passed and r.shortfalls() == []
        assert r.agreement == 100.0 and r.equal == r.segments
        assert r.visual_cosine == pytest.approx(1.0, abs=1e-9)
        assert r.audio_cosine == pytest.approx(1.0, abs=1e-9)
        assert r.line().endswith(": pass") and "100.00% of 20 segments" in r.line()


def test_a_degraded_path_fails_with_the_figures_of_a_numpy_rendering(bench):
    """The degraded path's figures against an independent computation: each clip extracted
    by fp32 and by the degraded runners, cosines per segment in float64, labels by the model."""
    r = bench["results"]["degraded"]
    assert not r.passed and r.visual_cosine < COSINE_FLOOR and r.audio_cosine < COSINE_FLOOR
    assert r.agreement < el.MIN_LABEL_AGREEMENT
    assert r.shortfalls() == ["pool5 cosine < 0.9999", "embedding cosine < 0.9999",
                              "labels < 99.5%"]
    assert r.line().endswith("FAIL (pool5 cosine < 0.9999, embedding cosine < 0.9999, "
                             "labels < 99.5%)")
    ref, spec, net = bench["reference"], PATHS_HERE["degraded"], bench["model"].net
    env = BuildEnv(1)
    degraded = Extractors(  # same networks, the degraded runners (rebuilt: same noise stream)
        VisualExtractor(ref.visual.net, runner=spec.build(ref.visual.net, (3, 224, 224), env)),
        AudioExtractor(ref.audio.net, runner=spec.build(ref.audio.net, (1, 96, 64), env)),
        ref.recipe)
    vis, aud, equal = [], [], 0
    for video in bench["files"].values():
        want = extract_file(video, ref, bench["policy"])
        got = extract_file(video, degraded, bench["policy"])
        vis.append(segment_cosines(want.visual, got.visual))
        aud.append(segment_cosines(want.audio, got.audio))
        equal += int((labels(net, want.audio, want.visual) ==
                      labels(net, got.audio, got.visual)).sum())
    assert r.visual_cosine == pytest.approx(np.concatenate(vis).min(), abs=1e-9)
    assert r.audio_cosine == pytest.approx(np.concatenate(aud).min(), abs=1e-9)
    assert r.equal == equal and r.agreement == pytest.approx(100.0 * equal / (CLIPS * 10))


def test_a_path_that_cannot_build_is_reported_failed_and_the_output_says_it_all(bench):
    report = bench["report"]
    broken = bench["results"]["broken"]
    assert not broken.passed and broken.not_run.startswith("failed: RuntimeError: cannot convert")
    md = el.markdown(report, "title", "CPU: test")
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(PATHS_HERE)  # the header, then one row per path
    assert "| faithful | 1.0000000 | 1.0000000 | 100.00% (20/20) | yes |" in md
    assert "| degraded |" in md and "no: pool5 cosine < 0.9999" in md
    assert "| broken | - | - | - | not run: failed: RuntimeError: cannot convert" in md
    d = bench["results"]["degraded"].to_dict()
    assert d["passed"] is False and d["segments"] == 20 and d["label_agreement"] < 99.5


def test_labels_under_the_bar_fail_even_with_perfect_cosines():
    r = el.PathResult("p", 1.0, 1.0, equal=199, segments=200)  # 99.5%: on the bar
    assert r.passed
    r = el.PathResult("p", 1.0, 1.0, equal=198, segments=200)
    assert r.shortfalls() == [f"labels < {el.MIN_LABEL_AGREEMENT}%"]
    assert el.PathResult("p", float("nan"), 1.0, equal=200, segments=200).shortfalls() == [
        f"pool5 cosine < {COSINE_FLOOR}"]


def test_paths_run_are_those_choose_tries_here_unless_named():
    run, not_run = el.select_paths(PATHS, None, AVX2)
    assert "fp32" in run and "bf16" not in run and "emulated" in not_run["bf16"]
    assert "compile-fp32" in not_run
    run, not_run = el.select_paths(PATHS, ["bf16"], AVX2)  # named: run even where emulated
    assert list(run) == ["bf16"] and not_run == {}
    with pytest.raises(UserError, match="unknown extractor path 'fastest'"):
        el.select_paths(PATHS, ["fastest"], AVX2)


def test_the_reference_is_the_checkpoints_recipe_on_fp32(tmp_path):
    recipe = replace(RECIPE, visual_weights="random:seed=3", audio_weights="random:seed=3",
                     frames_per_segment=2)
    ex = el.reference_extractors(recipe)
    assert recipe.mismatches(ex.recipe) == []  # the same weights and preprocessing
    assert ex.recipe.frames_per_segment == 2
    assert (ex.visual.path, ex.audio.path) == ("fp32", "fp32")
    with pytest.raises(UserError, match="missing extractor weights") as e:
        el.reference_extractors(FeatureRecipe.ave(), weights_dir=tmp_path)  # real, absent
    assert "--random-weights" not in str(e.value)  # random features would not fit the model


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "nowhere.pt"], "no such checkpoint"),
    (["--checkpoint", "nowhere.pt", "--limit", "0"], "--limit must be >= 1"),
    (["--checkpoint", "nowhere.pt", "--paths", "fp32", "fastest"], "unknown extractor path"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    args = [*argv, "--videos", str(tmp_path), "--annotations", str(tmp_path / "events.csv")]
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: el.main(args))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and message in err
    assert "Traceback" not in err
