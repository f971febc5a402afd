"""benchmarks.extractors' fraction of peak: the multiply-accumulates it counts per item."""

from __future__ import annotations

from benchmarks.extractors import PEAK_LAYERS, PEAK_SHAPE, Gemm, macs
from model.extractors import vgg19


def test_vgg19_macs_are_its_convolutions_by_hand():
    want, side, c_in = 0, vgg19.IMAGE_SIZE, 3
    for width, n in zip(vgg19.WIDTHS, vgg19.CONVS_PER_BLOCK, strict=True):
        for _ in range(n):
            want += side * side * width * c_in * 3 * 3
            c_in = width
        side //= 2  # the block's max-pool
    assert macs(vgg19.VGG19(), (3, vgg19.IMAGE_SIZE, vgg19.IMAGE_SIZE)) == want
    assert 19e9 < want < 20e9  # the ~19.5 G usually quoted for VGG19 at 224x224


def test_the_peak_gemms_are_m_by_k_by_n_each():
    channels, size, _ = PEAK_SHAPE
    assert macs(Gemm(), PEAK_SHAPE) == PEAK_LAYERS * size * size * channels * channels
