"""What a tuning method is: options, modules it adds to blocks, and what trains."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Iterable

from torch import nn

from monatune.backbones.blocks import BlockSite


@dataclasses.dataclass
class MethodOptions:
    """Options of a method (subclassed per method; every field has the paper's default)."""


class TuningMethod:
    """A tuning method. Subclasses set ``name``/``options_class`` and override ``add_modules``/``trainable``.

    ``add_modules`` attaches new modules to blocks (they train); ``trainable`` names the existing
    backbone parameters that train. Everything else in the model passed to ``apply`` is frozen.
    """

    name: ClassVar[str]
    options_class: ClassVar[type[MethodOptions]] = MethodOptions
    summary: ClassVar[str] = ""

    def __init__(self, options: MethodOptions) -> None:
        self.options = options

    def add_modules(self, model: nn.Module, sites: list[BlockSite]) -> list[nn.Module]:
        """Attach the method's modules; return them (all their parameters train)."""
        return []

    def trainable(self, model: nn.Module, sites: list[BlockSite]) -> Iterable[nn.Parameter]:
        """Existing backbone parameters that train (beyond the added modules)."""
        return ()


_REGISTRY: dict[str, type[TuningMethod]] = {}


def register_method(cls: type[TuningMethod]) -> type[TuningMethod]:
    """Class decorator: make a method available by ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"method {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def methods() -> list[str]:
    """Names of all registered tuning methods, in the paper's order."""
    return list(_REGISTRY)


def get_method_class(name: str) -> type[TuningMethod]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(_REGISTRY)}") from None


def option_names(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(get_method_class(name).options_class)]


def build_method(name: str, **options: Any) -> TuningMethod:
    """Instantiate method ``name`` with ``options`` (unknown option -> ValueError listing the valid ones)."""
    cls = get_method_class(name)
    valid = option_names(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for method {name!r}; valid: {', '.join(valid) if valid else '(none)'}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls.options_class)}
    for key, value in options.items():  # YAML/CLI give lists for tuples
        if isinstance(value, list) and isinstance(fields[key].default, tuple):
            options[key] = tuple(value)
    return cls(cls.options_class(**options))
