"""Causal language models (transformers ``AutoModelForCausalLM``): the decoder stack ShortGPT prunes.

The stack is the model's list of decoder layers, found where the common layouts keep it (``model.layers``:
Llama, Mistral, Qwen2/3, Gemma, Phi-3; ``transformer.h``: GPT-2, GPT-J; ``model.decoder.layers``: OPT;
``gpt_neox.layers``). A decoder layer takes the hidden states first and returns them (transformers ≥ 5), so it
is gated as one stream. Calibration inputs are token ids (random over the vocabulary, or a text file tokenised
with the folder's tokenizer); the objective is the KL divergence from the full model's next-token distribution
to the pruned one's, averaged over positions (ShortGPT and the LLM depth pruners judge a removal the same way).

The export renumbers the kept layers, sets ``num_hidden_layers`` (through the config's own attribute map, so
GPT-2's ``n_layer`` follows), keeps per-layer lists such as ``layer_types`` for the kept layers, and writes the
model with ``save_pretrained``; transformers gives each rebuilt layer its new index (its KV-cache slot).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pruneseek.errors import TargetError
from pruneseek.targets.family import Family

#: Where decoder layers live, as state-dict prefixes (first match wins).
LAYOUTS = ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers", "transformer.layers")
#: Config lists with one entry per layer, cut to the kept layers on export.
PER_LAYER_KEYS = ("layer_types", "mlp_only_layers", "no_rope_layers", "sliding_window_pattern_layers")
SEQUENCE = 16


def causal_lm_classes() -> set[str]:
    """Every class name transformers' AutoModelForCausalLM maps to (GPT2LMHeadModel, …)."""
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # pragma: no cover - transformers always has it
        return set()
    names: set[str] = set()
    for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        names.update([value] if isinstance(value, str) else value)
    return names


def _get(model, dotted: str):
    obj = model
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


class CausalLMFamily(Family):
    name = "causal-lm"
    library = "transformers"
    subfolder = None
    layer_keys = ("num_hidden_layers",)
    objective = "KL divergence from the unpruned model's next-token distribution"

    classes = ("*ForCausalLM", "GPT2LMHeadModel and the other causal-LM heads transformers knows")

    def matches(self, config):
        if "_class_name" in config:
            return False
        return any(str(a).endswith("ForCausalLM") or str(a) in causal_lm_classes()
                   for a in config.get("architectures") or [])

    def describe_config(self, config):
        return ", ".join(config.get("architectures") or []) or f"model_type {config.get('model_type')!r}"

    def load_model(self, folder, config):
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging

        logging.disable_progress_bar()  # one line per outcome on stderr; pruneseek shows its own progress
        from pruneseek.targets.family import check_loading

        model, info = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32,
                                                           output_loading_info=True)
        check_loading(folder, info)
        return model

    def build(self, config):
        from transformers import AutoConfig, AutoModelForCausalLM

        return AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))

    def stacks(self, model):
        for prefix in LAYOUTS:
            layers = _get(model, prefix)
            if isinstance(layers, torch.nn.ModuleList):
                return [(prefix, layers)]
        raise TargetError(f"{type(model).__name__}: no decoder layer list at {', '.join(LAYOUTS)}; "
                          "pruneseek cannot find this architecture's layers")

    def synthetic_inputs(self, model, count, seed, size):
        g = torch.Generator().manual_seed(seed)
        return {"input_ids": torch.randint(0, int(model.config.vocab_size), (count, size), generator=g)}, {}

    def synthetic_note(self, model, size):
        return f"synthetic: {size} token ids per sequence, uniform over the vocabulary of {model.config.vocab_size}"

    def output(self, model, inputs):
        return model(**inputs, use_cache=False).logits

    def loss(self, student, teacher):
        t = F.log_softmax(teacher.float(), dim=-1)
        s = F.log_softmax(student.float(), dim=-1)
        return F.kl_div(s.flatten(0, -2), t.flatten(0, -2), log_target=True, reduction="batchmean")

    def pruned_config(self, config, kept_per_stack):
        kept = kept_per_stack[0]
        out = dict(config)
        key = "num_hidden_layers"
        for alias in ("n_layer", "num_layers"):  # GPT-2 / GPT-J / others store the count under their own name
            if alias in out and key not in out:
                key = alias
        total = int(out[key])
        out[key] = len(kept)
        for name in PER_LAYER_KEYS:
            if isinstance(out.get(name), list) and len(out[name]) == total:
                out[name] = [out[name][i] for i in kept]
        return out
