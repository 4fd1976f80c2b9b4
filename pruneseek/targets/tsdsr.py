"""TSD-SR, the real target: SD3-medium + TSD-SR's LoRA, loaded from the user's local files (docs/design.md §7, §8).

What this reproduces, from the authors' code (``Microtreei/TSD-SR``: ``test/test_tsdsr.py`` for inference,
``train/train.py`` for how the files are written, ``utils/util.py`` for how they are read back):

- Base: ``SD3Transformer2DModel.from_pretrained(base, subfolder="transformer")`` and the SD3 VAE from
  ``subfolder="vae"``. Nothing is downloaded: ``base`` must be a local folder (``local_files_only``).
- Transformer LoRA: ``LoraConfig(r=64, lora_alpha=64, init_lora_weights="gaussian", target_modules=
  [to_k, to_q, to_v, to_out.0, add_q_proj, add_k_proj, add_v_proj, proj, linear, proj_out])`` added with
  ``transformer.add_adapter`` (adapter "default"). peft matches these names as suffixes, so besides the
  attention projections it wraps every block's ``norm1.linear`` / ``norm1_context.linear`` (AdaLN),
  ``ff.net.0.proj`` / ``ff_context.net.0.proj`` (GELU in-projections), ``norm_out.linear``, ``proj_out`` and
  the patch-embedding convolution ``pos_embed.proj`` (a Conv2d LoRA) — 266 modules, 89,268,224 LoRA
  parameters on SD3-medium. ``to_add_out`` and ``ff.net.2`` are not adapted.
- VAE LoRA: rank 64 = alpha on the encoder only (:data:`TSDSR_VAE_TARGETS`, 32 names; ``quant_conv`` does
  not exist in the SD3 VAE, so 31 modules are wrapped).
- Files: ``transformer.safetensors`` and ``vae.safetensors`` written by
  ``StableDiffusion3Pipeline.save_lora_weights(dir, transformer_lora_layers=get_peft_model_state_dict(m))``,
  so *both* carry the ``transformer.`` prefix: ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``,
  ``transformer.encoder.conv_in.lora_A.weight``. TSD-SR reads them back by turning each LoRA parameter
  name ``X.lora_A.default.weight`` into ``transformer.X.lora_A.weight`` (it fails on a missing key and
  only warns on extra keys; pruneseek fails on both, see :func:`load_tsdsr`). The files hold no alpha:
  alpha equals the rank, so the LoRA scale is 1 (ΔW = B·A).
- Prompt: ``prompt_embeds.pt`` (1, 333, 4096) and ``pool_embeds.pt`` (1, 2048) of the fixed default prompt
  ("Cinematic, High Contrast, highly detailed, ..."); no text encoder runs at inference.
- One step: ``z_LR = vae.encode(x).latent_dist.sample() * scaling_factor`` (1.5305; TSD-SR does *not*
  subtract the VAE's 0.0609 ``shift_factor``), ``v = transformer(z_LR, t=1000, prompt)``,
  ``z_HR = z_LR − v`` (σ = 1), ``x_HR = vae.decode(z_HR / scaling_factor).clamp(-1, 1)``.
- Input: the LR image in [0, 1] is resized bicubic (``align_corners=False``) straight to 4× its size with
  both sides floored to multiples of 8, then mapped to [−1, 1] (:func:`prepare_lr`).

Differences, all deliberate: pruneseek's loader is strict (every key must land, ranks must agree); the
encoder can use the posterior mode or a seeded sample for a deterministic search; :func:`prepare_lr`
floors to multiples of 16 by default (see there); by default the LoRA is merged into the weights so the
engine can put its own LoRA on the same modules (see :func:`load_tsdsr`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from pruneseek.errors import TargetError, first_line
from pruneseek.targets.base import SRTarget



#: The transformer modules TSD-SR's LoRA targets (peft suffix match), as in its test and train scripts.
TSDSR_TRANSFORMER_TARGETS: tuple[str, ...] = (
    "to_k", "to_q", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "proj", "linear", "proj_out",
)
#: The VAE modules TSD-SR's encoder LoRA targets (the SD3 VAE has no ``quant_conv``; it is listed anyway).
TSDSR_VAE_TARGETS: tuple[str, ...] = (
    "encoder.conv_in",
    "encoder.down_blocks.0.resnets.0.conv1", "encoder.down_blocks.0.resnets.0.conv2",
    "encoder.down_blocks.0.resnets.1.conv1", "encoder.down_blocks.0.resnets.1.conv2",
    "encoder.down_blocks.0.downsamplers.0.conv",
    "encoder.down_blocks.1.resnets.0.conv1", "encoder.down_blocks.1.resnets.0.conv2",
    "encoder.down_blocks.1.resnets.0.conv_shortcut",
    "encoder.down_blocks.1.resnets.1.conv1", "encoder.down_blocks.1.resnets.1.conv2",
    "encoder.down_blocks.1.downsamplers.0.conv",
    "encoder.down_blocks.2.resnets.0.conv1", "encoder.down_blocks.2.resnets.0.conv2",
    "encoder.down_blocks.2.resnets.0.conv_shortcut",
    "encoder.down_blocks.2.resnets.1.conv1", "encoder.down_blocks.2.resnets.1.conv2",
    "encoder.down_blocks.2.downsamplers.0.conv",
    "encoder.down_blocks.3.resnets.0.conv1", "encoder.down_blocks.3.resnets.0.conv2",
    "encoder.down_blocks.3.resnets.1.conv1", "encoder.down_blocks.3.resnets.1.conv2",
    "encoder.mid_block.attentions.0.to_q", "encoder.mid_block.attentions.0.to_k",
    "encoder.mid_block.attentions.0.to_v", "encoder.mid_block.attentions.0.to_out.0",
    "encoder.mid_block.resnets.0.conv1", "encoder.mid_block.resnets.0.conv2",
    "encoder.mid_block.resnets.1.conv1", "encoder.mid_block.resnets.1.conv2",
    "encoder.conv_out",
    "quant_conv",
)
#: TSD-SR's LoRA rank (and alpha) for the transformer and the VAE encoder.
TSDSR_RANK = 64
#: The adapter name ``add_adapter`` gives TSD-SR's LoRA.
ADAPTER = "default"
#: Every key of both LoRA files starts with this (diffusers' ``save_lora_weights`` adds it).
KEY_PREFIX = "transformer."
TRANSFORMER_FILE = "transformer.safetensors"
VAE_FILE = "vae.safetensors"
PROMPT_FILE = "prompt_embeds.pt"
POOLED_FILE = "pool_embeds.pt"
#: SD3-medium's transformer config (docs/design.md §7); a base that differs is still loaded, and ``info`` says so.
SD3_MEDIUM = dict(
    sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64, num_attention_heads=24,
    joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048, out_channels=16,
    pos_embed_max_size=192,
)
_KEY = re.compile(r"^transformer\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")
_SHOW = 5


# --------------------------------------------------------------------------------------------- files


def _shown(items: Iterable[Any], n: int = _SHOW) -> str:
    items = list(items)
    text = ", ".join(str(x) for x in items[:n])
    return text + (f", … ({len(items) - n} more)" if len(items) > n else "")


def _read_config(folder: Path, class_name: str, what: str) -> dict:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TargetError(f"{path}: not a readable JSON config ({exc}); {what} must be in diffusers layout") from None
    found = config.get("_class_name") if isinstance(config, dict) else f"a JSON {type(config).__name__}"
    if found != class_name:
        raise TargetError(
            f"{path}: _class_name is {found!r}, expected {class_name!r}; TSD-SR's base is SD3-medium in diffusers "
            "layout (stabilityai/stable-diffusion-3-medium-diffusers)"
        )
    return config


def _check_files(base: Path, lora: Path, embeddings: Path) -> None:
    """Fail with one message naming every file that is missing (before anything heavy is loaded)."""
    wanted = [
        (base / "transformer" / "config.json", "the SD3-medium transformer config (diffusers layout: base/transformer/)"),
        (base / "vae" / "config.json", "the SD3 VAE config (diffusers layout: base/vae/)"),
        (lora / TRANSFORMER_FILE, "TSD-SR's transformer LoRA (keys 'transformer.<module>.lora_A/B.weight')"),
        (lora / VAE_FILE, "TSD-SR's VAE-encoder LoRA (keys 'transformer.encoder.<module>.lora_A/B.weight')"),
        (embeddings / PROMPT_FILE, "the default-prompt embeddings, a (1, 333, 4096) tensor"),
        (embeddings / POOLED_FILE, "the pooled default-prompt embedding, a (1, 2048) tensor"),
    ]
    missing = [f"{path} ({what})" for path, what in wanted if not path.is_file()]
    if missing:
        raise TargetError(
            "TSD-SR files missing: " + "; ".join(missing) + ". Pass local paths: base = an SD3-medium folder in "
            "diffusers layout, lora = TSD-SR's checkpoint folder (transformer.safetensors, vae.safetensors), "
            "embeddings = TSD-SR's dataset/default folder (prompt_embeds.pt, pool_embeds.pt); nothing is downloaded"
        )


def read_tsdsr_lora(path: str | Path, rank: int | None = None) -> tuple[dict[str, torch.Tensor], int]:
    """The tensors of a TSD-SR LoRA file and their rank, checked for TSD-SR's key layout.

    Every key must be ``transformer.<module>.lora_A.weight`` or ``...lora_B.weight``, every module must have
    both, and all modules must share one rank (``lora_A`` rows = ``lora_B`` columns). With ``rank`` given,
    the file's rank must equal it.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise TargetError(f"{path} not found: expected TSD-SR's LoRA file ({TRANSFORMER_FILE} or {VAE_FILE})")
    try:
        with safe_open(str(path), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise TargetError(f"{path}: not a readable safetensors file ({exc}); re-copy TSD-SR's checkpoint") from None
    if not tensors:
        raise TargetError(f"{path} holds no tensors; expected TSD-SR's LoRA weights")
    broken = [k for k, v in tensors.items() if not v.is_floating_point() or not torch.isfinite(v).all()]
    if broken:
        raise TargetError(f"{path}: non-finite or non-float LoRA tensors {_shown(broken)}; re-copy TSD-SR's checkpoint")
    bad = [k for k in tensors if not _KEY.match(k)]
    if bad:
        raise TargetError(
            f"{path}: {len(bad)} key(s) not in TSD-SR's layout: {_shown(bad)}; expected "
            "'transformer.<module>.lora_A.weight' / '.lora_B.weight' (e.g. "
            "'transformer.transformer_blocks.0.attn.to_q.lora_A.weight')"
        )
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        m = _KEY.match(key)
        modules.setdefault(m["module"], {})[m["ab"]] = value
    half = [f"{KEY_PREFIX}{mod}.lora_{'B' if 'A' in ab else 'A'}.weight" for mod, ab in modules.items() if len(ab) < 2]
    if half:
        raise TargetError(f"{path}: LoRA pairs incomplete, missing {_shown(half)}; every module needs lora_A and lora_B")
    ranks: dict[str, int] = {}
    for mod, ab in modules.items():
        a, b = ab["A"], ab["B"]
        if a.ndim < 2 or b.ndim < 2 or a.shape[0] != b.shape[1]:
            raise TargetError(
                f"{path}: {KEY_PREFIX}{mod}: lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} do not form a LoRA pair "
                "(lora_A rows must equal lora_B columns = the rank)"
            )
        ranks[mod] = int(a.shape[0])
    found = sorted(set(ranks.values()))
    if len(found) > 1:
        common = max(found, key=lambda r: sum(v == r for v in ranks.values()))
        odd = [f"{KEY_PREFIX}{mod} (rank {r})" for mod, r in ranks.items() if r != common]
        raise TargetError(
            f"{path} mixes LoRA ranks {found}: {_shown(odd)} differ from rank {common}; TSD-SR's LoRA has one rank "
            f"for all modules ({TSDSR_RANK})"
        )
    if rank is not None and found[0] != rank:
        raise TargetError(
            f"{path.name} holds rank {found[0]} LoRA weights; expected rank {rank} (TSD-SR's are rank {TSDSR_RANK}) — "
            f"leave the rank unset to load it anyway, or use TSD-SR's own checkpoint ({path})"
        )
    return tensors, found[0]


def _load_embedding(path: Path, shape: tuple, what: str) -> torch.Tensor:
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — pickle, zip and weights_only errors alike
        raise TargetError(f"{path}: not a readable torch tensor file ({type(exc).__name__}: {exc}); expected {what}") from None
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise TargetError(f"{path} holds {type(value).__name__}, expected {what} (a floating-point tensor)")
    ok = value.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, value.shape))
    if not ok:
        want = "(" + ", ".join("T" if s is None else str(s) for s in shape) + ")"
        raise TargetError(f"{path} has shape {tuple(value.shape)}; expected {want}: {what}")
    return value


# --------------------------------------------------------------------------------------------- LoRA


def _lora_layers(model: nn.Module, adapter: str = ADAPTER) -> dict[str, nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer) and adapter in m.lora_A}


def _apply_lora(
    model: nn.Module, targets: Iterable[str], tensors: dict[str, torch.Tensor], rank: int, path: Path, base: Path
) -> dict[str, nn.Module]:
    """Add TSD-SR's adapter to ``model`` and copy ``tensors`` in, strictly; return the wrapped modules."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(targets))
    with torch.random.fork_rng(devices=[]):
        try:
            if hasattr(model, "add_adapter"):  # diffusers' PeftAdapterMixin, as TSD-SR calls it
                model.add_adapter(config, adapter_name=ADAPTER)
            else:
                inject_adapter_in_model(config, model, adapter_name=ADAPTER)
        except ValueError as exc:
            raise TargetError(f"{path}: TSD-SR's LoRA targets {list(targets)} are not in the model at {base} ({exc})") from None
    layers = _lora_layers(model)
    expected: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        expected[f"{KEY_PREFIX}{name}.lora_A.weight"] = layer.lora_A[ADAPTER].weight
        expected[f"{KEY_PREFIX}{name}.lora_B.weight"] = layer.lora_B[ADAPTER].weight
    unexpected = sorted(set(tensors) - set(expected))
    missing = sorted(set(expected) - set(tensors))
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"{len(unexpected)} key(s) for modules TSD-SR's LoRA does not wrap in this model: {_shown(unexpected)}")
        if missing:
            parts.append(f"{len(missing)} wrapped module weight(s) absent from the file: {_shown(missing)}")
        raise TargetError(
            f"{path} does not fit the model at {base}: " + "; ".join(parts) + f" (the model has {len(layers)} "
            f"LoRA-wrapped modules, the file {len({k.rsplit('.lora_', 1)[0] for k in tensors})}); use the LoRA "
            "trained on this base model"
        )
    wrong = [
        f"{k} {tuple(tensors[k].shape)} vs {tuple(p.shape)}" for k, p in expected.items() if tuple(tensors[k].shape) != tuple(p.shape)
    ]
    if wrong:
        raise TargetError(f"{path}: LoRA shapes do not fit the model at {base} (file vs model): {_shown(wrong)}")
    with torch.no_grad():
        for key, param in expected.items():
            param.copy_(tensors[key].to(param.dtype))
    return layers


def _merge_lora(model: nn.Module) -> int:
    """Fold every LoRA ΔW into its base layer and put the plain layers back; return the count."""
    layers = _lora_layers(model)
    for name, layer in layers.items():
        layer.merge(safe_merge=True, adapter_names=[ADAPTER])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    if hasattr(model, "_hf_peft_config_loaded"):
        model._hf_peft_config_loaded = False
    return len(layers)


def tsdsr_lora_state_dict(model: nn.Module, adapter_name: str = ADAPTER) -> dict[str, torch.Tensor]:
    """TSD-SR's file layout for the LoRA of ``model`` (transformer or VAE): ``transformer.<module>.lora_A.weight``.

    Equal to what TSD-SR writes (``get_peft_model_state_dict`` then ``save_lora_weights``' prefix).
    The model must still carry its adapter: load with ``merge=False`` to export.
    """
    layers = _lora_layers(model, adapter_name)
    if not layers:
        raise TargetError(
            f"no LoRA adapter {adapter_name!r} in the model (merged or never added); load TSD-SR with merge=False "
            "to keep its LoRA separate for export"
        )
    out: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        out[f"{KEY_PREFIX}{name}.lora_A.weight"] = layer.lora_A[adapter_name].weight.detach().cpu().contiguous()
        out[f"{KEY_PREFIX}{name}.lora_B.weight"] = layer.lora_B[adapter_name].weight.detach().cpu().contiguous()
    return out


def save_tsdsr_lora(transformer: nn.Module, vae: nn.Module, folder: str | Path) -> tuple[Path, Path]:
    """Write ``transformer.safetensors`` and ``vae.safetensors`` into ``folder`` in TSD-SR's layout."""
    from safetensors.torch import save

    from pruneseek.io import atomic_write_bytes

    folder = Path(folder)
    written = []
    for model, name in ((transformer, TRANSFORMER_FILE), (vae, VAE_FILE)):
        data = save(tsdsr_lora_state_dict(model), metadata={"format": "pt"})
        written.append(atomic_write_bytes(folder / name, data))
    return written[0], written[1]


# --------------------------------------------------------------------------------------------- images


def prepare_lr(
    lr: Any, scale: int = 4, multiple: int = 16, process_size: int | None = None
) -> torch.Tensor:
    """TSD-SR's input: the LR image (tensor ``(3, h, w)`` / ``(B, 3, h, w)`` or PIL image, values in [0, 1])
    resized bicubic straight to ``scale``× with sides floored to ``multiple``, mapped to [−1, 1].

    TSD-SR floors to multiples of 8, but its transformer (VAE 8× then patch 2) only runs untiled on sides
    divisible by 16: where flooring to 8 and to 16 differ, the latent side is odd and TSD-SR's untiled
    forward fails. So ``multiple=16`` (default) gives TSD-SR's size wherever TSD-SR runs without tiling;
    ``multiple=8`` is its exact rule. ``process_size`` (TSD-SR: 512) first enlarges an LR whose short side
    is below ``process_size // scale`` as TSD-SR does (it resizes the result back to ``scale``× the LR size
    afterwards); ``None`` skips that.
    """
    if not isinstance(lr, torch.Tensor):
        import numpy as np

        arr = np.asarray(lr.convert("RGB") if hasattr(lr, "convert") else lr)
        lr = torch.from_numpy(arr.astype("float32") / (255.0 if arr.dtype == np.uint8 else 1.0)).permute(2, 0, 1)
    x = lr.unsqueeze(0) if lr.ndim == 3 else lr
    if x.ndim != 4 or x.shape[1] != 3:
        raise TargetError(f"prepare_lr needs an RGB image (3, h, w) or batch (B, 3, h, w), got shape {tuple(lr.shape)}")
    x = x.float()
    h, w = x.shape[-2:]
    if process_size is not None and min(h, w) < process_size // scale:
        factor = (process_size // scale) / min(h, w)
        h, w = int(factor * h), int(factor * w)
    height, width = scale * h - (scale * h) % multiple, scale * w - (scale * w) % multiple
    if height <= 0 or width <= 0:
        raise TargetError(f"LR image {tuple(x.shape[-2:])} is too small: {scale}× its sides floored to {multiple} is empty")
    x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
    return (x * 2 - 1).clamp(-1, 1)


@dataclass
class VAEEncoder:
    """Images in [−1, 1] → TSD-SR latents ``posterior × scaling_factor`` (no shift).

    ``sample=True`` draws ``latent_dist.sample()`` as TSD-SR does, from a generator re-seeded with ``seed``
    on every call (so one image always encodes to one latent; ``seed=None`` uses the global RNG, as TSD-SR).
    ``sample=False`` takes the posterior mode (its mean) — deterministic; the SD3 VAE's posterior is narrow,
    so the two differ little.
    """

    vae: nn.Module
    scaling_factor: float
    multiple: int
    sample: bool = True
    seed: int | None = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise TargetError(f"TSD-SR encodes RGB batches (B, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise TargetError(
                f"TSD-SR needs image sides divisible by {self.multiple} (VAE downsampling × patch size), got {h}×{w}; "
                f"prepare inputs with prepare_lr(..., multiple={self.multiple})"
            )
        p = next(self.vae.parameters())
        posterior = self.vae.encode(images.to(p.device, p.dtype)).latent_dist
        if not self.sample:
            z = posterior.mode()
        elif self.seed is None:
            z = posterior.sample()
        else:
            z = posterior.sample(generator=torch.Generator(device=p.device).manual_seed(int(self.seed)))
        return z * self.scaling_factor


@dataclass
class VAEDecoder:
    """TSD-SR latents → images: ``vae.decode(z / scaling_factor)`` (unclamped; ``super_resolve`` clamps)."""

    vae: nn.Module
    scaling_factor: float

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        p = next(self.vae.parameters())
        return self.vae.decode(latents.to(p.device, p.dtype) / self.scaling_factor).sample


# --------------------------------------------------------------------------------------------- loader


def load_tsdsr(
    base: str | Path,
    lora: str | Path,
    embeddings: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    rank: int | None = None,
    vae_rank: int | None = None,
    merge: bool = True,
    sample: bool = True,
    seed: int | None = 0,
) -> SRTarget:
    """TSD-SR from local files as an :class:`SRTarget` (transformer + VAE encoder/decoder + prompt embeddings).

    ``base``: SD3-medium in diffusers layout (``transformer/``, ``vae/``); ``lora``: TSD-SR's folder with
    ``transformer.safetensors`` and ``vae.safetensors``; ``embeddings``: ``prompt_embeds.pt`` and
    ``pool_embeds.pt``. The LoRA rank is read from each file (TSD-SR's is 64, alpha = rank); ``rank`` /
    ``vae_rank`` make the loader insist on one. Loading is strict: every key of a file must land on a
    module TSD-SR's config wraps and every wrapped module must get both its matrices, with matching shapes.

    ``merge=True`` (default) folds ΔW = B·A into the weights (in float32, before casting to ``dtype``) and
    returns plain diffusers models — the same function, and the engine can then wrap ``lora_targets`` with
    its own LoRA. (peft makes a newly injected adapter the only active one on an already wrapped module,
    which would silently switch TSD-SR's LoRA off.) ``merge=False`` keeps TSD-SR's peft adapter
    ("default") for :func:`tsdsr_lora_state_dict` / :func:`save_tsdsr_lora`.

    ``sample`` / ``seed``: how the encoder draws the latent (:class:`VAEEncoder`). A transformer that is not
    24 blocks (a test model) loads too; ``info["num_layers"]`` and ``info["sd3_medium"]`` say what it is.
    """
    from diffusers import AutoencoderKL, SD3Transformer2DModel  # noqa: F401 (fail early when diffusers is missing)

    base, lora, embeddings = Path(base), Path(lora), Path(embeddings)
    tconfig = _check_local_files(base, lora, embeddings)
    t_tensors, t_rank, v_tensors, v_rank = _read_lora_files(lora, rank, vae_rank)
    prompt, pooled = _read_embeddings(embeddings, tconfig, base)
    transformer, vae = _load_base_models(base)
    base_params = sum(p.numel() for p in transformer.parameters())

    t_layers = _apply_lora(transformer, TSDSR_TRANSFORMER_TARGETS, t_tensors, t_rank, lora / TRANSFORMER_FILE, base)
    v_layers = _apply_lora(vae, TSDSR_VAE_TARGETS, v_tensors, v_rank, lora / VAE_FILE, base)
    lora_info = _lora_info(t_rank, t_layers, t_tensors, v_rank, v_layers, v_tensors)
    del t_tensors, v_tensors

    _finish_models(transformer, vae, device, dtype, merge)
    scaling = float(vae.config.scaling_factor)
    multiple = 2 ** (len(vae.config.block_out_channels) - 1) * int(transformer.config.patch_size)
    info = _target_info(base, lora, embeddings, transformer, vae, prompt, base_params, lora_info, merge,
                        sample, seed, multiple, dtype)
    return SRTarget(
        name="tsdsr",
        transformer=transformer,
        prompt_embeds=prompt.to(device, dtype),
        pooled_embeds=pooled.to(device, dtype),
        encoder=VAEEncoder(vae, scaling, multiple, sample=sample, seed=seed),
        decoder=VAEDecoder(vae, scaling),
        lora_targets=list(t_layers),
        info=info,
    )


def _check_local_files(base: Path, lora: Path, embeddings: Path) -> dict:
    """``base`` is a local folder and every file is there; the base transformer's config (the VAE's is checked)."""
    if not base.is_dir():
        raise TargetError(
            f"base {base} is not a local folder; download SD3-medium in diffusers layout "
            "(stabilityai/stable-diffusion-3-medium-diffusers) yourself and pass its path — pruneseek downloads nothing"
        )
    _check_files(base, lora, embeddings)
    tconfig = _read_config(base / "transformer", "SD3Transformer2DModel", "base/transformer")
    _read_config(base / "vae", "AutoencoderKL", "base/vae")
    return tconfig


def _read_lora_files(
    lora: Path, rank: int | None, vae_rank: int | None
) -> tuple[dict[str, torch.Tensor], int, dict[str, torch.Tensor], int]:
    """TSD-SR's transformer and VAE LoRA tensors with their ranks; the VAE file must adapt only the encoder."""
    t_tensors, t_rank = read_tsdsr_lora(lora / TRANSFORMER_FILE, rank)
    v_tensors, v_rank = read_tsdsr_lora(lora / VAE_FILE, vae_rank)
    bad_v = [k for k in v_tensors if not k.startswith(f"{KEY_PREFIX}encoder.") and not k.startswith(f"{KEY_PREFIX}quant_conv.")]
    if bad_v:
        raise TargetError(
            f"{lora / VAE_FILE}: keys outside the VAE encoder: {_shown(bad_v)}; TSD-SR's VAE LoRA adapts only the "
            "encoder ('transformer.encoder.…') — is this the transformer file?"
        )
    return t_tensors, t_rank, v_tensors, v_rank


def _read_embeddings(embeddings: Path, tconfig: dict, base: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt and pooled embeddings, shaped as the base transformer's config says."""
    joint = tconfig.get("joint_attention_dim", 4096)
    pooled_dim = tconfig.get("pooled_projection_dim", 2048)
    where = base / "transformer" / "config.json"
    prompt = _load_embedding(
        embeddings / PROMPT_FILE, (1, None, joint), f"(1, tokens, joint_attention_dim={joint}) per {where}"
    )
    pooled = _load_embedding(
        embeddings / POOLED_FILE, (1, pooled_dim), f"(1, pooled_projection_dim={pooled_dim}) per {where}"
    )
    return prompt, pooled


def _load_base_models(base: Path) -> tuple[nn.Module, nn.Module]:
    """SD3's transformer and VAE (float32, local files only); their latent channels must agree."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    transformer = _from_pretrained(SD3Transformer2DModel, base, "transformer")
    vae = _from_pretrained(AutoencoderKL, base, "vae")
    if vae.config.latent_channels != transformer.config.in_channels:
        raise TargetError(
            f"{base / 'vae' / 'config.json'}: latent_channels {vae.config.latent_channels} but the transformer takes "
            f"in_channels {transformer.config.in_channels}; base/vae and base/transformer must come from one SD3 model"
        )
    return transformer, vae


def _from_pretrained(cls, base: Path, subfolder: str) -> nn.Module:
    """``cls`` from ``base/subfolder`` (float32, local files only, every tensor present in its shape); a config or
    weight file that does not load is a one-line TargetError naming the folder."""
    from safetensors import SafetensorError

    from pruneseek.targets.family import check_loading, quiet_loading

    what = "the transformer" if subfolder == "transformer" else "the VAE"
    try:
        with quiet_loading():
            model, info = cls.from_pretrained(base, subfolder=subfolder, local_files_only=True,
                                              torch_dtype=torch.float32, output_loading_info=True)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError, AttributeError, SafetensorError) as exc:
        raise TargetError(f"could not load {what} from {base / subfolder}: {first_line(exc, 300)}; check its config and weight "
                          "files") from None
    check_loading(base / subfolder, info)
    return model


def _lora_info(t_rank: int, t_layers: dict, t_tensors: dict[str, torch.Tensor], v_rank: int, v_layers: dict,
               v_tensors: dict[str, torch.Tensor]) -> dict[str, int]:
    """Rank, wrapped modules and parameters of the transformer's and the VAE's LoRA (for ``info``)."""
    return {
        "lora_rank": t_rank,
        "lora_modules": len(t_layers),
        "lora_params": sum(v.numel() for v in t_tensors.values()),
        "vae_lora_rank": v_rank,
        "vae_lora_modules": len(v_layers),
        "vae_lora_params": sum(v.numel() for v in v_tensors.values()),
    }


def _finish_models(transformer: nn.Module, vae: nn.Module, device: str | torch.device, dtype: torch.dtype,
                   merge: bool) -> None:
    """Move both models to ``device``, merge the LoRA (float32) when asked, cast to ``dtype``, freeze for eval."""
    transformer.to(device)
    vae.to(device)
    if merge:
        _merge_lora(transformer)
        _merge_lora(vae)
    for model in (transformer, vae):
        if dtype != torch.float32:
            model.to(dtype=dtype)
        model.eval().requires_grad_(False)


def _target_info(base: Path, lora: Path, embeddings: Path, transformer: nn.Module, vae: nn.Module,
                 prompt: torch.Tensor, base_params: int, lora_info: dict[str, int], merge: bool, sample: bool,
                 seed: int | None, multiple: int, dtype: torch.dtype) -> dict[str, Any]:
    """The target's ``info``: where it came from, what it is, its LoRA and how it encodes."""
    config = {k: transformer.config.get(k) for k in SD3_MEDIUM}
    return {
        "base": str(base),
        "lora": str(lora),
        "embeddings": str(embeddings),
        "files": {
            "transformer_lora": str(lora / TRANSFORMER_FILE),
            "vae_lora": str(lora / VAE_FILE),
            "prompt_embeds": str(embeddings / PROMPT_FILE),
            "pool_embeds": str(embeddings / POOLED_FILE),
        },
        "num_layers": len(transformer.transformer_blocks),
        "sd3_medium": config == SD3_MEDIUM,
        "transformer_params": base_params,
        **lora_info,
        "merged": merge,
        "prompt_tokens": int(prompt.shape[1]),
        "scaling_factor": float(vae.config.scaling_factor),
        "shift_factor_unused": vae.config.get("shift_factor"),
        "latent": "sample" if sample else "mode",
        "seed": seed if sample else None,
        "multiple": multiple,
        "dtype": str(dtype).removeprefix("torch."),
    }
