"""Extractor networks, weight layouts, preprocessing, postprocessing and frame sampling."""

import numpy as np
import pytest
import torch

from model.errors import UserError
from model.extractors import RunOptions, build_extractors, select_frames, vgg19, vggish
from model.extractors.audio import AudioExtractor
from model.extractors.visual import VisualExtractor

SMALL_VGG = (4, 8, 8, 16, 16)
SMALL_VGGISH = (4, 8, 8, 16)


# ---- frame sampling --------------------------------------------------------------------------

def ref_select(times, k):
    out = []
    for i in range(k):
        target = i / k
        hits = [j for j, t in enumerate(times) if t >= target]
        out.append(hits[0] if hits else len(times) - 1)
    return out


def test_select_frames_matches_the_rule_on_random_times():
    rng = np.random.default_rng(0)
    for _ in range(200):
        times = np.sort(rng.uniform(0, 1, rng.integers(1, 40))).tolist()
        k = int(rng.integers(1, 20))
        assert select_frames(times, k) == ref_select(times, k)


def test_select_frames_regular_rates():
    assert select_frames([i / 25 for i in range(25)], 1) == [0]  # the segment's first frame
    # 25 fps, k = 16: targets up to 0.9375 s, met by frames up to 0.96 s, never left to close
    assert select_frames([i / 25 for i in range(25)], 16)[-1] == 24
    assert select_frames([i / 10 for i in range(10)], 16) == ref_select(
        [i / 10 for i in range(10)], 16)
    idx = select_frames([i / 30 for i in range(30)], 16)
    assert len(idx) == 16 and len(set(idx)) == 16 and idx == sorted(idx)


def test_select_frames_repeats_and_edges():
    assert select_frames([0.0, 0.5], 4) == [0, 1, 1, 1]  # 0.75: no frame at or after -> last
    assert select_frames([0.1, 0.2], 2) == [0, 1]  # 0.5: none at or after -> the last
    assert select_frames([0.0, 0.1], 2) == [0, 1]
    assert select_frames([], 16) == []
    with pytest.raises(ValueError):
        select_frames([0.0], 0)


# ---- VGG19: layouts and preprocessing --------------------------------------------------------

def random_torchvision_sd(widths, seed=0):
    net = vgg19.VGG19(widths)
    net.init_random(seed)  # He-scaled, so activations stay O(1) through 16 layers
    g = torch.Generator().manual_seed(seed)
    sd = {k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in net.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(3, 3)  # the full torchvision file has a head too
    return sd


def test_torchvision_layout_loads_with_right_keys_and_values(tmp_path):
    sd = random_torchvision_sd(SMALL_VGG)
    torch.save(sd, tmp_path / "vgg.pth")
    loaded = vgg19.load_vgg19_weights(tmp_path / "vgg.pth", SMALL_VGG)
    assert set(loaded) == {k for k in sd if k.startswith("features.")}
    assert {int(k.split(".")[1]) for k in loaded} == {0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23,
                                                       25, 28, 30, 32, 34}
    for k, v in loaded.items():
        torch.testing.assert_close(v, sd[k])


def test_full_size_layout_is_the_public_one():
    shapes = {k: tuple(v.shape) for k, v in vgg19.VGG19().state_dict().items()}
    assert shapes["features.0.weight"] == (64, 3, 3, 3)
    assert shapes["features.34.weight"] == (512, 512, 3, 3)
    assert sum(np.prod(s) for s in shapes.values()) == 20_024_384  # VGG19 conv parameters
    assert [name for _, name, _, _ in vgg19.conv_layout()][-1] == "block5_conv4"


def test_bad_vgg19_files_are_user_errors(tmp_path):
    sd = random_torchvision_sd(SMALL_VGG)
    del sd["features.34.bias"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(UserError, match=r"features\.34\.bias"):
        vgg19.load_vgg19_weights(tmp_path / "missing.pth", SMALL_VGG)
    torch.save(random_torchvision_sd(SMALL_VGG), tmp_path / "small.pth")
    with pytest.raises(UserError, match="shape"):
        vgg19.load_vgg19_weights(tmp_path / "small.pth")  # full-size net, small file
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(UserError, match=r"junk\.h5"):
        vgg19.load_vgg19_weights(tmp_path / "junk.h5")


def test_keras_layout_kernel_transpose_matches_numpy(tmp_path):
    layers = vgg19.torchvision_to_keras(random_torchvision_sd(SMALL_VGG), SMALL_VGG)
    vgg19.save_keras_h5(tmp_path / "k.h5", layers)
    loaded = vgg19.load_vgg19_weights(tmp_path / "k.h5", SMALL_VGG)
    kernel, bias = layers["block3_conv2"]  # (3, 3, in, out)
    w = loaded["features.12.weight"].numpy()  # (out, in, 3, 3)
    for o, i, y, x in [(0, 0, 0, 0), (3, 5, 2, 1), (7, 7, 1, 2)]:
        assert w[o, i, y, x] == kernel[y, x, i, o]
    np.testing.assert_array_equal(loaded["features.12.bias"].numpy(), bias)


def test_keras_first_conv_is_a_bgr_convolution(tmp_path):
    """Reference: one output pixel of block1_conv1 computed in float64 from the h5 kernel."""
    layers = vgg19.torchvision_to_keras(random_torchvision_sd(SMALL_VGG), SMALL_VGG)
    vgg19.save_keras_h5(tmp_path / "k.h5", layers)
    net = vgg19.VGG19(SMALL_VGG)
    net.load_state_dict(vgg19.load_vgg19_weights(tmp_path / "k.h5", SMALL_VGG))
    bgr = np.random.default_rng(0).normal(size=(1, 3, 8, 8))
    out = net.features[0](torch.from_numpy(bgr).float()).detach().numpy()  # (1, 4, 8, 8)
    kernel, bias = layers["block1_conv1"]
    y, x = 4, 3
    patch = bgr[0, :, y - 1:y + 2, x - 1:x + 2].transpose(1, 2, 0)  # (3, 3, in) in HWC
    ref = np.einsum("hwi,hwio->o", patch, kernel.astype(np.float64)) + bias
    np.testing.assert_allclose(out[0, :, y, x], ref, rtol=1e-5, atol=1e-5)


def test_keras_and_torchvision_loaders_agree_on_converted_weights(tmp_path):
    sd = random_torchvision_sd(vgg19.WIDTHS, seed=1)
    torch.save(sd, tmp_path / "vgg19-test.pth")
    vgg19.save_keras_h5(tmp_path / "vgg19-test.h5", vgg19.torchvision_to_keras(sd))
    a, b = vgg19.VGG19(), vgg19.VGG19()
    a.load_state_dict(vgg19.load_vgg19_weights(tmp_path / "vgg19-test.pth"))
    b.load_state_dict(vgg19.load_vgg19_weights(tmp_path / "vgg19-test.h5"))
    rgb = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out_a, out_b = a(rgb), b(rgb.flip(1))  # the Keras-layout net takes BGR
    assert out_a.shape == (2, 512, 2, 2) and out_a.abs().max() > 0
    torch.testing.assert_close(out_a, out_b, rtol=1e-4, atol=1e-5 * out_a.abs().max().item())
    back = vgg19.keras_to_torchvision(vgg19.torchvision_to_keras(sd, swap_rgb_bgr=False))
    for k, v in back.items():
        torch.testing.assert_close(v, sd[k])


def test_keras_whole_model_file_with_old_weight_names(tmp_path):
    import h5py
    layers = vgg19.torchvision_to_keras(random_torchvision_sd(SMALL_VGG), SMALL_VGG)
    with h5py.File(tmp_path / "model.h5", "w") as f:
        mw = f.create_group("model_weights")
        mw.create_group("input_1")  # layers without weights are skipped
        for name, (kernel, bias) in layers.items():
            g = mw.create_group(name)
            g.create_dataset(f"{name}_b_1:0", data=bias)
            g.create_dataset(f"{name}_W_1:0", data=kernel)
    loaded = vgg19.load_vgg19_weights(tmp_path / "model.h5", SMALL_VGG)
    ref = vgg19.keras_to_torchvision(layers, SMALL_VGG)
    for k, v in ref.items():
        torch.testing.assert_close(loaded[k], v)


def test_ave_preprocessing_is_keras_caffe_mode():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    x = vgg19.preprocess(rgb, "ave")
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float32
    r, g, b = rgb[1, 10, 20].astype(np.float64)
    np.testing.assert_allclose(x[1, :, 10, 20], [b - 103.939, g - 116.779, r - 123.68], rtol=1e-6)


def test_torchvision_preprocessing():
    rgb = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    x = vgg19.preprocess(rgb, "torchvision")
    px = rgb[0, 5, 6] / 255.0
    ref = (px - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(x[0, :, 5, 6], ref, rtol=1e-5)


def test_resize_keeps_the_whole_frame():
    rgb = np.zeros((1, 48, 64, 3), np.uint8)
    rgb[:, :, :32] = 255  # left half white
    out = vgg19.resize(rgb)
    assert out.shape == (1, 224, 224, 3)
    assert out[0, :, :100].min() == 255 and out[0, :, 124:].max() == 0  # no crop, no shift
    same = np.full((2, 224, 224, 3), 7, np.uint8)
    np.testing.assert_array_equal(vgg19.resize(same), same)
    with pytest.raises(ValueError):
        vgg19.resize(np.zeros((48, 64, 3), np.uint8))


# ---- VGGish: layouts, network, postprocessing ------------------------------------------------

def random_vggish_sd(widths=SMALL_VGGISH, hidden=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.1
            for k, v in vggish.VGGish(widths, hidden).state_dict().items()}


def test_vggish_full_size_layout_is_the_public_one():
    keys = list(vggish.VGGish().state_dict())
    assert {int(k.split(".")[1]) for k in keys if k.startswith("features.")} == \
        {0, 3, 6, 8, 11, 13}
    assert {k for k in keys if k.startswith("embeddings.")} == \
        {f"embeddings.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")}
    assert vggish.VGGish().embeddings[0].in_features == 12288


def test_vggish_both_layouts_load_and_agree(tmp_path):
    sd = random_vggish_sd()
    torch.save(sd, tmp_path / "port.pth")
    audio = {k.replace("features.", "features_network.").replace("embeddings.",
                                                                 "embedding_network."): v
             for k, v in sd.items()}
    torch.save(audio, tmp_path / "vggish.pt")
    a, b = vggish.VGGish(SMALL_VGGISH, 32), vggish.VGGish(SMALL_VGGISH, 32)
    a.load_state_dict(vggish.load_vggish_weights(tmp_path / "port.pth", SMALL_VGGISH, 32))
    b.load_state_dict(vggish.load_vggish_weights(tmp_path / "vggish.pt", SMALL_VGGISH, 32))
    x = torch.randn(3, 1, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
    del audio["embedding_network.4.bias"]
    torch.save(audio, tmp_path / "bad.pt")
    with pytest.raises(UserError, match=r"embeddings\.4\.bias"):
        vggish.load_vggish_weights(tmp_path / "bad.pt", SMALL_VGGISH, 32)


def test_vggish_flattens_channels_last_like_tf():
    net = vggish.VGGish(SMALL_VGGISH, 32)
    net.load_state_dict(random_vggish_sd())
    x = torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        conv = net.features(x).double().numpy()  # (2, 16, 6, 4)
        out = net(x).double().numpy()
    h = conv.transpose(0, 2, 3, 1).reshape(2, -1)  # (H, W, C) order
    for i, relu in ((0, True), (2, True), (4, False)):
        lin = net.embeddings[i]
        h = h @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        h = np.maximum(h, 0) if relu else h
    np.testing.assert_allclose(out, h, rtol=1e-4, atol=1e-5)


def test_postprocess_modes():
    emb = np.random.default_rng(0).normal(size=(5, 128)).astype(np.float32)
    np.testing.assert_array_equal(vggish.postprocess(emb, "raw"), emb)
    np.testing.assert_array_equal(vggish.postprocess(emb, "ave"), np.maximum(emb, 0))
    rng = np.random.default_rng(1)
    vecs, means = rng.normal(size=(128, 128)), rng.normal(size=128)
    out = vggish.postprocess(emb, "pca", (vecs, means))
    ref = np.zeros((5, 128))
    for n in range(5):
        for i in range(128):  # TF postprocessor: PCA, clip to [-2, 2], quantise to 0..255
            v = sum(vecs[i, j] * (float(emb[n, j]) - means[j]) for j in range(128))
            ref[n, i] = int((min(max(v, -2.0), 2.0) + 2.0) * 255.0 / 4.0)
    np.testing.assert_array_equal(out, ref)
    with pytest.raises(ValueError):
        vggish.postprocess(emb, "pca")


def test_pca_params_load_from_port_and_tf_files(tmp_path):
    rng = np.random.default_rng(0)
    vecs, means = rng.normal(size=(128, 128)), rng.normal(size=(128, 1))
    torch.save({"pca_eigen_vectors": torch.from_numpy(vecs), "pca_means": torch.from_numpy(means)},
               tmp_path / "pca.pth")
    np.savez(tmp_path / "pca.npz", pca_eigen_vectors=vecs, pca_means=means.ravel())
    for name in ("pca.pth", "pca.npz"):
        v, m = vggish.load_pca_params(tmp_path / name)
        np.testing.assert_array_equal(v, vecs)
        np.testing.assert_array_equal(m, means.ravel())
    np.savez(tmp_path / "bad.npz", pca_eigen_vectors=vecs[:10])
    with pytest.raises(UserError, match=r"bad\.npz"):
        vggish.load_pca_params(tmp_path / "bad.npz")


# ---- extractor objects -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def extractors():
    return build_extractors(random_weights=True, seed=3, frames_per_segment=2)


def test_random_extractors_recipe(extractors):
    r = extractors.recipe
    assert r.random_weights and r.visual_weights == "random:seed=3" == r.audio_weights
    assert (r.visual_preprocess, r.audio_postprocess, r.frames_per_segment) == ("ave", "ave", 2)
    visual, audio, recipe = extractors
    assert recipe is r and visual.identity == "random:seed=3" == audio.identity


def test_visual_frame_and_segment_features(extractors):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    feats = extractors.visual.frame_features(frames)
    assert feats.shape == (3, 7, 7, 512) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and feats.std() > 0
    # times 0.1, 0.4, 0.8 with k=2 (targets 0, 0.5) select frames 0 and 2
    seg = extractors.visual.segment_feature(frames, [0.1, 0.4, 0.8], 2)
    np.testing.assert_allclose(seg, (feats[0].astype(np.float64) + feats[2]) / 2, rtol=1e-5,
                               atol=1e-4)
    # one frame at 0.6 with k=2: selected twice -> its own feature
    one = extractors.visual.segment_feature(frames[:1], [0.6], 2)
    np.testing.assert_allclose(one, feats[0], rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError):
        extractors.visual.segment_feature(frames[:0], [], 2)
    assert extractors.visual.frame_features(frames[:0]).shape == (0, 7, 7, 512)


def test_same_seed_same_weights_other_seed_differs(extractors):
    again, other = vgg19.VGG19(), vgg19.VGG19()
    again.init_random(3)
    other.init_random(4)
    frame = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    a = extractors.visual.frame_features(frame)
    np.testing.assert_array_equal(a, VisualExtractor(again, "ave").frame_features(frame))
    assert not np.allclose(a, VisualExtractor(other, "ave").frame_features(frame))
    n1, n2 = vggish.VGGish(SMALL_VGGISH, 32), vggish.VGGish(SMALL_VGGISH, 32)
    n1.init_random(7)
    n2.init_random(7)
    x = np.random.default_rng(2).normal(0, 0.1, 16000).astype(np.float32)
    np.testing.assert_array_equal(AudioExtractor(n1)(x), AudioExtractor(n2)(x))


def test_audio_segment_single_and_batch_forms(extractors):
    rng = np.random.default_rng(0)
    segs = rng.normal(0, 0.2, (3, 16000)).astype(np.float32)
    batch = extractors.audio.segments(segs)
    assert batch.shape == (3, 128) and batch.dtype == np.float32
    assert (batch >= 0).all()  # "ave": ReLU'd embedding
    # oneDNN picks its fp32 kernels by batch size (AVX-512 and AMX machines differ from AVX2),
    # so sums run in another order: the difference scales with the embedding's values (up to ~4)
    atol = 1e-5 * max(1.0, float(np.abs(batch).max()))
    for i in range(3):
        np.testing.assert_allclose(extractors.audio(segs[i]), batch[i], rtol=1e-5, atol=atol)
    short = segs[0][:8000]
    padded = np.concatenate([short, np.zeros(7600, np.float32)])
    np.testing.assert_allclose(extractors.audio(short), extractors.audio(padded), atol=1e-6)
    assert extractors.audio.segments([]).shape == (0, 128)


def test_audio_raw_and_ave_relation():
    net = vggish.VGGish(SMALL_VGGISH, 32)
    net.init_random(5)
    raw = AudioExtractor(net, "raw")
    ave = AudioExtractor(net, "ave")
    x = np.random.default_rng(0).normal(0, 0.2, 16000).astype(np.float32)
    r = raw(x)
    assert (r < 0).any()
    np.testing.assert_allclose(ave(x), np.maximum(r, 0), atol=1e-6)


def test_channels_last_and_bf16_match_fp32():
    net = vgg19.VGG19(SMALL_VGG)
    net.load_state_dict({k: v for k, v in random_torchvision_sd(SMALL_VGG).items()
                         if k.startswith("features.")})
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    outs = {}
    for name, opts in {"nchw": RunOptions(channels_last=False),
                       "nhwc": RunOptions(channels_last=True, batch_size=1),
                       "bf16": RunOptions(precision="bf16")}.items():
        outs[name] = VisualExtractor(net, "ave", opts).frame_features(frames)
    np.testing.assert_allclose(outs["nhwc"], outs["nchw"], rtol=1e-4, atol=1e-3)
    rel = np.abs(outs["bf16"] - outs["nchw"]).max() / np.abs(outs["nchw"]).max()
    assert rel < 0.1


def test_bad_run_options_are_user_errors():
    with pytest.raises(UserError, match="precision"):
        RunOptions(precision="int3")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="cuda"):
            build_extractors(random_weights=True, device="cuda")
    with pytest.raises(UserError, match="preprocessing"):
        build_extractors(random_weights=True, visual_preprocess="caffe")


def test_build_from_explicit_files_checks_them(tmp_path):
    torch.save(random_torchvision_sd(SMALL_VGG), tmp_path / "my-vgg.pth")
    torch.save({"x": torch.zeros(1)}, tmp_path / "vggish.pth")
    with pytest.raises(UserError, match="cannot load VGG19"):
        build_extractors(visual_weights_file=tmp_path / "my-vgg.pth",
                         audio_weights_file=tmp_path / "vggish.pth")
    with pytest.raises(UserError, match="not found"):
        build_extractors(visual_weights_file=tmp_path / "nope.pth")
