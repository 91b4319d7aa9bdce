"""LoRand: low-rank multi-branch adapters placed like Houlsby adapters (LoRand++: alpha 4, beta 16)."""

from dataclasses import dataclass

from monatune.backbones.blocks import attach
from monatune.layers.lorand import LoRandAdapter
from monatune.methods.base import MethodOptions, TuningMethod, register_method


@dataclass
class LoRandOptions(MethodOptions):
    alpha: int = 4  # branches
    beta: int = 16  # rank of each branch


@register_method
class LoRand(TuningMethod):
    name = "lorand"
    options_class = LoRandOptions
    summary = "two LoRand adapters per block"

    def add_modules(self, model, sites):
        added = []
        for site in sites:
            for point, child in (("attn_out", "lorand1"), ("mlp_out", "lorand2")):
                module = LoRandAdapter(site.dim, self.options.alpha, self.options.beta)
                attach(site, point, child, module)
                added.append(module)
        return added
