"""The calibrated landscape measured on a (random-weight) tsdsr-mini reproduces its measurements exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pruneseek.landscape import calibrated
from pruneseek.landscape.calibrate import calibration_loss, measure
from pruneseek.latents import PairSpec, as_tuple, make_pairs
from pruneseek.latents import select_images
from pruneseek.targets.mini import build_mini, mini_target


def test_measured_landscape_matches_the_model(tmp_path):
    transformer, prompt, pooled = build_mini(2)
    torch.nn.init.normal_(transformer.proj_out.weight, std=0.05)
    target = mini_target(transformer.eval(), prompt, pooled)
    hr, lr = make_pairs(PairSpec(images=as_tuple(select_images("train")[:2]), count=2, hr_size=32, seed=0))
    from pruneseek.data import bicubic_upscale

    with torch.no_grad():
        z_lr = target.encode(bicubic_upscale(lr) * 2 - 1)
        data = {"z_lr": z_lr, "z_tea": target.sr_latent(z_lr), "hr": hr}
    cal = measure(target, data)
    assert cal["evaluations"] == 1 + 24 + 276
    d2 = np.array(cal["drop_two"])
    assert np.allclose(d2, d2.T)
    landscape = calibrated(cal["drop_one"], d2, cal["base_loss"])
    for dropped in ([], [3], [5, 17]):
        mask = np.ones(24, dtype=np.int64)
        mask[dropped] = 0
        true = calibration_loss(target, data, mask[None])[0]
        assert landscape.evaluate(mask) == pytest.approx(true, abs=1e-5)
