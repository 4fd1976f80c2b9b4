"""The JAX simulator and the torch engine share definitions: same numbers on the same inputs.

Options order and marginals are checked in test_lab_search; here the TinySR candidate rules (which
layers m⁻ and m⁺ move, for both rules) and the final TinySR decision.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from pruneseek.engine.gates import log_marginals as torch_log_marginals
from pruneseek.engine.transfer import marginal_candidates, next_option_candidates, transfer_decision
from pruneseek.landscape.search_jax import SearchConfig, _decide, candidate_vectors, space_arrays, transfer_candidates
from pruneseek.spaces import BlockSpace

SPACE = BlockSpace([(4, 2), (3, 1), (4, 2), (3, 2), (5, 2), (5, 3)])
SCALING = 100.0


def _theta(seed):
    arrays = space_arrays(SPACE)
    rng = np.random.default_rng(seed)
    return arrays, rng.normal(0, 0.01, arrays.option_valid.shape).astype(np.float32)


def _torch_logits(theta):
    return [torch.tensor(theta[j, : b.num_options], dtype=torch.float64) for j, b in enumerate(SPACE.blocks)]


def _engine_candidates(theta, m, rule, edges):
    """m⁻ and m⁺ per edge from the torch engine's per-block rule functions."""
    logits = _torch_logits(theta)
    options = [torch.tensor(SPACE.options(j), dtype=torch.float64) for j in range(SPACE.num_blocks)]
    log_pi = torch_log_marginals(logits, options, SCALING)
    current = torch.tensor(m, dtype=torch.float64)[None]
    out = []
    for j, h in edges:
        parts = {}
        for blk in (j, h):
            b = SPACE.blocks[blk]
            cur = current[:, b.start : b.stop]
            if rule == "marginal":
                parts[blk] = marginal_candidates(cur, log_pi[b.start : b.stop], 1, torch.Generator().manual_seed(0))
            else:
                parts[blk] = next_option_candidates(cur, logits[blk], options[blk], b.keep, 1,
                                                    torch.Generator().manual_seed(0))
        (drop_j, corr_j, add_j, exp_j), (drop_h, corr_h, add_h, exp_h) = parts[j], parts[h]
        bj, bh = SPACE.blocks[j], SPACE.blocks[h]
        minus, plus = current.clone(), current.clone()
        minus[:, bj.start : bj.stop] -= drop_j
        minus[:, bh.start : bh.stop] += add_h
        plus[:, bh.start : bh.stop] -= drop_h
        plus[:, bj.start : bj.stop] += add_j
        out.append(((minus[0].numpy(), bool(corr_j & exp_h)), (plus[0].numpy(), bool(exp_j & corr_h))))
    return out


@pytest.mark.parametrize("rule", ["marginal", "next-option"])
def test_candidate_rules_agree(rule):
    arrays = space_arrays(SPACE, 1, "pairs")
    edges = list(zip(arrays.first, arrays.second))
    rng = np.random.default_rng(7)
    compared = 0
    for trial in range(20):
        _, theta = _theta(trial)
        option_idx = np.array([rng.integers(b.num_options) for b in SPACE.blocks])
        m = SPACE.unrank(option_idx).astype(np.float32)
        drop, add = candidate_vectors(jnp.asarray(theta), jnp.asarray(option_idx), jnp.asarray(m), arrays, rule, SCALING)
        jax_cands = np.asarray(transfer_candidates(jnp.asarray(m), drop, add, arrays))
        for e, ((minus, ok_minus), (plus, ok_plus)) in enumerate(_engine_candidates(theta, m, rule, edges)):
            for c, (mask, ok) in ((0, (minus, ok_minus)), (2, (plus, ok_plus))):
                if ok:
                    np.testing.assert_array_equal(jax_cands[e, c], mask, err_msg=f"{rule} edge {edges[e]} candidate {c}")
                    compared += 1
    assert compared >= 40  # the comparison really happened


def test_decision_agrees():
    arrays = space_arrays(SPACE, 1, "pairs")
    edges = list(zip(arrays.first, arrays.second))
    rng = np.random.default_rng(3)
    cfg = SearchConfig(scaling=SCALING)
    for trial in range(15):
        _, theta = _theta(50 + trial)
        q = rng.normal(size=(arrays.num_edges, 3)).astype(np.float32)
        jax_mask, _ = _decide({"theta": jnp.asarray(theta), "q": jnp.asarray(q)}, arrays, cfg, "tinysr-marginal")
        options = [torch.tensor(SPACE.options(j), dtype=torch.float64) for j in range(SPACE.num_blocks)]
        log_pi = torch_log_marginals(_torch_logits(theta), options, SCALING)
        torch_mask = transfer_decision(SPACE, edges, 1, [torch.tensor(v) for v in q], log_pi)["mask"]
        np.testing.assert_array_equal(np.asarray(jax_mask), torch_mask.numpy().astype(np.asarray(jax_mask).dtype))
