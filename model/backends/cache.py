"""On-disk engine cache: a built engine is reused only when everything it was built from matches.

    key = EngineKey.of(kind="jca-window", backend="tensorrt", module=net, shapes=[(1, 10, 128)],
                       dtype=torch.float16, device="cuda", versions=library_versions("tensorrt"))
    cache = EngineCache(engine_cache_dir())
    engine, status = cache.load_or_build(key, build, save, load, suffix=".ep")
    status.state   # "hit" | "built" | "rebuilt"; status.detail says why a file was not trusted

One slot per (kind, short weights hash, backend, dtype, shapes, device type): `<slot><suffix>`
holds the engine and `<slot>.json` its full key and the sha256 of the engine file. A slot is
trusted only if the metadata parses, its key equals the wanted key field by field (weights hash,
model code hash, shapes, dtype, device, library versions) and the engine file's size and sha256
match; otherwise the engine is rebuilt and the slot overwritten (stale) or replaced (corrupt),
and the reason is logged and returned. Files are written to a temporary name and moved into
place, the engine before its metadata, so an interrupted write is caught by the checksum.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

log = logging.getLogger("model.backends")

FORMAT = "jca-live-engine"
VERSION = 1
ENV_VAR = "JCA_LIVE_ENGINES"
T = TypeVar("T")


def engine_cache_dir(override: str | Path | None = None) -> Path:
    """`override`, else `$JCA_LIVE_ENGINES`, else `~/.cache/jca-live/engines`."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "jca-live" / "engines"


def weights_digest(module: nn.Module, extra: dict[str, Any] | None = None) -> str:
    """sha256 over `extra` (e.g. the model config) and every state-dict tensor's name, dtype,
    shape and bytes, in name order."""
    h = hashlib.sha256(json.dumps(extra or {}, sort_keys=True).encode())
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{t.numel()}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def code_digest(module: nn.Module) -> str:
    """sha256 of the source files defining the module's classes, outside torch itself (a change
    to the model's code changes the graph an engine was built from)."""
    torch_dir = Path(torch.__file__).parent
    files = set()
    for m in module.modules():
        try:
            path = Path(inspect.getsourcefile(type(m)) or "")
        except TypeError:
            continue
        if path.is_file() and torch_dir not in path.parents:
            files.add(path)
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def library_versions(backend: str) -> dict[str, str]:
    """Versions an engine depends on: python and torch, plus TensorRT's for `tensorrt`."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    if backend == "aot":
        versions["cuda"] = str(torch.version.cuda)
    if backend == "tensorrt":
        import tensorrt
        import torch_tensorrt

        versions.update(torch_tensorrt=torch_tensorrt.__version__,
                        tensorrt=tensorrt.__version__, cuda=str(torch.version.cuda))
    return versions


def device_descriptor(device: str, native: bool = False) -> str:
    """"cpu", or the GPU's name and compute capability (TensorRT engines are built for one).
    native=True adds the CPU's architecture and a hash of its feature flags (native code)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        return f"cuda:{torch.cuda.get_device_name(dev)}:sm{major}{minor}"
    if not native:
        return dev.type
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1]
                break
    return f"cpu:{platform.machine()}:{hashlib.sha256(flags.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class EngineKey:
    kind: str  # what was compiled: "jca-window", "jca-window+attention", "vgg19", "vggish"
    backend: str  # "export" (decomposed ExportedProgram) or "tensorrt"
    weights: str  # weights_digest
    code: str  # code_digest
    shapes: tuple[tuple[int, ...], ...]  # every input's fixed shape
    dtype: str  # dtype of the program's weights and inputs: "float32", "float16", "bfloat16"
    device: str  # device_descriptor
    versions: tuple[tuple[str, str], ...]  # sorted (library, version)

    @classmethod
    def of(cls, kind: str, backend: str, module: nn.Module, shapes: Sequence[Sequence[int]],
           dtype: torch.dtype, device: str, versions: dict[str, str],
           extra: dict[str, Any] | None = None) -> EngineKey:
        """The key of `module` compiled by `backend`; native code (aot) also keys the CPU."""
        return cls(kind=kind, backend=backend, weights=weights_digest(module, extra),
                   code=code_digest(module), shapes=tuple(tuple(int(d) for d in s) for s in shapes),
                   dtype=str(dtype).removeprefix("torch."),
                   device=device_descriptor(device, native=backend == "aot"),
                   versions=tuple(sorted(versions.items())))

    @property
    def slot(self) -> str:
        shapes = "_".join("x".join(map(str, s)) for s in self.shapes)
        device = self.device.split(":")[0]
        return f"{self.kind}-{self.weights[:12]}-{self.backend}-{self.dtype}-{device}-{shapes}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["shapes"] = [list(s) for s in self.shapes]
        d["versions"] = dict(self.versions)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EngineKey:
        return cls(kind=d["kind"], backend=d["backend"], weights=d["weights"], code=d["code"],
                   shapes=tuple(tuple(s) for s in d["shapes"]), dtype=d["dtype"],
                   device=d["device"], versions=tuple(sorted(d["versions"].items())))

    def differences(self, other: EngineKey) -> list[str]:
        """Fields that differ, as "field: cached -> wanted" (hashes shortened)."""
        out = []
        for f in ("kind", "backend", "weights", "code", "shapes", "dtype", "device"):
            mine, theirs = getattr(self, f), getattr(other, f)
            if mine != theirs:
                short = (lambda s: s[:12]) if f in ("weights", "code") else (lambda s: s)
                out.append(f"{f}: {short(mine)} -> {short(theirs)}")
        mine, theirs = dict(self.versions), dict(other.versions)
        for lib in sorted(set(mine) | set(theirs)):
            if mine.get(lib) != theirs.get(lib):
                out.append(f"{lib}: {mine.get(lib)} -> {theirs.get(lib)}")
        return out


@dataclass(frozen=True)
class CacheStatus:
    state: str  # "hit", "built" (nothing cached), "rebuilt" (stale or corrupt), "off" (no cache)
    path: Path | None
    detail: str = ""  # why a cached engine was not used
    seconds: float = 0.0  # time to load or build

    def __str__(self) -> str:
        where = f" {self.path}" if self.path else ""
        why = f" ({self.detail})" if self.detail else ""
        return f"engine cache {self.state}{why}{where}, {self.seconds:.1f} s"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class EngineCache:
    """A folder of engines keyed by EngineKey; see the module docstring for what is trusted."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def paths(self, key: EngineKey, suffix: str) -> tuple[Path, Path]:
        return self.dir / f"{key.slot}{suffix}", self.dir / f"{key.slot}.json"

    def check(self, key: EngineKey, suffix: str) -> str | None:
        """None if the slot can be trusted for `key`, else why not ("missing", "stale: ...",
        "corrupt: ...")."""
        engine, meta_path = self.paths(key, suffix)
        if not meta_path.exists() and not engine.exists():
            return "missing"
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                return "corrupt: metadata is not a jca-live engine record"
            cached = EngineKey.from_json(meta["key"])
            digest, size = meta["sha256"], int(meta["bytes"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            return f"corrupt: unreadable metadata ({type(e).__name__})"
        diff = cached.differences(key)
        if diff:
            return "stale: " + "; ".join(diff)
        if not engine.is_file():
            return "corrupt: engine file missing"
        if engine.stat().st_size != size or file_sha256(engine) != digest:
            return "corrupt: engine file checksum mismatch (truncated or altered)"
        return None

    def load_or_build(self, key: EngineKey, build: Callable[[], T], save: Callable[[T, Path], None],
                      load: Callable[[Path], T], suffix: str) -> tuple[T, CacheStatus]:
        """The cached engine if trusted and loadable, else `build()`, saved for next time."""
        t0 = time.perf_counter()
        engine_path, meta_path = self.paths(key, suffix)
        why = self.check(key, suffix)
        if why is None:
            try:
                engine = load(engine_path)
                return engine, CacheStatus("hit", engine_path, "", time.perf_counter() - t0)
            except Exception as e:  # a file that passed its checksum but does not load
                why = f"corrupt: cannot load ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
        if why != "missing":
            log.warning("rebuilding %s: %s", engine_path, why)
        engine = build()
        state, detail = ("built", "") if why == "missing" else ("rebuilt", why)
        try:
            self._store(key, engine, save, engine_path, meta_path, time.perf_counter() - t0)
        except OSError as e:  # a read-only or full disk costs a rebuild next time, nothing more
            log.warning("could not cache %s: %s", engine_path, e)
            detail = "; ".join(filter(None, [detail, f"not saved: {e}"]))
        return engine, CacheStatus(state, engine_path, detail, time.perf_counter() - t0)

    def _store(self, key: EngineKey, engine: T, save: Callable[[T, Path], None], engine_path: Path,
               meta_path: Path, build_s: float) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{engine_path.stem}.",
                                   suffix=f".tmp{engine_path.suffix}", dir=self.dir)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            save(engine, tmp_path)
            meta = {"format": FORMAT, "version": VERSION, "key": key.to_json(),
                    "sha256": file_sha256(tmp_path), "bytes": tmp_path.stat().st_size,
                    "build_seconds": round(build_s, 3), "created": time.time(),
                    "argv0": Path(sys.argv[0]).name}
            os.replace(tmp_path, engine_path)
            _write_atomic(meta_path, json.dumps(meta, indent=1) + "\n")
        finally:
            tmp_path.unlink(missing_ok=True)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
