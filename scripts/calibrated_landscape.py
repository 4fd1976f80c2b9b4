"""Measure tsdsr-mini's calibrated landscape and run the searches on it (results/landscape-calibrated-tsdsr-mini.json)."""
import json, sys, time
from collections import Counter
import numpy as np
from pruneseek.latents import PairSpec, as_tuple, calibration_latents, select_images
from pruneseek.targets.mini import load_mini
from pruneseek.landscape import calibrated, solve
from pruneseek.landscape.calibrate import measure, calibration_loss
from pruneseek.landscape.search_jax import SearchConfig, run_jax
from pruneseek.spaces import load_preset, TransferSpace
from pruneseek.io import atomic_write_json
target = load_mini()
spec = PairSpec(images=as_tuple(select_images("train")), count=64, hr_size=64, seed=0)
data = calibration_latents(target, spec, progress=False)
cal = measure(target, data)
print("measured in", cal["seconds"])
preset = load_preset("tsdsr-24-r50"); space = preset.space; tr = TransferSpace(space, 1, "pairs")
L = calibrated(cal["drop_one"], np.array(cal["drop_two"]), cal["base_loss"])
sol = solve(L, space, tr)
S = int(sys.argv[1]) if len(sys.argv) > 1 else 200
cfg = SearchConfig()
rows = {}
for alg in ["tinyfusion", "tinysr-marginal", "tinysr-next-option", "random-min"]:
    r = run_jax(alg, space, np.repeat(L.a[None], S, 0), np.repeat(L.W[None], S, 0), np.arange(S), cfg)
    masks = np.asarray(r["mask"])
    common, count = Counter(map(tuple, masks.tolist())).most_common(1)[0]
    rows[alg] = {"success_rate": float(sol.is_optimal(masks).mean()), "mean_regret": float(sol.regret(masks).mean()),
                 "mean_percentile": float(sol.percentile(masks).mean()), "in_block_space": float(np.mean([space.contains(m) for m in masks])),
                 "most_common_mask": list(common), "most_common_share": count / S,
                 "most_common_true_loss": float(calibration_loss(target, data, np.array([common]))[0])}
    print(alg, rows[alg])
out = {"model": "tsdsr-mini", "space": preset.name, "transfer": {"k": 1, "topology": "pairs"}, "seeds": S,
       "calibration": {"crops": spec.count, "crop_size": spec.hr_size, "seed": spec.seed, **{k: cal[k] for k in ("base_loss", "evaluations", "seconds")}},
       "drop_one": cal["drop_one"], "drop_two": cal["drop_two"],
       "optimum": {"mask": sol.optimum.tolist(), "quadratic_value": sol.value, "true_loss": float(calibration_loss(target, data, sol.optimum[None])[0]),
                   "in_block_space": bool(space.contains(sol.optimum)), "in_transfer_space": bool(tr.contains(sol.optimum)),
                   "block_optimum": sol.block_optimum.tolist(), "block_value": sol.block_value,
                   "transfer_optimum": sol.transfer_optimum.tolist(), "transfer_value": sol.transfer_value},
       "algorithms": rows, "search_config": {"steps": cfg.steps, "lr": cfg.lr, "samples": cfg.samples},
       "command": "python scripts/calibrated_landscape.py " + " ".join(sys.argv[1:])}
atomic_write_json("results/landscape-calibrated-tsdsr-mini.json", out)
print(json.dumps(out["optimum"], indent=1))
