"""The one target loader: which model a run prunes, from the same options in every command.

``search``, ``export``, ``compare`` and ``tune`` all name their model the same way: nothing (the bundled
tsdsr-mini teacher), ``--weights FILE`` (other tsdsr-mini weights), or ``--base``, ``--lora`` and
``--embeddings`` together (the real TSD-SR from local files, :mod:`pruneseek.targets.tsdsr`). A
:class:`TargetSource` holds that choice, checks it, loads the :class:`~pruneseek.targets.base.SRTarget`, and
says what identifies the weights (for fingerprints and records).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruneseek.errors import TargetError


@dataclass(frozen=True)
class TargetSource:
    """Where a run's model comes from: tsdsr-mini weights (default: the bundled file) or the real TSD-SR's folders."""

    weights: Path | None = None
    base: Path | None = None
    lora: Path | None = None
    embeddings: Path | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        real = [self.base, self.lora, self.embeddings]
        if any(real) and not all(real):
            raise TargetError("the real TSD-SR needs all of --base, --lora and --embeddings (local folders)")
        if any(real) and self.weights is not None:
            raise TargetError("--weights names tsdsr-mini weights; it cannot be combined with --base/--lora/--embeddings")

    @property
    def is_real(self) -> bool:
        """True for the real TSD-SR (``--base/--lora/--embeddings``), False for tsdsr-mini."""
        return self.base is not None

    @property
    def mini_weights(self) -> Path:
        """The tsdsr-mini weights file this source names (the bundled one by default)."""
        from pruneseek.targets.mini import WEIGHTS

        return Path(self.weights) if self.weights is not None else WEIGHTS

    def load(self, merge_lora: bool = True):
        """The :class:`~pruneseek.targets.base.SRTarget` (TSD-SR's LoRA merged unless ``merge_lora`` is False)."""
        if self.is_real:
            from pruneseek.targets.tsdsr import load_tsdsr

            return load_tsdsr(self.base, self.lora, self.embeddings, device=self.device, merge=merge_lora)
        from pruneseek.targets.mini import load_mini

        return load_mini(self.weights, device=self.device)

    def weights_fingerprint(self) -> Any:
        """What identifies the weights in a run's fingerprint: the mini file's sha256, or the real folders' paths."""
        from pruneseek.io import file_sha256

        if self.is_real:
            return {"base": str(Path(self.base).resolve()), "lora": str(Path(self.lora).resolve()),
                    "embeddings": str(Path(self.embeddings).resolve())}
        return file_sha256(self.mini_weights)

    def identity(self) -> dict[str, Any]:
        """The weights' identity recorded in an export (file names and content hashes)."""
        from pruneseek.io import file_sha256

        if self.is_real:
            from pruneseek.targets.tsdsr import POOLED_FILE, PROMPT_FILE, TRANSFORMER_FILE

            emb = Path(self.embeddings)
            return {"base": str(Path(self.base).resolve()), "lora_sha256": file_sha256(Path(self.lora) / TRANSFORMER_FILE),
                    "embeddings_sha256": [file_sha256(emb / PROMPT_FILE), file_sha256(emb / POOLED_FILE)]}
        return {"weights": self.mini_weights.name, "weights_sha256": file_sha256(self.mini_weights)}
