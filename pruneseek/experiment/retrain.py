"""Retraining a pruned model by TinySR's two-stage recipe: latent distillation, then image-space losses (design §9).

The student is a pruned folder written by ``pruneseek export`` (its kept blocks, renumbered; plain diffusers);
the teacher is the unpruned model named by the model options (:class:`~pruneseek.targets.load.TargetSource`).
On the calibration data of ``pruneseek search`` (LR crops of the built-in photographs or ``--data``, the
teacher's output latents cached, :mod:`pruneseek.latents`) each step minimises

    stage 1:  L = ‖z_stu − z_tea‖₁                                   (TinySR supplement, arXiv:2508.17434, eq. A.4)
    stage 2:  L = λ5‖z_stu − z_tea‖₁ + λ6·P(D(z_stu), x_HR) + λ7·L_GAN(D(z_stu))       (eq. A.5; 5, 1, 0.3)

with D the target's decoder, P LPIPS when its weights are local (else the weight-free GMSD; the run says which)
and the GAN term of :mod:`pruneseek.discriminator` (a weight-free patch discriminator trained alongside at
5e-6). AdamW (stage 1 lr 1e-4, stage 2 1e-6; weight decay 0, gradient-norm clip 1) through the one training
step of
:mod:`pruneseek.training` (non-finite steps skipped and counted). Every transformer weight trains (``full``), or
LoRA adapters on the target's LoRA names (``lora``; merged into the weights at the end). An exponential
moving average of the trained weights (decay ``ema_decay``, by default spanning the last tenth of the run as in
the search; 0 turns it off) is what the output holds.

Exact resume: with ``checkpoint_every`` the loop saves weights, EMA, optimiser, RNG state, step and loss
history atomically (:mod:`pruneseek.engine.checkpoint`); ``resume`` continues a killed run and ends with the
same weights as an uninterrupted one. The output folder has the export's layout (it loads with
``SD3Transformer2DModel.from_pretrained`` and with ``TargetSource(pruned=...)``) plus ``RETRAIN.json`` (recipe,
steps, losses, data, the source export's fingerprint) and ``loss.png``; it is written into a temporary folder
and renamed at the end (an ``out`` that cannot be written is refused before anything loads; when the final write
fails, the folder goes to a rescue folder that the error names). Stage 2 usually starts from a stage-1 output
folder (it has the export's layout). Data parallel with ``--nproc N`` or torchrun (see :func:`run_retrain`).
PocketSR's tools (arXiv:2510.03012): ``anneal_steps = T``
trains the *full* model under the export's mask and fades the dropped blocks out, y = σ_t·φ(x) + (1 − σ_t)·x,
σ_t = max(0, (T − t)/T), then cuts them (the output is pruned physically at the end); the replacement M_P is the
identity, so the result stays a plain SD3 transformer that diffusers loads (a trainable replacement would need a
model class of its own). ``feature_distill = λ`` (PocketSR uses 0.001) adds λ·Σ_l mean ‖f_tea^l − proj_l(f_stu^l)‖²
over the kept blocks' image-token outputs, one linear projection per block (identity at the start, discarded
afterwards). ``autocast`` runs the forward in bfloat16 or float16 (with a gradient scaler; TinySR trains in fp16);
``gradient_checkpointing`` recomputes block activations in the backward pass. ``lora_format="separate"`` trains
a separate export's TSD-SR LoRA and writes it apart in TSD-SR's layout.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from pruneseek import recipes
from pruneseek.errors import PruneseekError
from pruneseek.targets.load import TargetSource, check_sr_export, export_record, load_pruned

FORMAT = "pruneseek.retrain/v1"
#: Files of the export folder carried into the output unchanged (besides the retrained weights).
CARRIED = ("prune_mask.json", "mask.json", "EXPORT.json", "embeddings")


@dataclass(frozen=True)
class RetrainSettings:
    """One stage-1 retraining run (defaults: :data:`pruneseek.recipes.RETRAIN`)."""

    pruned: Path
    out: Path
    source: TargetSource = field(default_factory=TargetSource)
    stage: int = 1
    steps: int = recipes.RETRAIN["steps"]
    batch: int = recipes.RETRAIN["batch"]
    #: Student learning rate (None: the stage's, 1e-4 or 1e-6).
    lr: float | None = None
    perceptual: str = "auto"
    discriminator: str = "patch"
    #: PocketSR's online annealing (arXiv:2510.03012 §3.2.1): over the first T steps the dropped blocks fade out,
    #: y = σ_t·φ(x) + (1 − σ_t)·x with σ_t = max(0, (T − t)/T) (identity replacement); 0: off.
    anneal_steps: int = 0
    #: PocketSR's multi-layer feature distillation (§3.2.3) weight λ over the kept blocks' image-token outputs,
    #: Σ_l mean ‖f_tea^l − proj_l(f_stu^l)‖² with one trainable linear projection per layer; 0: off.
    feature_distill: float = 0.0
    weight_update: str = "full"
    #: "merged" (default): LoRA folded into the weights; "separate" (a separate export of the real TSD-SR, with
    #: ``weight_update="lora"``): TSD-SR's own LoRA trains on and is written apart, renumbered, in its layout.
    lora_format: str = "merged"
    lora_rank: int = recipes.RETRAIN["lora_rank"]
    #: EMA decay of the weights (None: :func:`pruneseek.recipes.ema_decay_for` the run length; 0: no EMA).
    ema_decay: float | None = None
    crops: int = recipes.SEARCH["crops"]
    crop_size: int = recipes.SEARCH["crop_size"]
    data: Path | None = None
    seed: int = 0
    checkpoint_every: int = 0
    resume: bool = False
    #: Recompute each block's activations in the backward pass (less memory, the same numbers).
    gradient_checkpointing: bool = False
    #: Mixed precision: "bf16" or "fp16" runs the forward under torch.autocast (weights, optimiser and EMA stay
    #: float32; fp16 with a gradient scaler, TinySR's setting); None: float32 throughout.
    autocast: str | None = None
    #: Precision of the frozen weights ("fp32", "bf16", "fp16"): the teacher and, with --weight-update lora, the
    #: student's base weights are cast (the LoRA adapters, EMA and optimiser stay float32) and the forward runs under
    #: autocast in that dtype; with --weight-update full the trained weights stay float32 (autocast only).
    dtype: str = "fp32"
    force: bool = False
    progress: bool = True

    @property
    def student_lr(self) -> float:
        return self.lr if self.lr is not None else (recipes.RETRAIN["lr"] if self.stage == 1
                                                    else recipes.RETRAIN_STAGE2["lr"])

    @property
    def precision(self) -> str | None:
        """The autocast dtype in effect: ``--autocast``, or ``--dtype`` when it is not fp32, else None."""
        return self.autocast or (self.dtype if self.dtype != "fp32" else None)

    @property
    def decay(self) -> float:
        """The EMA decay in effect."""
        return recipes.ema_decay_for(self.steps) if self.ema_decay is None else float(self.ema_decay)

    def recipe(self) -> dict[str, Any]:
        """What the retrained weights depend on (recorded, and checked on resume)."""
        keys = ("stage", "steps", "batch", "weight_update", "lora_format", "lora_rank", "crops", "crop_size", "seed",
                "anneal_steps", "feature_distill", "autocast", "dtype")
        out = {k: asdict(self)[k] for k in keys} | {"lr": self.student_lr, "ema_decay": self.decay,
                                                    "anneal_replacement": "identity" if self.anneal_steps else None,
                                                    "optimizer": "AdamW, weight decay 0, clip 1.0"}
        if self.stage == 1:
            return out | {"loss": "L1(z_stu, z_tea) (TinySR eq. A.4)"}
        return out | {k: v for k, v in recipes.RETRAIN_STAGE2.items() if k != "lr"} | {
            "loss": "5 L1(z_stu, z_tea) + 1 P(decode(z_stu), HR) + 0.3 GAN (TinySR eq. A.5)",
            "perceptual": self.perceptual, "discriminator": self.discriminator}


def check_settings(s: RetrainSettings) -> dict:
    """Refuse bad settings and an output folder that holds something else, before any work; the export's record."""
    if s.stage not in (1, 2):
        raise PruneseekError(f"--stage must be 1 or 2, got {s.stage}")
    from pruneseek.discriminator import check_discriminator

    if s.stage == 2:
        check_discriminator(s.discriminator)
    if s.weight_update not in ("full", "lora"):
        raise PruneseekError(f"--weights-update must be full or lora, got {s.weight_update!r}")
    if not 0 <= s.decay < 1:
        raise PruneseekError(f"--ema-decay must lie in [0, 1), got {s.decay}")
    if not 0 <= s.anneal_steps <= s.steps:
        raise PruneseekError(f"--anneal-steps must lie in [0, --steps = {s.steps}] (the annealing is part of the "
                             f"run), got {s.anneal_steps}")
    if s.autocast not in (None, "bf16", "fp16"):
        raise PruneseekError(f"--autocast {s.autocast!r}: use bf16 or fp16")
    if s.dtype not in ("fp32", "bf16", "fp16"):
        raise PruneseekError(f"--dtype {s.dtype!r}: use fp32, bf16 or fp16")
    if s.dtype != "fp32" and s.autocast not in (None, s.dtype):
        raise PruneseekError(f"--dtype {s.dtype} runs the forward under {s.dtype} autocast; drop --autocast {s.autocast}")
    if s.lora_format not in ("merged", "separate"):
        raise PruneseekError(f"--lora-format must be merged or separate, got {s.lora_format!r}")
    if s.lora_format == "separate" and (s.weight_update != "lora" or s.anneal_steps
                                        or not (Path(s.pruned) / "lora" / "transformer.safetensors").is_file()):
        raise PruneseekError("--lora-format separate trains the LoRA of an export made with --lora-format separate "
                             "(the real TSD-SR); use it with --weight-update lora and without --anneal-steps")
    if s.anneal_steps and (Path(s.pruned) / "RETRAIN.json").is_file():
        raise PruneseekError(f"--anneal-steps starts from the teacher's weights under the export's mask, so {s.pruned} "
                             "(already retrained) would be ignored; give the export folder, or drop --anneal-steps")
    if s.feature_distill < 0:
        raise PruneseekError(f"--feature-distill must be ≥ 0, got {s.feature_distill}")
    if s.batch > s.crops:
        raise PruneseekError(f"--batch {s.batch} exceeds the {s.crops} calibration crops; use more --crops")
    record = export_record(Path(s.pruned))  # a readable export folder, before anything is created
    if Path(s.out).resolve() == Path(s.pruned).resolve():
        raise PruneseekError("--out must differ from --from: the retrained model is written as a new folder")
    from pruneseek.io import check_buildable, restore_set_aside

    out = check_buildable(s.out)  # a file, or a folder this process may not write: refused before anything loads
    if restore_set_aside(out):  # a run killed while swapping its result in: its checkpoint is back in --out
        print(f"restored {out} from the folder a killed run had set aside")
    if out.exists() and not s.force and not s.resume and any(p.name != "checkpoint" for p in out.iterdir()):
        raise PruneseekError(f"{out} already holds files; choose another --out, or pass --force to replace it")
    return record  # --out is created only when the result (or a checkpoint) is written: a refusal leaves no folder


class _EMA:
    """Exponential moving average of parameters (decay 0: the parameters themselves)."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float):
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params):
            s.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        for s, p in zip(self.shadow, self.params):
            p.copy_(s)


class _Stage2:
    """Stage 2's image-space terms: the perceptual loss and the GAN (its discriminator trains alongside)."""

    def __init__(self, s: RetrainSettings, device, parallel=None):
        from pruneseek.discriminator import make_discriminator
        from pruneseek.losses import perceptual_loss
        from pruneseek.training import Trainer

        self.w = recipes.RETRAIN_STAGE2
        self.perceptual, self.note = perceptual_loss(s.perceptual)
        self.disc = make_discriminator(s.discriminator, seed=s.seed).to(device)
        params = list(self.disc.parameters())
        self.trainer = Trainer(torch.optim.AdamW(params, lr=self.w["disc_lr"], weight_decay=0.0), params,
                               parallel=parallel)

    def student_loss(self, student, z, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """λ5·L1 + λ6·P + λ7·L_G for the student latent ``z``, and the decoded image in [−1, 1] (the discriminator
        frozen for this pass)."""
        from pruneseek.discriminator import generator_loss

        image = student.decode(z)
        self.disc.requires_grad_(False)
        loss = (self.w["lambda_l1"] * (z - batch["z_tea"]).abs().mean()
                + self.w["lambda_perceptual"] * self.perceptual((image + 1) / 2, batch["hr"]).mean()
                + self.w["lambda_gan"] * generator_loss(self.disc, image))
        self.disc.requires_grad_(True)
        return loss, image

    def disc_step(self, fake: torch.Tensor, hr: torch.Tensor) -> None:
        from pruneseek.discriminator import discriminator_loss

        self.trainer.zero_grad()
        self.trainer.step(discriminator_loss(self.disc, hr * 2 - 1, fake.detach()))

    def state(self) -> dict:
        return {"disc": {k: v.detach().cpu().clone() for k, v in self.disc.state_dict().items()},
                "disc_optimizer": self.trainer.optimizer.state_dict(), "disc_trainer": self.trainer.state()}

    def load(self, state: dict) -> None:
        self.disc.load_state_dict(state["disc"])
        self.trainer.optimizer.load_state_dict(state["disc_optimizer"])
        self.trainer.load_state(state["disc_trainer"])


class _Distill(torch.nn.Module):
    """PocketSR's multi-layer feature distillation: student block outputs projected onto the teacher's."""

    def __init__(self, teacher, pairs: list[tuple[int, int]], weight: float):
        super().__init__()
        width = teacher.transformer.config.num_attention_heads * teacher.transformer.config.attention_head_dim
        self.teacher, self.pairs, self.weight = teacher, pairs, weight
        self.proj = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in pairs)
        with torch.no_grad():
            for layer in self.proj:  # identity at the start: the first loss is the plain feature distance
                layer.weight.copy_(torch.eye(width))
                layer.bias.zero_()
        self.to(teacher.device)

    @staticmethod
    def _record(store: dict, stack):
        return stack.observe(lambda i, state_in, state_out: store.__setitem__(i, stack.adapter.primary(state_out)))

    def run(self, student, forward, z_lr) -> tuple[torch.Tensor, torch.Tensor]:
        """The student latent (``forward()``, observed) and λ·Σ_l mean ‖f_tea − proj(f_stu)‖²."""
        mine, theirs = {}, {}
        with self._record(mine, student.stack):
            z = forward()
        with torch.no_grad(), self._record(theirs, self.teacher.stack):
            self.teacher.sr_latent(z_lr)
        loss = sum(((theirs[t] - proj(mine[s_])) ** 2).mean() for (s_, t), proj in zip(self.pairs, self.proj))
        return z, self.weight * loss


@dataclass
class _Run:
    """The state of one retraining run."""

    settings: RetrainSettings
    teacher: Any
    student: Any
    data: dict
    params: list
    trainer: Any
    ema: _EMA | None
    record: dict
    stage2: _Stage2 | None = None
    parallel: Any = None
    #: The export's mask when the student anneals (the full model under the mask), else None.
    mask: list[int] | None = None
    distill: _Distill | None = None
    history: list[float] = field(default_factory=list)
    first_step: int = 0
    earlier_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)


def _lora_targets(student, real: bool) -> list[str]:
    """TSD-SR's ten module names on the real model; every linear layer of the blocks on tsdsr-mini."""
    from pruneseek.targets.tsdsr import TSDSR_TRANSFORMER_TARGETS
    from pruneseek.training import linear_targets

    if real:
        return list(TSDSR_TRANSFORMER_TARGETS)
    return linear_targets(student.transformer, student.transformer.transformer_blocks)


def _load(s: RetrainSettings, record: dict, report: Callable[[str], None]):
    """Teacher, student (the export), the calibration latents and the data spec; the export's source is checked
    against the teacher."""
    from pruneseek.latents import calibration_latents, check_finite, select_images, target_pairs

    check_sr_export(Path(s.pruned), record)
    teacher = s.source.load()
    made_from = record["source"]
    if made_from.get("model") != teacher.name or (not s.source.is_real and made_from.get(
            "weights_sha256") != s.source.identity()["weights_sha256"]):
        raise PruneseekError(f"{s.pruned} was exported from {made_from.get('model')} with other weights than the "
                             f"teacher named now ({teacher.name}); give the model options the export was made with")
    student = load_pruned(Path(s.pruned), s.source, latent=teacher, merge_lora=s.lora_format == "merged")
    report(f"teacher: {teacher.name} ({teacher.num_layers} layers); student: {s.pruned} ({student.num_layers} "
           f"layers); stage {s.stage}")
    spec = target_pairs(teacher, select_images("train", s.data), s.crops, s.crop_size, s.seed)
    data = calibration_latents(teacher, spec, progress=s.progress)
    for key in ("z_lr", "z_tea"):
        check_finite(key, data[key])
    return teacher, student, data, spec


def _fingerprint(s: RetrainSettings, record: dict, spec) -> dict:
    return {"recipe": s.recipe(), "export": record.get("fingerprint"), "teacher": s.source.weights_fingerprint(),
            "data": {"images": [Path(p).name for p in spec.images], "crops": spec.count, "crop_size": spec.hr_size}}


def _checkpointing(s: RetrainSettings, fingerprint: dict):
    from pruneseek.engine.checkpoint import Checkpointing

    if not (s.checkpoint_every or s.resume):
        return None
    return Checkpointing(Path(s.out) / "checkpoint", every=s.checkpoint_every, resume=s.resume,
                         fingerprint=fingerprint)


def _state(run: _Run, step: int) -> dict:
    return {"step": step, "weights": [p.detach().cpu().clone() for p in run.params],
            "ema": [t.detach().cpu().clone() for t in run.ema.shadow] if run.ema else [],
            "optimizer": run.trainer.optimizer.state_dict(), "rng": {"torch": torch.get_rng_state()},
            "history": list(run.history), **run.trainer.state(),
            "seconds": run.earlier_seconds + time.perf_counter() - run.started,
            **(run.stage2.state() if run.stage2 is not None else {})}


def _restore(run: _Run, ckpt, stream) -> None:
    """Continue from the checkpoint: weights, EMA, optimiser, RNG, data position, records."""
    from pruneseek.engine.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt)
    if [tuple(t.shape) for t in state["weights"]] != [tuple(p.shape) for p in run.params]:
        raise PruneseekError(f"{ckpt.path} holds weights of other shapes than this run trains; start a new run in "
                             "another --out")
    with torch.no_grad():
        for p, t in zip(run.params, state["weights"]):
            p.copy_(t.to(p.device))
        if run.ema is not None:
            for s_, t in zip(run.ema.shadow, state["ema"]):
                s_.copy_(t.to(s_.device))
    run.trainer.optimizer.load_state_dict(state["optimizer"])
    for _ in range(state["step"]):
        next(stream)
    torch.set_rng_state(state["rng"]["torch"])
    run.history[:] = state["history"]
    run.trainer.load_state(state)
    if run.stage2 is not None:
        run.stage2.load(state)
    run.first_step, run.earlier_seconds = int(state["step"]), float(state["seconds"])


def _student_loss(run: _Run, batch: dict, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The stage's loss for ``batch`` at ``step`` (annealing masks and feature distillation when asked), and the
    decoded image for the discriminator (stage 2)."""
    from pruneseek.recovery import step_mask

    student, z_lr = run.student, batch["z_lr"]
    if run.mask is None:
        forward = lambda: student.sr_latent(z_lr)  # noqa: E731
    else:
        row, mode = step_mask(run.mask, step, run.settings.anneal_steps)
        forward = lambda: student.sr_latent(z_lr, row.to(z_lr.device).expand(z_lr.shape[0], -1), mode)  # noqa: E731
    z, extra = run.distill.run(student, forward, z_lr) if run.distill is not None else (forward(), 0.0)
    if run.stage2 is None:
        return (z - batch["z_tea"]).abs().mean() + extra, None
    loss, image = run.stage2.student_loss(student, z, batch)
    return loss + extra, image


def _precision(run: _Run):
    """``torch.autocast`` in bfloat16 on the student's device type when asked, else a no-op context."""
    import contextlib

    if run.settings.precision is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if run.settings.precision == "bf16" else torch.float16
    return torch.autocast(device_type=run.student.device.type, dtype=dtype)


def _train(run: _Run, ckpt, stream) -> None:
    """The steps from ``run.first_step`` to the end through :func:`pruneseek.training.run_steps` (checkpoints as
    asked; the EMA after every applied step; stage 2's discriminator after every finite one)."""
    from pruneseek.engine.checkpoint import save_checkpoint
    from pruneseek.training import run_steps

    s, student = run.settings, run.student
    main = run.parallel is None or run.parallel.is_main
    sharded = run.parallel is not None and run.parallel.active

    def loss_of(batch: dict, step: int):
        if sharded:  # this rank's rows of the global batch
            batch = run.parallel.shard(batch, batch["z_lr"].shape[0])
        with _precision(run):
            loss, image = _student_loss(run, batch, step)
        return loss.float(), (image, batch["hr"])

    def after(step: int, applied: bool, finite: bool, extra) -> None:
        image, hr = extra
        if applied and run.ema is not None:
            run.ema.update()
        if image is not None and finite:
            run.stage2.disc_step(image, hr)
        done = step + 1
        if ckpt is not None and main and ((ckpt.every and done % ckpt.every == 0) or done == s.steps):
            save_checkpoint(ckpt, _state(run, done))

    student.transformer.train()
    run_steps(run.trainer, stream, s.steps, loss_of, first_step=run.first_step, history=run.history, after=after,
              desc="retrain", progress=s.progress and main)
    student.transformer.eval()


def _save_weights(run: _Run, src: Path, tmp: Path) -> None:
    """The retrained transformer: merged weights, or (``lora_format="separate"``) the bare base plus TSD-SR's
    LoRA in its layout under ``lora/`` (the VAE LoRA copied from the export)."""
    if run.settings.lora_format != "separate":
        run.student.transformer.save_pretrained(str(tmp))
        return
    from safetensors.torch import save

    from pruneseek.export.folder import bare_copy
    from pruneseek.io import atomic_write_bytes
    from pruneseek.targets.tsdsr import TRANSFORMER_FILE, VAE_FILE

    base, lora = bare_copy(run.student.transformer)
    base.save_pretrained(str(tmp))
    (tmp / "lora").mkdir()
    atomic_write_bytes(tmp / "lora" / TRANSFORMER_FILE, save({k: v.detach().cpu().contiguous() for k, v in lora.items()},
                                                             metadata={"format": "pt"}))
    if (src / "lora" / VAE_FILE).is_file():
        shutil.copyfile(src / "lora" / VAE_FILE, tmp / "lora" / VAE_FILE)


def _write(run: _Run, spec, seconds: float) -> dict:
    """The output folder (:func:`_write_into` ``--out``); when it cannot be written (disk full, permissions changed,
    folder removed), the same folder goes to a rescue folder that the error names, so the trained weights survive."""
    from pruneseek.io import rescued

    return rescued(Path(run.settings.out), lambda folder: _write_into(run, spec, seconds, folder),
                   "retrained model files")


def _write_into(run: _Run, spec, seconds: float, out: Path) -> dict:
    """The output folder ``out`` (export layout + ``RETRAIN.json`` + ``loss.png``), built aside and renamed into
    place."""
    from pruneseek.experiment.plots import plot_loss
    from pruneseek.io import atomic_write_json, building_folder, file_sha256

    s, src = run.settings, Path(run.settings.pruned)
    with building_folder(out) as tmp:
        _save_weights(run, src, tmp)
        for name in CARRIED:
            if (src / name).is_dir():
                shutil.copytree(src / name, tmp / name)
            elif (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
        tail = max(1, len(run.history) // 10)
        doc = {
            "format": FORMAT, "stage": s.stage, "recipe": s.recipe(), "steps": s.steps,
            "loss": {"first": sum(run.history[:tail]) / tail, "last": sum(run.history[-tail:]) / tail,
                     "history": run.history, "nonfinite_steps": run.trainer.nonfinite},
            "data": {"images": [Path(p).name for p in spec.images], "crops": spec.count, "crop_size": spec.hr_size,
                     "seed": spec.seed},
            "source_export": {"folder": str(src), "fingerprint": run.record.get("fingerprint"),
                              "export_json_sha256": file_sha256(src / "EXPORT.json")},
            "teacher": s.source.identity(), "trainable_parameters": sum(p.numel() for p in run.params),
            "seconds": seconds, "load": f"SD3Transformer2DModel.from_pretrained('{out}')",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if run.stage2 is not None:
            doc["perceptual"] = run.stage2.note
            doc["discriminator_nonfinite_steps"] = run.stage2.trainer.nonfinite
        atomic_write_json(tmp / "RETRAIN.json", doc)
        plot_loss(run.history, tmp / "loss.png", f"retrain stage {s.stage}, {run.student.name}")
    return doc


def _trained(s: RetrainSettings, student, stack) -> list:
    """The student's trained parameters: LoRA adapters entered on ``stack`` (merged when it closes), or every weight
    the pruned forward uses (an annealed student's dropped blocks stay frozen)."""
    from pruneseek.training import lora_adapters, lora_parameters, trainable_only

    if s.lora_format == "separate":  # TSD-SR's own adapter, loaded live, trains on
        return stack.enter_context(trainable_only(student.transformer, lora_parameters(student.transformer)))
    if s.weight_update == "lora":
        return stack.enter_context(lora_adapters(student.transformer, _lora_targets(student, s.source.is_real),
                                                 s.lora_rank, float(s.lora_rank), seed=s.seed, after="merge"))
    if s.anneal_steps:
        return [p for p in student.transformer.parameters() if p.requires_grad]
    params = list(student.transformer.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def _cast_frozen(s: RetrainSettings, teacher, student) -> None:
    """``--dtype``: the teacher and (LoRA retraining) the student's base weights in that dtype; trained weights stay
    float32. The calibration latents were made at full precision before."""
    from pruneseek.training import DTYPES, quiet_cast

    if s.dtype == "fp32":
        return
    quiet_cast(teacher.transformer, DTYPES[s.dtype])
    if s.weight_update == "lora" and s.lora_format == "merged" and not s.anneal_steps:
        quiet_cast(student.transformer, DTYPES[s.dtype])


def _annealed_student(teacher, record: dict):
    """PocketSR's student: the full model under the export's mask, dropped blocks frozen (faded out by σ_t)."""
    from pruneseek.mask import Mask
    from pruneseek.recovery import make_student

    mask = Mask.from_keep(record["mask"]["keep"], teacher.num_layers, error=PruneseekError).tolist()
    return make_student(teacher, mask), mask


def _build_run(s: RetrainSettings, teacher, student, data, record, parallel, stack, report) -> _Run:
    from pruneseek.training import Trainer

    mask = None
    if s.anneal_steps:
        student, mask = _annealed_student(teacher, record)
        report(f"online annealing: the {mask.count(0)} dropped blocks fade out over {s.anneal_steps} steps")
    student.stack.checkpointing = s.gradient_checkpointing
    _cast_frozen(s, teacher, student)
    params = _trained(s, student, stack)
    keep = record["mask"]["keep"]
    pairs = [(i, i) for i in keep] if mask is not None else list(enumerate(keep))
    distill = _Distill(teacher, pairs, s.feature_distill) if s.feature_distill else None
    params = params + (list(distill.parameters()) if distill is not None else [])
    if parallel is not None and parallel.active and s.batch % parallel.world:
        raise PruneseekError(f"--batch {s.batch} (the global batch) does not split over {parallel.world} "
                             f"processes; use a multiple of {parallel.world}")
    scaler = torch.amp.GradScaler(student.device.type) if s.precision == "fp16" else None
    trainer = Trainer(torch.optim.AdamW(params, lr=s.student_lr, weight_decay=0.0), params, clip_norm=1.0,
                      parallel=parallel, scaler=scaler)
    run = _Run(s, teacher, student, data, params, trainer, _EMA(params, s.decay) if s.decay else None, record,
               _Stage2(s, student.device, parallel) if s.stage == 2 else None, parallel, mask, distill)
    if run.stage2 is not None:
        report(f"stage 2: 5 L1 + 1 perceptual ({run.stage2.note}) + 0.3 GAN ({s.discriminator} discriminator)")
    return run


def run_retrain(s: RetrainSettings, report: Callable[[str], None] = print, parallel=None) -> dict | None:
    """Retraining of ``s.pruned`` (module docstring); returns the ``RETRAIN.json`` document (None on ranks > 0).

    ``parallel`` (a :class:`~pruneseek.engine.distributed.DataParallel` of N processes): every rank reads the same
    global batch of ``s.batch`` crops and keeps its shard; gradients are averaged before clipping, so N processes
    follow one process with the same global batch (up to the order of floating-point sums). Rank 0 writes.
    """
    import contextlib
    from dataclasses import replace

    from pruneseek.sr_problem import latent_batches
    from pruneseek.training import endless

    record = check_settings(s)
    torch.manual_seed(s.seed)
    teacher, student, data, spec = _load(s, record, report)
    world = parallel.world if parallel is not None else 1
    ckpt = _checkpointing(s, _fingerprint(s, record, spec) | {"processes": world})
    with contextlib.ExitStack() as stack:
        run = _build_run(s, teacher, student, data, record, parallel, stack, report)
        stream = endless(latent_batches(data, s.batch, s.seed, run.student.device))
        if ckpt is not None and ckpt.resume:
            _restore(run, ckpt, stream)
            report(f"resuming from {ckpt.path} at step {run.first_step}")
        _train(run, ckpt, stream)
        if run.ema is not None:
            run.ema.copy_to_params()
    if run.mask is not None:  # the annealed student, physically pruned for the output
        from pruneseek.export.prune import pruned_transformer

        run.student = replace(run.student, transformer=pruned_transformer(run.student.transformer,
                                                                          record["mask"]["keep"], share=False))
    seconds = run.earlier_seconds + time.perf_counter() - run.started
    if parallel is not None and not parallel.is_main:
        return None
    return _write(run, spec, seconds)
