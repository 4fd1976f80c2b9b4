"""`pruneseek export`: turn a mask into a pruned transformer folder that diffusers loads (issue 6).

With no weights given it exports the bundled tsdsr-mini; with ``--base``, ``--lora`` and ``--embeddings``
the real TSD-SR from local files, its LoRA merged into the weights or written separately (renumbered).
``--model sd3|flux|dit|causal-lm --base DIR`` exports a model family instead (:mod:`pruneseek.export.family`):
the family's own class with each block stack renumbered, reloaded and checked against the masked full model.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from pruneseek.commands.args import MODELS, add_target_arguments, command_parser, positive_int, target_source

HELP = "write a pruned diffusers checkpoint from a mask file"
DESCRIPTION = (
    "Remove the dropped blocks, renumber the kept ones and write an ordinary diffusers model folder "
    "(plus TinySR's prune_mask list, the prompt embeddings and EXPORT.json). Written into a temporary folder "
    "and renamed at the end. Other model families (--model sd3|flux|dit|causal-lm --base DIR): the model's own "
    "diffusers/transformers class with each block stack renumbered and its layer counts set, checked on reload "
    "against the full model under the mask."
)
#: Latency rounds when --rounds is not given (tsdsr).
ROUNDS = 5
EXAMPLES = """examples:
  pruneseek export --mask results/search/tsdsr-mini-r0.5-tinysr-s0/mask.json --out exports/mini-r50
  pruneseek export --mask MASK --out DIR --precache-modulation            # + exact pre-cached adaLN
  pruneseek export --mask MASK --out DIR --drop-text-stream               # + no context stream (retrain!)
  pruneseek export --mask MASK --out DIR --base SD3_DIR --lora TSDSR_LORA_DIR --embeddings EMB_DIR \\
                   --lora-format separate                                  # LoRA renumbered, TSD-SR layout
  pruneseek export --model dit --base DIT_DIR --mask MASK --out DIR   # DiTTransformer2DModel.from_pretrained(DIR)
  pruneseek export --model flux --base FLUX_PIPELINE_DIR --mask MASK --out DIR   # the transformer/ subfolder
  pruneseek export --model causal-lm --base LLM_DIR --mask MASK --out DIR   # + tokenizer files
load the result with:  SD3Transformer2DModel.from_pretrained(DIR) (tsdsr; other families: their own class)
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(sub, "export", HELP, DESCRIPTION, EXAMPLES)
    p.add_argument("--model", default="tsdsr", choices=MODELS,
                   help="model family (default tsdsr); sd3, flux, dit and causal-lm load from --base DIR")
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
    p.add_argument("--rounds", type=positive_int, default=None, help=f"latency rounds (default {ROUNDS})")
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
    from pruneseek.io import check_buildable

    check_buildable(args.out)  # before the model loads
    if getattr(args, "model", "tsdsr") != "tsdsr":
        return run_family(args)
    source, default_side = load_source(args)
    keep, mask_file, sha = read_mask(args.mask, source.name, source.num_layers)
    options = ExportOptions(
        lora=args.lora_format, precache_modulation=args.precache_modulation, drop_text_stream=args.drop_text_stream,
        measure=not args.no_measure, measure_latent=args.measure_latent or default_side, rounds=args.rounds or ROUNDS,
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


#: tsdsr-only export options: (flag, whether the parsed arguments use it).
TSDSR_ONLY = (
    ("--lora-format separate", lambda a: a.lora_format != "merged"),
    ("--precache-modulation", lambda a: a.precache_modulation),
    ("--drop-text-stream", lambda a: a.drop_text_stream),
    ("--measure-latent", lambda a: a.measure_latent is not None),
    ("--rounds", lambda a: a.rounds is not None),
)


def run_family(args: argparse.Namespace) -> int:
    """``--model sd3|flux|dit|causal-lm``: :func:`pruneseek.export.family.export_family` on the model in --base."""
    from pruneseek.errors import ExportError
    from pruneseek.export import read_mask
    from pruneseek.export.family import export_family

    used = [flag for flag, on in TSDSR_ONLY if on(args)]
    if used:
        raise ExportError(f"{', '.join(used)} appl{'ies' if len(used) == 1 else 'y'} to --model tsdsr only (SD3 "
                          f"streamlining, TSD-SR's LoRA, measurements); --model {args.model} writes the pruned model alone")
    source = target_source(args)
    target = source.load()
    keep, mask_file, sha = read_mask(args.mask, target.name, target.num_layers)
    command = "pruneseek " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))
    record = export_family(target, keep, args.out, mask_file=mask_file, identity=source.identity(), force=args.force,
                           mask_sha256=sha, command=command)
    print(f"kept {len(keep)} of {target.num_layers} blocks of {target.name} ({record['family']['class']}):")
    for prefix, stack in record["mask"]["stacks"].items():
        print(f"  {prefix}: {len(stack['kept'])} of {stack['layers']} kept {stack['kept']} "
              f"-> {stack['config_key']} = {record['config'][stack['config_key']]}")
    params = record["params"]
    print(f"parameters {params['before']:,} -> {params['after']:,} ({params['after'] / params['before']:.3f})")
    if record["verified"]:
        v = record["verified"]
        print(f"reloaded with from_pretrained: max |diff| vs the full model under the mask = "
              f"{v['max_abs_diff_vs_masked']:.3g} (tolerance {v['tolerance']:.3g})")
    if record["files"]["copied"]:
        print(f"copied from {target.folder}: {', '.join(record['files']['copied'])}")
    print(f"wrote {args.out} (load: {record['load'].replace('DIR', repr(str(args.out)))})")
    return 0
