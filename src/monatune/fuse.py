"""Inference form of a tuned model, and the switch between Mona's computation forms.

``fuse(model)`` composes each Mona's three depthwise kernels (+ identity) into one kernel, its
projector (+ identity) into W + I, and folds gamma into its LayerNorm, once; the results are cached
on the module (not in the state dict, which keeps the keys and tensors of SPEC §1). The model is put
in eval mode. A fused model is for inference: its Mona modules raise if run in training mode with
gradients on (their cache would go stale after an optimizer step); ``unfuse(model)`` undoes it.
Training needs no fusing: Mona's default ``"fast"`` form already composes the kernels on the fly.
"""

from __future__ import annotations

from torch import nn

from monatune.layers.lora import LoRALinear, LoRAMultiheadAttention, LoRAQKV
from monatune.layers.mona import FORMS, Mona, MonaForm


def fuse(model: nn.Module, *, merge_lora: bool = False) -> nn.Module:
    """Put ``model`` in its inference form (in place) and eval mode; return it.

    Args:
        model: any module holding Mona modules (e.g. after ``monatune.apply(model, "mona")``).
        merge_lora: also replace every LoRA-wrapped projection (a fused qkv Linear, split q/v Linears,
            or nn.MultiheadAttention's packed in-projection) by plain modules holding W + (alpha/r) B A.
            This changes the state dict (the LoRA keys go), so it is off by default.
    """
    for module in model.modules():
        if isinstance(module, Mona):
            module.fuse_()
    if merge_lora:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, (LoRAQKV, LoRALinear)):
                    setattr(parent, name, child.unwrap().requires_grad_(False))
                elif isinstance(child, LoRAMultiheadAttention):
                    child.merge_().requires_grad_(False)
    return model.eval()


def unfuse(model: nn.Module) -> nn.Module:
    """Drop the inference caches of every Mona in ``model`` (merged LoRA stays merged); return it."""
    for module in model.modules():
        if isinstance(module, Mona):
            module.unfuse_()
    return model


def set_mona_form(model: nn.Module, form: MonaForm) -> nn.Module:
    """Run every Mona in ``model`` in ``form``: "auto" (default: "fast" on the CPU, "lean" on other
    devices), "fast" (composed kernels, least memory, tuned for the CPU), "lean" (fewest operator
    launches: the GPU path) or "plain" (SPEC §1 literally, for reference). All are exact. Returns ``model``."""
    if form not in FORMS:
        raise ValueError(f"unknown Mona form {form!r}; valid: {', '.join(FORMS)}")
    for module in model.modules():
        if isinstance(module, Mona):
            module.form = form
    return model


def is_fused(model: nn.Module) -> bool:
    """True when ``model`` holds Mona modules and all of them are fused."""
    monas = [m for m in model.modules() if isinstance(m, Mona)]
    return bool(monas) and all(m.fused for m in monas)
