"""Building blocks that tuning methods add to a frozen backbone."""

from monatune.layers.bottleneck import Bottleneck, HoulsbyAdapter, ScaledParallelAdapter
from monatune.layers.lora import LoRAQKV, LowRankDelta
from monatune.layers.lorand import LoRandAdapter, LoRandLinear
from monatune.layers.mona import Mona, MultiCognitiveConv

__all__ = [
    "Bottleneck",
    "HoulsbyAdapter",
    "LoRAQKV",
    "LoRandAdapter",
    "LoRandLinear",
    "LowRankDelta",
    "Mona",
    "MultiCognitiveConv",
    "ScaledParallelAdapter",
]
