"""Full fine-tuning: every backbone parameter trains."""

from monatune.methods.base import TuningMethod, register_method


@register_method
class Full(TuningMethod):
    name = "full"
    summary = "every parameter trains"

    def trainable(self, model, sites):
        return model.parameters()
