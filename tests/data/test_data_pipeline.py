"""Real-ESRGAN degradation, image loading, training pairs and the built-in photographs (docs/design.md §7, §8)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pruneseek.data import (
    HELD_OUT,
    VALIDATION,
    TRAIN,
    DataError,
    DegradationConfig,
    SRPairs,
    bicubic_upscale,
    builtin_images,
    degrade,
    list_images,
    load_image,
)
from pruneseek.data.degrade import gaussian_kernel, generalized_kernel, plateau_kernel, random_kernel, sinc_kernel
from pruneseek.metrics import psnr


@pytest.fixture(scope="module")
def photo():
    (_, path), *_ = builtin_images("train")
    return load_image(path)[:, :128, :128].contiguous()


def test_gaussian_kernel_matches_the_formula():
    k = gaussian_kernel(7, 1.3, 1.3)
    ax = np.arange(7) - 3
    ref = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * 1.3**2))
    np.testing.assert_allclose(k, ref / ref.sum(), rtol=1e-12)
    # anisotropic, rotated by 90°: the two σ swap axes; unrotated, swapping σ transposes the kernel
    np.testing.assert_allclose(gaussian_kernel(9, 2.0, 0.7, np.pi / 2), gaussian_kernel(9, 0.7, 2.0, 0.0), atol=1e-12)
    np.testing.assert_allclose(gaussian_kernel(9, 2.0, 0.7), gaussian_kernel(9, 0.7, 2.0).T, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: generalized_kernel(11, 1.5, 0.8, 0.3, 2.5),
    lambda: plateau_kernel(13, 1.0, 2.0, -0.4, 1.5),
    lambda: sinc_kernel(9, np.pi / 2, pad_to=21),
])
def test_kernels_are_normalised(make):
    k = make()
    assert k.sum() == pytest.approx(1.0, abs=1e-9)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1


def test_random_kernels_cover_sizes_and_stay_normalised():
    rng = np.random.default_rng(0)
    cfg = DegradationConfig()
    for _ in range(60):
        k = random_kernel(rng, cfg, cfg.blur_sigma, 0.1)
        assert k.shape == (21, 21) and k.sum() == pytest.approx(1.0, abs=1e-6)


def test_degradation_shape_range_levels_and_determinism(photo):
    lr = degrade(photo, DegradationConfig(), 3)
    assert lr.shape == (3, 32, 32)
    assert lr.min() >= 0 and lr.max() <= 1
    assert torch.equal(lr * 255, (lr * 255).round())  # 8-bit levels
    assert torch.equal(lr, degrade(photo, DegradationConfig(), 3))
    others = [degrade(photo, DegradationConfig(), s) for s in range(4, 8)]
    assert all(not torch.equal(lr, o) for o in others)


def test_degradation_really_degrades(photo):
    values = [float(psnr(bicubic_upscale(degrade(photo, DegradationConfig(), s))[None], photo[None])) for s in range(6)]
    clean = float(psnr(bicubic_upscale(torch.nn.functional.avg_pool2d(photo[None], 4))[0][None], photo[None]))
    assert all(12 < v < 35 for v in values)
    assert np.mean(values) < clean  # worse than a clean 4× downscale


def test_gray_and_rgba_images(tmp_path):
    gray = (np.arange(64 * 48).reshape(48, 64) % 256).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    g = load_image(tmp_path / "gray.png")
    assert g.shape == (3, 48, 64) and torch.equal(g[0], g[1])
    assert load_image(tmp_path / "rgba.png").shape == (3, 40, 40)
    pairs = SRPairs(list_images(tmp_path), hr_size=64, seed=1)  # both smaller than 64 in some side: padded
    hr, lr = pairs[0]
    assert hr.shape == (3, 64, 64) and lr.shape == (3, 16, 16)


def test_pairs_are_deterministic_per_seed_and_index():
    paths = [p for _, p in builtin_images("train")[:3]]
    a, b = SRPairs(paths, hr_size=32, seed=5), SRPairs(paths, hr_size=32, seed=5)
    for i in (0, 4):
        assert all(torch.equal(x, y) for x, y in zip(a[i], b[i]))
    assert not torch.equal(a[0][1], SRPairs(paths, hr_size=32, seed=6)[0][1])
    with pytest.raises(DataError, match="multiple of the scale"):
        SRPairs(paths, hr_size=30)


def test_builtin_split_is_fixed_disjoint_and_present():
    assert len(HELD_OUT) == 4 and len(VALIDATION) == 2 and len(TRAIN) == 13
    assert not (set(TRAIN) & set(HELD_OUT)) and not (set(TRAIN) & set(VALIDATION)) and not (set(HELD_OUT) & set(VALIDATION))
    assert "motorcycle_left" in TRAIN and "motorcycle_right" not in TRAIN + HELD_OUT + VALIDATION  # stereo twins apart
    for split in ("train", "validation", "held_out"):
        for name, path in builtin_images(split):
            assert path.is_file(), name
    assert len(builtin_images("all")) == 20
    with pytest.raises(DataError, match="unknown split"):
        builtin_images("test")


def _thumbnail(path) -> torch.Tensor:
    """An 8 × 8 gray, zero-mean, unit-norm thumbnail of the whole image (for near-duplicate checks)."""
    import torch.nn.functional as F

    thumb = F.interpolate(load_image(path).mean(0, keepdim=True)[None], size=(8, 8), mode="area").flatten()
    thumb = thumb - thumb.mean()
    return thumb / thumb.norm()


def test_no_split_shares_content_with_another():
    """No held-out or validation photograph is a near copy of a training one (a stereo twin is; the check finds it)."""
    from pruneseek.data.builtin import builtin_path

    train = {name: _thumbnail(path) for name, path in builtin_images("train")}
    twin = _thumbnail(builtin_path("motorcycle_right"))
    twin_similarity = max(float(t @ twin) for t in train.values())
    assert twin_similarity > 0.9  # the excluded twin of motorcycle_left is caught, so the check has teeth
    for split in ("held_out", "validation"):
        for name, path in builtin_images(split):
            thumb = _thumbnail(path)
            closest = max(train, key=lambda n: float(train[n] @ thumb))
            assert float(train[closest] @ thumb) < 0.8, (name, closest)


def test_held_out_set_has_at_least_100_crops_and_validation_is_apart():
    from pruneseek import recipes
    from pruneseek.evaluation import grid_crops, held_out_crops

    counts = {name: len(grid_crops(load_image(path), recipes.EVAL["crop"])) for name, path in builtin_images("held_out")}
    assert sum(counts.values()) * len(recipes.EVAL["seeds"]) >= 100 and min(counts.values()) >= 1
    items = held_out_crops(64, (0,), 64, split="validation", per_image=2, degradation="testbed")
    assert {i["image"] for i in items} == set(VALIDATION) and len(items) == 4
    assert items[0]["hr"].shape == (1, 3, 64, 64) and items[0]["up"].shape == (1, 3, 64, 64)
    again = held_out_crops(64, (0,), 64, split="validation", per_image=2, degradation="testbed")
    assert all(torch.equal(a["up"], b["up"]) for a, b in zip(items, again))  # seeded per (seed, crop)
    assert not torch.equal(items[0]["up"], items[1]["up"])


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nope")
    with pytest.raises(DataError, match="holds no PNG or JPEG"):
        list_images(tmp_path)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        load_image(bad)
