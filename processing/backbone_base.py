"""What ResAdapt needs to know about a backbone family, as one small adapter class per family.

An adapter answers three questions the processor cannot answer generically:
  * the base size of a video or image at scale 1 (the backbone's own ``smart_resize`` rule and pixel limits),
  * extra model inputs a family derives from video metadata (e.g. Qwen2.5-VL's ``second_per_grid_ts``),
  * whether the unchanged model needs help to read several grid rows as one continuous video
    (:meth:`prepare_backbone`).
Everything else (pixel normalisation, patchification, placeholder expansion, tokenisation) is delegated to the
backbone's own processor, so ResAdapt inputs stay bit-identical to native ones at scale 1.

This file ships flat next to the weights on the Hub: torch/transformers/stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from transformers.image_utils import SizeDict

GEOMETRY_KEYS = (
    "do_resize", "size", "min_pixels", "max_pixels", "patch_size", "merge_size", "temporal_patch_size",
    "cap_pixels_per_frame", "max_video_tokens", "resample",
)
"""Call arguments that change the size a sub-processor gives at scale 1 (or its resampling filter)."""


@dataclass(frozen=True)
class Geometry:
    """How one sub-processor sizes its input in one call: its own settings with the call's overrides applied.

    Attributes:
        do_resize: False keeps the input size (it must then lie on the ``factor`` grid).
        min_pixels, max_pixels: ``size["shortest_edge"]`` / ``size["longest_edge"]`` (pixels, not edges).
        patch_size, merge_size, temporal_patch_size: the encoder's patching.
        cap_pixels_per_frame, max_video_tokens: the video processors' per-frame share of the video budget.
        resample: the sub-processor's filter (used for chunks kept at their scale-1 size).
    """

    do_resize: bool
    min_pixels: int
    max_pixels: int
    patch_size: int
    merge_size: int
    temporal_patch_size: int
    cap_pixels_per_frame: bool
    max_video_tokens: int | None
    resample: Any

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size


def resolve_geometry(sub_processor, overrides: Mapping[str, Any] | None = None) -> Geometry:
    """The sub-processor's :class:`Geometry` for a call: ``overrides`` (the call's arguments) win over its own
    attributes, as in the sub-processor's ``preprocess``; ``min_pixels``/``max_pixels`` override ``size``."""
    overrides = {k: v for k, v in (overrides or {}).items() if k in GEOMETRY_KEYS}

    def value(key):
        return overrides[key] if key in overrides else getattr(sub_processor, key, None)

    size = value("size")
    if isinstance(size, SizeDict):
        size = {"shortest_edge": size.shortest_edge, "longest_edge": size.longest_edge}
    size = dict(size or {})
    for key, edge in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
        if overrides.get(key) is not None:
            size[edge] = overrides[key]
    if not size.get("shortest_edge") or not size.get("longest_edge"):
        raise ValueError(f"size must hold 'shortest_edge' and 'longest_edge' (min/max pixels), got {size}")
    return Geometry(
        do_resize=bool(value("do_resize")),
        min_pixels=int(size["shortest_edge"]),
        max_pixels=int(size["longest_edge"]),
        patch_size=int(value("patch_size")),
        merge_size=int(value("merge_size")),
        temporal_patch_size=int(value("temporal_patch_size") or 1),
        cap_pixels_per_frame=bool(value("cap_pixels_per_frame")),
        max_video_tokens=value("max_video_tokens"),
        resample=value("resample"),
    )


def unresized_size(height: int, width: int, geometry: Geometry, argument: str) -> tuple[int, int]:
    """``do_resize=False``: the input size is the scale-1 size, which the encoder can only patch on its grid."""
    factor = geometry.factor
    if height % factor or width % factor:
        raise ValueError(
            f"{argument}: with do_resize=False the frames are used at their own size, which must be a multiple of "
            f"{factor} (patch_size * merge_size) on both sides; got {height}x{width}"
        )
    return height, width


class BackboneAdapter:
    """Base class; subclasses set the class attributes and implement the two base-size methods.

    Attributes:
        family: short family name used in configs and error messages.
        processor_class_names: backbone processor classes this adapter serves.
        model_class_names: inner model classes (the ones holding ``get_rope_index``) it can prepare.
        user_turn_start, turn_end: chat-template markers around a user turn (ChatML, as every supported family
            uses); the Allocator reads the text of the last user turn, as it was trained on the question alone.
    """

    family: str = ""
    processor_class_names: tuple[str, ...] = ()
    model_class_names: tuple[str, ...] = ()
    user_turn_start: str = "<|im_start|>user"
    turn_end: str = "<|im_end|>"
    uses_video_fps: bool = False
    needs_frame_indices: bool = False

    def last_user_turn(self, text: str) -> str:
        """The text of the last user turn of a chat-template prompt (the whole text when it has no user turn)."""
        start = text.rfind(self.user_turn_start)
        if start < 0:
            return text
        body = text[start + len(self.user_turn_start):]
        end = body.find(self.turn_end)
        return body if end < 0 else body[:end]

    def __init__(self, backbone_processor):
        self.processor = backbone_processor
        self.image_processor = getattr(backbone_processor, "image_processor", None)
        self.video_processor = getattr(backbone_processor, "video_processor", None)

    # geometry -----------------------------------------------------------------------------------------------
    def video_geometry(self, overrides: Mapping[str, Any] | None = None) -> Geometry:
        return resolve_geometry(self.video_processor, overrides)

    def image_geometry(self, overrides: Mapping[str, Any] | None = None) -> Geometry:
        return resolve_geometry(self.image_processor, overrides)

    @property
    def video_factor(self) -> int:
        return self.video_geometry().factor

    @property
    def image_factor(self) -> int:
        return self.image_geometry().factor

    @property
    def temporal_patch_size(self) -> int:
        return self.video_geometry().temporal_patch_size

    def video_base_size(self, num_frames: int, height: int, width: int, geometry: Geometry | None = None) -> tuple[int, int]:
        """(height, width) the backbone's video processor gives a ``num_frames``-frame clip at scale 1."""
        geometry = geometry or self.video_geometry()
        if not geometry.do_resize:
            return unresized_size(height, width, geometry, "videos")
        return self._video_smart_resize(num_frames, height, width, geometry)

    def image_base_size(self, height: int, width: int, geometry: Geometry | None = None) -> tuple[int, int]:
        """(height, width) the backbone's image processor gives an image at scale 1."""
        geometry = geometry or self.image_geometry()
        if not geometry.do_resize:
            return unresized_size(height, width, geometry, "images")
        return self._image_smart_resize(height, width, geometry)

    def _video_smart_resize(self, num_frames: int, height: int, width: int, geometry: Geometry) -> tuple[int, int]:
        raise NotImplementedError

    def _image_smart_resize(self, height: int, width: int, geometry: Geometry) -> tuple[int, int]:
        raise NotImplementedError

    # model inputs -------------------------------------------------------------------------------------------
    def video_model_inputs(self, clip_metadata: list) -> dict[str, Any]:
        """Extra per-video model inputs derived from each clip's ``VideoMetadata`` (none by default)."""
        return {}

    # model --------------------------------------------------------------------------------------------------
    def prepare_backbone(self, model):
        """Make an unchanged backbone read multi-row videos as one continuous video. Default: nothing to do."""
        return model

    @classmethod
    def handles_model(cls, model) -> bool:
        names = {type(m).__name__ for m in (model, getattr(model, "model", None)) if m is not None}
        return bool(names & set(cls.model_class_names))
