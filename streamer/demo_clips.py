"""Generated audio-visual clips for the demo: events that are both seen and heard, distractors
that are only one of the two, and background.

    clip = held_out_clip()                       # the 24-s clip the demo replays live
    write_clip("clip.mp4", clip)                 # mp4: MPEG-4 video + AAC audio (PyAV)
    clips = training_clips(40, seed=0)           # varied 10-s clips to train on
    write_annotations("events.csv", clips)       # the CSV of model.extract: file,label,start,end

Each event class is a shape that pulses at one place of the picture while its sound plays:

    bell   yellow disc       + a struck 880 Hz tone, twice a second
    horn   red square        + a steady 220 Hz buzz
    bird   green triangle    + quick rising chirps

A `Part` shows its class's sight, its sound, or both ("av"). Only "av" parts are events; by
AVE's definition a sight without its sound, or a sound without its sight, is background, and so
is everything else (a scene of dim rectangles under a slowly changing light, faint noise).
Everything is a pure function of (clip, time), like streamer.synthetic, and is written with its
`write_media`.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model.classes import BACKGROUND
from model.files import atomic_write_text
from streamer.synthetic import noise, write_media

CLASSES = ("bell", "horn", "bird")
SHOWS = ("av", "visual", "audio")  # both seen and heard / sight only / sound only
COLOURS = {"bell": (240, 210, 40), "horn": (220, 40, 40), "bird": (40, 200, 70)}
SIZE = (96, 128)  # frame (H, W); VGG19 resizes every frame to 224 x 224 anyway
FPS = 10.0
AUDIO_RATE = 16000


@dataclass(frozen=True)
class Part:
    label: str  # a class of CLASSES
    start: float  # seconds
    end: float
    show: str = "av"  # one of SHOWS
    x: float = 0.5  # centre of the shape, fractions of the frame width / height
    y: float = 0.5
    loudness: float = 1.0  # sound gain

    @property
    def event(self) -> bool:
        return self.show == "av"


@dataclass(frozen=True)
class Clip:
    name: str  # file stem
    duration: float  # seconds
    parts: tuple[Part, ...] = ()
    scene: int = 0  # seed of the background scene
    size: tuple[int, int] = SIZE
    fps: float = FPS

    def truth(self, second: int) -> str:
        """Label of 1-s segment i (the part covering its middle, if it is seen and heard)."""
        mid = second + 0.5
        for p in self.parts:
            if p.event and p.start <= mid < p.end:
                return p.label
        return BACKGROUND

    def truths(self) -> list[str]:
        return [self.truth(i) for i in range(math.floor(self.duration + 0.5))]

    def distractor_seconds(self) -> list[int]:
        """Seconds that show a class in one modality only (background by definition)."""
        return [i for i in range(math.floor(self.duration + 0.5))
                if self.truth(i) == BACKGROUND
                and any(p.start <= i + 0.5 < p.end for p in self.parts)]

    # the two methods streamer.synthetic.write_media calls
    def frame(self, t: float) -> np.ndarray:
        """The picture at time t: (H, W, 3) uint8."""
        img = scene(self.scene, self.size).astype(np.float32)
        img *= 0.85 + 0.15 * math.sin(2 * math.pi * t / 7.0 + self.scene)  # the light drifts
        img = img.astype(np.uint8)
        for p in self.parts:
            if p.show != "audio" and p.start <= t < p.end:
                draw_shape(img, p.label, p.x, p.y, pulse=math.sin(2 * math.pi * 2.0 * t))
        return img

    def samples(self, start: int, n: int, rate: int = AUDIO_RATE) -> np.ndarray:
        """Samples start .. start+n-1 at `rate`: (n,) float32 in [-1, 1]."""
        idx = np.arange(start, start + n, dtype=np.int64)
        t = idx / rate
        out = 0.02 * noise(idx, self.scene)
        for p in self.parts:
            on = (t >= p.start) & (t < p.end)
            if p.show != "visual" and on.any():
                out[on] += p.loudness * sound(p.label, t[on] - p.start)
        return np.clip(out, -1.0, 1.0).astype(np.float32)


def scene(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A still background: a two-colour gradient with a few dim rectangles, (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    h, w = size
    top, bottom = rng.uniform(20, 110, 3), rng.uniform(20, 110, 3)
    a = np.linspace(0.0, 1.0, h)[:, None, None]
    img = np.broadcast_to(top * (1 - a) + bottom * a, (h, w, 3)).copy()
    for _ in range(rng.integers(2, 5)):
        x0, y0 = rng.integers(0, w - 8), rng.integers(0, h - 8)
        x1, y1 = x0 + rng.integers(6, w // 3), y0 + rng.integers(6, h // 3)
        img[y0:y1, x0:x1] = rng.uniform(30, 130, 3)
    return img.astype(np.uint8)


def draw_shape(img: np.ndarray, label: str, x: float, y: float, pulse: float) -> None:
    """Draw the class's shape in place, its size pulsing with `pulse` in [-1, 1]."""
    h, w = img.shape[:2]
    r = min(h, w) * (0.2 + 0.03 * pulse)
    cx, cy = x * w, y * h
    colour = COLOURS[label]
    if label == "bell":
        cv2.circle(img, (round(cx), round(cy)), round(r), colour, -1, cv2.LINE_AA)
    elif label == "horn":
        cv2.rectangle(img, (round(cx - r), round(cy - r)), (round(cx + r), round(cy + r)),
                      colour, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)


def sound(label: str, t: np.ndarray) -> np.ndarray:
    """The class's sound at times t (seconds since the part started): (n,) float64."""
    if label == "bell":  # struck tone, twice a second
        env = np.exp(-6.0 * (t % 0.5))
        return 0.35 * env * (np.sin(2 * np.pi * 880 * t) + 0.4 * np.sin(2 * np.pi * 2640 * t))
    if label == "horn":  # buzzy steady tone
        return 0.12 * sum(np.sin(2 * np.pi * 220 * h * t) / h for h in range(1, 5))
    # bird: a 2 -> 4 kHz chirp in the first 0.15 s of every 0.25 s
    u = t % 0.25
    phase = 2 * np.pi * (2000 * u + 4000 * u * u / 0.3)
    return 0.3 * np.where(u < 0.15, np.sin(phase) * np.sin(np.pi * u / 0.15), 0.0)


# ---- clip sets -----------------------------------------------------------------------------

def held_out_clip(name: str = "demo_clip", room: int = 1) -> Clip:
    """The 24-s clip replayed live: every class, both kinds of distractor, background."""
    parts = (
        Part("bell", 2, 5, "av", 0.3, 0.4),
        Part("horn", 7, 9, "audio"),  # the horn heard, not seen
        Part("horn", 9, 12, "av", 0.65, 0.55),
        Part("bird", 14, 16, "visual", 0.5, 0.35),  # the bird seen, not heard
        Part("bird", 16, 19, "av", 0.5, 0.35),
        Part("bell", 20, 22, "visual", 0.7, 0.6),  # the bell seen, not heard
    )
    return Clip(name, 24.0, parts, scene=room)


ROOMS = 4  # background scenes: the clips are "recorded" in a few rooms


def random_clip(name: str, label: str, rng: np.random.Generator, duration: float = 10.0,
                event: bool = True) -> Clip:
    """A clip in one of the rooms: an event run of `label` (2-5 s, unless not `event`), mostly
    heard before it is seen, or seen after it falls silent, and so on (a 1-2 s lead-in or tail
    of one modality), and one or two distractor runs (1-3 s, half of them of the same class)."""
    n = int(duration)
    free = np.ones(n, bool)
    parts = []

    def where() -> tuple[float, float]:
        return float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.35, 0.65))

    def place(length: int) -> int | None:
        starts = [s for s in range(n - length + 1) if free[s:s + length].all()]
        if not starts:
            return None
        s = int(rng.choice(starts))
        free[s:s + length] = False
        return s

    def add(label: str, start: int, end: int, show: str, x: float, y: float) -> None:
        free[start:end] = False
        parts.append(Part(label, start, end, show, x, y, float(rng.uniform(0.6, 1.4))))

    if event and (s := place(length := int(rng.integers(2, 6)))) is not None:
        x, y = where()
        add(label, s, s + length, "av", x, y)
        before = rng.random() < 0.5
        for side, p in ((before, 0.8), (not before, 0.3)):
            # the same thing in one modality only, just before or just after the event
            extra, show = int(rng.integers(1, 3)), str(rng.choice(SHOWS[1:]))
            a, b = (s - extra, s) if side else (s + length, s + length + extra)
            if rng.random() < p and a >= 0 and b <= n and free[a:b].all():
                add(label, a, b, show, x, y)
    for _ in range(int(rng.integers(1, 3))):
        other = label if rng.random() < 0.5 else str(rng.choice(CLASSES))
        length = int(rng.integers(1, 4))
        if (s := place(length)) is not None:
            add(other, s, s + length, str(rng.choice(SHOWS[1:])), *where())
    return Clip(name, duration, tuple(sorted(parts, key=lambda p: p.start)),
                scene=int(rng.integers(0, ROOMS)))


def training_clips(n: int, seed: int = 0, duration: float = 10.0,
                   no_event: float = 0.1) -> list[Clip]:
    """n clips, the event classes in turn; a fraction `no_event` has distractors only."""
    rng = np.random.default_rng(seed)
    return [random_clip(f"clip_{i:03d}", CLASSES[i % len(CLASSES)], rng, duration,
                        event=rng.random() >= no_event) for i in range(n)]


def write_clip(path: str | Path, clip: Clip) -> Path:
    """Encode a clip as mp4 (MPEG-4 part 2 video, AAC audio) at the clip's frame rate."""
    return write_media(path, clip, fps=clip.fps, audio_rate=AUDIO_RATE,  # type: ignore[arg-type]
                       video_codec="mpeg4", audio_codec="aac")


def write_annotations(path: str | Path, clips: list[Clip], suffix: str = ".mp4",
                      splits: dict[str, str] | None = None) -> Path:
    """The model.extract CSV (`file,label,start,end[,split]`): one row per event, a row with an
    empty label for a file without one. Distractors are not events, so they get no row."""
    path = Path(path)
    table = io.StringIO(newline="")
    w = csv.writer(table)
    w.writerow(["file", "label", "start", "end"] + (["split"] if splits else []))
    for c in clips:
        extra = [splits[c.name]] if splits else []
        events = [p for p in c.parts if p.event]
        for p in events:
            w.writerow([c.name + suffix, p.label, p.start, p.end, *extra])
        if not events:
            w.writerow([c.name + suffix, "", 0, 0, *extra])
    atomic_write_text(path, table.getvalue())
    return path
