"""Which frames of a 1-second segment go through VGG19.

The one rule shared by offline extraction (`model.extract`) and the live streamer, so that
streaming features equal offline features exactly:

    >>> select_frames([0.0, 0.25, 0.5, 0.75], k=2)   # targets 0, 0.5
    [0, 2]
    >>> select_frames([0.0, 0.5], k=4)               # targets 0 .25 .5 .75
    [0, 1, 1, 1]

The targets start at the segment's start (i / k, not the centred (i + 0.5) / k): at any frame
rate of at least k frames per second every target is met by a frame that arrives before the
segment closes, so a live pipeline has run VGG19 on all k selections by then and closing a
segment costs no frame extraction. Only a rate below k leaves targets to the segment's last
frame, which is known to be the last only at close.
"""

from __future__ import annotations

from collections.abc import Sequence


def targets(k: int) -> list[float]:
    """The k sampling instants of a segment, seconds from its start: i / k."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return [i / k for i in range(k)]


def select_frames(times: Sequence[float], k: int) -> list[int]:
    """Indices into `times` (sorted frame times relative to the segment start, in [0, 1)).

    For each target i / k take the first frame with time >= target; a target with no
    such frame takes the segment's last frame. Indices repeat when there are fewer than k
    frames; the segment's feature is the mean over all k selections. Empty `times` -> [].
    """
    ts = targets(k)
    if len(times) == 0:
        return []
    out: list[int] = []
    j = 0
    for t in ts:  # targets increase, so one forward scan finds every first frame >= target
        while j < len(times) and times[j] < t:
            j += 1
        out.append(min(j, len(times) - 1))
    return out
