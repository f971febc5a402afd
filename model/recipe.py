"""How features were made: the contract between extractors, feature files, checkpoints and the
live detector.

A model trained on features of one recipe only works on features of the same recipe, so the
recipe travels with every feature file (as `recipe.json` beside the h5 files) and every
checkpoint, and the streamer checks it against its live extractor before it starts.

    >>> r = FeatureRecipe.ave()
    >>> r.mismatches(FeatureRecipe.ave(frames_per_segment=4))
    []
    >>> r.mismatches(FeatureRecipe.ave(visual_preprocess="torchvision"))
    ['visual_preprocess: trained on ave, live torchvision']
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from model.files import atomic_write_text

RANDOM_PREFIX = "random"  # weights identities that start with this are untrained

VISUAL_PREPROCESS = ("ave", "torchvision")
AUDIO_POSTPROCESS = ("ave", "raw", "pca")

# Fields whose disagreement changes the features enough to make a model's outputs meaningless.
# frames_per_segment is left out on purpose: averaging K sampled frames estimates the same
# segment mean as averaging 16, so a CPU can run live with fewer frames than training used
# (the difference is reported as a note, not an error).
_STRICT = ("visual_weights", "visual_preprocess", "audio_weights", "audio_postprocess",
           "sample_rate", "image_size")
_TOLERATED = ("visual_path", "audio_path", "precision", "resize")  # recorded, told as notes


@dataclass(frozen=True)
class FeatureRecipe:
    # identity of the VGG19 weights: "vgg19-keras-imagenet" (verified published file),
    # "<file>:sha256:<12 hex>" (any other file) or "random:seed=N"
    visual_weights: str
    visual_preprocess: str  # "ave" (Keras caffe mode, resize to 224 without crop) or "torchvision"
    frames_per_segment: int  # K frames sampled uniformly per 1 s segment and averaged
    audio_weights: str  # identity of the VGGish weights
    audio_postprocess: str  # "ave" (raw ReLU'd embedding), "raw", or "pca"
    sample_rate: int = 16000
    image_size: int = 224
    # How the features were computed; tolerated differences (notes), None where unrecorded (older
    # recipes). A faithful path keeps cosine >= 0.9999 to fp32 (model.extractors.paths).
    visual_path: str | None = None  # "fp32", "openvino", "bf16", "autocast-fp16", ...
    audio_path: str | None = None
    precision: str | None = None  # the extractors' --precision
    resize: str | None = None  # frame resize to image_size: "cv2 bilinear" (model.extractors.vgg19)

    def __post_init__(self) -> None:
        if self.visual_preprocess not in VISUAL_PREPROCESS:
            raise ValueError(f"visual_preprocess must be one of {VISUAL_PREPROCESS}, "
                             f"got {self.visual_preprocess!r}")
        if self.audio_postprocess not in AUDIO_POSTPROCESS:
            raise ValueError(f"audio_postprocess must be one of {AUDIO_POSTPROCESS}, "
                             f"got {self.audio_postprocess!r}")
        if self.frames_per_segment < 1:
            raise ValueError(f"frames_per_segment must be >= 1, got {self.frames_per_segment}")

    @classmethod
    def ave(cls, **overrides: object) -> FeatureRecipe:
        """The recipe of the released AVE features (FACTS section 3)."""
        base = cls(visual_weights="vgg19-keras-imagenet", visual_preprocess="ave",
                   frames_per_segment=16, audio_weights="vggish-audioset",
                   audio_postprocess="ave")
        return replace(base, **overrides)  # type: ignore[arg-type]

    @property
    def random_weights(self) -> bool:
        """True when either extractor ran with random (untrained) weights."""
        return (self.visual_weights.startswith(RANDOM_PREFIX)
                or self.audio_weights.startswith(RANDOM_PREFIX))

    def mismatches(self, live: FeatureRecipe) -> list[str]:
        """Strict disagreements between this (training) recipe and a live one, one line each."""
        return [f"{name}: trained on {getattr(self, name)}, live {getattr(live, name)}"
                for name in _STRICT if getattr(self, name) != getattr(live, name)]

    def notes(self, live: FeatureRecipe) -> list[str]:
        """Tolerated differences worth telling the user about."""
        out = []
        if self.frames_per_segment != live.frames_per_segment:
            out.append(f"frames per segment: trained on {self.frames_per_segment}, "
                       f"live {live.frames_per_segment}")
        for name in _TOLERATED:
            trained, now = getattr(self, name), getattr(live, name)
            if trained is not None and now is not None and trained != now:
                out.append(f"{name.replace('_', ' ')}: trained on {trained}, live {now}")
        return out

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> FeatureRecipe:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - {"random_weights"}
        if unknown:
            raise ValueError(f"unknown recipe fields: {sorted(unknown)}")
        return cls(**{k: v for k, v in d.items() if k in known})  # type: ignore[arg-type]

    def save(self, path: str | Path) -> None:
        data = {**self.to_dict(), "random_weights": self.random_weights}
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FeatureRecipe:
        return cls.from_dict(json.loads(Path(path).read_text()))
