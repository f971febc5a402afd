"""`python -m model.extract ... --ray [ADDRESS]`: the same extraction over a corpus, on Ray Data.

    python -m model.extract --videos clips/ --annotations Annotations.txt --out runs/ave --ray
    python -m model.extract ... --ray auto --device cuda --ray-actors 8     # join a cluster

One Ray Data dataset, executed streaming, so decoding, both networks and writing overlap and
memory stays bounded whatever the size of the corpus (the stages and their rows:
`model.extract_stages`; this module is the driver):

    file indices -> decode + cut: a CPU task per file (`model.file_features.cut_windows`), one
        row per 10-s window: its distinct selected frames at 224 x 224, how many of each
        segment's k selections each frame takes, its 16 kHz audio
    -> VGG19 (`VisualActor`s: pool5 of the frames, then each segment's count-weighted mean)
    -> VGGish (`AudioActor`s: one embedding per segment)
    -> the driver: a file's windows put together (`Assembler`), whatever order they finish in,
       and saved to the per-file cache as soon as its last window is in

then `model.extract.finish` writes the AVE-format files from the cache in the annotations'
order, as the local path does: the same inputs and outputs, and either resumes the other's
cache. The networks travel once from the driver, through Ray's object store, into each actor
(`--device` and `--ray-gpus-per-actor` say where they run), so the weights need to be on the
driver's machine only. The driver also decides how they run (--extractor-path; auto: its own
machine's choice, as without --ray) and every actor runs that path; an actor whose machine
cannot run it refuses, and the run stops with one line naming that machine.

Failures: a file that cannot give a clip (`ClipError`: broken, no video, ...) is reported as
the local path reports it, without a retry. Any other error of a task or an actor call is
retried by Ray Data (`--ray-retries` times), a crashed worker or actor by Ray; a file still
lost after that is reported in the summary, and the run goes on.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from model.errors import UserError
from model.extract import ExtractSummary, Job, finish, plan
from model.extract_stages import REFUSED_WINDOW, Assembler, AudioActor, VisualActor, decode_files
from model.extractors import Extractors
from model.extractors.factory import PathUnavailable
from model.extractors.runtime import RunOptions
from model.file_features import ClipPolicy
from model.limits import check_device_name
from model.media import short_error

RAY_EXTRA = "pip install -e '.[ray]'"
LOCAL = "local"  # `--ray` without an address: a Ray started on this machine
DECODE_CPUS = 1.0  # a decode task: PyAV decoding and the 224 x 224 resize
# Memory an actor reserves: one process peaks at 0.76 GB running VGG19 (batch 16) and 0.88 GB
# running VGGish (40 segments), plus the copy Ray deserializes the weights from. Reserving it
# also keeps Ray Data from fusing the decode tasks into the VGG19 actors (it fuses a task into
# the next actor when their resources are equal), which would decode one file after another.
ACTOR_MEMORY = 2 * 2**30
CUDA_GPUS_PER_ACTOR = 0.5  # default on a GPU: a VGG19 and a VGGish actor share one
# Ray Data's own bars take lines 0 (the dataset) to 3 (read + decode, VGG19, VGGish); ours is next
BAR_LINE = 4


@dataclass(frozen=True)
class RayOptions:
    """How the pipeline runs on Ray (the --ray flags), checked when made."""

    address: str | None = None  # None: start a local Ray; "auto" or "ray://host:port": join one
    actors: int = 1  # VGG19 actors
    audio_actors: int = 1  # VGGish actors
    batch: int = 4  # windows per actor call
    actor_cpus: float = 1.0  # CPUs each actor reserves (and its torch threads)
    gpus_per_actor: float | None = None  # None: CUDA_GPUS_PER_ACTOR on a CUDA device, else 0
    retries: int = 2  # Ray Data's retries of an error in a task or an actor call
    device: str = "cpu"  # where the actors run the networks
    threads: int | None = None  # torch threads per actor (None: its reserved CPUs)

    def __post_init__(self) -> None:
        for flag, n in (("--ray-actors", self.actors), ("--ray-audio-actors", self.audio_actors),
                        ("--ray-batch", self.batch)):
            if n < 1:
                raise UserError(f"{flag} must be >= 1, got {n}")
        if not (math.isfinite(self.actor_cpus) and self.actor_cpus > 0):
            raise UserError(f"--ray-actor-cpus must be a finite number > 0, got {self.actor_cpus}")
        if self.retries < 0:
            raise UserError(f"--ray-retries must be >= 0, got {self.retries}")
        check_device_name(self.device)
        if self.gpus_per_actor is not None and not (math.isfinite(self.gpus_per_actor)
                                                    and self.gpus_per_actor >= 0):
            raise UserError(f"--ray-gpus-per-actor must be a finite number >= 0, got "
                            f"{self.gpus_per_actor}")
        if self.gpus > 0 and self.device == "cpu":
            raise UserError("--ray-gpus-per-actor needs --device cuda (the actors would hold a "
                            "GPU and run on the CPU)")

    @property
    def gpus(self) -> float:
        """GPUs each actor reserves."""
        if self.gpus_per_actor is not None:
            return self.gpus_per_actor
        return CUDA_GPUS_PER_ACTOR if self.device.startswith("cuda") else 0.0

    def needs(self) -> dict[str, float]:
        """The Ray resources the actors and one decode task reserve together."""
        n = self.actors + self.audio_actors
        return {"CPU": n * self.actor_cpus + DECODE_CPUS, "GPU": n * self.gpus,
                "memory": n * ACTOR_MEMORY}

    def run_options(self, base: RunOptions) -> dict[str, object]:
        """An actor's RunOptions (as a dict: the driver may have no GPU to check "cuda"
        against): the driver's precision and batch size on the actors' device. Ray shows an
        actor only the GPUs it reserved, so any cuda device is "cuda" there."""
        device = "cuda" if self.device.startswith("cuda") else "cpu"
        threads = self.threads or max(1, math.floor(self.actor_cpus))
        return asdict(base) | {"device": device, "threads": threads}


def add_ray_args(parser: argparse.ArgumentParser) -> None:
    """The --ray flags of `python -m model.extract`."""
    d = RayOptions()
    g = parser.add_argument_group("Ray", "the same extraction on Ray Data, on this machine or a "
                                  "cluster (docs/SCALE.md)")
    g.add_argument("--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS",
                   help="run on Ray: no ADDRESS starts a local Ray, auto or ray://HOST:PORT "
                   "joins a cluster")
    g.add_argument("--ray-actors", type=int, default=d.actors, help="VGG19 actors")
    g.add_argument("--ray-audio-actors", type=int, default=d.audio_actors, help="VGGish actors")
    g.add_argument("--ray-batch", type=int, default=d.batch, help="windows per actor call")
    g.add_argument("--ray-actor-cpus", type=float, default=d.actor_cpus,
                   help="CPUs each actor reserves (its torch threads unless --threads)")
    g.add_argument("--ray-gpus-per-actor", type=float, default=None,
                   help=f"GPUs each actor reserves (default {CUDA_GPUS_PER_ACTOR:g} with "
                   "--device cuda, else 0)")
    g.add_argument("--ray-retries", type=int, default=d.retries,
                   help="Ray Data's retries of a failed task or actor call")


def ray_options(args: argparse.Namespace) -> RayOptions:
    """The RayOptions of parsed flags; says what to install when Ray is missing."""
    require_ray()
    return RayOptions(address=None if args.ray == LOCAL else args.ray, actors=args.ray_actors,
                      audio_actors=args.ray_audio_actors, batch=args.ray_batch,
                      actor_cpus=args.ray_actor_cpus, gpus_per_actor=args.ray_gpus_per_actor,
                      retries=args.ray_retries, device=args.device, threads=args.threads)


def require_ray():
    """The ray module, or a one-line UserError saying what to install."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise UserError(f"--ray needs Ray Data, which is not installed here: {RAY_EXTRA}") from None
    return ray


# ---- the driver ------------------------------------------------------------------------------

def rate_line(frames: int, seconds: float) -> str:
    """The progress bar's description: VGG19 frames a second so far."""
    return f"extracting, {frames / seconds if seconds > 0 else 0.0:.1f} frames/s"


class FilesBar:
    """Files done / total, frames/s and the ETA, drawn by Ray's own progress bar manager below
    Ray Data's bars, so the two never fight over the terminal."""

    def __init__(self, total: int) -> None:
        from ray.experimental import tqdm_ray

        self.bar = tqdm_ray.tqdm(total=total, desc=rate_line(0, 0.0), unit=" files",
                                 position=BAR_LINE)
        self.bar.refresh()  # drawn from the start, not at the first file
        self.frames = 0
        self.t0 = time.monotonic()

    def add(self, files: int, frames: int) -> None:
        self.frames += frames
        self.bar.set_description(rate_line(self.frames, time.monotonic() - self.t0))
        if files:
            self.bar.update(files)

    def close(self) -> None:
        self.bar.close()


def connect(opts: RayOptions) -> tuple[bool, str | None]:
    """Start or join Ray -> (whether this call started it, the dashboard URL if any). A Ray
    this process already runs (a notebook, the tests) is used as it is."""
    ray = require_ray()
    if ray.is_initialized():
        return False, None
    try:
        if opts.address is None:  # enough CPUs for the actors plus one decode task at a time
            ctx = ray.init(num_cpus=max(os.cpu_count() or 1, math.ceil(opts.needs()["CPU"])))
        else:
            ctx = ray.init(address=opts.address)
    except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError ...
        where = opts.address or "this machine"
        raise UserError(f"cannot start or join Ray at {where} ({short_error(e)}): start a "
                        "cluster with `ray start --head`, or leave out the address for a local "
                        "Ray") from None
    return True, getattr(ctx, "dashboard_url", None) or None


def resources_text(r: dict[str, float]) -> str:
    return (f"{r.get('CPU', 0):g} CPUs, {r.get('GPU', 0):g} GPUs and "
            f"{r.get('memory', 0) / 2**30:.1f} GiB of memory")


def check_resources(opts: RayOptions, have: dict[str, float]) -> None:
    """UserError when the actors and one decode task cannot all be placed: the run would wait
    for them forever."""
    need = opts.needs()
    if any(need[k] > have.get(k, 0.0) + 1e-9 for k in need):
        raise UserError(
            f"Ray has {resources_text(have)}, the {opts.actors + opts.audio_actors} actors and a "
            f"decode task need {resources_text(need)}: lower --ray-actors, --ray-audio-actors, "
            "--ray-actor-cpus or --ray-gpus-per-actor, or add nodes")


def pipeline(job: Job, todo: list[tuple[int, str]], ex: Extractors, opts: RayOptions,
             progress: bool):
    """The Ray Data dataset of the files in `todo` (not executed until iterated)."""
    ray = require_ray()
    visual, audio = ex.visual, ex.audio
    # a block, so a task, per file: a file lost after the retries loses no other
    ds = ray.data.range(len(todo), override_num_blocks=len(todo))
    ds = ds.map_batches(decode_files, batch_size=None, num_cpus=DECODE_CPUS,
                        fn_kwargs={"indices": np.array([i for i, _ in todo], np.int64),
                                   "names": np.array([name for _, name in todo], str),
                                   "videos": str(job.videos.resolve()),
                                   "fmt": job.ann.format, "k": ex.recipe.frames_per_segment,
                                   "policy": job.policy})
    actor_args = {"num_cpus": opts.actor_cpus, "num_gpus": opts.gpus, "memory": ACTOR_MEMORY,
                  "batch_size": opts.batch}
    ds = ds.map_batches(VisualActor, compute=ray.data.ActorPoolStrategy(size=opts.actors),
                        fn_constructor_args=(ray.put(visual.net), visual.preprocess,
                                             visual.identity, opts.run_options(visual.options),
                                             visual.path),
                        **actor_args)
    ds = ds.map_batches(AudioActor, compute=ray.data.ActorPoolStrategy(size=opts.audio_actors),
                        fn_constructor_args=(ray.put(audio.net), audio.postprocess, audio.pca,
                                             audio.identity, opts.run_options(audio.options),
                                             audio.path),
                        **actor_args)
    ctx = ds.context  # this dataset's settings only
    ctx.max_errored_blocks = -1  # a file lost after Ray's retries is reported, the run goes on
    ctx.retried_map_errors = True  # any error of a task or an actor call ...
    ctx.max_map_retries = opts.retries  # ... this many times (crashes: Ray's own retries)
    ctx.enable_progress_bars = progress
    return ds


def lost_reason(opts: RayOptions) -> str:
    return (f"lost in Ray after {opts.retries} retries (its error is in Ray Data's log, "
            "ray-data.log in the Ray session's logs folder)")


def extract_on_ray(job: Job, todo: list[tuple[int, str]], ex: Extractors, opts: RayOptions,
                   summary: ExtractSummary, progress: bool,
                   on_file: Callable[[str, int], None] | None) -> None:
    """Run the pipeline; save each finished file to the cache, record each failed one."""
    ds = pipeline(job, todo, ex, opts, progress)
    asm = Assembler()
    frames: dict[int, int] = {}  # VGG19 frames of the files in progress
    finished: set[int] = set()
    bar = FilesBar(len(todo)) if progress else None
    rows = ds.iter_rows()
    try:
        for row in rows:
            if int(row["window"]) == REFUSED_WINDOW:  # this machine cannot run the run's path
                raise PathUnavailable(json.loads(str(row["info"]))["refused"])
            index, n = int(row["index"]), int(row["frames"])
            frames[index] = frames.get(index, 0) + n
            done = asm.add(row)
            if bar is not None:
                bar.add(int(done is not None), n)
            if done is None:
                continue
            name, result = job.files[index].file, done[1]
            if isinstance(result, str):
                summary.failed[name] = result
            else:
                job.cache.save(name, result)
            finished.add(index)
            if on_file is not None:
                on_file(name, frames[index])
            del frames[index]
    finally:
        close = getattr(rows, "close", None)
        if close is not None:  # stops the pipeline when the loop ends early (Ctrl+C)
            close()
        if bar is not None:
            bar.close()
    for index, name in todo:
        if index not in finished:
            summary.failed[name] = lost_reason(opts)


def run_ray(videos: Path, annotations: Path, out: Path, ex: Extractors,
            policy: ClipPolicy | None = None, split_seed: int = 0,
            categories_file: Path | None = None, limit: int | None = None,
            progress: bool = False, opts: RayOptions | None = None,
            on_file: Callable[[str, int], None] | None = None) -> ExtractSummary:
    """`model.extract.run` on Ray: extract the annotated files the cache lacks, then write the
    dataset. `ex` runs nowhere here: its networks and settings go to the actors.
    `on_file(file, vgg19_frames)` is called as each file is finished (saved or failed)."""
    opts = opts or RayOptions()
    ray = require_ray()
    job = plan(videos, annotations, out, ex.recipe, policy, categories_file, limit)
    summary = ExtractSummary()
    todo = []  # (index into job.files, file)
    for i, f in enumerate(job.files):
        if job.cache.has(f.file):
            summary.cached += 1
        else:
            todo.append((i, f.file))
    if todo:
        started, dashboard = connect(opts)
        interrupted = False
        try:
            have = ray.cluster_resources()
            check_resources(opts, have)
            print(f"ray: {len(todo)} files to extract on {have.get('CPU', 0):g} CPUs and "
                  f"{have.get('GPU', 0):g} GPUs ({opts.actors} VGG19 actors on path "
                  f"{ex.visual.path}, {opts.audio_actors} VGGish on {ex.audio.path})"
                  + (f"; dashboard {dashboard}" if dashboard else ""), file=sys.stderr)
            extract_on_ray(job, todo, ex, opts, summary, progress, on_file)
        except KeyboardInterrupt:  # the finished files are in the cache for the next run
            interrupted = True
        finally:
            if interrupted:  # Ray Data's iterator, which the interrupt's traceback held, is
                gc.collect()  # let go: it cleans up now, while Ray is still up
            if started:
                ray.shutdown()
        if interrupted:
            raise KeyboardInterrupt
    return finish(job, summary, ex.recipe, split_seed)
