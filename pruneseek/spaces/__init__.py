"""Search spaces over depth-pruning masks (docs/design.md §3). Pure: numpy, scipy-free math and networkx only.

- :class:`BlockSpace` — the block-factored space Π C(B_j, s_j) (and the full space C(N, M) as one block).
- :class:`TransferSpace` — masks reachable by TinySR's inter-block transfers over a pair topology.
- :func:`space_for_ratio` — ``--ratio`` to a space, with an error naming the nearest realisable ratios.
- :func:`load_preset` — named presets from ``search_spaces/*.toml``.
"""
from pruneseek.spaces.blocks import (
    ENUMERATION_LIMIT,
    Block,
    BlockSpace,
    combination_rank,
    combination_unrank,
)
from pruneseek.spaces.presets import SpacePreset, find_preset, list_presets, load_preset
from pruneseek.spaces.ratio import RATIO_TOLERANCE, keep_for_ratio, realisable_ratios, space_for_ratio
from pruneseek.spaces.transfer import (
    TransferSpace,
    chain_topology,
    graph_topology,
    make_topology,
    pairs_topology,
    topology_name,
)

__all__ = [
    "ENUMERATION_LIMIT",
    "RATIO_TOLERANCE",
    "Block",
    "BlockSpace",
    "SpacePreset",
    "TransferSpace",
    "chain_topology",
    "combination_rank",
    "combination_unrank",
    "find_preset",
    "graph_topology",
    "keep_for_ratio",
    "list_presets",
    "load_preset",
    "make_topology",
    "pairs_topology",
    "realisable_ratios",
    "space_for_ratio",
    "topology_name",
]
