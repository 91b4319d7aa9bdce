"""LoRA on the query and value projections of every attention (k, output projection and MLP untouched)."""

from dataclasses import dataclass

from torch import nn

from monatune.layers.lora import LoRALinear, LoRAMultiheadAttention, LoRAQKV
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
            if isinstance(site.qkv_parent, nn.MultiheadAttention):  # torchvision ViT: packed in-projection
                attn = LoRAMultiheadAttention.wrap(site.qkv_parent, self.options.rank, self.options.alpha)
                added += [attn.lora_q, attn.lora_v]
                continue
            if isinstance(getattr(site.qkv_parent, "q_proj", None), nn.Linear):  # split q/k/v (transformers)
                for proj in ("q_proj", "v_proj"):
                    linear = getattr(site.qkv_parent, proj)
                    wrapped = LoRALinear(linear, self.options.rank, self.options.alpha).to(linear.weight.device, linear.weight.dtype)
                    setattr(site.qkv_parent, proj, wrapped)
                    added.append(wrapped.lora)
                continue
            if not isinstance(getattr(site.qkv_parent, "qkv", None), nn.Linear):
                raise ValueError(f"{site.name}: LoRA needs a qkv projection, and this block has none monatune knows")
            qkv = site.qkv_parent.qkv
            wrapped = LoRAQKV(qkv, self.options.rank, self.options.alpha).to(qkv.weight.device, qkv.weight.dtype)
            wrapped.train(qkv.training)
            site.qkv_parent.qkv = wrapped
            added += [wrapped.lora_q, wrapped.lora_v]
        return added
