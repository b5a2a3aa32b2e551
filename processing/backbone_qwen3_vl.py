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

from .backbone_base import BackboneAdapter, size_dict


class Qwen3VLAdapter(BackboneAdapter):
    family = "qwen3_vl"
    processor_class_names = ("Qwen3VLProcessor",)
    model_class_names = ("Qwen3VLModel", "Qwen3VLMoeModel")

    def video_base_size(self, num_frames: int, height: int, width: int) -> tuple[int, int]:
        vp, size = self.video_processor, size_dict(self.video_processor)
        factor, max_pixels = self.video_factor, size.longest_edge
        num_frames = max(num_frames, self.temporal_patch_size)
        if vp.cap_pixels_per_frame:  # the processor's per-frame cap, applied to the whole clip's t*h*w limit
            frame_cap = vp.max_video_tokens * factor * factor
            per_frame = max(min(frame_cap, size.longest_edge // num_frames), int(size.shortest_edge * 1.05))
            max_pixels = per_frame * num_frames
        return qwen3_video_smart_resize(
            num_frames=num_frames,
            height=height,
            width=width,
            temporal_factor=self.temporal_patch_size,
            factor=factor,
            min_pixels=size.shortest_edge,
            max_pixels=max_pixels,
        )

    def image_base_size(self, height: int, width: int) -> tuple[int, int]:
        size = size_dict(self.image_processor)
        return qwen2_image_smart_resize(
            height, width, factor=self.image_factor, min_pixels=size.shortest_edge, max_pixels=size.longest_edge
        )
