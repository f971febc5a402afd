"""Feature extractors: VGG19 pool5 (visual) and VGGish (audio), as the AVE features were made.

    from model.extractors import build_extractors, select_frames
    visual, audio, recipe = build_extractors(random_weights=True, frames_per_segment=4)
"""

from model.extractors.audio import AudioExtractor
from model.extractors.factory import Extractors, build_extractors
from model.extractors.runtime import RunOptions
from model.extractors.sampling import select_frames
from model.extractors.visual import VisualExtractor

__all__ = ["AudioExtractor", "Extractors", "RunOptions", "VisualExtractor", "build_extractors",
           "select_frames"]
