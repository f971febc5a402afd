"""Feature extractors: VGG19 pool5 (visual) and VGGish (audio), as the AVE features were made.

    from model.extractors import build_extractors, select_frames
    visual, audio, recipe = build_extractors(random_weights=True, frames_per_segment=4)

The names below load their module (torch, OpenCV, h5py) on first use, so importing a light
submodule (`sampling`, `vggish_frontend`) loads none of that.
"""

import importlib

_HOMES = {
    "AudioExtractor": "model.extractors.audio",
    "Extractors": "model.extractors.factory",
    "RunOptions": "model.extractors.runtime",
    "VisualExtractor": "model.extractors.visual",
    "build_extractors": "model.extractors.factory",
    "select_frames": "model.extractors.sampling",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
