import pytest
import torch
from torch import nn

from pruneseek.engine import EngineError, MaskedStack, MMDiTStream, SingleStream

from engine_toys import DIM, make_blocks


def random_stack(n=6, seed=0):
    kinds = ["needed", "harmful"] * (n // 2)
    return MaskedStack(make_blocks(kinds, seed), SingleStream())


def count_calls(blocks):
    calls = [0] * len(blocks)
    for i, b in enumerate(blocks):
        b.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


def test_blend_equals_skip_equals_deleting_blocks_single_stream():
    stack = random_stack()
    x = torch.randn(5, 3, DIM, generator=torch.Generator().manual_seed(1))  # (batch, tokens, dim)
    for kept in ([0, 2, 3], [1, 4, 5], [], [0, 1, 2, 3, 4, 5], [5]):
        mask = torch.zeros(6)
        mask[kept] = 1
        masks = mask.expand(5, -1)
        blend_out = stack(x, masks, mode="blend")
        skip_out = stack(x, masks, mode="skip")
        pruned = nn.Sequential(*[stack.blocks[i] for i in kept])(x)
        assert torch.equal(blend_out, skip_out)
        assert torch.equal(blend_out, pruned)
    # the masks matter: two different masks give different outputs
    a = stack(x, torch.tensor([[1.0, 0, 1, 0, 1, 0]]).expand(5, -1))
    b = stack(x, torch.tensor([[0.0, 1, 0, 1, 0, 1]]).expand(5, -1))
    assert not torch.allclose(a, b)


def test_per_sample_masks_equal_per_sample_deletion():
    stack = random_stack()
    x = torch.randn(4, DIM, generator=torch.Generator().manual_seed(2))
    masks = torch.tensor([[1.0, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    blend_out = stack(x, masks, mode="blend")
    skip_out = stack(x, masks, mode="skip")
    assert torch.equal(blend_out, skip_out)
    for b in range(4):
        kept = masks[b].nonzero().flatten().tolist()
        torch.testing.assert_close(blend_out[b : b + 1], stack.forward_kept(x[b : b + 1], kept), rtol=0, atol=1e-6)


def test_skip_mode_skips_blocks_no_sample_keeps():
    stack = random_stack()
    calls = count_calls(stack.blocks)
    x = torch.randn(3, DIM)
    masks = torch.tensor([[1.0, 0, 0, 0, 1, 0], [0, 0, 1, 0, 1, 0], [1, 0, 0, 0, 0, 0]])
    stack(x, masks, mode="skip")
    assert calls == [1, 0, 1, 0, 1, 0]
    assert stack.computed_blocks(masks, "skip") == 3 and stack.computed_blocks(masks, "blend") == 6
    stack(x, masks, mode="blend")
    assert calls == [2, 1, 2, 1, 2, 1]
    with pytest.raises(EngineError, match="mode"):
        stack(x, masks, mode="fast")
    with pytest.raises(EngineError):
        stack(x, masks[:, :5])


def test_straight_through_mask_gradient_is_inner_product_blend_mode():
    """dL/dm_i = ⟨dL/dx_{i+1}, φ_i(x_i) − x_i⟩ per sample (docs/design.md §4, blend mode)."""
    stack = random_stack()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 2, DIM, generator=gen)
    w = torch.randn(3, 2, DIM, generator=gen)
    masks = torch.tensor([[1.0, 0, 1, 1, 0, 1], [0, 1, 1, 0, 0, 1], [1, 1, 0, 0, 1, 0]], requires_grad=True)
    (stack(x, masks, mode="blend") * w).sum().backward()
    # Reference: walk the stack by hand, keeping every state and φ_i(x_i).
    states, phis = [x.requires_grad_(False)], []
    state = x
    for i, block in enumerate(stack.blocks):
        phi = block(state)
        m = masks.detach()[:, i].view(3, 1, 1)
        nxt = (m * phi + (1 - m) * state).detach().requires_grad_(True)
        phis.append(phi.detach())
        states.append(nxt)
        state = nxt
    # dL/dx_{i+1} by backprop from the output through the remaining (hard-masked) blocks.
    expected = torch.zeros(3, 6)
    for i in range(6):
        s = states[i + 1].detach().requires_grad_(True)
        out = s
        for j in range(i + 1, 6):
            m = masks.detach()[:, j].view(3, 1, 1)
            out = m * stack.blocks[j](out) + (1 - m) * out
        (out * w).sum().backward()
        expected[:, i] = (s.grad * (phis[i] - states[i])).sum(dim=(1, 2))
    torch.testing.assert_close(masks.grad, expected, rtol=1e-5, atol=1e-6)


def test_skip_mode_loses_gradient_of_skipped_blocks_only():
    stack = random_stack()
    x = torch.randn(2, DIM)
    masks = torch.tensor([[1.0, 0, 1, 0, 1, 0], [1.0, 0, 0, 0, 1, 1]], requires_grad=True)
    stack(x, masks, mode="skip").sum().backward()
    g_skip = masks.grad.clone()
    masks.grad = None
    stack(x, masks, mode="blend").sum().backward()
    g_blend = masks.grad
    skipped = [1, 3]  # no sample keeps them
    assert torch.all(g_skip[:, skipped] == 0) and torch.all(g_blend[:, skipped] != 0)
    computed = [0, 2, 4, 5]
    torch.testing.assert_close(g_skip[:, computed], g_blend[:, computed])


# ----- SD3 MMDiT --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sd3():
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    model = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=4, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=16, out_channels=4,
        pos_embed_max_size=16,
    ).eval()
    gen = torch.Generator().manual_seed(1)
    inputs = dict(
        hidden_states=torch.randn(3, 4, 8, 8, generator=gen),
        encoder_hidden_states=torch.randn(3, 5, 16, generator=gen),
        pooled_projections=torch.randn(3, 16, generator=gen),
        timestep=torch.tensor([1000.0, 500.0, 10.0]),
    )
    return model, inputs


def sd3_with_stack(model, stack, masks, mode, hidden_states, encoder_hidden_states, pooled_projections, timestep):
    """diffusers' SD3 forward with the block loop replaced by the masked stack."""
    height, width = hidden_states.shape[-2:]
    h = model.pos_embed(hidden_states).contiguous()
    temb = model.time_text_embed(timestep, pooled_projections)
    c = model.context_embedder(encoder_hidden_states)
    h, c = stack((h, c), masks, mode=mode, temb=temb)
    h = model.proj_out(model.norm_out(h, temb))
    p, oc = model.config.patch_size, model.out_channels
    h = h.reshape(h.shape[0], height // p, width // p, p, p, oc)
    h = torch.einsum("nhwpqc->nchpwq", h)
    return h.reshape(h.shape[0], oc, height, width), c


@torch.no_grad()
def test_mmdit_masked_forward_equals_diffusers_skip_layers(sd3):
    model, inputs = sd3
    stack = MaskedStack(model.transformer_blocks, MMDiTStream())
    assert model.transformer_blocks[-1].context_pre_only
    full = model(**inputs).sample
    outputs = {}
    for kept in ([0, 1, 2, 3], [0, 2], [1, 3], [3], [0, 1, 2], []):
        mask = torch.zeros(4)
        mask[kept] = 1
        masks = mask.expand(3, -1)
        dropped = [i for i in range(4) if i not in kept]
        expected = model(**inputs, skip_layers=dropped).sample
        out_blend, c_blend = sd3_with_stack(model, stack, masks, "blend", **inputs)
        out_skip, c_skip = sd3_with_stack(model, stack, masks, "skip", **inputs)
        assert torch.equal(out_blend, out_skip)
        torch.testing.assert_close(out_blend, expected, rtol=0, atol=1e-6)
        # context_pre_only: the context becomes None when the last block runs, passes through when dropped
        assert (c_blend is None) == (3 in kept) and (c_skip is None) == (3 in kept)
        outputs[tuple(kept)] = out_blend
    torch.testing.assert_close(outputs[(0, 1, 2, 3)], full, rtol=0, atol=1e-6)
    assert not torch.allclose(outputs[(0, 2)], outputs[(1, 3)])
    assert not torch.allclose(outputs[(0, 1, 2)], outputs[(0, 1, 2, 3)])


@torch.no_grad()
def test_mmdit_per_sample_masks_equal_per_sample_skip_layers(sd3):
    model, inputs = sd3
    stack = MaskedStack(model.transformer_blocks, MMDiTStream())
    masks = torch.tensor([[1.0, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1]])
    out_blend, _ = sd3_with_stack(model, stack, masks, "blend", **inputs)
    out_skip, _ = sd3_with_stack(model, stack, masks, "skip", **inputs)
    assert torch.equal(out_blend, out_skip)
    for b in range(3):
        single = {k: v[b : b + 1] for k, v in inputs.items()}
        dropped = (masks[b] == 0).nonzero().flatten().tolist()
        expected = model(**single, skip_layers=dropped).sample
        torch.testing.assert_close(out_blend[b : b + 1], expected, rtol=0, atol=1e-5)


def test_mmdit_mask_gradient_flows_in_blend_mode(sd3):
    model, inputs = sd3
    stack = MaskedStack(model.transformer_blocks, MMDiTStream())
    masks = torch.tensor([[1.0, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1]], requires_grad=True)
    out, _ = sd3_with_stack(model, stack, masks, "blend", **inputs)
    out.square().mean().backward()
    assert torch.isfinite(masks.grad).all() and (masks.grad != 0).all()


def test_gradient_checkpointing_gives_the_same_values_and_gradients():
    """MaskedStack.checkpointing recomputes activations in the backward pass: bit-identical loss and gradients."""
    from pruneseek.targets.mini import load_mini

    target = load_mini()
    z = torch.randn(2, 48, 8, 8, generator=torch.Generator().manual_seed(0))
    results = []
    for checkpointing in (False, True):
        target.stack.checkpointing = checkpointing
        target.transformer.zero_grad()
        masks = torch.tensor([[1.0, 0.0] * 12, [0.0, 1.0] * 12], requires_grad=True)
        loss = target.sr_latent(z, masks, "blend").pow(2).mean()
        loss.backward()
        weight = target.transformer.transformer_blocks[3].attn.to_q.weight.grad.clone()
        results.append((loss.detach(), masks.grad.clone(), weight))
    for a, b in zip(*results):
        assert torch.equal(a, b)
