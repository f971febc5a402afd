"""How a class looks wherever it is shown (dashboard, overlay, timeline plot): its colour and its
short name.

    class_color(2, n_classes=8)              # "#2ca02c"; the last class (background) is grey
    short_name("Male speech, man speaking")  # "Male speech"
"""

from __future__ import annotations

BACKGROUND_COLOR = "#808080"
UNKNOWN_COLOR = "#444444"
# Distinct colours readable on dark and light terminals; grey is left out (background owns it).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
    "#dbdb8d", "#9edae5", "#6b6ecf", "#9c9ede", "#8ca252", "#b5cf6b", "#bd9e39", "#e7ba52",
    "#d6616b", "#e7969c", "#a55194", "#ce6dbd", "#393b79", "#5254a3", "#637939", "#cedb9c",
    "#8c6d31", "#e7cb94", "#843c39", "#ad494a", "#7b4173", "#de9ed6",
)


def class_color(class_id: int | None, n_classes: int) -> str:
    """Stable hex colour of a class; the last class (background) is grey."""
    if class_id is None or class_id < 0 or (n_classes and class_id >= n_classes):
        return UNKNOWN_COLOR
    if n_classes and class_id == n_classes - 1:
        return BACKGROUND_COLOR
    return PALETTE[class_id % len(PALETTE)]


def short_name(label: str) -> str:
    """'Male speech, man speaking' -> 'Male speech'."""
    return label.split(",")[0].strip()
