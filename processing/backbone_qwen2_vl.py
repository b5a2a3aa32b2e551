"""Qwen2-VL and Qwen2.5-VL: base sizes and chunk-aware 3D (M-RoPE) positions.

ResAdapt gives each temporal chunk of a video its own resolution, so one video becomes several
``video_grid_thw`` rows (one per run of equally sized chunks) behind ONE ``<|vision_start|>...<|vision_end|>``
block. transformers 5.23's ``get_rope_index`` consumes one grid row per contiguous run of video tokens, so it
cannot read that layout. :func:`chunk_aware_rope_index` lets a run of vision tokens consume grid rows until their
token counts add up, and gives every chunk exactly the positions a single native video would give it:

* temporal id of chunk ``k`` = its native id, ``int(k * tokens_per_second * second_per_grid_t)`` (Qwen2.5-VL;
  ``k`` for Qwen2-VL), i.e. a slice of the native ``arange(total_T)`` sequence, offset by the block start;
* height/width ids from the chunk's own grid, offset by the block start;
* text after the video advances by the largest spatial extent among the chunks, which at a uniform scale is
  the native rule of 5.23 (text continues after ``max(h, w) // merge`` positions).

:meth:`Qwen2VLFamilyAdapter.prepare_backbone` installs it as an instance attribute of the inner model (it survives
``deepcopy``; re-apply after every ``from_pretrained``), after checking on a native layout (image + two videos +
left padding) that it reproduces the installed ``get_rope_index`` exactly.
"""

from __future__ import annotations

import functools
import itertools
import types

import torch
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as qwen2_image_smart_resize
from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize as qwen2_video_smart_resize

from .backbone_base import BackboneAdapter, Geometry

_INSTALLED_FLAG = "_resadapt_chunk_aware_rope"


def _vision_positions(rows, start: int, merge: int, time_interval, device) -> tuple[torch.Tensor, int]:
    """Positions [3, n] of consecutive grid ``rows`` read as one continuous video/image starting at ``start``."""
    pieces, t_offset, extent = [], 0, 0
    for t, h, w in rows:
        t, h, w = int(t), int(h) // merge, int(w) // merge
        temporal = (torch.arange(t_offset, t_offset + t, device=device) * time_interval).long() + start
        height = torch.arange(h, device=device) + start
        width = torch.arange(w, device=device) + start
        grid = torch.meshgrid(temporal, height, width, indexing="ij")
        pieces.append(torch.stack(grid, dim=0).reshape(3, -1))
        t_offset += t
        extent = max(extent, h, w)
    return torch.cat(pieces, dim=1), extent


def chunk_aware_rope_index(
    self,
    input_ids: torch.LongTensor,
    mm_token_type_ids: torch.IntTensor,
    image_grid_thw: torch.LongTensor | None = None,
    video_grid_thw: torch.LongTensor | None = None,
    second_per_grid_ts: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    time_based: bool = False,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop-in ``get_rope_index`` for ``Qwen2VLModel``/``Qwen2_5_VLModel`` that accepts several grid rows per video.

    Args and returns as the model's own ``get_rope_index``: ``position_ids`` [3, batch, seq] and
    ``mrope_position_deltas`` [batch, 1]. ``time_based``: temporal ids advance by
    ``tokens_per_second * second_per_grid_t`` per temporal patch (Qwen2.5-VL) instead of 1 (Qwen2-VL).
    """
    merge = self.config.vision_config.spatial_merge_size
    tokens_per_second = self.config.vision_config.tokens_per_second if time_based else None
    rows = {
        1: list(image_grid_thw) if image_grid_thw is not None else [],
        2: list(video_grid_thw) if video_grid_thw is not None else [],
    }
    cursor = {1: 0, 2: 0}
    seconds = iter(second_per_grid_ts) if second_per_grid_ts is not None else None
    position_ids = torch.zeros(3, *input_ids.shape, dtype=input_ids.dtype, device=input_ids.device)
    deltas = []
    for batch_idx, ids in enumerate(input_ids):
        token_types = mm_token_type_ids[batch_idx]
        if attention_mask is not None:
            keep = attention_mask[batch_idx].bool()
            ids, token_types = ids[keep], token_types[keep]
        current, pieces = 0, []
        for modality, group in itertools.groupby(token_types.tolist()):
            length = len(list(group))
            if modality == 0:
                pieces.append(torch.arange(length, device=input_ids.device).view(1, -1).expand(3, -1) + current)
                current += length
                continue
            taken, covered = [], 0
            while covered < length:
                if cursor[modality] >= len(rows[modality]):
                    raise ValueError(
                        f"{'video' if modality == 2 else 'image'}_grid_thw has fewer rows than the prompt's "
                        f"{'video' if modality == 2 else 'image'} tokens need"
                    )
                row = rows[modality][cursor[modality]]
                cursor[modality] += 1
                taken.append(row)
                covered += int(row.prod()) // merge**2
            if covered != length:
                raise ValueError(
                    f"a run of {length} vision tokens does not match its grid rows ({covered} tokens): the prompt "
                    "and the grid_thw rows come from different inputs"
                )
            time_interval = 1
            if modality == 2 and tokens_per_second is not None:
                time_interval = tokens_per_second * (next(seconds) if seconds is not None else 1)
            positions, extent = _vision_positions(taken, current, merge, time_interval, input_ids.device)
            pieces.append(positions)
            current += extent
        positions = torch.cat(pieces, dim=1)
        if attention_mask is not None:
            position_ids[:, batch_idx, attention_mask[batch_idx].bool()] = positions.to(position_ids.device)
        else:
            position_ids[:, batch_idx] = positions.to(position_ids.device)
        deltas.append(positions.max() + 1 - len(ids))
    return position_ids, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)


def _self_test_layout(config, device):
    """A native layout (left padding, an image, two videos) for checking the replacement against the original."""
    merge = config.vision_config.spatial_merge_size
    image_rows = torch.tensor([[1, 2 * merge, 3 * merge]])
    video_rows = torch.tensor([[2, 2 * merge, 2 * merge], [3, merge, 3 * merge]])
    types_row = [0, 0, 0] + [1] * 6 + [0, 0] + [2] * 8 + [0] + [2] * 9 + [0, 0]
    pad = 2
    token_types = torch.tensor([[0] * pad + types_row, [0] * (pad + 2) + types_row[:-2]])
    ids = torch.ones_like(token_types)
    mask = torch.ones_like(token_types)
    mask[0, :pad] = 0
    mask[1, : pad + 2] = 0
    image = torch.cat([image_rows, image_rows])
    video = torch.cat([video_rows, video_rows])
    seconds = torch.tensor([1.0, 0.5, 1.0, 0.5])
    return dict(
        input_ids=ids.to(device),
        mm_token_type_ids=token_types.to(device),
        image_grid_thw=image.to(device),
        video_grid_thw=video.to(device),
        second_per_grid_ts=seconds.to(device),
        attention_mask=mask.to(device),
    )


class Qwen2VLFamilyAdapter(BackboneAdapter):
    """Qwen2-VL and Qwen2.5-VL (same processors' resize rule; the latter adds time-based temporal ids)."""

    family = "qwen2_vl"
    processor_class_names = ("Qwen2VLProcessor",)
    model_class_names = ("Qwen2VLModel",)
    time_based_temporal_ids = False

    def _video_smart_resize(self, num_frames: int, height: int, width: int, geometry: Geometry) -> tuple[int, int]:
        factor, max_pixels = geometry.factor, geometry.max_pixels
        if geometry.cap_pixels_per_frame:  # the same per-frame share of the video budget the processor applies
            total_pixels = int(geometry.max_video_tokens * factor * factor * 0.9)
            max_pixels = max(
                min(max_pixels, total_pixels * geometry.temporal_patch_size // num_frames),
                int(geometry.min_pixels * 1.05),
            )
        return qwen2_video_smart_resize(height, width, factor=factor, min_pixels=geometry.min_pixels, max_pixels=max_pixels)

    def _image_smart_resize(self, height: int, width: int, geometry: Geometry) -> tuple[int, int]:
        return qwen2_image_smart_resize(
            height, width, factor=geometry.factor, min_pixels=geometry.min_pixels, max_pixels=geometry.max_pixels
        )

    def prepare_backbone(self, model):
        inner = _inner_model(model, self.model_class_names)
        if getattr(inner, _INSTALLED_FLAG, False):
            return model
        case = _self_test_layout(inner.config, next(inner.parameters()).device)
        expected = type(inner).get_rope_index(inner, **case)
        rope = functools.partial(chunk_aware_rope_index, time_based=self.time_based_temporal_ids)
        replacement = types.MethodType(rope, inner)
        got = replacement(**case)
        if not all(torch.equal(a, b) for a, b in zip(expected, got)):
            raise RuntimeError(
                f"the chunk-aware get_rope_index does not reproduce {type(inner).__name__}.get_rope_index of the "
                "installed transformers on a native layout; this ResAdapt release is pinned to transformers 5.23"
            )
        inner.get_rope_index = replacement
        setattr(inner, _INSTALLED_FLAG, True)
        return model


class Qwen2_5_VLAdapter(Qwen2VLFamilyAdapter):
    family = "qwen2_5_vl"
    processor_class_names = ("Qwen2_5_VLProcessor",)
    model_class_names = ("Qwen2_5_VLModel",)
    time_based_temporal_ids = True
    uses_video_fps = True  # second_per_grid_ts = temporal_patch_size / sampled fps

    def video_model_inputs(self, clip_metadata: list) -> dict:
        # One value per video from the whole clip's sampled fps, exactly as Qwen2_5_VLProcessor does.
        tps = self.temporal_patch_size
        return {"second_per_grid_ts": [tps / m.sampled_fps for m in clip_metadata]}


def _inner_model(model, class_names: tuple[str, ...]):
    for candidate in (model, getattr(model, "model", None)):
        if candidate is not None and type(candidate).__name__ in class_names:
            return candidate
    raise TypeError(
        f"model: expected a backbone whose inner model is one of {class_names} (e.g. the matching "
        f"*ForConditionalGeneration), got {type(model).__name__}"
    )
