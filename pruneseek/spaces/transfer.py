"""The transfer-reachable space (docs/design.md §3 and §5; TinySR §3.1, dynamic inter-block activation).

A transfer on a pair of blocks (j, h) moves kept layers between them: corrode j and expand h, or the
reverse; the total number of kept layers is unchanged. A *pair topology* is a graph over blocks
(networkx): the reference adjacent pairs (0,1),(2,3),…, a chain of all adjacent blocks, or any graph.

Definition used here. Every edge e = (j, h) of the topology carries a signed transfer t_e with
|t_e| ≤ k ("up to k kept layers per pair"). Block j then keeps c_j = s_j + (net transfer into j)
layers, and 0 ≤ c_j ≤ B_j must hold. Because corrosion and expansion may pick any layer of a block
(the candidate layers follow the learned marginals), *every* arrangement of c_j kept layers inside
block j is reachable. So a mask is reachable iff its per-block kept counts c are reachable, and

    |M_reach(k)| = Σ_{reachable c} Π_j C(B_j, c_j).

For a count vector c with d = c − s, transfers t with |t_e| ≤ k realising d exist iff, on every
connected component, Σ d = 0 and for every node set S, d(S) ≤ k·|δ(S)| (Gale's feasibility theorem
for undirected capacities). On a forest the transfers are unique (t_e is the surplus of one side),
so the count is an exact dynamic programme; other graphs are counted by exact enumeration.

With k = 0, or a graph without edges, the reachable space is the block-factored space itself.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Iterable, Sequence

import networkx as nx
import numpy as np

from pruneseek.errors import SpaceError
from pruneseek.spaces.blocks import BlockSpace

TOPOLOGY_NAMES = ("pairs", "chain")
#: Exact counting on a component with cycles enumerates count vectors; refuse more than this many.
CYCLIC_ENUMERATION_LIMIT = 2_000_000


def pairs_topology(num_blocks: int) -> nx.Graph:
    """The reference code's pairing: (0,1), (2,3), (4,5), …; an odd last block stays unpaired."""
    g = nx.Graph()
    g.add_nodes_from(range(num_blocks))
    g.add_edges_from((j, j + 1) for j in range(0, num_blocks - 1, 2))
    return g


def chain_topology(num_blocks: int) -> nx.Graph:
    """Every adjacent pair: (0,1), (1,2), …, (K−2, K−1)."""
    g = nx.Graph()
    g.add_nodes_from(range(num_blocks))
    g.add_edges_from((j, j + 1) for j in range(num_blocks - 1))
    return g


def graph_topology(num_blocks: int, edges: Iterable[Sequence[int]]) -> nx.Graph:
    """Any user graph over blocks 0..K−1, given as an edge list."""
    g = nx.Graph()
    g.add_nodes_from(range(num_blocks))
    for edge in edges:
        edge = tuple(edge)
        if len(edge) != 2:
            raise SpaceError(f"a topology edge joins two blocks, got {edge!r}")
        j, h = edge
        for v in (j, h):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < num_blocks:
                raise SpaceError(f"topology edge {edge!r} names block {v!r}; blocks are numbered 0..{num_blocks - 1}")
        if j == h:
            raise SpaceError(f"topology edge {edge!r} joins a block to itself; a transfer needs two blocks")
        g.add_edge(j, h)
    return g


def parse_edges(text: str) -> list[tuple[int, int]]:
    """Parse ``"0-1,2-3"`` into ``[(0, 1), (2, 3)]``."""
    edges = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        pieces = part.split("-")
        if len(pieces) != 2 or not all(p.strip().isdigit() for p in pieces):
            raise SpaceError(
                f"cannot read topology edge {part!r}; write edges as 'j-h' pairs separated by commas, e.g. '0-1,2-3'"
            )
        edges.append((int(pieces[0]), int(pieces[1])))
    if not edges:
        raise SpaceError("an edge-list topology needs at least one edge, e.g. '0-1,2-3'")
    return edges


def make_topology(spec: str | nx.Graph | Iterable[Sequence[int]], num_blocks: int) -> nx.Graph:
    """A topology from a name ('pairs', 'chain'), an edge string ('0-1,1-2'), an edge list or a graph."""
    if isinstance(spec, nx.Graph):
        return graph_topology(num_blocks, spec.edges)
    if isinstance(spec, str):
        if spec == "pairs":
            return pairs_topology(num_blocks)
        if spec == "chain":
            return chain_topology(num_blocks)
        if spec and spec[0].isdigit():
            return graph_topology(num_blocks, parse_edges(spec))
        raise SpaceError(f"unknown topology {spec!r}; use 'pairs', 'chain', or an edge list such as '0-1,2-3'")
    return graph_topology(num_blocks, spec)


def topology_name(graph: nx.Graph) -> str:
    """'pairs' or 'chain' when the graph is one of those, else its edge list as 'j-h,…'."""
    edges = sorted(tuple(sorted(e)) for e in graph.edges)
    k = graph.number_of_nodes()
    for name in TOPOLOGY_NAMES:
        if edges == sorted(tuple(sorted(e)) for e in make_topology(name, k).edges):
            return name
    return ",".join(f"{j}-{h}" for j, h in edges)


class TransferSpace:
    """Masks reachable from ``space`` by moving up to ``k`` kept layers across each topology edge."""

    def __init__(self, space: BlockSpace, k: int, topology: str | nx.Graph | Iterable[Sequence[int]] = "pairs"):
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise SpaceError(f"transfer k must be a non-negative integer, got {k!r}")
        self.space = space
        self.k = k
        self.graph = make_topology(topology, space.num_blocks)

    @property
    def topology(self) -> str:
        return topology_name(self.graph)

    def __repr__(self) -> str:
        return f"TransferSpace({self.space!r}, k={self.k}, topology={self.topology!r})"

    # ----- counting -----------------------------------------------------------------------------
    def _weight(self, j: int, count: int) -> int:
        b = self.space.blocks[j]
        return math.comb(b.size, count) if 0 <= count <= b.size else 0

    def _shift_range(self, j: int) -> range:
        b = self.space.blocks[j]
        return range(-b.keep, b.size - b.keep + 1)

    def _count_tree(self, nodes: set[int]) -> int:
        """Exact count on a tree component: DP over subtree surpluses, each edge carrying |surplus| ≤ k."""
        root = min(nodes)
        tree = self.graph.subgraph(nodes)
        order = list(nx.dfs_postorder_nodes(tree, root))
        parent = dict(nx.dfs_predecessors(tree, root))
        table: dict[int, dict[int, int]] = {}
        for v in order:
            acc = {d: self._weight(v, self.space.blocks[v].keep + d) for d in self._shift_range(v)}
            for child in (c for c in tree.neighbors(v) if parent.get(c) == v):
                merged: dict[int, int] = {}
                for da, wa in acc.items():
                    for db, wb in table[child].items():
                        merged[da + db] = merged.get(da + db, 0) + wa * wb
                acc = merged
            if v != root:
                acc = {d: w for d, w in acc.items() if abs(d) <= self.k and w}
            table[v] = acc
        return table[root].get(0, 0)

    def _feasible_shifts(self, nodes: list[int]) -> np.ndarray:
        """All shift vectors d on a component (Σ d = 0) that some transfers with |t_e| ≤ k realise."""
        ranges = [self._shift_range(j) for j in nodes]
        total = math.prod(len(r) for r in ranges)
        if total > CYCLIC_ENUMERATION_LIMIT:
            raise SpaceError(
                f"counting the reachable space on a topology with cycles over {len(nodes)} blocks needs "
                f"{total:,} count vectors, more than {CYCLIC_ENUMERATION_LIMIT:,}; use a forest topology "
                "such as 'pairs' or 'chain', or fewer blocks"
            )
        grid = np.array(list(itertools.product(*ranges)), dtype=np.int64).reshape(-1, len(nodes))
        grid = grid[grid.sum(axis=1) == 0]
        position = {v: i for i, v in enumerate(nodes)}
        subsets = np.array(list(itertools.product((0, 1), repeat=len(nodes)))[1:-1], dtype=np.int64)
        cuts = np.array(
            [sum(1 for a, b in self.graph.subgraph(nodes).edges if s[position[a]] != s[position[b]]) for s in subsets],
            dtype=np.int64,
        )
        ok = np.ones(len(grid), dtype=bool)
        for lo in range(0, len(subsets), 256):
            sub = subsets[lo : lo + 256]
            ok &= ((grid @ sub.T) <= self.k * cuts[lo : lo + 256]).all(axis=1)
        return grid[ok]

    def _count_cyclic(self, nodes: set[int]) -> int:
        ordered = sorted(nodes)
        total = 0
        for d in self._feasible_shifts(ordered):
            total += math.prod(self._weight(j, self.space.blocks[j].keep + int(x)) for j, x in zip(ordered, d))
        return total

    def size(self) -> int:
        """|M_reach(k)|, exact."""
        if self.k == 0:
            return self.space.size()
        total = 1
        for component in nx.connected_components(self.graph):
            if len(component) == 1:
                (j,) = component
                total *= self.space.blocks[j].num_options
            elif nx.is_tree(self.graph.subgraph(component)):
                total *= self._count_tree(component)
            else:
                total *= self._count_cyclic(component)
        return total

    def fraction(self) -> Fraction:
        """|M_reach(k)| / |M_full|, exact."""
        return Fraction(self.size(), self.space.full_size())

    # ----- membership ---------------------------------------------------------------------------
    def contains(self, mask: Sequence[int] | np.ndarray) -> bool:
        """True when the mask is reachable. Decided by a max-flow over the topology (independent of :meth:`size`)."""
        try:
            counts = self.space.block_counts(mask)
        except SpaceError:
            return False
        shifts = [c - b.keep for c, b in zip(counts, self.space.blocks)]
        if sum(shifts) != 0:
            return False
        if not any(shifts):
            return True
        flow = nx.DiGraph()
        for j, h in self.graph.edges:
            flow.add_edge(j, h, capacity=self.k)
            flow.add_edge(h, j, capacity=self.k)
        demand = 0
        for j, d in enumerate(shifts):
            if d < 0:  # block gives layers away
                flow.add_edge("source", j, capacity=-d)
            elif d > 0:  # block receives layers
                flow.add_edge(j, "sink", capacity=d)
                demand += d
        if "source" not in flow or "sink" not in flow:
            return False
        value, _ = nx.maximum_flow(flow, "source", "sink")
        return value == demand
