"""The user's calibration inputs for model families (``--data``; docs/design.md §11.2).

:func:`user_inputs` turns ``--data`` into calibration inputs with exactly the keys and shapes of the family's
synthetic ones (:meth:`~pruneseek.targets.family.Family.synthetic_inputs`); only the content differs.

* ``causal-lm``: a UTF-8 text file, tokenised with the model folder's tokenizer and cut into ``count`` windows
  of ``size`` tokens at seeded random offsets.
* ``sd3``, ``flux``, ``dit``: a folder of PNG/JPEG images, square-cropped (the first pass over the images takes
  the centre square, later passes random squares), resized to the latent side times the VAE's downsampling,
  encoded with the pipeline's VAE (``vae/`` next to ``transformer/``), normalised with the VAE's shift and
  scaling factors and noised at seeded random timesteps the way each family is trained: rectified flow for SD3
  and FLUX (``x_t = (1 − σ)·z + σ·ε``, σ uniform on [0, 1); timestep ``1000·σ`` for SD3, ``σ`` for FLUX, which
  scales it itself; FLUX latents packed 2×2 into tokens as ``FluxPipeline._pack_latents`` does), DDPM's linear
  schedule (β from 1e-4 to 0.02 over 1000 steps) for DiT. What images cannot give (prompt and pooled
  embeddings, guidance, class labels) stays as the synthetic inputs draw it for the same seed.

Every input that cannot be used raises :class:`~pruneseek.errors.DataError` naming the problem and the fix.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from pruneseek.errors import DataError, TargetError, first_line
from pruneseek.targets.family import latent_side

IMAGE_FAMILIES = ("sd3", "flux", "dit")
#: Files one of which a folder with a saved tokenizer holds.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer_config.json")
#: Images encoded per VAE call.
VAE_CHUNK = 4


def user_inputs(target, data, count: int, seed: int, size: int) -> tuple[dict, dict, str]:
    """``(per-sample inputs, shared inputs, one-line note)`` from the user's ``data`` for ``target``'s family."""
    data = Path(data)
    if target.name == "causal-lm":
        return text_inputs(target, data, count, seed, size)
    if target.name in IMAGE_FAMILIES:
        return image_inputs(target, data, count, seed, size)
    raise DataError(f"--data gives calibration inputs for {', '.join(('causal-lm',) + IMAGE_FAMILIES)} models, "
                    f"not {target.name}; drop --data")


# ----- causal language models: a text file -----------------------------------------------------------------------


def read_text(path: Path) -> str:
    """The text of a UTF-8 file that holds some (anything else: a one-line :class:`DataError`)."""
    if not path.exists():
        raise DataError(f"--data {path} does not exist; give causal-lm a UTF-8 text file")
    if path.is_dir():
        raise DataError(f"--data {path} is a folder; causal-lm calibrates on one UTF-8 text file, give its path")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read --data {path}: {exc.strerror or type(exc).__name__}; check the file") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"--data {path} is not UTF-8 text (byte {exc.start}); convert it to UTF-8, e.g. "
                        "iconv -t UTF-8") from None
    if not text.strip():
        raise DataError(f"--data {path} holds no text; give a text file with enough text for the calibration windows")
    return text


def load_tokenizer(folder: Path):
    """The tokenizer saved with the model in ``folder`` (local files only)."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise DataError(f"the model folder {folder} has no tokenizer; save one with the model, or drop --data for "
                        "synthetic token ids")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DataError(f"cannot load the tokenizer in {folder}: {first_line(exc, 200)}; save the model's tokenizer "
                        "with save_pretrained, or drop --data for synthetic token ids") from None


def text_inputs(target, path: Path, count: int, seed: int, size: int) -> tuple[dict, dict, str]:
    """``count`` windows of ``size`` tokens at seeded random offsets in the tokenised text file."""
    text = read_text(path)
    tokenizer = load_tokenizer(Path(target.folder))
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    tokens = torch.tensor(ids, dtype=torch.long)
    total = int(tokens.numel())
    if total < size:
        raise DataError(f"--data {path} has {total} tokens, fewer than the {size} tokens of one calibration window; "
                        "give a longer text or a smaller --crop-size")
    vocab = int(target.model.get_input_embeddings().num_embeddings)
    top = int(tokens.max())
    if top >= vocab:
        raise DataError(f"the tokenizer in {target.folder} gives token id {top}, but the model's vocabulary has "
                        f"{vocab} entries; save the model's own tokenizer with it")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, total - size + 1, (count,), generator=g)
    windows = torch.stack([tokens[s:s + size] for s in starts.tolist()])
    note = f"text file {path.name}: {count} windows of {size} tokens from {total} tokens"
    return {"input_ids": windows}, {}, note


# ----- diffusion transformers: a folder of images -----------------------------------------------------------------


def image_files(folder: Path, family: str) -> list[Path]:
    """The PNG/JPEG files in ``folder`` (sorted)."""
    from pruneseek.data.images import IMAGE_SUFFIXES

    if not folder.exists():
        raise DataError(f"--data {folder} does not exist; give {family} a folder of PNG/JPEG images")
    if not folder.is_dir():
        raise DataError(f"--data {folder} is a file; {family} calibrates on a folder of PNG/JPEG images, give the "
                        "folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"--data {folder} holds no PNG or JPEG images; put images in it, or drop --data for "
                        "synthetic latents")
    return files


def load_vae(target):
    """The pipeline's ``AutoencoderKL`` (``vae/`` next to the model's ``transformer/`` folder), float32, eval."""
    folder = Path(target.folder)
    vae_dir = folder.parent / "vae"
    if folder.name != "transformer" or not (vae_dir / "config.json").is_file():
        raise DataError("--data images need the pipeline's VAE (vae/ next to transformer/); give the pipeline folder "
                        "as --base, or drop --data for synthetic latents")
    from diffusers import AutoencoderKL

    try:
        vae = AutoencoderKL.from_pretrained(str(vae_dir), local_files_only=True, torch_dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise TargetError(f"cannot load the VAE from {vae_dir}: {first_line(exc, 200)}; check its config and weight "
                          "files") from None
    return vae.to(target.device).float().eval().requires_grad_(False)


def square_crop(image: torch.Tensor, pixels: int, g: torch.Generator | None) -> torch.Tensor:
    """A square of ``image`` ``(3, H, W)`` in [0, 1], resized to ``pixels``² and scaled to [-1, 1]: the centre
    square (``g`` None), else a random square of ⅔–1 of the short side at a random place."""
    _, h, w = image.shape
    short = min(h, w)
    if g is None:
        side, top, left = short, (h - short) // 2, (w - short) // 2
    else:
        side = max(1, int(round(short * (2 / 3 + torch.rand((), generator=g).item() / 3))))
        top = int(torch.randint(0, h - side + 1, (), generator=g))
        left = int(torch.randint(0, w - side + 1, (), generator=g))
    crop = image[None, :, top:top + side, left:left + side]
    if side != pixels:
        crop = F.interpolate(crop, size=(pixels, pixels), mode="bicubic", align_corners=False,
                             antialias=side > pixels).clamp(0, 1)
    return crop[0] * 2 - 1


def image_batch(files: list[Path], count: int, pixels: int, g: torch.Generator) -> tuple[torch.Tensor, int]:
    """``(count, 3, pixels, pixels)`` crops in [-1, 1] (image ``i mod n`` of a seeded order) and how many files
    they came from."""
    from pruneseek.data.images import load_image

    order = torch.randperm(len(files), generator=g).tolist()
    cache: dict[int, torch.Tensor] = {}
    crops = []
    for i in range(count):
        k = order[i % len(files)]
        if k not in cache:
            cache[k] = load_image(files[k])  # a DataError naming the file when it cannot be read
        crops.append(square_crop(cache[k], pixels, None if i < len(files) else g))
    return torch.stack(crops), len(cache)


@torch.no_grad()
def encode(vae, images: torch.Tensor, device) -> torch.Tensor:
    """The VAE latents' modes, normalised as the pipelines do: ``(z − shift) · scale``."""
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    scale = float(getattr(vae.config, "scaling_factor", None) or 1.0)
    parts = []
    for lo in range(0, images.shape[0], VAE_CHUNK):
        z = vae.encode(images[lo:lo + VAE_CHUNK].to(device)).latent_dist.mode()
        parts.append(((z.float() - shift) * scale).cpu())
    return torch.cat(parts)


def pack(latents: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, (H/2)(W/2), 4C)``, as diffusers' ``FluxPipeline._pack_latents``."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def ddpm_alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    """ᾱ_t of DDPM's linear schedule (β from 1e-4 to 0.02), as DiT was trained."""
    betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def image_inputs(target, folder: Path, count: int, seed: int, size: int) -> tuple[dict, dict, str]:
    """Images → VAE latents → noisy latents at random timesteps, in the family's synthetic layout."""
    name, config = target.name, target.model.config
    files = image_files(folder, name)
    vae = load_vae(target)
    latent_channels = int(vae.config.latent_channels)
    needed = int(config.in_channels) // 4 if name == "flux" else int(config.in_channels)
    if (4 * latent_channels if name == "flux" else latent_channels) != int(config.in_channels):
        packed = " (FLUX packs 2×2 latents: in_channels = 4 × latent_channels)" if name == "flux" else ""
        raise DataError(f"the pipeline's VAE gives {latent_channels} latent channels, but the {name} transformer takes "
                        f"in_channels {config.in_channels}{packed}, i.e. a VAE with {needed}; give the pipeline the "
                        "model was trained with")
    samples, shared = target.family.synthetic_inputs(target.model, count, seed, size)
    side = 2 * max(1, size // 2) if name == "flux" else latent_side(target.model, size)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    g = torch.Generator().manual_seed(seed)
    images, used = image_batch(files, count, side * factor, g)
    z = encode(vae, images, target.device)
    if tuple(z.shape[-2:]) != (side, side):
        raise DataError(f"the pipeline's VAE turned {side * factor}-pixel images into {tuple(z.shape[-2:])} latents, "
                        f"not {side}×{side}; check vae/config.json (block_out_channels)")
    noise = torch.randn(z.shape, generator=g)
    if name == "dit":
        t = torch.randint(0, 1000, (count,), generator=g)
        abar = ddpm_alphas_cumprod()[t].float().view(-1, 1, 1, 1)
        samples["hidden_states"] = abar.sqrt() * z + (1 - abar).sqrt() * noise
        samples["timestep"] = t.to(samples["timestep"].dtype)
        how = "noised with DDPM's linear schedule at timesteps uniform on 0..999; class labels uniform random"
    else:
        sigma = torch.rand(count, generator=g)
        s = sigma.view(-1, 1, 1, 1)
        noisy = (1 - s) * z + s * noise
        if name == "flux":
            samples["hidden_states"] = pack(noisy)
            samples["timestep"] = sigma
            how = ("packed 2×2, noised along the flow at σ uniform on [0, 1); prompt and pooled embeddings synthetic"
                   + (", guidance 3.5" if config.guidance_embeds else ""))
        else:
            samples["hidden_states"] = noisy
            samples["timestep"] = sigma * 1000
            how = ("noised along the flow at σ uniform on [0, 1) (timestep 1000·σ); prompt and pooled embeddings "
                   "synthetic")
    note = (f"images in {folder.name} ({len(files)} files, {used} used) as {count} {side * factor}-pixel crops "
            f"encoded with the pipeline VAE, {how}")
    return samples, shared, note
