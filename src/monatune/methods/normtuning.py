"""Norm tuning: every LayerNorm of the backbone trains (block, patch-embed, patch-merging, stage norms)."""

from torch import nn

from monatune.methods.base import TuningMethod, register_method


@register_method
class NormTuning(TuningMethod):
    name = "normtuning"
    summary = "every LayerNorm trains"

    def trainable(self, model, sites):
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                yield from module.parameters(recurse=False)
