"""LoRand: low-rank multi-branch adapters placed like Houlsby adapters.

Defaults are the paper's LoRand++ (alpha 4, beta 16, identity at start). The only public code
(STAR-MMRotate, oriented detection) uses beta 8, kaiming-uniform factors and a uniform bias:
``lorand(beta=8, init="kaiming", bias_init="uniform")`` (SPEC §8.10).
"""

from dataclasses import dataclass

from monatune.backbones.blocks import attach
from monatune.layers.lorand import LoRandAdapter
from monatune.methods.base import MethodOptions, TuningMethod, register_method


@dataclass
class LoRandOptions(MethodOptions):
    alpha: int = 4  # branches
    beta: int = 16  # rank of each branch
    init: str = "identity"  # "identity" (P2's kernels zero) or "kaiming" (STAR-MMRotate)
    bias_init: str = "zeros"  # "zeros" or "uniform" (nn.Linear's U(+-1/sqrt(in)); STAR-MMRotate)


@register_method
class LoRand(TuningMethod):
    name = "lorand"
    options_class = LoRandOptions
    summary = "two LoRand adapters per block"

    def add_modules(self, model, sites):
        added = []
        for site in sites:
            for point, child in (("attn_out", "lorand1"), ("mlp_out", "lorand2")):
                o = self.options
                module = LoRandAdapter(site.dim, o.alpha, o.beta, o.init, o.bias_init)
                attach(site, point, child, module)
                added.append(module)
        return added
