"""Houlsby adapter: a bottleneck adapter on the attention output and on the MLP output, each before its residual add."""

from dataclasses import dataclass

from monatune.backbones.blocks import attach
from monatune.layers.bottleneck import HoulsbyAdapter
from monatune.methods.base import MethodOptions, TuningMethod, register_method


@dataclass
class AdapterOptions(MethodOptions):
    mid_dim: int = 64
    dropout: float = 0.1


@register_method
class Adapter(TuningMethod):
    name = "adapter"
    options_class = AdapterOptions
    summary = "two sequential bottleneck adapters per block"

    def add_modules(self, model, sites):
        added = []
        for site in sites:
            for point, child in (("attn_out", "adapter1"), ("mlp_out", "adapter2")):
                module = HoulsbyAdapter(site.dim, self.options.mid_dim, self.options.dropout)
                attach(site, point, child, module)
                added.append(module)
        return added
