"""VGGish log-mel front end: small pure functions over numpy arrays (float64 inside).

The public VGGish constants (FACTS section 4). One 1-second segment of 16 kHz mono audio gives
exactly one example: the first 96 log-mel frames, which span the first 15,600 samples
(0.975 s: 95 hops of 160 plus one 400-sample window). A segment shorter than that is
zero-padded at the end (zeros = silence, log(0 + 0.01) in every band).

    >>> ex = segment_example(np.zeros(16000, np.float32))
    >>> ex.shape, bool(np.allclose(ex, np.log(LOG_OFFSET)))
    ((96, 64), True)
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.010
WINDOW_LENGTH = 400  # samples, round(16000 * 0.025)
HOP_LENGTH = 160  # samples, round(16000 * 0.010)
FFT_LENGTH = 512  # next power of two >= WINDOW_LENGTH
NUM_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
MEL_BREAK_HZ = 700.0  # HTK mel: 1127 ln(1 + f / 700)
MEL_HIGH_Q = 1127.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s of 10 ms frames per example, no overlap
EXAMPLE_SAMPLES = (EXAMPLE_FRAMES - 1) * HOP_LENGTH + WINDOW_LENGTH  # 15,600


def frame(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    """(n, ...) -> (1 + (n - window) // hop, window, ...) overlapping frames; none if n < window."""
    n_frames = 0 if x.shape[0] < window else 1 + (x.shape[0] - window) // hop
    idx = np.arange(window)[None, :] + hop * np.arange(n_frames)[:, None]  # (F, window)
    return x[idx]


def periodic_hann(n: int) -> np.ndarray:
    """Hann window of the 'periodic' kind (as in TF/VGGish): 0.5 - 0.5 cos(2 pi i / n)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def stft_magnitude(x: np.ndarray) -> np.ndarray:
    """(n,) samples -> (F, FFT_LENGTH // 2 + 1) magnitude spectrum of windowed frames."""
    frames = frame(np.asarray(x, np.float64), WINDOW_LENGTH, HOP_LENGTH)  # (F, 400)
    return np.abs(np.fft.rfft(frames * periodic_hann(WINDOW_LENGTH), FFT_LENGTH))  # (F, 257)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return MEL_HIGH_Q * np.log(1.0 + np.asarray(hz, np.float64) / MEL_BREAK_HZ)


def mel_matrix(num_bins: int = FFT_LENGTH // 2 + 1, num_bands: int = NUM_BANDS,
               sample_rate: int = SAMPLE_RATE, low_hz: float = MEL_MIN_HZ,
               high_hz: float = MEL_MAX_HZ) -> np.ndarray:
    """(num_bins, num_bands) triangular HTK-mel weights; the DC bin gets no weight."""
    bins_mel = hz_to_mel(np.linspace(0.0, sample_rate / 2.0, num_bins))  # (257,)
    edges = np.linspace(hz_to_mel(low_hz), hz_to_mel(high_hz), num_bands + 2)  # (66,)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]  # (64,) each
    rising = (bins_mel[:, None] - lower) / (center - lower)  # (257, 64)
    falling = (upper - bins_mel[:, None]) / (upper - center)  # (257, 64)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


_MEL = mel_matrix()


def log_mel(x: np.ndarray) -> np.ndarray:
    """(n,) samples in [-1, 1] -> (F, 64) log(mel + 0.01), float64."""
    return np.log(stft_magnitude(x) @ _MEL + LOG_OFFSET)


def segment_example(samples: np.ndarray) -> np.ndarray:
    """One segment's samples (16 kHz mono) -> its (96, 64) float32 example.

    Uses the first EXAMPLE_SAMPLES samples; shorter input is zero-padded at the end.
    """
    x = np.asarray(samples, np.float64).reshape(-1)[:EXAMPLE_SAMPLES]
    if x.shape[0] < EXAMPLE_SAMPLES:
        x = np.pad(x, (0, EXAMPLE_SAMPLES - x.shape[0]))
    return log_mel(x).astype(np.float32)  # (96, 64)


def waveform_examples(samples: np.ndarray) -> np.ndarray:
    """Whole waveform -> (N, 96, 64) non-overlapping examples (VGGish's own framing, 0.96 s hop)."""
    lm = log_mel(np.asarray(samples, np.float64).reshape(-1))  # (F, 64)
    return frame(lm, EXAMPLE_FRAMES, EXAMPLE_FRAMES).astype(np.float32)
