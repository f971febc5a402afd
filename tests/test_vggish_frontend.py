"""VGGish log-mel front end against an independent NumPy float64 reference.

The reference below is written from the published constants only: explicit framing loops, the
Hann formula, a DFT by matrix product (no np.fft), and per-band triangles computed in mel.
"""

import functools
import math

import numpy as np
import pytest

from model.extractors import vggish_frontend as fe

SR = 16000


def ref_frames(x: np.ndarray, window: int, hop: int) -> np.ndarray:
    starts = range(0, len(x) - window + 1, hop)
    return np.array([x[s:s + window] for s in starts], np.float64)


def ref_dft_magnitude(frames: np.ndarray, n_fft: int) -> np.ndarray:
    n = np.arange(frames.shape[1])
    k = np.arange(n_fft // 2 + 1)
    basis = np.exp(-2j * np.pi * np.outer(n, k) / n_fft)  # (400, 257), zero-padding implicit
    return np.abs(frames @ basis)


def ref_mel_weights() -> np.ndarray:
    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    n_bins, n_bands = 257, 64
    lo, hi = mel(125.0), mel(7500.0)
    edges = [lo + (hi - lo) * i / (n_bands + 1) for i in range(n_bands + 2)]
    w = np.zeros((n_bins, n_bands))
    for b in range(1, n_bins):  # DC bin stays zero (HTK)
        m = mel(b * (SR / 2) / (n_bins - 1))
        for j in range(n_bands):
            left, centre, right = edges[j], edges[j + 1], edges[j + 2]
            if left < m <= centre:
                w[b, j] = (m - left) / (centre - left)
            elif centre < m < right:
                w[b, j] = (right - m) / (right - centre)
    return w


def ref_log_mel(x: np.ndarray) -> np.ndarray:
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / 400) for i in range(400)])
    frames = ref_frames(np.asarray(x, np.float64), 400, 160) * window
    return np.log(ref_dft_magnitude(frames, 512) @ ref_mel_weights() + 0.01)


def signals() -> dict[str, np.ndarray]:
    t = np.arange(SR) / SR
    rng = np.random.default_rng(0)
    return {
        "tone_440": 0.5 * np.sin(2 * np.pi * 440 * t),
        "tone_3k": 0.9 * np.sin(2 * np.pi * 3000 * t + 0.3),
        "two_tones": 0.3 * np.sin(2 * np.pi * 200 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t),
        "noise": np.clip(rng.normal(0, 0.3, SR), -1, 1),
        "silence": np.zeros(SR),
    }


def test_public_constants():
    assert (fe.SAMPLE_RATE, fe.WINDOW_LENGTH, fe.HOP_LENGTH) == (16000, 400, 160)
    assert fe.FFT_LENGTH == 512
    assert (fe.NUM_BANDS, fe.MEL_MIN_HZ, fe.MEL_MAX_HZ, fe.LOG_OFFSET) == (64, 125.0, 7500.0, 0.01)
    assert fe.EXAMPLE_FRAMES == 96
    assert fe.EXAMPLE_SAMPLES == 15600  # 95 hops + one window


def test_framing_matches_loops():
    x = np.arange(1000, dtype=np.float64)
    np.testing.assert_array_equal(fe.frame(x, 400, 160), ref_frames(x, 400, 160))
    assert fe.frame(x[:399], 400, 160).shape == (0, 400)


def test_periodic_hann_window():
    w = fe.periodic_hann(400)
    assert w[0] == 0.0 and w[200] == pytest.approx(1.0)
    ref = [0.5 - 0.5 * math.cos(2 * math.pi * i / 400) for i in range(400)]
    np.testing.assert_allclose(w, ref, atol=1e-15)


def test_mel_filterbank_matches_reference():
    np.testing.assert_allclose(fe.mel_matrix(), ref_mel_weights(), atol=1e-12)


@pytest.mark.parametrize("name", list(signals()))
def test_stft_and_log_mel_match_reference(name):
    x = signals()[name]
    frames = ref_frames(x, 400, 160) * fe.periodic_hann(400)
    np.testing.assert_allclose(fe.stft_magnitude(x), ref_dft_magnitude(frames, 512), atol=1e-9)
    np.testing.assert_allclose(fe.log_mel(x), ref_log_mel(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", list(signals()))
def test_segment_example_is_first_96_frames(name):
    x = signals()[name]
    ex = fe.segment_example(x.astype(np.float32))
    assert ex.shape == (96, 64) and ex.dtype == np.float32
    ref = ref_log_mel(x.astype(np.float32).astype(np.float64))[:96]
    np.testing.assert_allclose(ex, ref, atol=1e-6, rtol=0)


def test_tone_peaks_in_the_band_of_its_frequency():
    lm = fe.log_mel(signals()["tone_3k"])
    centres_mel = np.linspace(fe.hz_to_mel(125.0), fe.hz_to_mel(7500.0), 66)[1:-1]
    centres_hz = 700.0 * (np.exp(centres_mel / 1127.0) - 1.0)
    peak = int(np.argmax(lm.mean(axis=0)))
    assert abs(centres_hz[peak] - 3000) < 0.06 * 3000


def test_silence_is_log_offset():
    np.testing.assert_allclose(fe.segment_example(np.zeros(SR)), np.log(0.01), atol=1e-6)


def test_short_segment_is_zero_padded_at_the_end():
    x = signals()["noise"][:9000]
    padded = np.concatenate([x, np.zeros(15600 - 9000)])
    np.testing.assert_allclose(fe.segment_example(x), ref_log_mel(padded), atol=1e-6, rtol=0)
    np.testing.assert_allclose(fe.segment_example(np.zeros(0)), np.log(0.01), atol=1e-6)


def test_only_the_first_15600_samples_matter():
    x = signals()["noise"]
    y = x.copy()
    y[15600:] = 0.7
    np.testing.assert_array_equal(fe.segment_example(x), fe.segment_example(y))


def test_waveform_examples_vggish_framing():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.1, 10 * SR)
    ex = fe.waveform_examples(x)
    assert ex.shape == (10, 96, 64)  # 998 frames -> 10 whole examples of 96
    np.testing.assert_allclose(ex[3], ref_log_mel(x)[3 * 96:4 * 96], atol=1e-6, rtol=0)


# ---- resampling to 16 kHz, as the official front end does it -----------------------------------
# The official front end averages the channels, then resamples with resampy's `kaiser_best`
# filter, published as: a sinc with roll-off 0.917347 of the output Nyquist, tapered by a Kaiser
# window (beta 12.9846) over 50 zero crossings on each side; the signal is zero outside.

KAISER_ROLLOFF, KAISER_BETA, KAISER_ZEROS = 0.917347, 12.9846, 50


@functools.cache
def ref_resampling_weights(n: int, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights, input indices), each (n_out, taps): the windowed-sinc equation evaluated at
    every output time of n samples at `rate`, in float64 (no tables)."""
    scale = SR / rate  # < 1: the filter is stretched to the output's Nyquist
    n_out = math.ceil(n * SR / rate)
    t = np.arange(n_out) * (rate / SR)  # output times in input samples
    reach = math.ceil(KAISER_ZEROS / scale) + 1
    k = np.floor(t).astype(int)[:, None] + np.arange(-reach, reach + 1)  # (n_out, taps)
    d = (t[:, None] - k) * scale  # distance in output samples
    u = np.clip(d / KAISER_ZEROS, -1.0, 1.0)
    taper = np.where(np.abs(d) <= KAISER_ZEROS,
                     np.i0(KAISER_BETA * np.sqrt(1.0 - u * u)) / np.i0(KAISER_BETA), 0.0)
    weights = scale * KAISER_ROLLOFF * np.sinc(KAISER_ROLLOFF * d) * taper
    return np.where((k >= 0) & (k < n), weights, 0.0), np.clip(k, 0, n - 1)


def ref_resample(x: np.ndarray, rate: int) -> np.ndarray:
    weights, k = ref_resampling_weights(len(x), rate)
    return (weights * x[k]).sum(axis=1)  # zero outside the signal


def stereo_signals(rate: int, seconds: float = 1.0) -> dict[str, np.ndarray]:
    """(n, 2) test signals at `rate`, the two channels different."""
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(rate)
    sweep = 2 * np.pi * (100 * t + (7900 - 100) / (2 * seconds) * t * t)  # 100 Hz -> 7.9 kHz
    pair = {
        "tones": (0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 3000 * t)),
        "top_band_tones": (0.5 * np.sin(2 * np.pi * 7200 * t), 0.4 * np.sin(2 * np.pi * 7450 * t)),
        "above_the_bands": (0.5 * np.sin(2 * np.pi * 7600 * t), 0.5 * np.sin(2 * np.pi * 7800 * t)),
        "noise": (rng.normal(0, 0.2, len(t)), rng.normal(0, 0.1, len(t))),
        "chirp": (0.5 * np.sin(sweep), 0.25 * np.sin(sweep + 1.0)),
    }
    return {name: np.stack(p, axis=1) for name, p in pair.items()}


@pytest.mark.parametrize("rate", [44100, 48000])
def test_resampled_log_mel_matches_the_official_front_end_in_every_band(rate):
    from model.extractors.resample import resample_to_16k

    for name, x in stereo_signals(rate).items():
        got = resample_to_16k(x.astype(np.float32), rate)
        want = ref_resample(x.mean(axis=1), rate)
        assert got.dtype == np.float32 and len(got) == len(want), name
        diff = np.abs(fe.log_mel(got) - ref_log_mel(want))  # every frame and band
        assert diff.max() < 0.05, (name, float(diff.max()), int(diff.max(axis=0).argmax()))


@pytest.mark.parametrize("rate", [44100, 48000])
def test_stream_resampler_output_does_not_depend_on_the_blocks(rate):
    from model.extractors.resample import StreamResampler, resample_to_16k

    x = stereo_signals(rate)["chirp"].astype(np.float32)
    whole = resample_to_16k(x, rate)
    rng = np.random.default_rng(0)
    for max_block in (7, 441, 5000):
        stream, parts, i = StreamResampler(rate), [], 0
        while i < len(x):
            n = int(rng.integers(1, max_block + 1))
            parts.append(stream.push(x[i:i + n]))
            i += n
        parts.append(stream.flush())
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_16k_input_is_only_mixed_down():
    from model.extractors.resample import resample_to_16k

    x = stereo_signals(SR)["noise"].astype(np.float32)
    np.testing.assert_allclose(resample_to_16k(x, SR), x.astype(np.float64).mean(axis=1),
                               atol=1e-7)
    with pytest.raises(ValueError, match="shape"):
        resample_to_16k(np.zeros((2, 3, 4)), 48000)
