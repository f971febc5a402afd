"""`--frames-per-segment auto`, the CPU default: measure this machine once, pick K, remember.

    costs = measure_costs(frame_features, audio_features, window)   # a short probe, ms each
    choice = auto_frames(lambda: measure_costs(...), cache, slot)    # FramesChoice, cached
    choice.frames, choice.reason      # 3, "auto (probe): 3 frames per segment: 3 x 210 ms ..."

The probe times, on this machine and its chosen extractor paths, one VGG19 frame at batch 1 (a
640x480 picture, resize and preprocessing included, as live), the audio feature of one 1-s
segment (log-mel front end + VGGish) and one JCA window call; model.extractors.realtime turns
the three costs into the largest K <= 16 at real-time factor <= 0.7. The costs are cached under
the machine key (CPU model, flags, library versions: model.extractors.cpu) in the extractor-path
cache, so the second start is instant and a changed machine re-probes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import numpy as np

from model.extractors.realtime import FramesChoice, frames_for_realtime

PROBE_ROUNDS = 3  # timed calls of each stage after one warm-up call (median kept)
PROBE_PICTURE = (480, 640, 3)  # a typical capture; the resize to 224 is part of the cost
PROBE_SAMPLES = 16000  # one segment at 16 kHz
WINDOW = (10, 128), (10, 7, 7, 512)  # audio, visual of one JCA window
SLOT_PREFIX = "frames-per-segment"


@dataclass(frozen=True)
class Costs:
    frame_ms: float  # VGG19, one frame at batch 1
    segment_ms: float  # audio feature of one 1-s segment
    window_ms: float  # one JCA window call

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def median_ms(call: Callable[[], object], rounds: int = PROBE_ROUNDS) -> float:
    """Median wall milliseconds of `call` over `rounds` calls, after one warm-up call."""
    call()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def probe_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generated inputs of the live shapes (what they hold does not change the cost): a
    picture (1, 480, 640, 3) uint8, one segment's samples (16000,), a window's audio
    (1, 10, 128) and visual (1, 10, 7, 7, 512) features."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (1, *PROBE_PICTURE), dtype=np.uint8),
            (0.1 * rng.standard_normal(PROBE_SAMPLES)).astype(np.float32),
            rng.random((1, *WINDOW[0]), dtype=np.float32),
            rng.random((1, *WINDOW[1]), dtype=np.float32))


def measure_costs(frame_features: Callable[[np.ndarray], object],
                  audio_features: Callable[[np.ndarray], object],
                  window: Callable[[np.ndarray, np.ndarray], object],
                  rounds: int = PROBE_ROUNDS, seed: int = 0) -> Costs:
    """Time the three stages of a segment on generated inputs."""
    picture, samples, audio, visual = probe_inputs(seed)
    return Costs(frame_ms=median_ms(lambda: frame_features(picture), rounds),
                 segment_ms=median_ms(lambda: audio_features(samples), rounds),
                 window_ms=median_ms(lambda: window(audio, visual), rounds))


def warm_up(frame_features: Callable[[np.ndarray], object],
            audio_features: Callable[[np.ndarray], object],
            window: Callable[[np.ndarray, np.ndarray], object]) -> None:
    """One call of each stage before a real-time stream starts, so its first segment does not
    pay for their first-call set-up (the probe does this when it runs)."""
    picture, samples, audio, visual = probe_inputs()
    frame_features(picture)
    audio_features(samples)
    window(audio, visual)


def probe_slot(visual_path: str, audio_path: str, window: str, threads: int) -> str:
    """The cache slot of a probe: what changes the costs besides the machine."""
    return f"{SLOT_PREFIX}|vgg19={visual_path}|vggish={audio_path}|window={window}|" \
           f"threads={threads}"


class CostCache(Protocol):
    """What auto_frames needs of model.extractors.paths.ChoiceCache (load / store by slot)."""

    def load(self, slot: str) -> dict | None: ...

    def store(self, slot: str, entry: dict) -> None: ...


def cached_costs(measure: Callable[[], Costs], cache: CostCache | None,
                 slot: str) -> tuple[Costs, bool]:
    """(costs, True) from the cache for this machine and slot, else (measure(), False), stored."""
    entry = cache.load(slot) if cache is not None else None
    if entry is not None:
        try:
            return Costs(**entry), True
        except TypeError:  # an entry of another shape: measure again
            pass
    costs = measure()
    if cache is not None:
        cache.store(slot, costs.to_dict())
    return costs, False


def auto_frames(measure: Callable[[], Costs], cache: CostCache | None,
                slot: str) -> FramesChoice:
    """K for this machine: the largest K <= 16 at RTF <= 0.7 from the (cached) costs; the reason
    says it was picked automatically and whether the probe ran now."""
    costs, hit = cached_costs(measure, cache, slot)
    choice = frames_for_realtime(costs.frame_ms, costs.segment_ms, costs.window_ms)
    how = "cached probe" if hit else "probe"
    return replace(choice, reason=f"auto ({how}): {choice.reason}")


def header_note(choice: FramesChoice) -> str:
    """The dashboard header's word on a K: "auto, RTF 0.62" when measured, else empty."""
    return "" if math.isnan(choice.rtf) else f"auto, RTF {choice.rtf:.2f}"


def explicit_frames(k: int, why: str) -> FramesChoice:
    """A K that was not measured: --frames-per-segment N, or the checkpoint's recipe on a GPU."""
    return FramesChoice(k, float("nan"), f"{k} frames per segment ({why})")


def main(argv: list[str] | None = None) -> int:
    """`python -m streamer.autok`: the K main.py picks on this machine with its defaults (eager
    window), on stdout; how, on stderr. streamer.demo extracts its training features at it.
    `--probe` measures again (the costs of a probe made while the machine was busy, or quiet,
    are kept until then)."""
    import argparse
    import sys

    from model.extractors.cpu import cpu_info, machine_key
    from model.extractors.paths import ChoiceCache, cache_dir
    from streamer.options import AppOptions
    from streamer.runtime import load_runtime

    ap = argparse.ArgumentParser(prog="python -m streamer.autok", description=main.__doc__)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random extractor weights")
    ap.add_argument("--probe", action="store_true",
                    help="forget this machine's cached probe costs and measure now")
    a = ap.parse_args(argv)
    if a.probe:
        n = ChoiceCache(cache_dir(), machine_key(cpu_info())).forget(SLOT_PREFIX)
        print(f"forgot {n} cached probe(s) of this machine; measuring now", file=sys.stderr)
    rt = load_runtime(AppOptions(source="synthetic", random_weights=True, device="cpu",
                                 extractor_path="auto", backend="eager", seed=a.seed,
                                 log=None, events=None))
    print(rt.frames_per_segment, flush=True)
    return 0


if __name__ == "__main__":
    from model.errors import run_cli

    run_cli(main)
