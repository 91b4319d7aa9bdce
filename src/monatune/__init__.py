"""monatune: Mona tuning and its baselines on frozen Swin backbones.

    import monatune, timm
    model = timm.create_model("swin_tiny_patch4_window7_224", num_classes=10)
    monatune.apply(model, "mona", train_modules=["head"])
    ...train...
    monatune.save_adapter(model, "mona.safetensors")
"""

from monatune.adapter_io import AdapterMismatchError, load_adapter, save_adapter
from monatune.backbones import create_backbone
from monatune.checkpointing import checkpoint_blocks
from monatune.fuse import fuse, set_mona_form, unfuse
from monatune.layers.mona import Mona
from monatune.methods import methods
from monatune.tuning import apply, apply_with_heads, count_parameters, tuning_state
from monatune.version import __version__

__all__ = [
    "AdapterMismatchError",
    "Mona",
    "__version__",
    "apply",
    "apply_with_heads",
    "checkpoint_blocks",
    "count_parameters",
    "create_backbone",
    "fuse",
    "load_adapter",
    "methods",
    "save_adapter",
    "set_mona_form",
    "tuning_state",
    "unfuse",
]
