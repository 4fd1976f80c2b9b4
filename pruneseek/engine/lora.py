"""LoRA for the weight update ΔΦ during a mask search, through ``peft`` (SPEC.md §4).

TinyFusion trains LoRA (rank 8, α 16) jointly with the mask logits; TinySR/TSD-SR uses rank 64, α 64.
:func:`inject_lora` wraps the target ``nn.Linear`` modules in place with
``peft.inject_adapter_in_model`` and returns the trainable LoRA parameters; :func:`remove_lora` puts the
original modules back, optionally merging the learned update into their weights first.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from pruneseek.errors import EngineError

ADAPTER = "pruneseek"


def linear_targets(model: nn.Module, within: nn.Module | None = None) -> list[str]:
    """Full names (in ``model``) of every ``nn.Linear`` inside ``within`` (default: the whole model)."""
    scope = {id(m) for m in (within if within is not None else model).modules()}
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and id(m) in scope and name]


def inject_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    target_modules: Sequence[str] | str,
    init_lora_weights: bool | str = True,
    seed: int | None = None,
) -> list[nn.Parameter]:
    """Wrap ``target_modules`` of ``model`` in LoRA adapters (in place); return the LoRA parameters.

    ``seed`` seeds the adapters' initialisation without touching the global RNG state.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if isinstance(target_modules, str):
        target_modules = [target_modules]
    if not target_modules:
        raise EngineError("LoRA needs at least one target module; name the linear layers to adapt")
    config = LoraConfig(
        r=int(rank),
        lora_alpha=alpha,
        target_modules=list(target_modules),
        init_lora_weights=init_lora_weights,
    )
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            inject_adapter_in_model(config, model, adapter_name=ADAPTER)
        except ValueError as err:
            raise EngineError(f"could not place LoRA on target modules {list(target_modules)}: {err}") from None
    params = lora_parameters(model)
    if not params:
        raise EngineError(f"no LoRA parameters were created for target modules {list(target_modules)}")
    return params


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The LoRA parameters (``lora_A`` / ``lora_B``) inside ``model``."""
    return [p for name, p in model.named_parameters() if "lora_" in name]


def remove_lora(model: nn.Module, merge: bool = False) -> int:
    """Replace every LoRA-wrapped module by its base layer; with ``merge`` fold ΔW into it first.

    Returns the number of modules unwrapped.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = [(name, m) for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, module in wrapped:
        if merge:
            module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return len(wrapped)


def trainable(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in params if p.requires_grad]
