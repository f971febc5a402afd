"""Inference backends: eager / export / torch.compile / AOTInductor / TensorRT behind one call.

    from model.backends import build_backend, build_extractor_backend, live_backend
    net, ckpt = load_checkpoint("runs/jca.pt")
    be = build_backend("auto", net, "cpu")     # be.name, be.reason: what auto picked and why
    logits = be(audio, visual)                 # (B, 10, 128), (B, 10, 7, 7, 512) -> (B, 10, C)
    vgg = build_extractor_backend("tensorrt", visual.net, "cuda", "fp16", batch_size=64)

    python -m model.backends --device cpu      # what can run here, and what auto does
    python -m model.backends build --checkpoint runs/jca.pt    # build the engine auto loads

Engines (decomposed programs, AOTInductor packages, TensorRT engines) are cached on disk, keyed
by the weights' hash, the model code, shapes, dtype, device and library versions; a stale or
corrupt entry is rebuilt and reported (`be.cache`), never trusted. The window's `auto` only
loads an engine built ahead (build.py). See build.py, probe.py and cache.py.

The names below load on first use, so importing the package (or probe) loads no model code.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Backend": "build", "EngineNotCached": "build", "ExtractorBackend": "build",
    "WindowBackend": "build", "build_backend": "build", "build_extractor_backend": "build",
    "live_backend": "build",
    "CacheStatus": "cache", "EngineCache": "cache", "EngineKey": "cache",
    "engine_cache_dir": "cache",
    "BACKENDS": "probe", "PRECISIONS": "probe", "engine_backends": "probe",
    "resolve_backend": "probe", "unavailable": "probe",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'model.backends' has no attribute {name!r}")
    return getattr(importlib.import_module(f"model.backends.{_HOMES[name]}"), name)
