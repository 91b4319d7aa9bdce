"""Mona tuning: two Mona modules per block, after the attention and after the MLP residual adds."""

from dataclasses import dataclass

from monatune.backbones.blocks import attach
from monatune.layers.mona import Mona
from monatune.methods.base import MethodOptions, TuningMethod, register_method


@dataclass
class MonaOptions(MethodOptions):
    mid_dim: int = 64
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    scale: str = "vector"  # "vector" (public code) or "scalar" (paper's s1, s2)
    dropout: float = 0.1


@register_method
class MonaMethod(TuningMethod):
    name = "mona"
    options_class = MonaOptions
    summary = "two Mona adapters per block (this library's subject)"

    def add_modules(self, model, sites):
        added = []
        o = self.options
        for site in sites:
            for point, child in (("after_attn", "mona1"), ("after_mlp", "mona2")):
                module = Mona(site.dim, o.mid_dim, o.kernel_sizes, o.scale, o.dropout)
                module.token_layout = site.tokens  # a ViT: prefix tokens + the patch grid of each forward
                attach(site, point, child, module)
                added.append(module)
        return added
