"""Recovery probe (issue 15; results/recovery-probe/README.md): one mask, three recovery seeds, PSNR to the teacher.
Usage: python scripts/probes/recovery_probe.py SCHEDULE LR [BATCH] [STEPS]"""
import sys, time, torch, numpy as np
torch.set_num_threads(2)
from pruneseek.targets.mini import load_mini
from pruneseek.latents import calibration_latents, select_images, target_pairs
from pruneseek.losses import perceptual_loss
from pruneseek.evaluation import eval_set, evaluate
from pruneseek.recovery import recover, RecoveryConfig
from pruneseek.experiment.search import resolve_space
t = load_mini(); perc, _ = perceptual_loss("gmsd")
data = calibration_latents(t, target_pairs(t, select_images("train"), 192, 64, 0), progress=False)
ev = eval_set(t, 128, (0, 1), per_image=4)
preset = resolve_space("tsdsr", 0.5, None, 24)
rng = np.random.default_rng(5)
masks = {"bk": [1,0,1,0,1,0,1,0,1,0,1,0,0,1,0,1,0,1,0,1,0,1,0,1], "rand": [int(v) for v in preset.space.sample(1, rng)[0]]}
sched, lr = sys.argv[1], float(sys.argv[2])
for name, m in masks.items():
    vals = []
    for seed in (0, 1, 2):
        s0 = time.time()
        st, rec = recover(t, m, data, perc, RecoveryConfig(steps=int(sys.argv[4]) if len(sys.argv) > 4 else 200, batch=int(sys.argv[3]) if len(sys.argv) > 3 else 4, seed=seed, schedule=sched, lr=lr))
        vals.append(evaluate(st, t, m, ev)["metrics"]["psnr_teacher"])
    print(sched, lr, name, [round(v, 3) for v in vals], "std", round(float(np.std(vals, ddof=1)), 3), "mean", round(float(np.mean(vals)), 3), flush=True)
