"""Every default value of pruneseek's recipes, in one place (the papers' numbers and this project's choices).

The engine's :class:`~pruneseek.engine.search.SearchConfig`, the learned strategies' settings, the bundled
strategy presets (``strategies/*.toml``; a test keeps them equal to these), the recovery protocol, the
comparison budget and the commands' option defaults all read their defaults from here, so a default
changes in one line. Display options (progress bars) are not recipe values and are not here.

Sources (see ``docs/design.md`` §4, §6 and §9):

- TinyFusion (arXiv:2412.01199, §3 and its DiT experiments): Gumbel-softmax temperature linear 4 → 0.1,
  logit scaling 100, LoRA rank 8 / α 16 at lr 1e-4 with the mask logits at 10× that, AdamW without weight
  decay, gradient-norm clip 1.0, decision from an EMA (0.999) of the logits.
- TSD-SR / TinySR: LoRA rank 64, α 64 on TSD-SR's ten transformer target names.
- This project's measured choices: the recovery learning rate (3e-4, see :mod:`pruneseek.recovery`), the
  initial logit 0.02, the comparison budget sized for 2 CPU cores.
"""
from __future__ import annotations

from typing import Any

#: Gumbel-softmax temperature τ: linear from TAU_START to TAU_END over the search (TinyFusion).
TAU_START = 4.0
TAU_END = 0.1
#: The learned-mask recipe (TinyFusion). Keys are the learned strategies' setting names.
LEARNED_MASK: dict[str, Any] = {
    "tau": {"kind": "linear", "start": TAU_START, "end": TAU_END},
    "scaling": 100.0,
    "weight_update": "lora",
    "lora_rank": 8,
    "lora_alpha": 16.0,
    "lora_targets": None,
    "lora_init": True,
    "lora_after": "discard",
    "weight_lr": 1e-4,
    "gate_lr": 1e-3,
    "weight_decay": 0.0,
    "clip_norm": 1.0,
    "ema_decay": 0.999,
    "mode": "blend",
    "share_across_batch": False,
    "max_nonfinite": 10,
    "init_logit": 0.02,
}
#: TinySR's recipe on TSD-SR (its released code): TSD-SR's LoRA size (rank 64, α 64), half TinyFusion's rates.
TINYSR: dict[str, Any] = {"lora_rank": 64, "lora_alpha": 64.0, "weight_lr": 5e-5, "gate_lr": 5e-4, "rule": "marginal"}
#: Search settings for the bundled tsdsr-mini (width 64, so LoRA rank 8 and TinyFusion's rates for every learned
#: strategy); applied to the settings a strategy has, under any preset file or flag.
MINI_SEARCH: dict[str, Any] = {"lora_rank": 8, "lora_alpha": 16.0, "weight_lr": 1e-4, "gate_lr": 1e-3}

#: The rule-based strategies' scoring budget: calibration batches per mask, and where layers are removed.
SCORING: dict[str, Any] = {"score_batches": 8, "scope": "global"}

#: ``pruneseek search``'s data and run-length defaults.
SEARCH = {"steps": 600, "batch": 4, "crops": 192, "crop_size": 64, "seed": 0}


def ema_decay_for(steps: int) -> float:
    """The EMA decay ``pruneseek search`` uses for a run of ``steps``: 0.999, or 1 − 10/steps for shorter runs,
    so the EMA spans the last tenth of the run."""
    return min(LEARNED_MASK["ema_decay"], max(0.0, 1 - 10 / steps))


#: The fair recovery protocol (:mod:`pruneseek.recovery`): budget and optimiser, the same for every strategy.
#: lr measured on tsdsr-mini (24 → 12): 3e-4 brings HaarPSI back to the teacher's within 100 steps; 1e-4 did
#: not within 300.
RECOVERY: dict[str, Any] = {"steps": 200, "batch": 4, "lr": 1e-3, "weight_decay": 0.0, "clip_norm": 1.0,
                            "lambda_l1": 1.0, "lambda_perceptual": 1.0, "max_nonfinite": 10,
                            "schedule": "cosine"}

#: The comparison's budget (``pruneseek compare``): the full one and ``--quick``. With it all 11 strategies × 3
#: seeds at ratio 0.5 took about an hour on one CPU core (measured rows: a learned search ≈ 160–190 s, race ≈
#: 250 s, snapfusion ≈ 75 s, the other rules ≤ 30 s; recovery ≈ 20 s; the two evaluations on the 106 held-out
#: crops ≈ 10 s).
COMPARE_FULL: dict[str, Any] = {"search_steps": 500, "recovery_steps": RECOVERY["steps"], "batch": RECOVERY["batch"],
                                "crops": SEARCH["crops"], "crop_size": SEARCH["crop_size"], "eval_crop": 128,
                                "eval_seeds": (0, 1), "eval_per_image": None, "seeds": (0, 1, 2), "lr": RECOVERY["lr"]}
COMPARE_QUICK: dict[str, Any] = {"search_steps": 3, "recovery_steps": 3, "batch": 2, "crops": 8, "crop_size": 32,
                                 "eval_crop": 64, "eval_seeds": (0,), "eval_per_image": 1, "seeds": (0,), "lr": RECOVERY["lr"]}
#: ``--quick`` also shrinks the rule-based strategies' own budgets (only settings a strategy has are passed).
QUICK_STRATEGY_SETTINGS: dict[str, Any] = {"score_batches": 1, "num_masks": 6, "n_trials": 6, "latency_repeats": 1,
                                           "candidates": 4, "screen": 6, "first_steps": 1}
#: The ``race`` strategy: candidates, uniform draws screened by calibration loss for the places the rules leave,
#: first round's recovery steps, halving factor, and the validation crops that score them (every 128-px grid
#: square of the two validation photographs, 35, one degradation each).
RACE: dict[str, Any] = {"candidates": 16, "screen": 100, "first_steps": 25, "eta": 2, "eval_crop": 128,
                        "eval_seeds": (0,), "eval_per_image": None}
#: Share of the recovery budget an annealing strategy may spend annealing (PocketSR anneals over T = 8000).
ANNEAL_FRACTION = 0.5

#: The held-out evaluation: side of the grid squares cut from each photograph, degradation seeds, SR tile side and
#: at most this many squares per photograph (None: all). The defaults give 106 crops of 128 px from the four
#: held-out photographs (53 squares × 2 degradations).
EVAL = {"crop": 128, "seeds": (0, 1), "tile": 64, "per_image": None}

#: Named degradations (overrides of :class:`pruneseek.data.degrade.DegradationConfig`). ``realesrgan``: the
#: published pipeline, for real targets. ``testbed``: the bundled miniature's, one mild blur, then at the LR scale Gaussian noise of σ 15–35
#: (8-bit levels; gray with probability 0.4) and one JPEG of quality 75–95; no random resizes, no sinc. Why
#: (docs/design.md §8): under the full pipeline a model small and briefly trained enough for two CPU cores
#: cannot beat bicubic by a measurable margin (+0.08 dB; a convolutional network fares no better), so its
#: layers have no job to lose; denoising gives the teacher one that a pruned student visibly fails at.
DEGRADATIONS: dict[str, dict[str, Any]] = {
    "realesrgan": {},
    "testbed": {"resize_prob": (0.0, 0.0, 1.0), "blur_sigma": (0.2, 1.2), "gaussian_noise_prob": 1.0,
                "noise_range": (0.0, 0.0), "jpeg_range": (90, 95), "second_blur_prob": 0.0,
                "resize_prob2": (0.0, 0.0, 1.0), "gaussian_noise_prob2": 1.0, "noise_range2": (15.0, 35.0),
                "jpeg_range2": (75, 95), "final_sinc_prob": 0.0},
}

#: Teacher training (``pruneseek teacher train``): AdamW with a cosine learning rate lr → min_lr.
TEACHER: dict[str, Any] = {"steps": 3000, "batch": 8, "lr": 1e-3, "min_lr": 1e-5, "crop_size": 64, "clip_norm": 1.0,
                           "degradation": "testbed"}

#: Retraining a pruned model, stage 1 (TinySR supplement eq. A.4: AdamW at 1e-4). TinySR trains for 100k steps on
#: 8 GPUs; the default here suits the bundled miniature on a CPU. LoRA rank 64 is TSD-SR's.
RETRAIN: dict[str, Any] = {"steps": 300, "batch": 4, "lr": 1e-4, "lora_rank": 64}
#: Stage 2 (TinySR supplement eq. A.5): λ5·L1 + λ6·perceptual + λ7·GAN with 5 / 1 / 0.3, student lr 1e-6,
#: discriminator lr 5e-6.
RETRAIN_STAGE2: dict[str, Any] = {"lr": 1e-6, "disc_lr": 5e-6, "lambda_l1": 5.0, "lambda_perceptual": 1.0,
                                  "lambda_gan": 0.3}
#: PocketSR's multi-layer feature distillation weight λ (arXiv:2510.03012 §3.2.3).
FEATURE_DISTILL = 0.001
