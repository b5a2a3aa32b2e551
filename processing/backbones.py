"""Registry of supported backbone families: adding a family is one adapter file plus one line here."""

from __future__ import annotations

from .backbone_base import BackboneAdapter
from .backbone_qwen2_vl import Qwen2_5_VLAdapter, Qwen2VLFamilyAdapter
from .backbone_qwen3_vl import Qwen3VLAdapter

ADAPTERS: tuple[type[BackboneAdapter], ...] = (Qwen2VLFamilyAdapter, Qwen2_5_VLAdapter, Qwen3VLAdapter)


def adapter_for_processor(backbone_processor) -> BackboneAdapter:
    """The adapter for a backbone processor instance (matched on its exact class name)."""
    name = type(backbone_processor).__name__
    for adapter in ADAPTERS:
        if name in adapter.processor_class_names:
            return adapter(backbone_processor)
    supported = sorted(n for a in ADAPTERS for n in a.processor_class_names)
    raise TypeError(f"backbone_processor: unsupported backbone processor {name}; supported: {supported}")


def prepare_backbone(model):
    """Make an unchanged backbone accept ResAdapt's per-chunk resolutions; returns the same model.

    Idempotent, changes no weights, a no-op for families that need nothing (Qwen3-VL). Re-apply after every
    ``from_pretrained``.
    """
    for adapter in ADAPTERS:
        if adapter.handles_model(model):
            return adapter(None).prepare_backbone(model)
    supported = sorted(n for a in ADAPTERS for n in a.model_class_names)
    raise TypeError(f"model: unsupported backbone {type(model).__name__}; supported inner models: {supported}")
