"""Extractor paths side by side on this machine: VGG19 (pool5) and VGGish, every way to run them,
at one and two threads, batch 1 (live: one frame as it arrives, one example per segment) and a
small batch (the frames that are waiting). Prints a markdown table for benchmarks/RESULTS.md.

    .venv/bin/python -m benchmarks.extractors                          # everything, 3 repeats
    .venv/bin/python -m benchmarks.extractors --threads 1 --batches 1 --paths fp32,openvino

Cases: every path of `model.extractors.paths.PATHS` (fp32 = today's live path: eager fp32
channels_last), whether or not `choose` would try it on this CPU, plus three it never tries:
`autocast-bf16` (the extractors' `--precision bf16`), `onnxruntime` (ONNX Runtime fp32: slower
than OpenVINO or within noise of it) and `int8-onnxruntime` (ONNX Runtime static int8,
per-channel weights, calibrated on generated inputs other than the probe set). Random weights
(seeded): speed does not depend on the values, and the fidelity gate compares a path with fp32
on the same weights. Within each thread count all cases are built first and then timed in
interleaved rounds (A B C A B C), so a burst of load from other processes hits them alike;
medians of wall and process CPU time per item. `cosine` is the gate's figure: min over the probe
set of cos(path, fp32); `gate` says whether `model.extractors.paths` would accept it, `tried`
whether `choose` tries the path on this CPU at all (else why not). The last lines: what `choose`
would pick here from these batch-1 figures, and what it would pick with nothing skipped.

How close to the machine's limit: every case also runs, built the same way and timed in the same
rounds, large GEMMs (8 1x1 convolutions of 1024 to 1024 channels over 32x32 positions: M = 1024,
K = N = 1024 each); `GMAC/s` is the network's multiply-accumulates per second (its convolutions and
matmuls, counted from the layers) and `of peak` that figure over the GEMM's on the same case:
the same library, dtype and thread count.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from model.extractors import vgg19, vggish
from model.extractors.cpu import cpu_info, library_versions
from model.extractors.paths import (
    PATHS,
    BuildEnv,
    Verdict,
    cosine_floor,
    min_cosine,
    pick,
    probe_rgb,
    probe_segments,
    skip_reason,
)
from model.extractors.runtime import Runner, RunOptions, eager_runner, prepare
from model.extractors.vggish_frontend import segment_example

NETWORKS = ("vgg19", "vggish")
EXTRA_CASES = ("autocast-bf16", "onnxruntime", "int8-onnxruntime")
CALIBRATION_ITEMS = 8
# the GEMMs: M = 32 * 32 positions, K = N = 1024 channels, 8 in a row
PEAK_CHANNELS, PEAK_SIZE, PEAK_LAYERS = 1024, 32, 8
PEAK_SHAPE = (PEAK_CHANNELS, PEAK_SIZE, PEAK_SIZE)


class Gemm(nn.Module):
    """The peak figure's GEMMs as 1x1 convolutions, so that every path builds and runs them as it
    does the networks (4-D input, NHWC, the same converters); PEAK_LAYERS of them in a row, so
    the copies in and out of a runner weigh as little against the arithmetic as VGG19's do."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[nn.Conv2d(PEAK_CHANNELS, PEAK_CHANNELS, 1, bias=False)
                                     for _ in range(PEAK_LAYERS)])
        for conv in self.convs:
            nn.init.normal_(conv.weight, std=PEAK_CHANNELS ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


def macs(net: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one item through `net`'s convolutions and linear layers."""
    total = 0

    def count(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * \
                module.kernel_size[1]
            total += out[0].numel() * k
        elif isinstance(module, nn.Linear):
            total += out[0].numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules()
             if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.inference_mode():
        net(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return total


def network(name: str) -> nn.Module:
    net = vgg19.VGG19() if name == "vgg19" else vggish.VGGish()
    net.init_random(0)
    return net.eval()


def inputs(name: str, n: int, seed: int) -> np.ndarray:
    """n float32 network inputs: generated frames (VGG19) or generated segments (VGGish)."""
    if name == "vgg19":
        return vgg19.preprocess(probe_rgb(n, seed=seed), "ave")  # (n, 3, 224, 224)
    segs = probe_segments(n, seed=seed)
    return np.stack([segment_example(s) for s in segs])[:, None]  # (n, 1, 96, 64)


def autocast_bf16(net: nn.Module, shape: tuple[int, ...], env: BuildEnv) -> Runner:
    opts = RunOptions(precision="bf16")
    return eager_runner(prepare(net, opts), opts)


def onnx_file(net: nn.Module, shape: tuple[int, ...], env: BuildEnv) -> str:
    """The network exported to ONNX (free batch axis) in `env.engines`; needs the onnx package."""
    assert env.engines is not None
    path = env.engines / f"{type(net).__name__.lower()}-{env.threads}.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, *shape),), str(path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                          dynamo=False)
    return str(path)


def ort_session(program: str, threads: int) -> Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(program, so, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": np.ascontiguousarray(x, np.float32)})[0]


def onnxruntime(net: nn.Module, shape: tuple[int, ...], env: BuildEnv) -> Runner:
    return ort_session(onnx_file(net, shape, env), env.threads)


def int8_onnxruntime(calibration: np.ndarray) -> Callable[..., Runner]:
    def build(net: nn.Module, shape: tuple[int, ...], env: BuildEnv) -> Runner:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter([{"x": calibration[i:i + 1]} for i in range(len(calibration))])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.items, None)

        assert env.engines is not None
        int8 = env.engines / f"{type(net).__name__.lower()}-int8.onnx"
        quantize_static(onnx_file(net, shape, env), str(int8), Reader(),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        return ort_session(str(int8), env.threads)

    return build


def timed(run: Runner, x: np.ndarray) -> tuple[float, float]:
    """(wall, process CPU) milliseconds per item of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    run(x)
    return 1e3 * (time.perf_counter() - t0) / len(x), 1e3 * (time.process_time() - c0) / len(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3, help="timed rounds after one warm-up round")
    p.add_argument("--threads", default="2,1", help="thread counts, comma-separated")
    p.add_argument("--batches", default="1,4", help="batch sizes, comma-separated")
    p.add_argument("--networks", default=",".join(NETWORKS))
    p.add_argument("--paths", default=",".join([*PATHS, *EXTRA_CASES]),
                   help="cases to run, comma-separated")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    names = args.paths.split(",")

    info = cpu_info()
    print(f"CPU: {info.describe()}; {os.cpu_count()} logical CPUs")
    print(f"libraries: {', '.join(f'{k} {v}' for k, v in library_versions().items())}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows, verdicts = [], {}
    gemm = Gemm().eval()
    gemm_x = np.random.default_rng(3).standard_normal((1, *PEAK_SHAPE)).astype(np.float32)
    gemm_macs = macs(gemm, PEAK_SHAPE)
    with tempfile.TemporaryDirectory() as tmp:
        for net_name in args.networks.split(","):
            net = network(net_name)
            probe = inputs(net_name, 3, seed=0)  # the gate's probe set
            x = inputs(net_name, max(batches), seed=1)
            net_macs = macs(net, x.shape[1:])
            calibration = inputs(net_name, CALIBRATION_ITEMS, seed=2)
            builds = {**{n: PATHS[n].build for n in PATHS}, "autocast-bf16": autocast_bf16,
                      "onnxruntime": onnxruntime, "int8-onnxruntime": int8_onnxruntime(calibration)}
            for n_threads in threads:
                torch.set_num_threads(n_threads)
                env = BuildEnv(n_threads, Path(tmp), {
                    net_name: calibration, "gemm": np.concatenate([-gemm_x, gemm_x])})
                runners, peaks, cosines, build_s, failed = {}, {}, {}, {}, {}
                expected = builds["fp32"](net, x.shape[1:], env)(probe)
                for name in names:
                    t0 = time.perf_counter()
                    try:
                        run = builds[name](net, x.shape[1:], env)
                        cosines[name] = min_cosine(expected, run(probe))
                    except Exception as e:  # report, keep measuring the others
                        failed[name] = str(e).splitlines()[0][:100]
                        continue
                    build_s[name] = time.perf_counter() - t0
                    runners[name] = run
                    with contextlib.suppress(Exception):  # a case without a peak: "-"
                        peaks[name] = builds[name](gemm, PEAK_SHAPE, env)
                times: dict[tuple[str, int], list[tuple[float, float]]] = {}
                for rep in range(args.reps + 1):  # round 0 warms up
                    for b in batches:
                        for name, run in runners.items():
                            t = timed(run, x[:b])
                            if rep:
                                times.setdefault((name, b), []).append(t)
                    for name, run in peaks.items():
                        t = timed(run, gemm_x)
                        if rep:
                            times.setdefault((name, 0), []).append(t)
                for name, why in failed.items():
                    rows.append((net_name, name, n_threads, "-", "-", "-", "-", "-", "-", "-",
                                 "-", f"failed: {why}", "-", "-"))
                for (name, b), ts in times.items():
                    if b == 0:  # the peak GEMM
                        continue
                    wall = statistics.median(t for t, _ in ts)
                    rate = net_macs / wall / 1e6  # GMAC/s
                    peak = gemm_macs / statistics.median(t for t, _ in times[(name, 0)]) / 1e6 \
                        if (name, 0) in times else None
                    cpu = statistics.median(c for _, c in ts)
                    base = statistics.median(t for t, _ in times[("fp32", b)]) \
                        if ("fp32", b) in times else float("nan")
                    cos = cosines[name]
                    gate = "pass" if cos >= cosine_floor(name) else "refused"
                    spec = PATHS.get(name)
                    tried = (skip_reason(spec, info) or "tried") if spec else "benchmark only"
                    rows.append((net_name, name, n_threads, b, f"{wall:.1f}", f"{1e3 / wall:.2f}",
                                 f"{cpu:.1f}", f"{base / wall:.2f}x", f"{rate:.0f}",
                                 "-" if peak is None else f"{100 * rate / peak:.0f}% of "
                                 f"{peak:.0f}", f"{cos:.7f}", gate, tried,
                                 f"{build_s[name]:.1f}"))
                    if b == 1 and spec is not None:
                        verdicts.setdefault((net_name, n_threads), []).append(
                            Verdict(name, cos, wall, None if gate == "pass" else "cosine"))
    print(f"load average after: {os.getloadavg()[0]:.2f}; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB")
    print()
    print("| network | path | threads | batch | wall ms/item | items/s | CPU ms/item | "
          "vs fp32 | GMAC/s | of peak (GEMM GMAC/s) | min cosine | gate | "
          "tried by `choose` here | build s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()
    for (net_name, n_threads), vs in verdicts.items():
        tried = [v for v in vs if skip_reason(PATHS[v.path], info) is None]
        if any(v.path == "fp32" for v in tried):
            print(f"{net_name}, {n_threads} threads: `choose` picks {pick(tried)}; "
                  f"with nothing skipped {pick(vs)}")


if __name__ == "__main__":
    main()
