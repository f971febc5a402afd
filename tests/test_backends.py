"""Backends: every backend and precision agrees with eager fp32 on >= 99.5% of segment labels
(generated windows and synthetic clips, on a briefly trained model); the TensorRT program
(fp16/bf16 copy, decomposed) checked on the CPU; the engine cache trusts only what matches
(key and checksum) and rebuilds, and says so, otherwise; `auto` loads an engine built ahead
(`python -m model.backends build`) and never builds one; missing pieces.
TensorRT itself is tested only where a CUDA GPU and torch-tensorrt are present."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.backends import (
    BACKENDS,
    EngineCache,
    EngineKey,
    build_backend,
    build_extractor_backend,
    engine_backends,
    engines,
    live_backend,
    probe,
    resolve_backend,
    unavailable,
)
from model.backends import __main__ as backends_cli
from model.backends import build as build_mod
from model.backends.cache import code_digest, file_sha256, weights_digest
from model.backends.export import RNN_OPS, TRT_CONVERTIBLE_OPS, graph_ops
from model.config import JCAConfig
from model.errors import UserError
from model.extractors.paths import MIN_LABEL_AGREEMENT
from model.extractors.vgg19 import VGG19
from model.network import JCANet
from model.synthetic import make_dataset

SMALL = dict(num_classes=5, hidden=8, embed=16, attn_hidden=8, attn_dim=7, layers=1,
             joint_hidden=8, joint_embed=16, mlp_hidden=8)
MIN_AGREEMENT = MIN_LABEL_AGREEMENT  # % of segment labels equal to eager fp32
HAS_TRT = torch.cuda.is_available() and probe.tensorrt_version() is not None


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(audio (N, 10, 128), visual (N, 10, 7, 7, 512), labels (N, 10)) of a synthetic dataset."""
    d = make_dataset(tmp_path_factory.mktemp("synth"), n_clips=48, n_classes=5, seed=0)
    with h5py.File(d.audio) as fa, h5py.File(d.visual) as fv, h5py.File(d.labels) as fl:
        return (torch.from_numpy(fa["avadataset"][()]).float(),
                torch.from_numpy(fv["avadataset"][()]).float(),
                torch.from_numpy(fl["avadataset"][()]).argmax(-1))


@pytest.fixture(scope="module")
def net(clips) -> JCANet:
    """A small JCA model trained for a few steps, so its labels depend on its inputs (an
    untrained model's logits are near ties, which no precision can be expected to keep)."""
    torch.manual_seed(0)
    model = JCANet(JCAConfig(**SMALL))
    audio, visual, labels = clips
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        idx = torch.randint(len(labels), (16,), generator=g)
        loss = F.cross_entropy(model(audio[idx], visual[idx]).flatten(0, 1), labels[idx].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def windows() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(40, 10, 128, generator=g), torch.rand(40, 10, 7, 7, 512, generator=g)


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory) -> Path:
    """One engine cache for the module: the decomposed program is exported once, then hit."""
    return tmp_path_factory.mktemp("engines")


def agreement(want: torch.Tensor, got: torch.Tensor) -> float:
    return (want.argmax(-1) == got.argmax(-1)).double().mean().item() * 100


def check_parity(backend, net: JCANet, clips, windows, atol: float | None) -> None:
    for audio, visual in ((windows[0], windows[1]), (clips[0], clips[1])):
        with torch.no_grad():
            want = net(audio, visual)  # (N, 10, C)
        got = backend(audio, visual)
        assert got.shape == want.shape and got.dtype == torch.float32 and got.device.type == "cpu"
        assert agreement(want, got) >= MIN_AGREEMENT, (backend, agreement(want, got))
        if atol is not None:
            torch.testing.assert_close(got, want, rtol=0, atol=atol)


def test_trained_model_is_confident_enough_to_test_parity(net, clips) -> None:
    audio, visual, labels = clips
    with torch.no_grad():
        logits = net(audio, visual)
    top2 = logits.topk(2, -1).values
    assert (logits.argmax(-1) == labels).double().mean() > 0.6  # it learned something
    assert (top2[..., 0] - top2[..., 1]).median() > 0.2  # labels are not ties


# ---- eager ------------------------------------------------------------------------------------

def test_eager_is_the_model_in_any_batch_and_input_type(net, windows) -> None:
    audio, visual = windows[0][:5], windows[1][:5]
    be = build_backend("eager", net, "cpu", batch_size=2)
    assert (be.name, be.precision, be.device, be.cache) == ("eager", "fp32", "cpu", None)
    with torch.no_grad():
        want, want_attn = net(audio, visual, return_attention=True)
    # chunks of 2, 2, 1: only BLAS's batch-size-dependent rounding differs
    torch.testing.assert_close(be(audio, visual), want, rtol=0, atol=1e-6)
    torch.testing.assert_close(be(audio.numpy(), visual.numpy()), want, rtol=0, atol=1e-6)
    be = build_backend("eager", net, attention=True, batch_size=5)
    logits, attn = be(audio, visual)
    torch.testing.assert_close(logits, want, rtol=0, atol=0)
    torch.testing.assert_close(attn, want_attn, rtol=0, atol=0)
    assert net.training is False and next(net.parameters()).dtype == torch.float32  # untouched


def test_eager_bf16_agrees(net, clips, windows) -> None:
    be = build_backend("eager", net, "cpu", "bf16", batch_size=16)
    assert be.autocast == torch.bfloat16
    check_parity(be, net, clips, windows, atol=None)


# ---- export: the decomposed program (cached) ------------------------------------------------

def test_export_backend_matches_eager_and_pads_fixed_batches(net, clips, windows,
                                                             engine_dir) -> None:
    be = build_backend("export", net, batch_size=4, attention=True, cache_dir=engine_dir)
    assert be.fixed and be.cache is not None and be.cache.state in ("built", "hit")
    a, v = windows[0][:5], windows[1][:5]  # 5 = one full chunk of 4 + 1 padded to 4
    logits, attn = be(a, v)
    with torch.no_grad():
        want, want_attn = net(a, v, return_attention=True)
    torch.testing.assert_close(logits, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(attn, want_attn, rtol=0, atol=1e-5)
    assert attn.shape == (5, 10, 7, 7)
    for bad in [(a[:, :, :64], v), (a, v[:4]), (a[:, :9], v[:, :9])]:
        with pytest.raises(ValueError, match=r"takes inputs \('B', 10, 128\)"):
            be(*bad)  # a compiled engine would read past its buffers

    bf16 = build_backend("export", net, "cpu", "bf16", batch_size=4, attention=True,
                         cache_dir=engine_dir)
    assert bf16.cache.state == "hit"  # bf16 autocasts the same fp32 program
    check_parity(lambda a, v: bf16(a, v)[0], net, clips, windows, atol=None)


@pytest.fixture(scope="module")
def fp16_program(net):
    return build_mod.window_program(net, "fp16", "tensorrt", batch_size=8)


def run_fp16(ep, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
    module = ep.module()
    outs = [module(audio[i:i + 8].half(), visual[i:i + 8].half()).float()
            for i in range(0, len(audio), 8)]
    return torch.cat(outs)


def test_tensorrt_program_checked_on_cpu(net, clips, windows, fp16_program) -> None:
    """What torch_tensorrt would receive for fp16: a decomposed program of a half copy, half
    inputs, only ops TensorRT converts, and labels that agree with eager fp32 when run here."""
    ep, inputs = fp16_program
    dtype = torch.float16
    assert [x.dtype for x in inputs] == [dtype, dtype]
    assert [tuple(x.shape) for x in inputs] == [(8, 10, 128), (8, 10, 7, 7, 512)]
    assert {p.dtype for p in ep.state_dict.values()} == {dtype}
    ops = graph_ops(ep)
    assert not set(ops) & RNN_OPS and ops["aten.sigmoid.default"] > 0  # LSTMs unrolled
    assert sorted(set(ops) - TRT_CONVERTIBLE_OPS) == []
    check_parity(lambda a, v: run_fp16(ep, a, v), net, clips, windows, atol=None)


def test_fp16_program_survives_all_zero_and_large_features(fp16_program, windows) -> None:
    """fp16 normalisation: eps * eps underflows and the squares of large features overflow in
    half precision, so the norm is taken in float32 (model.network.l2_normalize)."""
    audio, visual = windows[0][:8].clone(), windows[1][:8].clone()
    audio[0, 2] = 0  # a silent segment
    visual[1, 4, 3, 3] = 0  # one dark position
    plain = run_fp16(fp16_program[0], audio, visual)
    visual[2] *= 400  # caffe-mode VGG19 activations reach hundreds: sum of squares > 65504
    out = run_fp16(fp16_program[0], audio, visual)
    assert torch.isfinite(out).all()
    # the input is L2-normalised first, so scaling a clip's features changes nothing
    torch.testing.assert_close(out[2], plain[2], atol=2e-2, rtol=0)


def test_whole_bf16_engines_are_refused_and_auto_avoids_them(net, monkeypatch) -> None:
    """A whole-bf16 copy (what aot/tensorrt would have to run) agreed on 99.4% of this model's
    labels when tried, under the 99.5% bar: bf16 stays an autocast precision."""
    for name in ("aot", "tensorrt"):
        with pytest.raises(UserError, match=f"backend {name} has no mixed bf16"):
            build_backend(name, net, "cpu", "bf16")
    with pytest.raises(UserError, match="no mixed bf16"):
        build_mod.window_program(net, "bf16", "tensorrt")
    monkeypatch.setattr(probe, "cpp_compiler", lambda: "g++")
    assert engine_backends("cpu", "fp32") == (["aot"], [])
    assert engine_backends("cpu", "bf16")[0] == []
    be = build_backend("auto", net, "cpu", "bf16", cache=False)
    assert be.name == "eager" and "no mixed bf16" in be.reason


# ---- compile and aot: inductor over the decomposed program --------------------------------

@pytest.mark.slow
@pytest.mark.skipif(probe.cpp_compiler() is None, reason="inductor needs a C++ compiler")
def test_compile_agrees(net, clips, windows, engine_dir) -> None:
    be = build_backend("compile", net, batch_size=4, attention=True, cache_dir=engine_dir)
    assert be.cache.state in ("hit", "built")  # hit after the export test
    check_parity(lambda a, v: be(a, v)[0], net, clips, windows, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(probe.cpp_compiler() is None, reason="AOTInductor needs a C++ compiler")
def test_aot_agrees_and_auto_loads_its_engine(net, clips, windows, engine_dir) -> None:
    assert build_backend("auto", net, batch_size=8, cache_dir=engine_dir).name == "eager"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        be = build_backend("aot", net, batch_size=8, cache_dir=engine_dir)
    # torch's own deprecations stay out of the build's output
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], caught
    assert be.cache.state == "built" and be.cache.path.suffix == ".pt2"
    check_parity(be, net, clips, windows, atol=1e-5)
    again = build_backend("auto", net, batch_size=8, cache_dir=engine_dir)
    assert again.name == "aot" and again.cache.state == "hit"
    assert "auto picked aot" in again.reason
    torch.testing.assert_close(again(*windows), be(*windows), rtol=0, atol=0)


# ---- the engine cache -----------------------------------------------------------------------

@pytest.fixture
def tiny_vgg() -> VGG19:
    net = VGG19(widths=(4, 4, 8, 8, 8))
    net.init_random(0)
    return net.eval()


def vgg_input(n: int) -> torch.Tensor:
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(3)) * 50


def test_extractor_backends_match_eager(tiny_vgg) -> None:
    x = vgg_input(3)
    with torch.no_grad():
        want = tiny_vgg(x)  # (3, 8, 7, 7)
    eager = build_extractor_backend("eager", tiny_vgg, batch_size=2)
    assert eager.channels_last
    # NHWC kernels sum in another order than NCHW: 2e-4 relative seen on an AVX2-only CPU
    torch.testing.assert_close(eager(x), want, rtol=1e-4, atol=1e-4)
    exported = build_extractor_backend("export", tiny_vgg, batch_size=2, cache=False)
    assert exported.cache.state == "off"
    torch.testing.assert_close(exported(x), want, rtol=1e-5, atol=1e-4)
    bf16 = build_extractor_backend("eager", tiny_vgg, precision="bf16", batch_size=2)
    got = bf16(x)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        amp = torch.cat([tiny_vgg(x[:2]), tiny_vgg(x[2:])]).float()
    assert got.dtype == torch.float32

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()

    # autocast reached the convolutions: the same as autocast on the plain module up to the
    # NHWC/NCHW kernels' bf16 rounding (elementwise it can differ by a bf16 step, 0.2% overall),
    # and bf16 rounding through 16 narrow convs (4-8 channels) from fp32: ~4% here, ~1% at
    # full width
    assert rel(got, amp) < 0.01
    assert 0 < rel(got, want) < 0.08


def test_extractor_auto_and_bf16_rules(tiny_vgg) -> None:
    """On the CPU `auto` runs extractors eagerly (compiled ones measured mixed there), and
    the decomposed program refuses bf16: CPU autocast does not reach aten.convolution."""
    be = build_extractor_backend("auto", tiny_vgg, batch_size=2)
    assert be.name == "eager" and "compiled extractors were mixed" in be.reason
    with pytest.raises(UserError, match="autocast does not reach"):
        build_extractor_backend("export", tiny_vgg, precision="bf16")
    assert unavailable("export", "cpu", "bf16", "window") is None  # mm/addmm/bmm: it does


def test_cache_hit_then_corrupt_and_stale_entries_are_rebuilt(tiny_vgg, tmp_path,
                                                             monkeypatch, caplog) -> None:
    x = vgg_input(2)
    with torch.no_grad():
        want = tiny_vgg(x)

    def build(**kw):
        be = build_extractor_backend("export", tiny_vgg, batch_size=2, cache_dir=tmp_path, **kw)
        torch.testing.assert_close(be(x), want, rtol=1e-5, atol=1e-4)  # always right
        return be.cache

    first = build()
    assert first.state == "built" and first.path.exists()
    meta_path = first.path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    assert meta["key"]["weights"] == weights_digest(tiny_vgg)
    assert meta["key"]["shapes"] == [[2, 3, 224, 224]] and meta["key"]["dtype"] == "float32"
    assert meta["key"]["versions"]["torch"] == torch.__version__
    assert build().state == "hit"

    data = first.path.read_bytes()
    first.path.write_bytes(data[: len(data) // 2])  # truncated
    st = build()
    assert (st.state, st.detail) == ("rebuilt", "corrupt: engine file checksum mismatch "
                                                "(truncated or altered)")
    assert "rebuilding" in caplog.text
    assert build().state == "hit"

    first.path.write_bytes(b"garbage" * 100)  # garbage whose checksum is recorded as right
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = file_sha256(first.path)
    meta["bytes"] = first.path.stat().st_size
    meta_path.write_text(json.dumps(meta))
    st = build()
    assert st.state == "rebuilt" and st.detail.startswith("corrupt: cannot load")

    meta_path.write_text("{not json")
    st = build()
    assert st.state == "rebuilt" and st.detail.startswith("corrupt: unreadable metadata")

    meta = json.loads(meta_path.read_text())
    meta["key"]["weights"] = "0" * 64  # same slot, other weights
    meta_path.write_text(json.dumps(meta))
    st = build()
    assert st.state == "rebuilt" and st.detail.startswith("stale: weights: 000000000000 -> ")

    real = build_mod.library_versions
    monkeypatch.setattr(build_mod, "library_versions",
                        lambda b: {**real(b), "torch": "9.9.9"})
    st = build()
    assert (st.state, st.detail) == ("rebuilt", f"stale: torch: {torch.__version__} -> 9.9.9")
    assert build().state == "hit"
    assert json.loads(meta_path.read_text())["key"]["versions"]["torch"] == "9.9.9"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.path.name,
                                                                meta_path.name])  # no temp


def test_engine_key_tracks_weights_shapes_dtype_and_code(tiny_vgg) -> None:
    def key(module, shapes=((1, 3, 224, 224),), dtype=torch.float32):
        return EngineKey.of("vgg19", "export", module, shapes, dtype, "cpu", {"torch": "x"})

    base = key(tiny_vgg)
    twin = VGG19(widths=(4, 4, 8, 8, 8))
    twin.init_random(0)
    assert key(twin) == base  # same weights, another instance
    twin.init_random(1)
    assert key(twin).weights != base.weights and key(twin).slot != base.slot
    assert key(tiny_vgg, shapes=((2, 3, 224, 224),)).slot != base.slot
    assert key(tiny_vgg, dtype=torch.float16).slot != base.slot
    assert base.code == code_digest(tiny_vgg) and len(base.code) == 64
    assert EngineKey.from_json(json.loads(json.dumps(base.to_json()))) == base
    assert key(twin).differences(base)[0].startswith("weights: ")


def test_missing_cache_record_with_engine_is_not_trusted(tmp_path, tiny_vgg) -> None:
    key = EngineKey.of("vgg19", "export", tiny_vgg, ((1, 3, 224, 224),), torch.float32, "cpu",
                       {"torch": "x"})
    engine, _ = EngineCache(tmp_path).paths(key, ".pt2")
    engine.write_bytes(b"left over")
    assert EngineCache(tmp_path).check(key, ".pt2").startswith("corrupt: unreadable metadata")


# ---- choosing a backend ---------------------------------------------------------------------

class FakeCompiler:
    """AOTInductor stand-in, seconds instead of a minute: "compiling" writes a small package
    file naming the program, "loading" one runs that decomposed program op by op. Counts the
    builds, so a test sees that `auto` built nothing."""

    def __init__(self) -> None:
        self.programs: dict[bytes, object] = {}
        self.built = 0

    def compile(self, ep, path: Path) -> Path:
        self.built += 1
        package = f"fake package {self.built}".encode()
        self.programs[package] = ep
        Path(path).write_bytes(package)
        return Path(path)

    def load(self, path: Path):
        return self.programs[Path(path).read_bytes()].module()


@pytest.fixture
def fake_aot(monkeypatch) -> FakeCompiler:
    fake = FakeCompiler()
    monkeypatch.setattr(probe, "cpp_compiler", lambda: "g++")
    monkeypatch.setattr(engines, "aot_compile", fake.compile)
    monkeypatch.setattr(engines, "aot_load", fake.load)
    return fake


def test_auto_runs_eager_until_an_engine_is_built_then_loads_it(net, fake_aot, tmp_path,
                                                                 windows) -> None:
    a, v = windows[0][:3], windows[1][:3]
    first = live_backend("auto", net, cache_dir=tmp_path)
    assert first.name == "eager" and fake_aot.built == 0  # auto never builds
    assert first.reason.startswith("auto picked eager: no aot engine for this model")
    assert "python -m model.backends build" in first.reason
    assert list(tmp_path.iterdir()) == []

    built = live_backend("aot", net, cache_dir=tmp_path)  # the build step
    assert (built.name, built.cache.state, fake_aot.built) == ("aot", "built", 1)
    again = live_backend("auto", net, cache_dir=tmp_path)
    assert (again.name, fake_aot.built) == ("aot", 1), again.reason
    assert again.cache.state == "hit"
    assert again.reason.startswith("auto picked aot")
    with torch.no_grad():
        want = net(a, v, return_attention=True)
    for got, ref in zip(again(a, v), want, strict=True):
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)

    # another precision, batch size or model has no engine: eager again, still nothing built
    assert build_backend("auto", net, batch_size=4, attention=True,
                         cache_dir=tmp_path).name == "eager"
    other = JCANet(JCAConfig(**SMALL)).eval()
    assert live_backend("auto", other, cache_dir=tmp_path).name == "eager"
    assert live_backend("auto", net, cache=False).reason.endswith("the engine cache is off")
    assert fake_aot.built == 1


def test_auto_never_rebuilds_a_stale_or_broken_engine(net, fake_aot, tmp_path,
                                                      monkeypatch) -> None:
    engine = live_backend("aot", net, cache_dir=tmp_path).cache.path
    meta_path = engine.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["key"]["versions"]["torch"] = "0.0.1"  # built by another torch
    meta_path.write_text(json.dumps(meta))
    be = live_backend("auto", net, cache_dir=tmp_path)
    assert be.name == "eager" and f"stale: torch: 0.0.1 -> {torch.__version__}" in be.reason

    live_backend("aot", net, cache_dir=tmp_path)  # rebuilt by the build step
    assert fake_aot.built == 2

    def broken(path):
        raise RuntimeError("package from another machine\nmore")

    monkeypatch.setattr(engines, "aot_load", broken)
    be = live_backend("auto", net, cache_dir=tmp_path)
    assert be.name == "eager" and "aot failed to load (" in be.reason
    assert fake_aot.built == 2
    with pytest.raises(UserError, match=r"C\+\+ compiler .*apt-get install g\+\+"):
        monkeypatch.setattr(probe, "cpp_compiler", lambda: None)
        resolve_backend("aot", "cpu")
    be = live_backend("auto", net, cache_dir=tmp_path)
    assert be.name == "eager" and "C++ compiler" in be.reason
    assert resolve_backend("eager", "cpu") == ("eager", "eager: asked for")


def test_build_cli_builds_what_main_py_auto_loads(fake_aot, tmp_path, monkeypatch,
                                                  capsys) -> None:
    """python -m model.backends build --random-weights, then main.py's runtime for the same
    model (--random-weights, --backend auto) runs the engine it built."""
    from streamer.options import AppOptions
    from streamer.runtime import load_runtime

    monkeypatch.setenv("JCA_LIVE_ENGINES", str(tmp_path))
    backends_cli.main(["build", "--random-weights", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "aot fp32 on cpu" in out and "engine cache built" in out
    assert "main.py --backend auto (fp32, cpu) now loads this engine" in out
    rt = load_runtime(AppOptions(source="synthetic", random_weights=True, backend="auto",
                                 device="cpu", frames_per_segment=1))
    assert rt.backend.name == "aot" and rt.backend.cache.state == "hit"
    assert fake_aot.built == 1 and "backend: auto picked aot" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"no such checkpoint: missing\.pt"):
        backends_cli.main(["build", "--checkpoint", "missing.pt"])


def test_tensorrt_without_gpu_or_package_names_the_missing_piece(monkeypatch) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="runs only on a CUDA GPU"):
            resolve_backend("tensorrt", "cpu")
        with pytest.raises(UserError, match=r"no CUDA GPU.*--device cpu"):
            resolve_backend("tensorrt", "cuda")
    monkeypatch.setattr(probe, "tensorrt_version", lambda: None)
    why = unavailable("tensorrt", "cuda")
    assert "\n" not in why and "pip install -e '.[tensorrt]'" in why


def test_bad_names_are_user_errors(net) -> None:
    for kwargs, pattern in [({"name": "fast"}, "unknown --backend 'fast'"),
                            ({"precision": "int8"}, "unknown --precision 'int8'"),
                            ({"precision": "fp16"}, "fp16 needs a CUDA GPU"),
                            ({"device": "tpu"}, "unknown --device 'tpu'")]:
        args = {"name": "eager", "device": "cpu", "precision": "fp32", **kwargs}
        with pytest.raises(UserError, match=pattern) as e:
            build_backend(args["name"], net, args["device"], args["precision"])
        assert "\n" not in str(e.value)
    assert set(BACKENDS) >= {"auto", "eager", "export", "compile", "aot", "tensorrt"}


def test_cli_says_what_can_run(capsys) -> None:
    backends_cli.main(["--device", "cpu"])
    out = capsys.readouterr().out
    assert "eager     ok" in out and "tensorrt  no: backend tensorrt runs only on a CUDA GPU" in out
    assert out.strip().splitlines()[-1] == ("auto: a cached aot engine built for the model "
                                            "(python -m model.backends build), else eager")


# ---- TensorRT, where it exists -------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="needs a CUDA GPU and torch-tensorrt")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_agrees_and_is_cached(net, clips, windows, precision, tmp_path) -> None:
    be = build_backend("tensorrt", net, "cuda", precision, batch_size=8, cache_dir=tmp_path)
    assert be.cache.state == "built" and be.cache.path.suffix == ".ep"
    check_parity(be, net, clips, windows, atol=1e-3 if precision == "fp32" else None)
    again = build_backend("auto", net, "cuda", precision, batch_size=8, cache_dir=tmp_path)
    assert again.name == "tensorrt" and again.cache.state == "hit"
    np.testing.assert_allclose(again(*windows).numpy(), be(*windows).numpy(), atol=1e-6)


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="needs a CUDA GPU and torch-tensorrt")
def test_tensorrt_extractor_fp16(tiny_vgg, tmp_path) -> None:
    x = vgg_input(5)
    with torch.no_grad():
        want = tiny_vgg(x)
    be = build_extractor_backend("tensorrt", tiny_vgg, "cuda", "fp16", batch_size=4,
                                 cache_dir=tmp_path)
    got = be(x)
    assert got.shape == want.shape
    assert (torch.linalg.norm(got - want) / torch.linalg.norm(want)).item() < 0.02
