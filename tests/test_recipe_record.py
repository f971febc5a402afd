"""The feature recipe records how the features were computed (extractor paths, precision, frame
resize), and a live recipe that differs there is a note, never a refusal."""

from __future__ import annotations

from dataclasses import replace

from model.extractors import build_extractors
from model.recipe import FeatureRecipe


def test_the_recipe_records_paths_precision_and_resize():
    r = build_extractors(random_weights=True, frames_per_segment=2).recipe
    assert (r.visual_path, r.audio_path, r.precision, r.resize) == (
        "fp32", "fp32", "fp32", "cv2 bilinear")
    assert FeatureRecipe.from_dict(r.to_dict()) == r


def test_other_paths_are_notes_and_unrecorded_ones_are_silent():
    trained = FeatureRecipe.ave(visual_path="fp32", audio_path="fp32", precision="fp32",
                                resize="cv2 bilinear")
    live = replace(trained, visual_path="openvino", frames_per_segment=3)
    assert trained.mismatches(live) == []
    assert trained.notes(live) == ["frames per segment: trained on 16, live 3",
                                   "visual path: trained on fp32, live openvino"]
    older = FeatureRecipe.from_dict({k: v for k, v in FeatureRecipe.ave().to_dict().items()
                                     if k not in ("visual_path", "audio_path", "precision",
                                                  "resize")})
    assert older.notes(live) == ["frames per segment: trained on 16, live 3"]
