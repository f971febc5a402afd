"""Inference backends: eager / export / torch.compile / TensorRT behind one small interface.

    from model.backends import build_backend, build_extractor_backend, resolve_backend
    net, ckpt = load_checkpoint("runs/jca.pt")
    be = build_backend("auto", net, "cpu")     # be.name, be.reason: what auto picked and why
    logits = be(audio, visual)                 # (B, 10, 128), (B, 10, 7, 7, 512) -> (B, 10, C)
    vgg = build_extractor_backend("tensorrt", visual.net, "cuda", "fp16", batch_size=64)

    python -m model.backends --device cpu      # what can run here, and what auto would pick

Engines (decomposed programs, TensorRT engines) are cached on disk, keyed by the weights' hash,
the model code, shapes, dtype, device and library versions; a stale or corrupt entry is rebuilt
and reported (`be.cache`), never trusted. See build.py, probe.py and cache.py.
"""

from model.backends.build import (
    Backend,
    ExtractorBackend,
    WindowBackend,
    build_backend,
    build_extractor_backend,
)
from model.backends.cache import CacheStatus, EngineCache, EngineKey, engine_cache_dir
from model.backends.probe import BACKENDS, PRECISIONS, resolve_backend, unavailable

__all__ = ["BACKENDS", "PRECISIONS", "Backend", "CacheStatus", "EngineCache", "EngineKey",
           "ExtractorBackend", "WindowBackend", "build_backend", "build_extractor_backend",
           "engine_cache_dir", "resolve_backend", "unavailable"]
