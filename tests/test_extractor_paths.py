"""Extractor paths: CPU detection, the runners, the fidelity gate, the choice, its per-machine
cache, the extractors built on a chosen path, and the frames-per-segment rule."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from model.errors import UserError
from model.extractors import build_extractors, paths, vgg19, vggish
from model.extractors.cpu import CpuInfo, machine_key, parse_cpuinfo
from model.extractors.paths import (
    COSINE_FLOOR,
    PATHS,
    BuildEnv,
    ChoiceCache,
    NetChoice,
    PathSpec,
    Verdict,
    cannot_run,
    choose,
    min_cosine,
    pick,
    skip_reason,
)
from model.extractors.realtime import TARGET_RTF, frames_for_realtime, realtime_factor
from model.extractors.visual import VisualExtractor

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_VGG = (4, 8, 8, 16, 16)
SMALL_VGGISH = (4, 8, 8, 16)
AVX2 = CpuInfo("AMD EPYC", ("avx2", "fma", "f16c"), "AVX2")
AMX = CpuInfo("Intel(R) Xeon(R) Platinum 8480+", ("avx2", "fma", "avx512f", "avx512_bf16",
                                                   "amx_tile", "amx_bf16", "amx_int8"), "AVX512")


def cpuinfo_text(model: str, flags: str) -> str:
    cpu = f"processor\t: 0\nvendor_id\t: x\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
    return cpu + cpu.replace(": 0", ": 1")


# ---- the CPU -----------------------------------------------------------------------------------

def test_cpuinfo_flags_that_matter_and_native_bf16():
    zen3 = "fpu sse sse2 avx fma f16c avx2 bmi2 sha_ni vaes"
    zen4 = zen3 + " avx512f avx512bw avx512_vnni avx512_bf16"
    spr = zen4 + " amx_tile amx_bf16 amx_int8 avx_vnni"
    model, flags = parse_cpuinfo(cpuinfo_text("AMD EPYC", zen3))
    assert (model, flags) == ("AMD EPYC", ("avx2", "fma", "f16c"))
    assert not CpuInfo(model, flags, "AVX2").native_bf16
    assert CpuInfo(*parse_cpuinfo(cpuinfo_text("AMD EPYC 9654", zen4)), "AVX512").native_bf16
    _, spr_flags = parse_cpuinfo(cpuinfo_text("Xeon", spr))
    assert {"amx_bf16", "amx_int8", "avx_vnni"} <= set(spr_flags)
    assert "no native bf16" in AVX2.describe() and "AMD EPYC" in AVX2.describe()
    assert AVX2.short() == "AMD EPYC, AVX2, no native bf16"
    assert AMX.short().endswith("AVX512, native bf16")


def test_machine_key_changes_with_cpu_flags_and_versions():
    versions = {"torch": "2.13.0", "openvino": "2026.4.1"}
    key = machine_key(AVX2, versions)
    assert machine_key(AVX2, dict(versions)) == key
    assert machine_key(AMX, versions) != key
    assert machine_key(CpuInfo("AMD EPYC", ("avx2",), "AVX2"), versions) != key
    assert machine_key(AVX2, {**versions, "torch": "2.14.0"}) != key
    assert machine_key(AVX2, {"torch": "2.13.0"}) != key  # a runtime installed or removed


# ---- the gate and the choice ---------------------------------------------------------------

def test_min_cosine_against_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 3, 5))
    b = a + rng.normal(scale=0.3, size=a.shape)
    want = min(float(x @ y / np.sqrt((x @ x) * (y @ y)))
               for x, y in zip(a.reshape(4, -1), b.reshape(4, -1), strict=True))
    assert min_cosine(a, b) == pytest.approx(want, rel=1e-12)
    assert min_cosine(a, 3.0 * a) == pytest.approx(1.0)  # scale does not count
    assert min_cosine(np.zeros((2, 3)), np.zeros((2, 3))) == 1.0
    assert np.isnan(min_cosine(a, np.full_like(a, np.nan)))


def test_pick_the_fastest_faithful_that_beats_fp32_clearly():
    fp32 = Verdict("fp32", 1.0, 100.0)
    fast = Verdict("fast", 0.99999, 40.0)
    faster_but_refused = Verdict("broken", 0.9, 10.0, refused="cosine")
    assert pick([fp32, fast, faster_but_refused])[0] == "fast"
    assert "2.5x" in pick([fp32, fast])[1]
    assert pick([fp32, Verdict("close", 1.0, 95.0)])[0] == "fp32"  # 1.05x: within noise
    assert pick([fp32, faster_but_refused])[0] == "fp32"


def test_skip_rule_follows_the_cpu():
    assert "emulated" in skip_reason(PATHS["bf16"], AVX2)
    assert skip_reason(PATHS["bf16"], AMX) is None
    int8 = replace(PATHS["openvino-int8"], missing=lambda: None)  # whether or not installed
    assert "no int8 dot-product" in skip_reason(int8, AVX2)
    assert skip_reason(int8, AMX) is None
    assert skip_reason(int8, replace(AVX2, flags=(*AVX2.flags, "avx_vnni"))) is None
    assert skip_reason(PATHS["fp32"], AVX2) is None
    missing = PathSpec("needs a library", PATHS["fp32"].build, lambda: "x is not installed")
    assert skip_reason(missing, AMX) == cannot_run(missing, AMX) == "x is not installed"
    assert "emulated" in cannot_run(PATHS["bf16"], AVX2)
    compiles = PathSpec("torch.compile", PATHS["fp32"].build, compiles=True)
    assert cannot_run(compiles, AVX2) is None  # it runs here, only too slowly to be tried
    assert skip_reason(compiles, AVX2) is not None


def tiny_vgg() -> vgg19.VGG19:
    net = vgg19.VGG19(SMALL_VGG)
    net.init_random(0)
    return net.eval()


def fp32_scaled(factor: float, noise: float = 0.0) -> PathSpec:
    """fp32's output times `factor` (cosine 1: faithful), plus relative noise (breaks it)."""
    def build(net, shape, env):
        run = PATHS["fp32"].build(net, shape, env)
        rng = np.random.default_rng(0)

        def scaled(x):
            y = run(x) * factor
            return y + noise * np.abs(y).max() * rng.standard_normal(y.shape).astype(np.float32)

        return scaled

    return PathSpec("test path", build)


def broken_build(net, shape, env):
    raise RuntimeError("cannot convert this network\nsecond line")


CANDIDATES = {"fp32": PATHS["fp32"], "degraded": fp32_scaled(1.0, noise=0.05),
              "faithful": fp32_scaled(2.0), "broken": PathSpec("fails", broken_build)}
FAKE_MS = {"fp32": 100.0, "degraded": 10.0, "faithful": 50.0, "broken": 5.0}


class FakeTimer:
    """Fixed milliseconds per path (speed is measured in benchmarks, never asserted in tests);
    counts its calls, i.e. the probes."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, runners, x):
        self.calls.append(sorted(runners))
        return {name: FAKE_MS[name] for name in runners}


def probe_input(n: int = 3) -> np.ndarray:
    return vgg19.normalize(paths.probe_rgb(n, size=32), "ave")  # (n, 3, 32, 32), not resized


def test_a_candidate_that_breaks_cosine_is_refused_and_the_next_is_used():
    timer = FakeTimer()
    choice, run = choose("vgg19", tiny_vgg(), probe_input(), identity="tiny", env=BuildEnv(1),
                         info=AVX2, paths=CANDIDATES, timer=timer)
    degraded = choice.verdict("degraded")
    assert degraded.cosine < COSINE_FLOOR and "cosine" in degraded.refused
    assert "cannot convert" in choice.verdict("broken").refused
    assert "second line" not in choice.verdict("broken").refused
    assert timer.calls == [["faithful", "fp32"]]  # refused candidates are not even timed
    assert choice.path == "faithful"  # the fastest that passed, though "degraded" was faster
    assert choice.verdict("faithful").cosine == pytest.approx(1.0)
    x = probe_input(2)
    np.testing.assert_allclose(run(x), 2.0 * PATHS["fp32"].build(tiny_vgg(), x.shape[1:],
                                                                   BuildEnv(1))(x), rtol=1e-6)
    line = choice.describe()
    assert "\n" not in line and "VGG19 faithful" in line
    assert "refused: degraded (cosine 0.9" in line and "broken (failed: cannot convert" in line
    assert "2.0x fp32" in line and "min cosine 1.000000" in line


def test_the_choice_is_cached_per_machine_key(tmp_path):
    net, x = tiny_vgg(), probe_input()
    timer = FakeTimer()
    kw = dict(identity="tiny", env=BuildEnv(1), info=AVX2, paths=CANDIDATES, timer=timer)
    first, _ = choose("vgg19", net, x, cache=ChoiceCache(tmp_path, "machine-a"), **kw)
    assert len(timer.calls) == 1 and not first.cached
    again, run = choose("vgg19", net, x, cache=ChoiceCache(tmp_path, "machine-a"), **kw)
    assert len(timer.calls) == 1  # no probe: the second start is instant
    assert again.cached and again.path == first.path == "faithful"
    assert again.verdicts == first.verdicts
    np.testing.assert_allclose(run(x), 2.0 * PATHS["fp32"].build(net, x.shape[1:],
                                                                   BuildEnv(1))(x), rtol=1e-6)
    other, _ = choose("vgg19", net, x, cache=ChoiceCache(tmp_path, "machine-b"), **kw)
    assert len(timer.calls) == 2 and not other.cached  # a changed machine key re-probes
    choose("vgg19", net, x, cache=ChoiceCache(tmp_path, "machine-a"),
           **{**kw, "identity": "other weights"})
    assert len(timer.calls) == 3  # so do other weights
    saved = json.loads((tmp_path / paths.CACHE_FILE).read_text())
    assert set(saved["machines"]) == {"machine-a", "machine-b"}


def test_a_corrupt_cache_file_is_probed_again_and_rewritten(tmp_path):
    (tmp_path / paths.CACHE_FILE).write_text("{not json")
    timer = FakeTimer()
    cache = ChoiceCache(tmp_path, "machine-a")
    choose("vgg19", tiny_vgg(), probe_input(), identity="tiny", env=BuildEnv(1), info=AVX2,
           paths=CANDIDATES, timer=timer, cache=cache)
    assert len(timer.calls) == 1
    assert cache.load("vgg19|tiny|threads=1")["path"] == "faithful"


def test_net_choice_round_trips_through_json():
    choice = NetChoice("vggish", "fp32", "why", (Verdict("fp32", 1.0, 3.0),
                                                 Verdict("bf16", refused="emulated")))
    back = NetChoice.from_dict(json.loads(json.dumps(choice.to_dict())))
    assert back == choice and back.ms == 3.0


# ---- the runners ----------------------------------------------------------------------------

def available_paths() -> list[str]:
    return [name for name, spec in PATHS.items()
            if spec.missing() is None and not spec.compiles and name != "fp32"]


@pytest.mark.parametrize("name", available_paths())
def test_every_runner_keeps_the_features_at_any_batch(name, tmp_path):
    vnet = tiny_vgg()
    anet = vggish.VGGish(SMALL_VGGISH, hidden=32)
    anet.init_random(1)
    rng = np.random.default_rng(0)
    env = BuildEnv(1, tmp_path, tiny_calibration())
    for net, x in ((vnet, probe_input(3)),
                   (anet.eval(), rng.normal(size=(3, 1, 96, 64)).astype(np.float32))):
        want = PATHS["fp32"].build(net, x.shape[1:], env)(x)
        run = PATHS[name].build(net, x.shape[1:], env)
        got = np.concatenate([run(x[:1]), run(x[1:])])  # batch 1 then 2: the batch axis is free
        assert got.dtype == np.float32 and got.shape == want.shape
        # tiny random nets in bf16 or int8 are coarser than the real ones the gate sees
        floor = 0.99 if "int8" in name else 0.999 if "bf16" in name else 1 - 1e-9
        assert min_cosine(want, got) > floor


def tiny_calibration() -> dict[str, np.ndarray]:
    """Calibration inputs of the tiny networks, other than the ones they are checked on."""
    rng = np.random.default_rng(7)
    return {"vgg19": vgg19.normalize(paths.probe_rgb(8, size=32, seed=7), "ave"),
            "vggish": rng.normal(size=(8, 1, 96, 64)).astype(np.float32)}


def test_int8_path_is_calibrated_kept_and_quiet(tmp_path, capfd):
    pytest.importorskip("nncf")
    pytest.importorskip("openvino")
    net, x = tiny_vgg(), probe_input(3)
    with pytest.raises(ValueError, match="no calibration inputs"):
        PATHS["openvino-int8"].build(net, x.shape[1:], BuildEnv(1, tmp_path))
    env = BuildEnv(1, tmp_path, tiny_calibration())
    want = PATHS["fp32"].build(net, x.shape[1:], env)(x)
    paths.openvino_model(net, x.shape[1:], env)
    fp32_ir = {p.name for p in tmp_path.iterdir()}
    run = PATHS["openvino-int8"].build(net, x.shape[1:], env)
    int8_ir = {p.name for p in tmp_path.iterdir()} - fp32_ir
    assert sorted(p.rsplit(".", 1)[1] for p in int8_ir) == ["bin", "xml"]  # its own model
    assert not capfd.readouterr().out  # no progress bar on stdout (headless runs keep it JSON)
    got = run(x)
    assert 0.99 < min_cosine(want, got) < 1 - 1e-6  # rounded, not the fp32 model
    again = PATHS["openvino-int8"].build(net, x.shape[1:], env)  # read back, not quantized anew
    assert {p.name for p in tmp_path.iterdir()} == fp32_ir | int8_ir
    np.testing.assert_array_equal(again(x), got)
    recalibrated = BuildEnv(1, tmp_path, {"vgg19": tiny_calibration()["vgg19"][:4]})
    PATHS["openvino-int8"].build(net, x.shape[1:], recalibrated)
    assert len({p.name for p in tmp_path.iterdir()} - fp32_ir - int8_ir) == 2  # new ranges


def test_openvino_models_are_kept_by_weights(tmp_path):
    pytest.importorskip("openvino")
    env = BuildEnv(1, tmp_path)
    net, x = tiny_vgg(), probe_input(2)
    want = PATHS["fp32"].build(net, x.shape[1:], env)(x)
    paths.openvino_model(net, x.shape[1:], env)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert [p.rsplit(".", 1)[1] for p in kept] == ["bin", "xml"]
    run = PATHS["openvino"].build(net, x.shape[1:], env)  # read back, not converted again
    assert sorted(p.name for p in tmp_path.iterdir()) == kept
    assert min_cosine(want, run(x)) > 1 - 1e-9  # the kept model is fp32, not compressed
    other = vgg19.VGG19(SMALL_VGG)
    other.init_random(1)
    paths.openvino_model(other, x.shape[1:], env)
    assert len(list(tmp_path.iterdir())) == 4  # other weights, another model


# ---- the extractors on a chosen path ----------------------------------------------------------

def test_build_extractors_auto_uses_the_cached_choice(tmp_path, monkeypatch):
    """A cached choice for this machine and weights: the extractors run on its paths with no
    probe, and say so in one line."""
    from model.extractors import factory

    key = machine_key(factory.cpu_info())
    cache = ChoiceCache(tmp_path, key)
    threads = torch.get_num_threads()
    for network, ms in (("vgg19", 400.0), ("vggish", 30.0)):
        verdicts = (Verdict("fp32", 1.0, ms), Verdict("bf16", refused="emulated", skipped=True))
        cache.store(f"{network}|random:seed=0|threads={threads}",
                    NetChoice(network, "fp32", "test entry", verdicts).to_dict())
    monkeypatch.setattr(paths, "probe_paths", None)  # a probe would fail loudly
    ex = build_extractors(random_weights=True, seed=0, frames_per_segment=2,
                          extractor_path="auto", cache_dir=tmp_path)
    assert ex.choice.visual.cached and ex.choice.audio.cached
    assert (ex.visual.path, ex.audio.path) == ("fp32", "fp32")
    assert ex.choice.visual.ms == 400.0 and ex.choice.audio.ms == 30.0
    line = ex.choice.describe()
    assert "\n" not in line and "(cached)" in line and "VGG19 fp32" in line
    assert "1 not tried here" in line and factory.cpu_info().short() in line
    rgb = paths.probe_rgb(1, size=64)
    plain = VisualExtractor(ex.visual.net, "ave")  # no runner given: eager, as without auto
    assert plain.path == "fp32"
    np.testing.assert_array_equal(ex.visual.frame_features(rgb), plain.frame_features(rgb))


def test_extractor_path_mistakes_are_user_errors():
    with pytest.raises(UserError, match="unknown extractor path"):
        build_extractors(random_weights=True, extractor_path="fastest")
    with pytest.raises(UserError, match="precision"):
        build_extractors(random_weights=True, extractor_path="auto", precision="bf16")


def test_a_path_chosen_elsewhere_is_built_here_or_refused_naming_this_machine(monkeypatch):
    """What a Ray actor builds from its driver's choice: that path, or a one-line refusal."""
    import socket
    from dataclasses import replace

    from model.extractors import factory
    from model.extractors.runtime import RunOptions

    net, opts = tiny_vgg(), RunOptions(threads=1)
    x = vgg19.preprocess(paths.probe_rgb(2, size=64), "ave")  # (2, 3, 224, 224)
    assert factory.path_runner("vgg19", net, "fp32", opts) is None  # the eager path
    bf16 = RunOptions(precision="bf16", threads=1)
    assert factory.path_runner("vgg19", net, "autocast-bf16", bf16) is None
    monkeypatch.setattr(factory, "cpu_info", lambda: AMX)
    run = factory.path_runner("vgg19", net, "bf16", opts)
    np.testing.assert_array_equal(run(x), PATHS["bf16"].build(net, x.shape[1:], BuildEnv(1))(x))
    monkeypatch.setattr(factory, "cpu_info", lambda: AVX2)
    monkeypatch.setitem(PATHS, "openvino", replace(
        PATHS["openvino"], missing=lambda: "openvino is not installed (pip install openvino)"))
    for path, why in (("bf16", "bf16 is emulated on this CPU"),
                      ("openvino", "openvino is not installed"),
                      ("fp8-someday", "no such path")):
        with pytest.raises(factory.PathUnavailable) as e:
            factory.path_runner("vgg19", net, path, opts)
        line = str(e.value)
        assert line.startswith(f"machine {socket.gethostname()} ({AVX2.short()}) cannot run "
                               f"VGG19 on extractor path {path}, which this run uses: {why}")
        assert "\n" not in line and "--extractor-path fp32" in line


# ---- frames per segment ---------------------------------------------------------------------

def test_frames_for_realtime_is_the_largest_k_under_the_target():
    for frame_ms, segment_ms, window_ms in ((120.0, 40.0, 3.0), (61.0, 95.0, 2.0),
                                            (10.0, 5.0, 1.0), (650.0, 36.0, 3.0)):
        got = frames_for_realtime(frame_ms, segment_ms, window_ms)
        ok = [k for k in range(1, 17)
              if (k * frame_ms + segment_ms + window_ms) / 1000 <= TARGET_RTF]
        assert got.frames == max(ok, default=1)
        assert got.rtf == pytest.approx(realtime_factor(got.frames, frame_ms, segment_ms,
                                                        window_ms))
        assert got.reason.startswith(f"{got.frames} frames per segment")
    assert frames_for_realtime(120.0, 40.0, 3.0).frames == 5
    assert "6 frames would be RTF 0.76" in frames_for_realtime(120.0, 40.0, 3.0).reason
    assert "AVE recipe fits" in frames_for_realtime(10.0, 5.0, 1.0).reason
    slow = frames_for_realtime(650.0, 182.0, 3.0)
    assert slow.frames == 1 and slow.rtf > TARGET_RTF and "even 1 frame" in slow.reason
    edge = frames_for_realtime(100.0, 100.0, 0.0)  # K = 6 is exactly 0.7
    assert edge.frames == 6


def test_frames_for_realtime_refuses_unmeasured_costs():
    with pytest.raises(ValueError, match="frame_ms"):
        frames_for_realtime(-1.0, 10.0)
    with pytest.raises(ValueError, match="segment_ms"):
        frames_for_realtime(10.0, float("nan"))


SWALLOWED_INTERRUPT = """
import signal, sys
sys.path.insert(0, "tests")
from test_extractor_paths import AVX2, CANDIDATES, FakeTimer, probe_input, tiny_vgg
from model.extractors.paths import BuildEnv, ChoiceCache, PathSpec, choose

def converter(net, shape, env):  # as OpenVINO's converter does with an exception in a callback
    try:
        signal.raise_signal(signal.SIGINT)
        raise AssertionError("no Ctrl+C")
    except KeyboardInterrupt:
        raise RuntimeError("Check 'false' failed at src/frontends/common/src/frontend.cpp:53")

try:
    choose("vgg19", tiny_vgg(), probe_input(), identity="tiny", env=BuildEnv(1), info=AVX2,
           paths={**CANDIDATES, "converter": PathSpec("swallows Ctrl+C", converter)},
           timer=FakeTimer(), cache=ChoiceCache(sys.argv[1], "machine-a"))
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_swallowed_by_a_converter_stops_the_probe_and_caches_no_refusal(tmp_path):
    # in a child process: the test process is never signalled
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    child = subprocess.run([sys.executable, "-c", SWALLOWED_INTERRUPT, str(tmp_path)], cwd=root,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 130, child.stderr
    assert not (tmp_path / paths.CACHE_FILE).exists()  # no "failed" verdict kept for next time
