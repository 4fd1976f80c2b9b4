"""Teacher probe (issue 15; results/teacher-probe/README.md): train tsdsr-mini briefly on one degradation preset
and print its PSNR gain over bicubic on 9 held-out crops as it trains."""
import sys, time, json, torch, numpy as np
from dataclasses import replace
torch.set_num_threads(1)
from pruneseek.data import SRPairs, bicubic_upscale, DegradationConfig, degrade, load_image
from pruneseek.latents import select_images
from pruneseek.targets.mini import build_mini, mini_target
from pruneseek.training import Trainer
from pruneseek.engine.schedules import cosine
from pruneseek.evaluation import sr_tiled, _centre_crop
from pruneseek.metrics import psnr
name, preset, lr, steps, batch, crop = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
PRESETS = {
 "real": DegradationConfig(),
 "mild": DegradationConfig(resize_prob=(0,0,1), blur_sigma=(0.2,1.5), noise_range=(1,10), poisson_scale_range=(0.05,1.0), jpeg_range=(70,95),
        second_blur_prob=0.0, resize_prob2=(0,0,1), gaussian_noise_prob2=1.0, noise_range2=(0.0,0.0), jpeg_range2=(90,95), final_sinc_prob=0.0),
 "noisy": DegradationConfig(resize_prob=(0,0,1), blur_sigma=(0.2,1.2), gaussian_noise_prob=1.0, noise_range=(0.0,0.0), jpeg_range=(90,95),
        second_blur_prob=0.0, resize_prob2=(0,0,1), gaussian_noise_prob2=1.0, noise_range2=(15.0,35.0), jpeg_range2=(75,95), final_sinc_prob=0.0),
 "bicubic": None,
}
cfg = PRESETS[preset]
def deg(hr, seed):
    if cfg is None:
        return torch.nn.functional.interpolate(hr[None], scale_factor=0.25, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0,1)
    return degrade(hr, cfg, seed)
evalset = []
for p in select_images("held_out"):
    hr = _centre_crop(load_image(p), 128, multiple=64)
    for s in (0, 1, 2):
        evalset.append((hr[None], bicubic_upscale(deg(hr, 100 + s)[None], 4)))
bic = np.mean([float(psnr(up, hr)) for hr, up in evalset])
torch.manual_seed(0)
pairs = SRPairs(select_images("train"), hr_size=crop, scale=4, seed=0)
if cfg is None:
    class P:
        def __getitem__(self, i):
            hr, _ = pairs[i]; return hr, deg(hr, i)
    src = P()
else:
    pairs.degradation = cfg; src = pairs
tr, prompt, pooled = build_mini(0)
prompt, pooled = torch.nn.Parameter(prompt.clone()), torch.nn.Parameter(pooled.clone())
target = mini_target(tr, prompt, pooled)
params = list(tr.parameters()) + [prompt, pooled]
trainer = Trainer(torch.optim.AdamW(params, lr=lr, weight_decay=0.0), params, clip_norm=1.0)
sched = cosine(lr, lr * 0.01, steps)
t0 = time.time(); log = []
for step in range(steps + 1):
    if step % max(1, steps // 6) == 0 or step == steps:
        tr.eval()
        with torch.no_grad():
            d = np.mean([float(psnr(sr_tiled(target, up, 64), hr)) for hr, up in evalset]) - bic
        tr.train()
        log.append((step, round(time.time() - t0), round(float(d), 3)))
        print(name, "step", step, "t", round(time.time() - t0), "bic", round(bic, 2), "delta", round(float(d), 3), flush=True)
    if step == steps: break
    for g in trainer.optimizer.param_groups: g["lr"] = sched(step)
    b = [src[step * batch + j] for j in range(batch)]
    y = torch.stack([x[0] for x in b]) * 2 - 1
    x = bicubic_upscale(torch.stack([x[1] for x in b]), 4) * 2 - 1
    loss = (target.sr_latent(target.encode(x)) - target.encode(y)).abs().mean()
    trainer.zero_grad(); trainer.step(loss)
