"""Partial-1: only the last block of the last stage trains."""

from monatune.methods.base import TuningMethod, register_method


@register_method
class Partial1(TuningMethod):
    name = "partial1"
    summary = "last block of the last stage trains"

    def trainable(self, model, sites):
        return sites[-1].block.parameters()
