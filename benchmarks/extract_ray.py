"""Feature extraction over a corpus: the local path against Ray Data, side by side in one run.

    python -m benchmarks.extract_ray                             # 6 clips, k = 1, 1 and 2 actors
    python -m benchmarks.extract_ray --clips 8 --frames-per-segment 2 --actors 1 2 --repeat 2
    python -m benchmarks.extract_ray --device cuda --actors 1    # on a GPU node: its frames/s

Writes --clips generated ten-second demo clips (`streamer.demo_clips`, with sound), builds the
real VGG19 and VGGish once with seeded random weights (the same cost as real ones), starts one
local Ray (its start-up is not timed), then runs the cases interleaved, each into a fresh
output folder: decoding and cutting alone (what a decode task does), the local path
(`model.extract.run`, torch's default threads) and Ray with each --actors count of VGG19 actors
(`model.extract_ray.run_ray`: one VGGish actor, 1 CPU and 1 torch thread per actor; the actors'
start-up and the weights' trip through the object store are timed). Prints wall seconds,
clips/s, VGG19 frames/s and seconds per frame for each case, and the extrapolation to AVE and
to a 200k-clip corpus from the best measured seconds per frame.
Figures on a shared machine are upper bounds: the load average is printed.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from model import extract
from model.extract_ray import RayOptions, run_ray
from model.extractors import build_extractors
from model.file_features import ClipPolicy, cut_windows
from streamer.demo_clips import training_clips, write_annotations, write_clip

AVE_CLIPS = 4143
BIG_CORPUS = 200_000
AVE_K = 16  # frames per segment of the AVE recipe
CLIP_SEGMENTS = 10


@dataclass
class Case:
    name: str
    seconds: float
    clips: int
    frames: int

    def line(self) -> str:
        return (f"| {self.name} | {self.seconds:.1f} | {self.clips / self.seconds:.3f} | "
                f"{self.frames / self.seconds:.3g} | {self.seconds / self.frames:.3g} |")


def count_frames(ex) -> list[int]:
    """Make the local path's VGG19 count the frames it is given, in the returned counter."""
    counter = [0]
    frame_features = ex.visual.frame_features

    def counted(rgb):
        counter[0] += len(rgb)
        return frame_features(rgb)

    ex.visual.frame_features = counted
    return counter


def run_local(videos: Path, ann: Path, out: Path, ex, counter: list[int]) -> Case:
    before = counter[0]
    t0 = time.perf_counter()
    s = extract.run(videos, ann, out, ex)
    seconds = time.perf_counter() - t0
    return Case("local path", seconds, s.clips, counter[0] - before)


def run_decode(videos: Path, k: int) -> Case:
    """Decode and cut only (a Ray decode task's work, here in this process): how fast one CPU
    feeds the networks."""
    t0 = time.perf_counter()
    files = sorted(videos.iterdir())
    frames = sum(len({id(s) for seg in w for s, _ in seg.picks})
                 for f in files for w in cut_windows(f, k, ClipPolicy()))
    return Case("decode + cut only (one process)", time.perf_counter() - t0, len(files), frames)


def run_on_ray(videos: Path, ann: Path, out: Path, ex, opts: RayOptions) -> Case:
    frames = [0]

    def on_file(_file: str, n: int) -> None:
        frames[0] += n

    t0 = time.perf_counter()
    s = run_ray(videos, ann, out, ex, opts=opts, on_file=on_file)
    seconds = time.perf_counter() - t0
    name = f"Ray, {opts.actors} VGG19 actor{'s' * (opts.actors > 1)}"
    return Case(name, seconds, s.clips, frames[0])


def extrapolate(seconds_per_frame: float, k: int, cluster_cores: int) -> list[str]:
    """Time of AVE and of a 200k-clip corpus at the AVE recipe's 16 frames per segment, from
    the cost per VGG19 frame on this machine's cores, on this machine and on a CPU cluster
    (the work splits by file, so it scales with the cores while decoding keeps up)."""
    cores = os.cpu_count() or 1
    core_seconds = seconds_per_frame * cores  # per frame; an upper bound on a shared machine
    lines = []
    for name, clips in (("AVE", AVE_CLIPS), ("200k clips", BIG_CORPUS)):
        frames = clips * CLIP_SEGMENTS * AVE_K
        core_hours = frames * core_seconds / 3600
        lines.append(f"{name}: {frames:,} VGG19 frames at k = {AVE_K}, {core_hours:,.0f} "
                     f"core-hours: {core_hours / cores:,.0f} h on this machine, "
                     f"{core_hours / cluster_cores:,.1f} h on {cluster_cores} such cores")
    lines.append(f"(from {seconds_per_frame:.2f} s per frame on {cores} cores = "
                 f"{core_seconds:.2f} core-seconds, measured at k = {k} with decoding and VGGish "
                 "included: an upper bound at k = 16)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames-per-segment", type=int, default=1)
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2],
                    help="VGG19 actor counts of the Ray cases")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="where the networks run: cpu or cuda")
    ap.add_argument("--cluster-cores", type=int, default=512,
                    help="CPU cores of the cluster in the extrapolation")
    args = ap.parse_args()
    import ray
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    print(f"CPU {cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), ray {ray.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        videos, ann = root / "videos", root / "events.csv"
        videos.mkdir()
        clips = training_clips(args.clips, seed=0)
        for clip in clips:
            write_clip(videos / f"{clip.name}.mp4", clip)
        write_annotations(ann, clips)
        ex = build_extractors(random_weights=True, frames_per_segment=args.frames_per_segment,
                              device=args.device)
        counter = count_frames(ex)  # the Ray cases ship the networks, not this method
        need = max(RayOptions(actors=a, device=args.device).needs()["CPU"]
                   for a in args.actors)
        t0 = time.perf_counter()
        ray.init(num_cpus=max(os.cpu_count() or 1, math.ceil(need)), include_dashboard=False,
                 log_to_driver=False)
        print(f"local Ray started in {time.perf_counter() - t0:.1f} s (not timed below)")
        cases: list[Case] = []
        try:
            for r in range(args.repeat):
                cases.append(run_decode(videos, args.frames_per_segment))
                cases.append(run_local(videos, ann, root / f"local{r}", ex, counter))
                for a in args.actors:
                    opts = RayOptions(actors=a, device=args.device)
                    cases.append(run_on_ray(videos, ann, root / f"ray{a}-{r}", ex, opts))
        finally:
            ray.shutdown()
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"\n{args.clips} clips, k = {args.frames_per_segment}\n")
    print("| case | wall s | clips/s | VGG19 frames/s | s per frame |")
    print("|---|---|---|---|---|")
    for c in cases:
        print(c.line())
    best = min(c.seconds / c.frames for c in cases if c.name.startswith(("local", "Ray")))
    print()
    for line in extrapolate(best, args.frames_per_segment, args.cluster_cores):
        print(line)


if __name__ == "__main__":
    main()
