"""Qwen3-VL: base sizes. No model change is needed.

Qwen3-VL writes every temporal patch of a video as its own ``<t seconds><|vision_start|>...<|vision_end|>`` block
and its ``get_rope_index`` splits ``video_grid_thw`` per temporal patch, so per-chunk sizes already read as one
continuous video once each chunk carries the backbone's own timestamp (which the processor takes from the
backbone processor's own placeholder builder).

Its video pixel limit applies to ``t * h * w`` (the base size depends on the frame count), and it rejects clips
shorter than ``temporal_patch_size``; the processor pads those first, as the backbone pads odd counts.
"""

from __future__ import annotations

from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as qwen2_image_smart_resize
from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as qwen3_video_smart_resize

from .backbone_base import BackboneAdapter, Geometry


class Qwen3VLAdapter(BackboneAdapter):
    family = "qwen3_vl"
    processor_class_names = ("Qwen3VLProcessor",)
    model_class_names = ("Qwen3VLModel", "Qwen3VLMoeModel")
    uses_video_fps = True  # "<t seconds>" timestamps
    needs_frame_indices = True  # timestamps come from the sampled frames' source indices

    def _video_smart_resize(self, num_frames: int, height: int, width: int, geometry: Geometry) -> tuple[int, int]:
        factor, max_pixels = geometry.factor, geometry.max_pixels
        num_frames = max(num_frames, geometry.temporal_patch_size)
        if geometry.cap_pixels_per_frame:  # the processor's per-frame cap, applied to the whole clip's t*h*w limit
            frame_cap = geometry.max_video_tokens * factor * factor
            per_frame = max(min(frame_cap, geometry.max_pixels // num_frames), int(geometry.min_pixels * 1.05))
            max_pixels = per_frame * num_frames
        return qwen3_video_smart_resize(
            num_frames=num_frames,
            height=height,
            width=width,
            temporal_factor=geometry.temporal_patch_size,
            factor=factor,
            min_pixels=geometry.min_pixels,
            max_pixels=max_pixels,
        )

    def _image_smart_resize(self, height: int, width: int, geometry: Geometry) -> tuple[int, int]:
        return qwen2_image_smart_resize(
            height, width, factor=geometry.factor, min_pixels=geometry.min_pixels, max_pixels=geometry.max_pixels
        )
