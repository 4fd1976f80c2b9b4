"""`pruneseek retrain`: retrain a pruned folder by TinySR's two stages (docs/design.md §9).

Parses the options into :class:`~pruneseek.experiment.retrain.RetrainSettings`, runs
:func:`~pruneseek.experiment.retrain.run_retrain` and prints where the retrained model went.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pruneseek import recipes
from pruneseek.commands.args import (add_calibration_arguments, add_target_arguments, add_threads_argument, command_parser, nonnegative_float, nonnegative_int,
                                     positive_float, positive_int, target_source, torch_threads)

HELP = "retrain a pruned folder from 'pruneseek export' (TinySR's stage 1 and stage 2)"
DESCRIPTION = (
    "Fine-tune the pruned model written by 'pruneseek export' so that its output latents match the unpruned "
    "teacher's (TinySR's stage 1), on the search's calibration data, and write it as a new folder in the same "
    "layout plus RETRAIN.json. The teacher comes from the same model options as 'search'."
)
EXAMPLES = """examples:
  pruneseek retrain --from pruned-mini --out retrained-mini                 # tsdsr-mini, stage 1, full fine-tuning
  pruneseek retrain --from retrained-mini --out retrained-mini-s2 --stage 2  # stage 2 on the stage-1 result
  pruneseek retrain --from pruned-mini --out retrained-mini --weight-update lora --lora-rank 16
  pruneseek retrain --from pruned-mini --out retrained-mini --checkpoint-every 50        # resumable
  pruneseek retrain --from pruned-mini --out retrained-mini --checkpoint-every 50 --resume
  pruneseek retrain --from PRUNED_DIR --out DIR --base SD3_DIR --lora TSDSR_LORA_DIR --embeddings EMB_DIR \\
                    --data HR_IMAGES --crop-size 512 --weight-update lora --device cuda
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(sub, "retrain", HELP, DESCRIPTION, EXAMPLES)
    p.add_argument("--from", dest="pruned", type=Path, required=True, metavar="EXPORT_DIR",
                   help="pruned model folder written by 'pruneseek export'")
    p.add_argument("--out", type=Path, required=True, help="output folder (the export's layout + RETRAIN.json)")
    p.add_argument("--stage", type=int, choices=[1, 2], default=1,
                   help="1: L1 to the teacher's latents (default); 2: 5 L1 + 1 perceptual + 0.3 GAN, usually from a "
                        "stage-1 output folder (TinySR eq. A.4, A.5)")
    p.add_argument("--steps", type=positive_int, default=recipes.RETRAIN["steps"],
                   help=f"optimisation steps (default {recipes.RETRAIN['steps']})")
    p.add_argument("--batch", type=positive_int, default=recipes.RETRAIN["batch"],
                   help=f"crops per step (default {recipes.RETRAIN['batch']})")
    p.add_argument("--lr", type=positive_float, default=None,
                   help=f"student AdamW learning rate (default: stage 1 {recipes.RETRAIN['lr']:g}, stage 2 "
                        f"{recipes.RETRAIN_STAGE2['lr']:g}, TinySR's)")
    p.add_argument("--perceptual", choices=["auto", "gmsd", "lpips"], default="auto",
                   help="stage 2's perceptual term: LPIPS if its weights are local, else GMSD (auto)")
    p.add_argument("--discriminator", default="patch",
                   help="stage 2's discriminator: patch (default; a weight-free PatchGAN trained alongside) or vgg16 "
                        "(a frozen ImageNet VGG16 with a trainable head; needs torchvision and vgg16-397923af.pth in "
                        "torch's hub cache)")
    p.add_argument("--anneal-steps", type=nonnegative_int, default=0, metavar="T",
                   help="PocketSR's online annealing: train the full model under the export's mask and fade the dropped "
                        "blocks out over the first T steps (identity replacement), then cut them (default 0: off)")
    p.add_argument("--feature-distill", type=nonnegative_float, nargs="?", const=recipes.FEATURE_DISTILL, default=0.0,
                   metavar="LAMBDA",
                   help="PocketSR's multi-layer feature distillation over the kept blocks' outputs, one linear "
                        f"projection each; the flag alone uses PocketSR's λ = {recipes.FEATURE_DISTILL:g} (default: off)")
    p.add_argument("--weight-update", choices=["full", "lora"], default="full",
                   help="train every weight (full, default) or LoRA adapters merged at the end")
    p.add_argument("--lora-format", choices=["merged", "separate"], default="merged",
                   help="merged (default): the LoRA folded into the weights; separate: train on the TSD-SR LoRA of an "
                        "export made with --lora-format separate and write it apart in TSD-SR's layout")
    p.add_argument("--lora-rank", type=positive_int, default=recipes.RETRAIN["lora_rank"],
                   help=f"LoRA rank and alpha with --weight-update lora (default {recipes.RETRAIN['lora_rank']}, "
                        "TSD-SR's)")
    p.add_argument("--ema-decay", type=nonnegative_float, default=None,
                   help="EMA decay of the weights the output holds (default: spans the last tenth of the run; 0: off)")
    add_calibration_arguments(p)
    p.add_argument("--checkpoint-every", type=nonnegative_int, default=0, metavar="N",
                   help="save the whole training state to OUT/checkpoint/ every N steps and at the end (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out with the same settings")
    p.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                   help="data parallel in N processes on this machine (gloo on CPU, nccl on CUDA); --batch is the "
                        "global batch, split over the processes (or run under torchrun)")
    p.add_argument("--autocast", choices=["bf16", "fp16"], default=None,
                   help="run the forward in bfloat16 or float16 (with loss scaling) under torch.autocast; weights, "
                        "optimiser and EMA stay float32")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="precision of the frozen weights (the teacher; with --weight-update lora the student's base) and "
                        "of the forward (autocast); LoRA, EMA and optimiser state stay float32 (default fp32)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute each block's activations in the backward pass: less memory, the same numbers")
    p.add_argument("--force", action="store_true", help="replace an --out folder that holds other files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_target_arguments(p)
    add_threads_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import contextlib
    import os

    from pruneseek.engine.distributed import init_from_env, shutdown
    from pruneseek.engine.launcher import launch, under_launcher, without_option
    from pruneseek.errors import PruneseekError
    from pruneseek.experiment.retrain import RetrainSettings, run_retrain

    settings = RetrainSettings(
        pruned=args.pruned, out=args.out, source=target_source(args), stage=args.stage, steps=args.steps,
        batch=args.batch, lr=args.lr, perceptual=args.perceptual, discriminator=args.discriminator,
        anneal_steps=args.anneal_steps, feature_distill=args.feature_distill,
        weight_update=args.weight_update, lora_format=args.lora_format, lora_rank=args.lora_rank, ema_decay=args.ema_decay, crops=args.crops,
        crop_size=args.crop_size, data=args.data, seed=args.seed, checkpoint_every=args.checkpoint_every,
        resume=args.resume, force=args.force, gradient_checkpointing=args.gradient_checkpointing, autocast=args.autocast,
        dtype=args.dtype,
        progress=not args.quiet,
    )
    if args.nproc > 1 and not under_launcher():
        if args.batch % args.nproc:
            raise PruneseekError(f"--batch {args.batch} (the global batch) does not split over {args.nproc} "
                                 f"processes; use a multiple of {args.nproc}")
        return launch(without_option(args.argv, "--nproc"), args.nproc)
    parallel = init_from_env(settings.source.device)
    try:
        with torch_threads(args.threads):
            if not parallel.is_main:
                with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # rank 0 speaks and writes
                    run_retrain(settings, parallel=parallel)
                return 0
            doc = run_retrain(settings, parallel=parallel)
    finally:
        shutdown()
    loss = doc["loss"]
    what = "L1 to the teacher's latent" if doc["stage"] == 1 else "stage-2 loss"
    print(f"{doc['steps']} steps in {doc['seconds']:.0f} s; {what} {loss['first']:.4g} -> {loss['last']:.4g} (mean "
          f"of the first and last tenth); {doc['trainable_parameters']:,} trained parameters")
    if loss["nonfinite_steps"]:
        print(f"note: {loss['nonfinite_steps']} steps had a non-finite loss and were skipped")
    print(f"wrote {args.out} (load: SD3Transformer2DModel.from_pretrained('{args.out}'); RETRAIN.json, loss.png)")
    return 0
