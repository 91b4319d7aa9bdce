"""BitFit: only biases train.

The public code selects parameters whose *name* holds "bias", which also catches Swin's
``relative_position_bias_table``; the published counts include those tables, so that is the
default here (``rel_pos_tables=True``). Biases are found by role: the ``bias`` of every module.
"""

from dataclasses import dataclass

from monatune.methods.base import MethodOptions, TuningMethod, register_method


@dataclass
class BitFitOptions(MethodOptions):
    rel_pos_tables: bool = True  # also train relative_position_bias_table (as the public code does)


@register_method
class BitFit(TuningMethod):
    name = "bitfit"
    options_class = BitFitOptions
    summary = "biases (and relative-position bias tables) train"

    def trainable(self, model, sites):
        for module in model.modules():
            for key, bias in module._parameters.items():  # bias, and in_proj_bias (nn.MultiheadAttention), q_bias/v_bias (Swin V2)
                if bias is not None and (key == "bias" or key.endswith("_bias")):
                    yield bias
            if self.options.rel_pos_tables:
                table = module._parameters.get("relative_position_bias_table")
                if table is not None:
                    yield table
