"""Fixed backbone: nothing in the backbone trains (linear probing / frozen features)."""

from monatune.methods.base import TuningMethod, register_method


@register_method
class Fixed(TuningMethod):
    name = "fixed"
    summary = "backbone frozen; only heads train"
