"""From a mask to a pruned checkpoint: physical pruning, streamlining and the export folder (issue 6).

Imports flow one way: :mod:`~pruneseek.export.prune` (state dicts) → :mod:`~pruneseek.export.streamline`
(pre-cached modulation, text-stream removal) → :mod:`~pruneseek.export.folder` (the atomic export folder).
"""
from pruneseek.export.prune import (
    ExportError,
    prune_lora_state_dict,
    prune_state_dict,
    pruned_config,
    pruned_transformer,
)
from pruneseek.export.streamline import ConstantModulation, ImageOnlyBlock, StreamlinedSD3Transformer2DModel, streamline
from pruneseek.export.folder import ExportOptions, ExportSource, bare_copy, base_and_lora, export_checkpoint, read_mask

__all__ = [
    "ConstantModulation", "ExportError", "ExportOptions", "ExportSource", "ImageOnlyBlock",
    "StreamlinedSD3Transformer2DModel", "bare_copy", "base_and_lora", "export_checkpoint", "prune_lora_state_dict",
    "prune_state_dict", "pruned_config", "pruned_transformer", "read_mask", "streamline",
]
