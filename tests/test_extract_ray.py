"""Extraction on Ray Data against the local path: the same h5 files (shapes, clip order, values)
from a dozen generated clips, a broken file reported and not fatal, a failed actor call retried
by Ray (and a file lost after the retries reported, the run going on), an interrupted run
resumed from the cache, the two paths sharing one cache; the CLI with and without --ray on its
default flags running one extractor path, an actor refusing a path its machine cannot run; the
options and the one-line errors.

One local Ray (2 CPUs, no dashboard, a small object store) serves every test of the module."""

import csv
import json
import socket
import sys
from dataclasses import replace
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import stream_fakes
import torch
from stream_fakes import TinyVisualNet

from model import extract
from model.errors import UserError, run_cli
from model.extract_ray import (
    RAY_EXTRA,
    RayOptions,
    check_resources,
    lost_reason,
    pipeline,
    rate_line,
    run_ray,
)
from model.extract_stages import ERROR_WINDOW, Assembler
from model.extractors import Extractors, paths, vgg19, vggish
from model.extractors.audio import AudioExtractor
from model.extractors.runtime import RunOptions
from model.extractors.visual import VisualExtractor
from model.feature_cache import cache_name
from model.recipe import FeatureRecipe

K = 2  # frames per segment
# seconds of each clip: 10-s clips, short ones (padded), long ones (2 windows + a dropped rest)
DURATIONS = (10, 4, 12, 23, 6, 21, 10)
BROKEN = "broken.mp4"
H5 = ("visual_feature.h5", "audio_feature.h5", "labels.h5", "train_order.h5", "val_order.h5",
      "test_order.h5")
RAY_OPTS = RayOptions(actor_cpus=0.5, batch=3)  # 2 actors + a decode task fit 2 CPUs


def make_clip(path: Path, seconds: float, fps: int = 5, rate: int = 16000,
              size: tuple[int, int] = (64, 48)) -> None:
    """A small clip whose colour and tone change every second."""
    w, h = size
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        st = c.add_stream("aac", rate=rate)
        st.layout = "mono"
        for i in range(round(seconds * fps)):
            sec = int(i / fps)
            img = np.zeros((h, w, 3), np.uint8)
            img[..., sec % 3] = (60 + 37 * sec) % 256
            img[: (i % fps) * h // fps, :, 1] = 200
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        n = round(seconds * rate)
        t = np.arange(n) / rate
        x = (0.3 * np.sin(2 * np.pi * (300 + 150 * np.floor(t)) * t)).astype(np.float32)[None]
        for s in range(0, n, 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, s:s + 1024]),
                                            format="fltp", layout="mono")
            fr.rate, fr.pts = rate, s
            for p in st.encode(fr):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """(videos folder, annotations CSV): 7 clips and a broken file, 8 files in all."""
    d = tmp_path_factory.mktemp("videos")
    rows = [["file", "label", "start", "end"]]
    for i, seconds in enumerate(DURATIONS):
        make_clip(d / f"clip{i:02d}.mp4", seconds)
        rows.append([f"clip{i:02d}.mp4", ("bell", "horn")[i % 2], str(i % 5), str(i % 5 + 3)])
    (d / BROKEN).write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 500)
    rows.insert(5, [BROKEN, "bell", "1", "2"])
    ann = d.parent / "events.csv"
    with open(ann, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return d, ann


@pytest.fixture(scope="module")
def tiny() -> Extractors:
    """Seeded random extractors with the real output shapes, cheap enough for a test; built
    from classes a Ray worker imports (torch's and the project's)."""
    torch.manual_seed(0)
    v = torch.nn.Sequential(torch.nn.AvgPool2d(32), torch.nn.Conv2d(3, 512, 1), torch.nn.ReLU())
    v.widths = (512,)  # what VisualExtractor reads of VGG19
    a = vggish.VGGish((4, 8, 8, 16), 32)
    a.init_random(1)
    recipe = FeatureRecipe("random:seed=0", "ave", K, "random:seed=0", "ave")
    return Extractors(VisualExtractor(v, "ave"), AudioExtractor(a, "ave"), recipe)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20,
             log_to_driver=False)
    for module in (sys.modules[__name__], stream_fakes):  # workers lack tests/
        ray.cloudpickle.register_pickle_by_value(module)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_out(corpus, tiny, tmp_path_factory) -> tuple[Path, extract.ExtractSummary]:
    out = tmp_path_factory.mktemp("local")
    return out, extract.run(*corpus, out, tiny)


def read_h5(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[next(iter(f.keys()))][()]


def assert_same_dataset(a: Path, b: Path, tol: float = 1e-5) -> None:
    """Two output folders hold the same dataset: clip order, labels, splits and recipe exactly,
    features within `tol`."""
    assert (a / "clips.csv").read_text() == (b / "clips.csv").read_text()
    for name in H5:
        x, y = read_h5(a / name), read_h5(b / name)
        assert x.shape == y.shape, name
        if name.endswith("_feature.h5"):
            assert x.dtype == y.dtype == np.float32
            np.testing.assert_allclose(y, x, rtol=tol, atol=tol, err_msg=name)
        else:
            np.testing.assert_array_equal(y, x, err_msg=name)
    for name in ("recipe.json", "categories.txt"):
        assert (a / name).read_text() == (b / name).read_text()


def cached(out: Path) -> set[str]:
    return {p.name for p in (out / "clips").glob("*.npz")}


class FailsFirst(torch.nn.Module):
    """A visual net whose first forward in each process raises: a transient error. (A class of
    this module: Ray ships it to the workers by value, see `ray_local`.)"""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.widths, self.failed = net, net.widths, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.failed:
            self.failed = True
            raise RuntimeError("transient failure")
        return self.net(x)


def failing_first(ex: Extractors) -> Extractors:
    return Extractors(VisualExtractor(FailsFirst(ex.visual.net), "ave"), ex.audio, ex.recipe)


class TinyVGG19(TinyVisualNet):
    """What `build_extractors` builds for VGG19 (random weights), at a tiny cost."""

    def init_random(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.mix.reset_parameters()


class TinyVGGish(vggish.VGGish):
    def __init__(self) -> None:
        super().__init__((4, 8, 8, 16), 32)


# ---- on Ray ----------------------------------------------------------------------------------

def test_ray_gives_the_local_dataset_and_reports_a_broken_file(corpus, tiny, local_out,
                                                                ray_local, tmp_path):
    """... and Ray retries the VGG19 actor's first call, which fails."""
    local, ls = local_out
    done: list[tuple[str, int]] = []
    s = run_ray(*corpus, tmp_path, failing_first(tiny), opts=RAY_OPTS,
                on_file=lambda f, n: done.append((f, n)))
    assert_same_dataset(local, tmp_path)
    assert s.clips == ls.clips == len(DURATIONS) + 2  # two clips give two windows each
    assert s.failed == ls.failed and list(s.failed) == [BROKEN]
    assert "cannot open" in s.failed[BROKEN]
    assert s.notes == ls.notes and s.files_ok == len(DURATIONS) and s.cached == 0
    summary = json.loads((tmp_path / "extract_summary.json").read_text())
    assert summary["failed"] == ls.failed and summary["clips"] == s.clips
    # every file finished once; a 10-s clip at 2 frames a second has 20 distinct frames
    assert sorted(f for f, _ in done) == sorted([f"clip{i:02d}.mp4" for i in
                                                 range(len(DURATIONS))] + [BROKEN])
    frames = dict(done)
    assert frames["clip00.mp4"] == 10 * K and frames["clip03.mp4"] == 20 * K
    assert frames[BROKEN] == 0


def test_an_interrupted_run_resumes_from_the_cache(corpus, tiny, local_out, ray_local,
                                                   tmp_path):
    def stop_after_three(file: str, frames: int) -> None:
        if len(cached(tmp_path)) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_ray(*corpus, tmp_path, tiny, opts=RAY_OPTS, on_file=stop_after_three)
    assert len(cached(tmp_path)) == 3
    assert not (tmp_path / "visual_feature.h5").exists()
    s = run_ray(*corpus, tmp_path, tiny, opts=RAY_OPTS)
    assert s.cached == 3 and s.files_ok == len(DURATIONS) and list(s.failed) == [BROKEN]
    assert_same_dataset(local_out[0], tmp_path)


def test_ray_and_local_share_one_cache(corpus, tiny, local_out, ray_local, tmp_path):
    """A local run's cache is a Ray run's: nothing left to extract, the same dataset (and the
    other way round: the resumed run above is a Ray cache read by the same finish)."""
    local, _ = local_out
    out = tmp_path / "mixed"
    (out / "clips").mkdir(parents=True)
    for p in (local / "clips").iterdir():
        (out / "clips" / p.name).write_bytes(p.read_bytes())
    s = run_ray(*corpus, out, tiny, opts=RAY_OPTS)
    assert s.cached == len(DURATIONS) and s.files_ok == len(DURATIONS)
    assert_same_dataset(local, out)


def test_decoding_stays_a_task_per_file_beside_the_actors(corpus, tiny, ray_local, tmp_path,
                                                          capsys):
    """Ray Data fuses a task into the next actor when their resources match (1 CPU each by
    default): decoding would then run inside the VGG19 actors, one file after another."""
    job = extract.plan(*corpus, tmp_path, tiny.recipe)
    todo = list(enumerate(f.file for f in job.files))
    pipeline(job, todo, tiny, RayOptions(), progress=False).explain()
    physical = capsys.readouterr().out.split("Physical Plan (Optimized)")[1]
    assert "TaskPoolMapOperator[ReadRange->MapBatches(decode_files)]" in physical
    assert "ActorPoolMapOperator[MapBatches(VisualActor)]" in physical
    assert "ActorPoolMapOperator[MapBatches(AudioActor)]" in physical


def test_a_file_lost_after_the_retries_is_reported_and_the_run_goes_on(corpus, tiny, ray_local,
                                                                        tmp_path):
    no_retry = replace(RAY_OPTS, retries=0)
    s = run_ray(*corpus, tmp_path, failing_first(tiny), opts=no_retry)
    # the rows of the one failed actor call: windows of some clips, maybe the broken file's
    # error (then the broken file is reported lost, not with its own message)
    lost = {f for f, why in s.failed.items() if why == lost_reason(no_retry)} - {BROKEN}
    assert 1 <= len(lost) < len(DURATIONS)
    assert s.files_ok == len(DURATIONS) - len(lost) and BROKEN in s.failed
    assert cached(tmp_path) == {cache_name(f"clip{i:02d}.mp4") for i in range(len(DURATIONS))
                                if f"clip{i:02d}.mp4" not in lost}
    assert read_h5(tmp_path / "visual_feature.h5").shape[0] == s.clips


def test_the_cli_runs_one_extractor_path_with_and_without_ray(corpus, ray_local, tmp_path,
                                                              monkeypatch, summary_lines):
    """Default flags: --extractor-path auto, the fastest faithful path of this CPU (bf16 or
    OpenVINO on some, fp32 on others), chosen by the local run and again by the Ray run's
    driver, whose actors run it too. torch.compile's candidates are left out: building them
    takes minutes here, and the path travels to the actors as any other does."""
    monkeypatch.setenv("JCA_LIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vgg19, "VGG19", TinyVGG19)
    monkeypatch.setattr(vggish, "VGGish", TinyVGGish)
    monkeypatch.setattr(paths, "PATHS", {k: v for k, v in paths.PATHS.items() if not v.compiles})
    videos, ann = corpus
    flags = ["--videos", str(videos), "--annotations", str(ann), "--random-weights",
             "--frames-per-segment", str(K), "--no-progress"]
    assert extract.main([*flags, "--out", str(tmp_path / "local")]) == 0
    assert extract.main([*flags, "--out", str(tmp_path / "ray"), "--ray", "--ray-actor-cpus",
                         "0.5", "--ray-batch", "3"]) == 0
    assert_same_dataset(tmp_path / "local", tmp_path / "ray", tol=1e-4)
    recipe = json.loads((tmp_path / "ray" / "recipe.json").read_text())  # = the local one
    machines = json.loads((tmp_path / "cache" / paths.CACHE_FILE).read_text())["machines"]
    chosen = {slot.split("|")[0]: entry["path"] for slots in machines.values()
              for slot, entry in slots.items()}  # slot: network|weights|threads
    assert chosen == {"vgg19": recipe["visual_path"], "vggish": recipe["audio_path"]}
    summary_lines.append(f"model.extract with and without --ray: VGG19 on {chosen['vgg19']}, "
                         f"VGGish on {chosen['vggish']}")


def test_an_actor_refuses_a_path_its_machine_cannot_run(corpus, tiny, ray_local, tmp_path):
    """... in one line naming the machine (not by running another path); nothing is saved."""
    net = tiny.visual.net
    unknown = Extractors(VisualExtractor(net, "ave", path="fp8-someday"), tiny.audio,
                         replace(tiny.recipe, visual_path="fp8-someday"))
    with pytest.raises(UserError) as e:
        run_ray(*corpus, tmp_path, unknown, opts=RAY_OPTS)
    line = str(e.value)
    assert "\n" not in line and line.startswith(f"machine {socket.gethostname()} (")
    assert "VGG19 on extractor path fp8-someday" in line and "--extractor-path fp32" in line
    assert cached(tmp_path) == set()


def test_actors_that_cannot_be_placed_are_one_line(corpus, tiny, ray_local, tmp_path):
    with pytest.raises(UserError, match="--ray-actors") as e:
        run_ray(*corpus, tmp_path, tiny, opts=RayOptions(actors=4))
    assert "\n" not in str(e.value) and "Ray has 2 CPUs" in str(e.value)


# ---- without Ray -----------------------------------------------------------------------------

def test_assembler_puts_windows_together_in_any_order():
    def row(index, w, last=False, info=""):
        return {"index": index, "window": w, "last": last, "info": info,
                "audio": np.full((10, 128), w, np.float32),
                "visual": np.full((10, 7, 7, 512), 10 * index + w, np.float32)}

    asm = Assembler()
    end = json.dumps({"duration": 23.0, "notes": ["two windows"]})
    assert asm.add(row(7, 1, last=True, info=end)) is None  # the last window came first
    assert asm.add(row(3, 0)) is None
    index, ff = asm.add(row(7, 0))
    assert index == 7 and ff.audio.shape == (2, 10, 128) and ff.visual.shape == (2, 10, 7, 7, 512)
    assert [float(ff.visual[w, 0, 0, 0, 0]) for w in (0, 1)] == [70.0, 71.0]
    assert list(ff.starts) == [0.0, 10.0] and ff.duration == 23.0 and ff.notes == ["two windows"]
    error = {"index": 3, "window": ERROR_WINDOW, "last": True,
             "info": json.dumps({"error": "decode error near 12.0 s"})}
    assert asm.add(error) == (3, "decode error near 12.0 s")  # its window 0 is dropped
    assert asm.add(row(3, 1, last=True, info=end)) is None  # a late window of a failed file
    assert not asm.windows and not asm.ends


def test_options_and_resources_are_checked_in_one_line():
    for bad, flag in ((dict(actors=0), "--ray-actors"), (dict(batch=0), "--ray-batch"),
                      (dict(actor_cpus=0), "--ray-actor-cpus"),
                      (dict(actor_cpus=float("inf")), "--ray-actor-cpus"),
                      (dict(retries=-1), "--ray-retries"),
                      (dict(device="cuda", gpus_per_actor=float("nan")), "--ray-gpus-per-actor"),
                      (dict(device="tpu"), "--device"),
                      (dict(gpus_per_actor=1.0), "--ray-gpus-per-actor")):
        with pytest.raises(UserError, match=flag):
            RayOptions(**bad)
    gpu = RayOptions(device="cuda", actors=3)
    assert gpu.gpus == 0.5 and gpu.needs() == {"CPU": 5.0, "GPU": 2.0, "memory": 8 * 2**30}
    assert gpu.run_options(RunOptions())["device"] == "cuda"
    check_resources(gpu, {"CPU": 8.0, "GPU": 2.0, "memory": 16 * 2**30})
    for short in ({"GPU": 1.0}, {"CPU": 4.0}, {"memory": 7 * 2**30}):
        with pytest.raises(UserError, match="Ray has") as e:
            check_resources(gpu, {"CPU": 8.0, "GPU": 2.0, "memory": 16 * 2**30} | short)
        assert "need 5 CPUs, 2 GPUs and 8.0 GiB of memory" in str(e.value)
    assert rate_line(300, 10.0) == "extracting, 30.0 frames/s"


def test_cli_without_ray_says_what_to_install(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    videos, ann = corpus
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: extract.main(["--videos", str(videos), "--annotations", str(ann),
                                      "--out", str(tmp_path), "--random-weights", "--ray"]))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err and RAY_EXTRA in err
    assert not (tmp_path / "clips").exists()
