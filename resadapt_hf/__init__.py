"""resadapt-hf: ResAdapt adaptive per-frame resolution for unchanged Hugging Face VLM backbones.

The processor, the resize operator and the backbone adapters live in ``processing/`` (shipped flat to the Hub as
remote code) and are importable here as ``resadapt_hf.processing``; this package re-exports the public API.
"""

from .processing.allocation import Allocation, FixedScale, MediaAllocation
from .processing.backbones import prepare_backbone
from .processing.prior_allocator import PriorAllocator
from .processing.processing_resadapt import ResAdaptProcessor
from .processing.video_input import VideoClip, load_video, to_video_clip

__version__ = "0.1.0"

__all__ = [
    "Allocation",
    "FixedScale",
    "MediaAllocation",
    "PriorAllocator",
    "ResAdaptProcessor",
    "VideoClip",
    "load_video",
    "prepare_backbone",
    "to_video_clip",
]
