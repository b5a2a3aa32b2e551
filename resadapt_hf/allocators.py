"""Build allocators from presets and write complete, loadable ResAdapt repo folders.

Presets:
    ``"tiny"``: a randomly initialised Allocator with a tiny SmolVLM-style encoder built from a config and a
        tiny tokenizer; small enough for CPU tests, no download.
    ``"tiny-statistics"``: the same predictor on the weight-free ``statistics`` encoder.
    ``"default"``: the paper configuration, frozen ``HuggingFaceTB/SmolVLM2-256M-Video-Instruct`` encoder at its
        own 512 px (downloaded by name on first use), D = 1024, 2 layers, 16 heads of 64.
    ``"fast"``: ``"default"`` with 256 px encoder frames (about a quarter of the encoder FLOPs).
    ``"statistics"``: the paper-size predictor on the ``statistics`` encoder (no download).
    ``"prior"``: the training-free :class:`PriorAllocator` (no weights).
"""

from __future__ import annotations

from pathlib import Path

from .modeling.configuration_resadapt import ResAdaptConfig
from .modeling.modeling_resadapt import ResAdaptAllocator
from .processing.prior_allocator import PriorAllocator
from .processing.processing_resadapt import ResAdaptProcessor

TINY_PREDICTOR = dict(hidden_size=64, num_layers=2, num_heads=4, head_dim=16, temporal_heads=2, ffn_mult=2)
PRESETS = ("tiny", "tiny-statistics", "default", "fast", "statistics", "prior")


def build_allocator(config_or_preset: str | ResAdaptConfig = "tiny", **overrides):
    """An allocator from a preset name (see module docstring) or a :class:`ResAdaptConfig`.

    Args:
        config_or_preset: a preset name or a config.
        overrides: config fields (or ``PriorAllocator`` arguments for ``"prior"``) that replace the preset's.

    Returns:
        ``ResAdaptAllocator`` in eval mode (encoder frozen), or a ``PriorAllocator`` for ``"prior"``.
    """
    if isinstance(config_or_preset, ResAdaptConfig):
        config = config_or_preset
        for key, value in overrides.items():
            setattr(config, key, value)
        return ResAdaptAllocator(config).eval()
    if config_or_preset not in PRESETS:
        raise ValueError(f"config_or_preset must be a ResAdaptConfig or one of {PRESETS}, got {config_or_preset!r}")
    if config_or_preset == "prior":
        return PriorAllocator(**overrides)
    tokenizer = None
    if config_or_preset == "tiny":
        from .tiny import build_tiny_backbone, build_tiny_tokenizer

        encoder, _ = build_tiny_backbone("smolvlm")
        fields = dict(encoder_type="smolvlm", encoder_config=encoder.config.to_dict(), **TINY_PREDICTOR)
        tokenizer = build_tiny_tokenizer("smolvlm")
    elif config_or_preset == "tiny-statistics":
        fields = dict(encoder_type="statistics", query_buckets=512, **TINY_PREDICTOR)
    elif config_or_preset == "fast":
        fields = dict(encoder_type="smolvlm", encoder_image_size=256)
    elif config_or_preset == "statistics":
        fields = dict(encoder_type="statistics")
    else:
        fields = dict(encoder_type="smolvlm")
    model = ResAdaptAllocator(ResAdaptConfig(**{**fields, **overrides}))
    if tokenizer is not None:
        model.query_tokenizer = tokenizer
    return model.eval()


def save_resadapt(directory, allocator, backbone_processor, **processor_settings) -> Path:
    """Write a complete repo folder: processor remote code + ``processor_config.json`` (backbone processor,
    budget defaults, allocator settings), backbone tokenizer/processor configs, and a learned allocator under
    ``allocator/`` (config, remote code, safetensors weights, query tokenizer).

    ``AutoProcessor.from_pretrained(directory, trust_remote_code=True)`` then rebuilds the whole
    :class:`ResAdaptProcessor`, allocator included, without this package installed.
    """
    processor = ResAdaptProcessor.from_backbone(backbone_processor, allocator=allocator, **processor_settings)
    processor.save_pretrained(directory)
    return Path(directory)
