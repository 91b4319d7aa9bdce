"""AdaptFormer: one scaled bottleneck per block, parallel to the MLP and fed the un-normalised stream."""

from dataclasses import dataclass

from monatune.backbones.blocks import attach
from monatune.layers.bottleneck import ScaledParallelAdapter
from monatune.methods.base import MethodOptions, TuningMethod, register_method


@dataclass
class AdaptFormerOptions(MethodOptions):
    mid_dim: int = 64
    dropout: float = 0.1
    scale: float = 0.1


@register_method
class AdaptFormer(TuningMethod):
    name = "adaptformer"
    options_class = AdaptFormerOptions
    summary = "one parallel scaled bottleneck per block"

    def add_modules(self, model, sites):
        added = []
        for site in sites:
            o = self.options
            module = ScaledParallelAdapter(site.dim, o.mid_dim, o.dropout, o.scale)
            attach(site, "mlp_parallel", "adaptformer", module)
            added.append(module)
        return added
