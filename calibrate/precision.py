"""Which reduced precisions keep a checkpoint's accuracy on this device; the backend honours it.

    python -m calibrate.precision --data runs/synth --checkpoint runs/synth.pt        # CPU
    python -m calibrate.precision --data DIR --checkpoint CKPT --device cuda --backend tensorrt

Runs the model in fp32 and in each reduced precision on the validation windows (whole clips, or
the live windows of --lookahead K) and reports per precision: label agreement with fp32 (share
of segments with the same argmax), accuracy, and its change in points. A precision is allowed
only if accuracy drops by at most 0.5 points. The result goes into the checkpoint (rewritten
atomically) as meta["precision"][device type]; `check_allowed` (called where the streamer builds
its backend) then refuses a precision measured and not allowed on that device type.

How each precision runs:
  cpu   bf16, fp16: torch.autocast over the fp32 model (what model.backends does for bf16; its
        backends offer fp16 only on a GPU, so a CPU fp16 row is information, not an option);
        int8: torch.ao dynamic quantisation (Linear/LSTM/GRU weights int8, activations
        quantised per call). torch 2.13 still runs it but marks torch.ao.quantization
        deprecated in favour of torchao (not installed here).
  cuda  fp16, bf16: model.backends.build_backend(--backend, ...) (TensorRT engines with
        --backend tensorrt); int8: NVIDIA ModelOpt INT8 quantisation calibrated on train
        batches, then the same backend. Written for the GPU, not run on this CPU-only machine.
A precision that cannot run here is reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from calibrate.logits import Forward, check_writable, checkpoint_and_split, split_logits
from model.calibration import MAX_DROP_POINTS
from model.checkpoint import save_checkpoint
from model.cli_args import add_data_args, require_data
from model.data import PAD_MODES, AVEData
from model.errors import UserError, run_cli
from model.limits import check_lookahead, check_range, resolve_device

PRECISIONS = ("fp16", "bf16", "int8")  # compared against fp32
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
INT8_CALIBRATION_BATCHES = 8


class Unavailable(Exception):
    """This precision cannot run here; the message says why."""


def device_type(device: str) -> str:
    return torch.device(device).type


def eager_forward(model: nn.Module, device: str, autocast: torch.dtype | None = None) -> Forward:
    net = model.to(device).eval()

    @torch.inference_mode()
    def run(audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        amp = (torch.autocast(device_type(device), dtype=autocast) if autocast is not None
               else contextlib.nullcontext())
        with amp:
            return net(audio.to(device), visual.to(device)).float()

    return run


def cpu_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of Linear and RNN weights (torch.ao; deprecated in 2.13)."""
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as e:
        raise Unavailable(f"torch.ao.quantization is not in this torch ({e})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(copy.deepcopy(model).cpu().eval(),
                                {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8)


def modelopt_int8(model: nn.Module, device: str,
                  batches: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> nn.Module:
    """INT8 fake-quantised copy (NVIDIA ModelOpt), calibrated on a few training batches."""
    try:
        import modelopt.torch.quantization as mtq
    except ImportError:
        raise Unavailable("int8 on a GPU needs NVIDIA ModelOpt: pip install nvidia-modelopt"
                          ) from None
    q = copy.deepcopy(model).to(device).eval()

    def loop(m: nn.Module) -> None:
        for i, (a, v, _) in enumerate(batches):
            if i >= INT8_CALIBRATION_BATCHES:
                break
            m(torch.from_numpy(a).to(device), torch.from_numpy(v).to(device))

    with torch.no_grad():
        return mtq.quantize(q, mtq.INT8_DEFAULT_CFG, forward_loop=loop)


def backend_forward(model: nn.Module, backend: str, device: str, precision: str) -> Forward:
    """The window model through model.backends, as the streamer would run it."""
    try:
        from model.backends import build_backend
    except ImportError:
        raise Unavailable("model.backends is not installed; use --backend eager") from None
    try:
        be = build_backend(backend, model, device, precision)
    except UserError as e:
        raise Unavailable(str(e)) from None
    return lambda a, v: be(a, v)


def precision_forward(model: nn.Module, precision: str, device: str, backend: str,
                      data: AVEData) -> tuple[Forward, str]:
    """A callable running `model` in `precision` on `device`, and how it runs."""
    cuda = device_type(device) == "cuda"
    if precision == "int8":
        if not cuda:
            return eager_forward(cpu_int8(model), "cpu"), "torch.ao dynamic int8 (Linear, RNN)"
        q = modelopt_int8(model, device, data.batches("train", 16))
        if backend == "eager":
            return eager_forward(q, device), "ModelOpt INT8 (fake-quantised, eager)"
        return backend_forward(q, backend, device, "fp32"), f"ModelOpt INT8 + {backend}"
    if cuda or backend != "eager":
        return (backend_forward(model, backend, device, precision),
                f"model.backends {backend} {precision}")
    dtype = DTYPES[precision]
    return (eager_forward(copy.deepcopy(model), device, dtype),
            f"torch.autocast(cpu, {str(dtype).removeprefix('torch.')})")


def compare(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Label agreement with the fp32 logits, accuracy, and its change in points."""
    ref = reference.reshape(-1, reference.shape[-1]).argmax(-1)
    pred = logits.reshape(-1, logits.shape[-1]).argmax(-1)
    y = labels.reshape(-1)
    acc, ref_acc = float(np.mean(pred == y)), float(np.mean(ref == y))
    delta = 100 * (acc - ref_acc)
    return {"agreement": float(np.mean(pred == ref)), "accuracy": acc,
            "delta_points": delta, "max_abs_logit_diff": float(np.max(np.abs(logits - reference))),
            "allowed": bool(delta >= -MAX_DROP_POINTS - 1e-9)}


def measure(model: nn.Module, data: AVEData, split: str, device: str, backend: str,
            precisions: tuple[str, ...], lookahead: int | None, pad: str, batch_size: int
            ) -> dict[str, Any]:
    """The meta["precision"][device type] entry: every precision against fp32."""
    ref_logits, labels = split_logits(eager_forward(copy.deepcopy(model), device), data, split,
                                      lookahead, pad, batch_size)
    ref_acc = float(np.mean(ref_logits.argmax(-1) == labels))
    results: dict[str, Any] = {}
    for p in precisions:
        try:
            fwd, method = precision_forward(model, p, device, backend, data)
            logits, _ = split_logits(fwd, data, split, lookahead, pad, batch_size)
        except Unavailable as e:
            results[p] = {"skipped": str(e)}
            continue
        results[p] = {"method": method, **compare(ref_logits, logits, labels)}
    return {
        "allowed": ["fp32", *[p for p in precisions if results[p].get("allowed")]],
        "max_drop_points": MAX_DROP_POINTS,
        "reference_accuracy": ref_acc,
        "results": results,
        "fitted_on": {"data": str(data.paths.labels.parent), "split": split,
                      "clips": len(labels), "segments": int(labels.size),
                      "windows": "whole clips" if lookahead is None else f"lookahead {lookahead}",
                      "device": device, "backend": backend, "torch": torch.__version__,
                      "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
    }


def render(entry: dict[str, Any], kind: str) -> str:
    lines = [f"{'precision':<10}{'agreement':>10}{'accuracy':>10}{'change':>9}  allowed  "
             "method",
             f"{'fp32':<10}{1:>10.2%}{entry['reference_accuracy']:>10.2%}{0:>+9.2f}  "
             f"{'yes':<7}  reference"]
    for p, r in entry["results"].items():
        if "skipped" in r:
            lines.append(f"{p:<10}{'-':>10}{'-':>10}{'-':>9}  {'-':<7}  skipped: {r['skipped']}")
        else:
            lines.append(f"{p:<10}{r['agreement']:>10.2%}{r['accuracy']:>10.2%}"
                         f"{r['delta_points']:>+9.2f}  {'yes' if r['allowed'] else 'NO':<7}  "
                         f"{r['method']}")
    lines.append(f"allowed on {kind}: {', '.join(entry['allowed'])} (accuracy drop <= "
                 f"{MAX_DROP_POINTS} points)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calibrate.precision",
                                 description=__doc__.split("\n\n")[0])
    add_data_args(ap)
    ap.add_argument("--checkpoint", required=True, help="checkpoint to check (rewritten)")
    ap.add_argument("--out", metavar="CKPT", help="write the checked checkpoint here instead")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    ap.add_argument("--backend", default="eager",
                    help="model.backends backend to run reduced precisions with (default eager)")
    ap.add_argument("--precisions", default=",".join(PRECISIONS),
                    help=f"comma-separated subset of {','.join(PRECISIONS)}")
    ap.add_argument("--split", default="val", choices=("train", "val", "test"))
    ap.add_argument("--lookahead", type=int, metavar="K",
                    help="compare on live windows with lookahead K (default: whole clips)")
    ap.add_argument("--pad", choices=PAD_MODES, default="repeat-first")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    require_data(args)
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise UserError(f"unknown precision {', '.join(bad) or '(none)'}: choose from "
                        f"{', '.join(PRECISIONS)}")
    if args.lookahead is not None:
        check_lookahead(args.lookahead)
    check_range("--batch-size", args.batch_size, 1)
    device = resolve_device(args.device)
    kind = device_type(device)
    out = Path(args.out or args.checkpoint)
    check_writable(out)
    with checkpoint_and_split(args, "check") as (model, ckpt, data):
        entry = measure(model, data, args.split, device, args.backend, precisions,
                        args.lookahead, args.pad, args.batch_size)
    meta = {**ckpt.meta, "precision": {**(ckpt.meta.get("precision") or {}), kind: entry}}
    try:
        save_checkpoint(out, model.cpu(), ckpt.class_names, ckpt.recipe, meta)
    except OSError as e:
        raise UserError(f"cannot write the checkpoint {out} ({e.strerror}); pass a writable "
                        "--out path") from None
    f = entry["fitted_on"]
    print(f"{f['split']} split on {device}: {f['clips']} clips, {f['segments']} segments "
          f"({f['windows']})")
    print(render(entry, kind))
    print(f"stored in {out} (meta.precision.{kind}); the streamer refuses a precision marked "
          "not allowed")
    return 0


if __name__ == "__main__":
    run_cli(main)

