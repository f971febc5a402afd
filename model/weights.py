"""Public extractor weights: where they come from, where they live, how they are checked.

    python -m model.weights fetch                      # the `ave` recipe's files
    python -m model.weights fetch --all --weights-dir ~/weights
    python -m model.weights fetch vgg19-torchvision
    python -m model.weights fetch --mirror http://host/weights/   # same file names, elsewhere
    python -m model.weights list

Downloads go to `<file>.part`, resume with an HTTP Range request, are verified against the
checksum the publisher gives, then renamed into place atomically. The cache is
`--weights-dir`, else `$JCA_LIVE_WEIGHTS`, else `~/.cache/jca-live/weights`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from model.errors import UserError, run_cli

ENV_VAR = "JCA_LIVE_WEIGHTS"
CHUNK = 1 << 20


class DownloadError(UserError):
    """A download that failed; `reason` is the short cause (for the one-line summary)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class WeightFile:
    name: str  # short key used on the command line
    filename: str
    url: str
    algo: str | None  # "md5" / "sha256" or None where the publisher gives no checksum
    digest: str  # full digest, or a prefix of it (prefix=True)
    prefix: bool  # only a prefix of the digest is published (the torch hub file-name convention)
    identity: str  # what a FeatureRecipe records when this exact file is used
    what: str


# Checksums: Keras applications publish the full md5 (`file_hash` in keras' vgg19.py); the
# torch hub files carry the first 8 hex digits of their sha256 in the file name; torchaudio
# publishes no checksum for vggish.pt.
REGISTRY: dict[str, WeightFile] = {w.name: w for w in (
    WeightFile("vgg19-keras", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
               "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
               "md5", "253f8cb515780f3b799900260a226db6", False, "vgg19-keras-imagenet",
               "VGG19 ImageNet, Keras layout (the AVE recipe)"),
    WeightFile("vgg19-torchvision", "vgg19-dcbb9e9d.pth",
               "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
               "sha256", "dcbb9e9d", True, "vgg19-torchvision-imagenet",
               "VGG19 ImageNet, torchvision layout"),
    WeightFile("vggish", "vggish-10086976.pth",
               "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
               "vggish-10086976.pth",
               "sha256", "10086976", True, "vggish-audioset",
               "VGGish AudioSet, PyTorch port of the TF model"),
    WeightFile("vggish-pca", "vggish_pca_params-970ea276.pth",
               "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
               "vggish_pca_params-970ea276.pth",
               "sha256", "970ea276", True, "vggish-pca-audioset",
               "VGGish PCA parameters (audio postprocess 'pca')"),
    WeightFile("vggish-torchaudio", "vggish.pt",
               "https://download.pytorch.org/torchaudio/models/vggish.pt",
               None, "", False, "vggish-audioset-torchaudio",
               "VGGish AudioSet, torchaudio layout (no published checksum)"),
)}
DEFAULT_FETCH = ("vgg19-keras", "vggish", "vggish-pca")


def weights_dir(override: str | Path | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "jca-live" / "weights"


def file_digests(path: Path, use_cache: bool = True) -> dict[str, str]:
    """{"md5": ..., "sha256": ...} of a file, cached beside it keyed by size and mtime."""
    st = path.stat()
    cache = path.with_name(path.name + ".digests.json")
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        if not use_cache:
            raise OSError
        cached = json.loads(cache.read_text())
        if {k: cached.get(k) for k in key} == key:
            return {"md5": cached["md5"], "sha256": cached["sha256"]}
    except (OSError, ValueError, KeyError, AttributeError, TypeError):  # absent or damaged
        pass
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            md5.update(block)
            sha.update(block)
    out = {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}
    if use_cache:
        with contextlib.suppress(OSError):  # a read-only cache recomputes next time
            cache.write_text(json.dumps({**key, **out}))
    return out


def verify(w: WeightFile, path: Path, use_cache: bool = True) -> str | None:
    """None if `path` passes w's checksum (or w has none), else a one-line reason."""
    if w.algo is None:
        return None
    got = file_digests(path, use_cache)[w.algo]
    ok = got.startswith(w.digest) if w.prefix else got == w.digest
    if ok:
        return None
    shown = got[:len(w.digest)] if w.prefix else got
    kind = f"{w.algo} prefix" if w.prefix else w.algo
    return f"{kind} {shown}, expected {w.digest}"


def identity(path: str | Path) -> str:
    """What a FeatureRecipe records for a weights file.

    A registry file that passes its checksum -> the registry identity (e.g. the AVE recipe's
    "vgg19-keras-imagenet"); any other file -> "<file name>:sha256:<first 12 hex digits>".
    """
    path = Path(path)
    for w in REGISTRY.values():
        if path.name == w.filename and w.algo is not None and verify(w, path) is None:
            return w.identity
    return f"{path.name}:sha256:{file_digests(path)['sha256'][:12]}"


def missing_message(w: WeightFile, directory: Path) -> str:
    return (f"missing weights file {w.filename} ({w.what}): run `python -m model.weights fetch "
            f"{w.name} --weights-dir {directory}`, or download {w.url} by hand into {directory}/")


def resolve(name: str, directory: str | Path | None = None) -> Path:
    """Path of a registry file in the cache; UserError naming the fetch command if absent."""
    w = REGISTRY[name]
    d = weights_dir(directory)
    path = d / w.filename
    if not path.is_file():
        raise UserError(missing_message(w, d))
    return path


def download(w: WeightFile, directory: Path, url: str | None = None, timeout: float = 30.0,
             progress: bool = True) -> Path:
    """Fetch one file into `directory` (resuming a `.part`), verify, rename atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / w.filename
    if final.is_file() and verify(w, final) is None:
        return final
    part = directory / (w.filename + ".part")
    url = url or w.url
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    shown = False
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resumed = have > 0 and resp.status == 206
            total = resp.headers.get("Content-Length")
            total = int(total) + (have if resumed else 0) if total else None
            done = have if resumed else 0
            with open(part, "ab" if resumed else "wb") as f:
                while block := resp.read(CHUNK):
                    f.write(block)
                    done += len(block)
                    if progress:
                        shown = True
                        pct = f" {100 * done / total:5.1f}%" if total else ""
                        print(f"\r{w.filename}: {done / 1e6:8.1f} MB{pct}", end="",
                              file=sys.stderr, flush=True)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range past the end: the .part is already whole
            pass
        else:
            reason = f"HTTP {e.code}"
            raise DownloadError(f"cannot download {w.filename} from {url}: {reason}; "
                                f"download it by hand into {directory}/", reason) from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = str(getattr(e, "reason", e))
        raise DownloadError(f"cannot download {w.filename} from {url} ({reason}): offline? "
                            f"download it by hand into {directory}/ and rerun", reason) from None
    finally:
        if shown:
            print(file=sys.stderr)
    bad = verify(w, part, use_cache=False)
    if bad:
        part.unlink()
        raise UserError(f"checksum mismatch for {w.filename} from {url} ({bad}); the partial "
                        f"file was removed, run fetch again")
    part.replace(final)
    return final


def fetch(names: list[str], directory: Path, urls: dict[str, str] | None = None,
          timeout: float = 30.0, progress: bool = True) -> list[Path]:
    """Fetch several files; failures are collected so one message names every file."""
    paths: list[Path] = []
    errors: list[tuple[WeightFile, UserError]] = []
    for name in names:
        w = REGISTRY[name]
        try:
            paths.append(download(w, directory, (urls or {}).get(name), timeout, progress))
        except UserError as e:
            errors.append((w, e))
    if len(errors) == 1:
        raise errors[0][1]
    if errors:
        reasons = sorted({getattr(e, "reason", str(e)) for _, e in errors})
        files = "; ".join(f"{w.filename} from {w.url}" for w, _ in errors)
        raise UserError(f"cannot download {len(errors)} weight files ({', '.join(reasons)}; "
                        f"offline?): put them by hand into {directory}/: {files}")
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.weights", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download, verify and cache weight files")
    f.add_argument("names", nargs="*", help=f"files to fetch (default: {' '.join(DEFAULT_FETCH)})")
    f.add_argument("--all", action="store_true", help="every known file")
    f.add_argument("--weights-dir", default=None)
    f.add_argument("--timeout", type=float, default=30.0)
    f.add_argument("--mirror", default=None,
                   help="base URL serving the files by their file names (instead of their origins)")
    ls = sub.add_parser("list", help="show known files and whether they are cached")
    ls.add_argument("--weights-dir", default=None)
    args = p.parse_args(argv)
    directory = weights_dir(args.weights_dir)
    if args.cmd == "list":
        for w in REGISTRY.values():
            state = "cached" if (directory / w.filename).is_file() else "missing"
            print(f"{w.name:18s} {state:8s} {w.filename}  {w.what}")
        return 0
    names = list(REGISTRY) if args.all else (args.names or list(DEFAULT_FETCH))
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise UserError(f"unknown weights {unknown}: choose from {sorted(REGISTRY)}")
    urls = ({n: f"{args.mirror.rstrip('/')}/{REGISTRY[n].filename}" for n in names}
            if args.mirror else None)
    for path in fetch(names, directory, urls, timeout=args.timeout):
        print(f"ok {path}")
    free = shutil.disk_usage(directory).free
    if free < 1 << 30:
        print(f"note: only {free / 1e9:.1f} GB free in {directory}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
