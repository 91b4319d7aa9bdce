"""Weights and model cards of the embedded backbones (data files; see ``monatune.backbones.embedded``)."""
