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

from typing import Any

from transformers.image_utils import SizeDict


def size_dict(sub_processor) -> SizeDict:
    """The sub-processor's ``size`` as a :class:`SizeDict` (instances keep either a dict or a SizeDict)."""
    size = sub_processor.size
    return size if isinstance(size, SizeDict) else SizeDict(**size)


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
    @staticmethod
    def _factor(sub_processor) -> int:
        return int(sub_processor.patch_size) * int(sub_processor.merge_size)

    @property
    def video_factor(self) -> int:
        return self._factor(self.video_processor)

    @property
    def image_factor(self) -> int:
        return self._factor(self.image_processor)

    @property
    def temporal_patch_size(self) -> int:
        return int(self.video_processor.temporal_patch_size)

    def video_base_size(self, num_frames: int, height: int, width: int) -> tuple[int, int]:
        """(height, width) the backbone's video processor gives a ``num_frames``-frame clip at scale 1."""
        raise NotImplementedError

    def image_base_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the backbone's image processor gives an image at scale 1."""
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
