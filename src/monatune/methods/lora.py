"""LoRA on the query and value projections of every attention (k, output projection and MLP untouched)."""

from dataclasses import dataclass

from monatune.layers.lora import LoRAQKV
from monatune.methods.base import MethodOptions, TuningMethod, register_method


@dataclass
class LoRAOptions(MethodOptions):
    rank: int = 64
    alpha: float = 1.0  # scale alpha / rank = 1/64, as in the public code


@register_method
class LoRA(TuningMethod):
    name = "lora"
    options_class = LoRAOptions
    summary = "low-rank updates of q and v"

    def add_modules(self, model, sites):
        added = []
        for site in sites:
            qkv = site.qkv_parent.qkv
            wrapped = LoRAQKV(qkv, self.options.rank, self.options.alpha).to(qkv.weight.device, qkv.weight.dtype)
            wrapped.train(qkv.training)
            site.qkv_parent.qkv = wrapped
            added += [wrapped.lora_q, wrapped.lora_v]
        return added
