"""`pruneseek export`: turn a mask into a pruned transformer folder that diffusers loads (issue 6).

With no weights given it exports the bundled tsdsr-mini; with ``--base``, ``--lora`` and ``--embeddings``
the real TSD-SR from local files, its LoRA merged into the weights or written separately (renumbered).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from pruneseek.commands.args import add_target_arguments, command_parser, positive_int, target_source

HELP = "write a pruned diffusers checkpoint from a mask file"
DESCRIPTION = (
    "Remove the dropped blocks, renumber the kept ones and write an ordinary diffusers model folder "
    "(plus TinySR's prune_mask list, the prompt embeddings and EXPORT.json). Written into a temporary folder "
    "and renamed at the end."
)
EXAMPLES = """examples:
  pruneseek export --mask results/search/tsdsr-mini-r0.5-tinysr-s0/mask.json --out exports/mini-r50
  pruneseek export --mask MASK --out DIR --precache-modulation            # + exact pre-cached adaLN
  pruneseek export --mask MASK --out DIR --drop-text-stream               # + no context stream (retrain!)
  pruneseek export --mask MASK --out DIR --base SD3_DIR --lora TSDSR_LORA_DIR --embeddings EMB_DIR \\
                   --lora-format separate                                  # LoRA renumbered, TSD-SR layout
load the result with:  SD3Transformer2DModel.from_pretrained(DIR)
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(sub, "export", HELP, DESCRIPTION, EXAMPLES)
    p.add_argument("--mask", type=Path, required=True, help="pruneseek mask file (mask.json) or a JSON prune_mask list")
    p.add_argument("--out", type=Path, required=True, help="output folder (refused if it holds a different model)")
    p.add_argument("--force", action="store_true", help="replace an output folder that holds something else")
    p.add_argument("--lora-format", choices=["merged", "separate"], default="merged",
                   help="real TSD-SR: fold the LoRA into the weights (default) or write it renumbered in lora/")
    p.add_argument("--precache-modulation", action="store_true",
                   help="also write streamlined/ with every adaLN modulation pre-computed for t=1000 (exact)")
    p.add_argument("--drop-text-stream", action="store_true",
                   help="also write streamlined/ without the context stream (not exact: needs retraining)")
    p.add_argument("--no-measure", action="store_true", help="skip the parameter/MACs/latency measurements")
    p.add_argument("--measure-latent", type=positive_int, default=None,
                   help="latent side of the measurement input (default 16 for tsdsr-mini, 32 for TSD-SR)")
    p.add_argument("--rounds", type=positive_int, default=5, help="latency rounds (default 5)")
    add_target_arguments(p)
    p.set_defaults(run=run)


def load_source(args: argparse.Namespace):
    """The :class:`ExportSource` named by the model options (tsdsr-mini by default), and the measuring latent side."""
    from pruneseek.errors import PruneseekError
    from pruneseek.export import ExportSource, bare_copy

    source = target_source(args)
    separate = args.lora_format == "separate"
    if separate and not source.is_real:
        raise PruneseekError("tsdsr-mini has no separate LoRA (its weights are plain); use --lora-format merged")
    target = source.load(merge_lora=not separate)
    transformer, lora = bare_copy(target.transformer) if separate else (target.transformer, None)
    vae_lora = None
    if separate:
        from pruneseek.targets.tsdsr import VAE_FILE

        vae_lora = args.lora / VAE_FILE
    return ExportSource(
        name=target.name, transformer=transformer, prompt_embeds=target.prompt_embeds,
        pooled_embeds=target.pooled_embeds, identity=source.identity(), lora=lora, vae_lora_file=vae_lora,
    ), 32 if source.is_real else 16


def run(args: argparse.Namespace) -> int:
    from pruneseek.export import ExportOptions, export_checkpoint, read_mask

    source, default_side = load_source(args)
    keep, mask_file, sha = read_mask(args.mask, source.name, source.num_layers)
    options = ExportOptions(
        lora=args.lora_format, precache_modulation=args.precache_modulation, drop_text_stream=args.drop_text_stream,
        measure=not args.no_measure, measure_latent=args.measure_latent or default_side, rounds=args.rounds,
    )
    command = "pruneseek " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    record = export_checkpoint(source, keep, args.out, options, mask_file=mask_file, mask_sha256=sha,
                               force=args.force, command=command)
    params = record["params"]
    print(f"kept {len(keep)} of {source.num_layers} blocks of {source.name}: {keep}")
    print(f"parameters {params['before']:,} -> {params['after']:,} ({params['after'] / params['before']:.3f})")
    if "verify" in record:
        print(f"reloaded with diffusers: max |diff| vs full model with skip_layers = {record['verify']['max_abs_diff_vs_skip_layers']:.3g}")
    if record["streamlined"]:
        s = record["streamlined"]
        for key, o in s["options"].items():
            kind = "exact" if o["exact"] else "NOT exact, requires retraining"
            print(f"{key}: {kind}; max |diff| vs pruned {o['max_abs_diff_vs_pruned']:.3g}; {o['params']:,} parameters")
    if "measure" in record:
        m = record["measure"]
        for name in m["latency"]:
            print(f"  {name:<20} MACs {m['macs'][name]:>15,}  ({m['macs_over_full'][name]:.3f} of full)  "
                  f"latency {m['latency'][name]['median_s'] * 1e3:8.2f} ms ({m['latency_over_full'][name]:.3f} of full)")
    print(f"wrote {args.out} (load: SD3Transformer2DModel.from_pretrained('{args.out}'))")
    return 0
