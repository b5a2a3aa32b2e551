"""ResAdaptProcessor: resize every temporal chunk of a video (and every image) before an unchanged backbone sees it.

Wraps a backbone processor (Qwen2-VL, Qwen2.5-VL, Qwen3-VL). Per prompt it

1. decodes/normalises the media (one frame-index list with timestamps per video, shared by every later stage),
2. gets per-frame scales (explicit ``scales``, an ``allocator``, or 1.0) and, when asked, projects them onto a
   retention ``budget`` and/or a hard ``max_visual_tokens`` cap,
3. turns the scales into one size per temporal chunk (:mod:`resize_plan`) and resizes the raw frames straight to
   those sizes,
4. hands the resized pixels to the backbone's own image/video processors with resizing off (rescale, normalise and
   patchify stay native), and expands placeholders with the backbone processor's own builders, one grid row per
   run of equally sized chunks.

At scale 1 everywhere the output is bit-identical to the backbone processor's. Qwen2-VL/Qwen2.5-VL need
:meth:`ResAdaptProcessor.prepare_backbone` once per loaded model to read mixed chunk sizes (see
``backbone_qwen2_vl.py``).

This file ships flat next to the weights on the Hub: torch/transformers/stdlib and same-folder siblings only.
"""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
from dataclasses import replace
from typing import Any, Sequence

import torch
import transformers
from transformers import BatchFeature, ProcessorMixin
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import PILImageResampling, SizeDict
from transformers.video_utils import VideoMetadata

from .allocation import Allocation, FixedScale, MediaAllocation
from .backbones import adapter_for_processor
from .prior_allocator import PriorAllocator
from .resize_plan import (
    DEFAULT_BUDGET_TOLERANCE,
    DEFAULT_MAX_SCALE,
    DEFAULT_MIN_SCALE,
    DEFAULT_MIN_VISUAL_TOKENS,
    UnitSpec,
    chunk_scales,
    plan_sizes,
    solve_budget,
    total_tokens,
    validate_scales,
)
from .video_input import VideoClip, to_rgb_image, to_video_clip

RESAMPLE_FILTERS = {"bilinear": PILImageResampling.BILINEAR, "bicubic": PILImageResampling.BICUBIC}
_OWN_CALL_KWARGS = ("num_frames", "fps", "do_sample_frames", "video_metadata")
ALLOCATOR_SUBFOLDER = "allocator"
ALLOCATOR_TYPES = ("prior", "fixed", "model")


class _Media:
    """One image or video of a prompt after decoding: frames uint8 [T, H, W, 3] plus its clip (videos)."""

    def __init__(self, kind: str, frames: torch.Tensor, clip: VideoClip | None = None):
        self.kind, self.frames, self.clip = kind, frames, clip


class ResAdaptProcessor(ProcessorMixin):
    """Adaptive per-chunk resolution in front of an unchanged Qwen-VL backbone.

    Args:
        image_processor, tokenizer, video_processor: the backbone's own sub-processors.
        chat_template: the backbone's chat template.
        backbone_processor_class: class name of the backbone processor in ``transformers``
            (``"Qwen2VLProcessor"``, ``"Qwen2_5_VLProcessor"``, ``"Qwen3VLProcessor"``).
        min_scale, max_scale: allowed per-frame scale range (paper: [0.2, 1.8]); scale 1 = the backbone's size.
        min_visual_tokens: lower bound of visual tokens per chunk/image (capped at its scale-1 count).
        resample: ``"bilinear"`` (paper's operator, default) or ``"bicubic"``; chunks kept at their scale-1 size
            use the backbone's own filter so that scale 1 reproduces the native input exactly.
        budget: default target retention in ``(0, max_scale**2]`` (None: use the scales as they are).
        max_visual_tokens: default hard cap on visual tokens per prompt (None: no cap).
        budget_tolerance: accepted ``|retention - budget|``.
        default_scale: scale used when neither ``scales`` nor an allocator is given.
        allocator_config: how to rebuild the allocator on load: ``{"type": "prior", **PriorAllocator settings}``,
            ``{"type": "fixed", "scale": s}``, ``{"type": "model", "subfolder": "allocator"}`` (a learned
            Allocator saved next to this config, loaded with ``AutoModel`` and ``trust_remote_code``), or None.
            Set automatically from :attr:`allocator`.
        backbone_name_or_path: Hub id or path of the backbone these sub-processors come from (recorded by
            :meth:`from_backbone`; the model to load next to this processor).
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        video_processor=None,
        chat_template=None,
        backbone_processor_class: str = "Qwen2_5_VLProcessor",
        min_scale: float = DEFAULT_MIN_SCALE,
        max_scale: float = DEFAULT_MAX_SCALE,
        min_visual_tokens: int = DEFAULT_MIN_VISUAL_TOKENS,
        resample: str = "bilinear",
        budget: float | None = None,
        max_visual_tokens: int | None = None,
        budget_tolerance: float = DEFAULT_BUDGET_TOLERANCE,
        default_scale: float = 1.0,
        allocator_config: dict | None = None,
        backbone_name_or_path: str | None = None,
    ):
        self.backbone_processor_class = backbone_processor_class
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.min_visual_tokens = int(min_visual_tokens)
        self.resample = resample
        self.budget = budget
        self.max_visual_tokens = max_visual_tokens
        self.budget_tolerance = float(budget_tolerance)
        self.default_scale = float(default_scale)
        self.backbone_name_or_path = backbone_name_or_path
        self._validate_settings()
        super().__init__(image_processor, tokenizer, video_processor, chat_template=chat_template)
        backbone_cls = getattr(transformers, backbone_processor_class, None)
        if backbone_cls is None or not isinstance(backbone_cls, type) or not issubclass(backbone_cls, ProcessorMixin):
            raise TypeError(f"backbone_processor_class: {backbone_processor_class!r} is not a transformers processor")
        self._backbone = backbone_cls(
            image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
            chat_template=chat_template,
        )
        self._adapter = adapter_for_processor(self._backbone)
        self._allocator = None
        self.allocator_config = None
        if allocator_config is not None:
            self._allocator_from_config(dict(allocator_config))

    def _allocator_from_config(self, config: dict):
        kind = config.pop("type", None)
        if kind not in ALLOCATOR_TYPES:
            raise ValueError(f"allocator_config['type'] must be one of {ALLOCATOR_TYPES}, got {kind!r}")
        if kind == "prior":
            self.allocator = PriorAllocator(**config)
        elif kind == "fixed":
            self.allocator = FixedScale(config["scale"])
        else:  # the learned model is loaded by from_pretrained, which knows where the repo is
            self.allocator_config = {"type": "model", **config}

    # settings ---------------------------------------------------------------------------------------------
    def _validate_settings(self):
        if not (0 < self.min_scale <= 1 <= self.max_scale) or not math.isfinite(self.max_scale):
            raise ValueError(
                f"min_scale/max_scale must satisfy 0 < min_scale <= 1 <= max_scale < inf, "
                f"got [{self.min_scale}, {self.max_scale}]"
            )
        if self.resample not in RESAMPLE_FILTERS:
            raise ValueError(f"resample must be one of {sorted(RESAMPLE_FILTERS)}, got {self.resample!r}")
        if self.min_visual_tokens < 1:
            raise ValueError(f"min_visual_tokens must be >= 1, got {self.min_visual_tokens}")
        if not (0 < self.budget_tolerance < 1):
            raise ValueError(f"budget_tolerance must be in (0, 1), got {self.budget_tolerance}")
        if not (self.min_scale <= self.default_scale <= self.max_scale):
            raise ValueError(
                f"default_scale must be within [{self.min_scale}, {self.max_scale}], got {self.default_scale}"
            )
        self._check_budget(self.budget, self.max_visual_tokens)

    def _check_budget(self, budget, max_visual_tokens):
        if budget is not None:
            if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
                raise ValueError(f"budget must be a number in (0, {self.max_scale**2:g}], got {budget!r}")
            if not (0 < budget <= self.max_scale**2 + 1e-9):
                raise ValueError(
                    f"budget is a target retention ratio and must be in (0, {self.max_scale**2:g}] "
                    f"(max_scale**2), got {budget}"
                )
        if max_visual_tokens is not None and (
            isinstance(max_visual_tokens, bool) or not isinstance(max_visual_tokens, int) or max_visual_tokens < 1
        ):
            raise ValueError(f"max_visual_tokens must be a positive integer, got {max_visual_tokens!r}")

    # construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_backbone(cls, backbone_processor, allocator=None, **settings) -> "ResAdaptProcessor":
        """Build around an existing backbone processor (e.g. ``AutoProcessor.from_pretrained(qwen_repo)``).

        The sub-processors are copied, so saving this processor never rewrites the backbone processor's own
        ``auto_map``. ``settings`` are the constructor's budget/scale arguments.
        """
        adapter_for_processor(backbone_processor)  # unknown backbones fail here, with the supported list
        processor = cls(
            image_processor=copy.deepcopy(backbone_processor.image_processor),
            tokenizer=copy.deepcopy(backbone_processor.tokenizer),
            video_processor=copy.deepcopy(backbone_processor.video_processor),
            chat_template=backbone_processor.chat_template,
            backbone_processor_class=type(backbone_processor).__name__,
            backbone_name_or_path=settings.pop("backbone_name_or_path", None)
            or getattr(backbone_processor.tokenizer, "name_or_path", None) or None,
            **settings,
        )
        processor.allocator = allocator
        return processor

    @property
    def backbone_processor(self) -> ProcessorMixin:
        """The wrapped backbone processor (shares this processor's sub-processors)."""
        return self._backbone

    @property
    def allocator(self):
        """Where scales come from when none are passed: an object with ``predict_scales(media, text)``."""
        return self._allocator

    @allocator.setter
    def allocator(self, value):
        if value is not None and not callable(getattr(value, "predict_scales", None)):
            raise TypeError(
                "allocator must provide predict_scales(media, text) -> per-media lists of per-frame scales "
                f"(e.g. FixedScale(0.5)), got {type(value).__name__}"
            )
        self._allocator = value
        if value is None:
            self.allocator_config = None
        elif isinstance(value, PriorAllocator):
            self.allocator_config = value.to_dict()
        elif isinstance(value, FixedScale):
            self.allocator_config = {"type": "fixed", "scale": value.scale}
        elif callable(getattr(value, "save_pretrained", None)):
            self.allocator_config = {"type": "model", "subfolder": ALLOCATOR_SUBFOLDER}
        else:  # a custom object: usable now, not serialisable
            self.allocator_config = None

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """Save the processor (remote code + ``processor_config.json``) and a learned allocator in
        ``allocator/`` (its own config, remote code and safetensors weights, never colliding with a backbone's)."""
        hub = {k: kwargs.pop(k) for k in ("repo_id", "token", "private", "commit_message", "revision") if k in kwargs}
        files = super().save_pretrained(save_directory, push_to_hub=False, **kwargs)
        if self.allocator_config is not None and self.allocator_config["type"] == "model" and self._allocator is not None:
            subfolder = os.path.join(save_directory, self.allocator_config["subfolder"])
            self._allocator.save_pretrained(subfolder)
            # transformers resolves a subfolder config's auto_map against the repo root: keep the code flat there too
            for name in os.listdir(subfolder):
                if name.endswith(".py"):
                    shutil.copyfile(os.path.join(subfolder, name), os.path.join(save_directory, name))
        if push_to_hub:  # upload the whole folder: ProcessorMixin would only push the files its own call wrote
            from huggingface_hub import create_repo, upload_folder

            repo_id = hub.get("repo_id") or os.path.basename(os.path.abspath(save_directory))
            create_repo(repo_id, private=hub.get("private"), token=hub.get("token"), exist_ok=True)
            upload_folder(
                repo_id=repo_id, folder_path=save_directory, token=hub.get("token"), revision=hub.get("revision"),
                commit_message=hub.get("commit_message", "Upload ResAdapt processor"),
            )
        return files

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load the processor and, when its config names one, the learned allocator from ``allocator/``."""
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        config = processor.allocator_config
        if config is not None and config["type"] == "model":
            from transformers import AutoModel

            hub = {k: kwargs[k] for k in ("cache_dir", "force_download", "local_files_only", "token", "revision") if k in kwargs}
            model = AutoModel.from_pretrained(
                pretrained_model_name_or_path, subfolder=config.get("subfolder", ALLOCATOR_SUBFOLDER),
                trust_remote_code=True, **hub,
            )
            processor.allocator = model.eval()
        return processor

    def prepare_backbone(self, model):
        """Let an unchanged backbone read per-chunk resolutions; returns the same model (idempotent, no weights
        changed). Needed for Qwen2-VL/Qwen2.5-VL with mixed scales; a no-op for Qwen3-VL."""
        if not self._adapter.handles_model(model):
            raise TypeError(
                f"model: this processor wraps a {self.backbone_processor_class} backbone; got "
                f"{type(model).__name__}, expected one whose inner model is one of {self._adapter.model_class_names}"
            )
        return self._adapter.prepare_backbone(model)

    def to_dict(self) -> dict[str, Any]:
        # Keep the runtime objects (backbone processor, allocator module) out of ProcessorMixin's deepcopy.
        hidden = {k: self.__dict__.pop(k) for k in ("_backbone", "_adapter", "_allocator") if k in self.__dict__}
        try:
            return super().to_dict()
        finally:
            self.__dict__.update(hidden)

    # public API -------------------------------------------------------------------------------------------
    def allocate(
        self,
        text: str | list[str] | None = None,
        videos=None,
        images=None,
        scales=None,
        budget: float | None = None,
        max_visual_tokens: int | None = None,
        **kwargs,
    ) -> Allocation | list[Allocation]:
        """Plan the per-chunk sizes without producing pixels.

        Args:
            text: prompt(s) with the backbone's image/video placeholders (they assign media to prompts, in order).
                None: all media form one prompt.
            videos: video(s): paths, uint8 arrays/tensors [T, H, W, C], lists of frames, or ``VideoClip``.
            images: image(s): PIL images, arrays/tensors [H, W, C], or paths.
            scales: per prompt, a number (FixedScale), a flat per-frame vector over the prompt's media in prompt
                order (images count as one frame), or one entry per media item; a list of those for a batch.
            budget: target retention, overriding the processor default.
            max_visual_tokens: hard token cap per prompt, overriding the processor default.
            kwargs: ``num_frames``/``fps`` (frame sampling), ``video_metadata``.

        Returns:
            An :class:`Allocation` for a single prompt (``text`` a string or None), else a list of them.
        """
        texts, samples = self._collect(text, videos, images, kwargs)
        allocations = self._allocate_samples(texts, samples, scales, budget, max_visual_tokens)
        return allocations[0] if not isinstance(text, (list, tuple)) else allocations

    def __call__(
        self,
        text: str | list[str] | None = None,
        images=None,
        videos=None,
        audio=None,
        scales=None,
        budget: float | None = None,
        max_visual_tokens: int | None = None,
        allocation: Allocation | list[Allocation] | None = None,
        return_allocation: bool = False,
        **kwargs,
    ) -> BatchFeature:
        """Tokenise prompts and produce resized pixels that the backbone consumes directly.

        Args:
            text: prompt(s) containing the backbone's image/video placeholders (e.g. from ``apply_chat_template``).
            images, videos, scales, budget, max_visual_tokens: as in :meth:`allocate`.
            allocation: a previous :meth:`allocate` result (one per prompt) to apply as is.
            return_allocation: also return the allocations under the ``"allocation"`` key (not a model input).
            kwargs: tokenizer arguments (``padding``, ``padding_side``, ``return_tensors``, ...), ``num_frames``,
                ``fps``, ``video_metadata``.

        Returns:
            ``BatchFeature`` with ``input_ids``, ``attention_mask``, ``mm_token_type_ids`` and, as present,
            ``pixel_values`` [n_patches, C*t*p*p] + ``image_grid_thw`` [n_images, 3], ``pixel_values_videos`` +
            ``video_grid_thw`` [n_rows, 3] (one row per run of equally sized chunks), ``second_per_grid_ts``.
        """
        if audio is not None:
            raise ValueError("audio: ResAdaptProcessor handles images and videos only")
        if text is None:
            raise ValueError("text: the prompt(s) with image/video placeholders are required")
        texts, samples = self._collect(text, videos, images, kwargs)
        if allocation is not None:
            allocations = [allocation] if isinstance(allocation, Allocation) else list(allocation)
            self._check_allocations(allocations, samples)
        else:
            allocations = self._allocate_samples(texts, samples, scales, budget, max_visual_tokens)
        features = self._encode(texts, samples, allocations, kwargs)
        if return_allocation:
            features["allocation"] = allocations
        return features

    # media collection -------------------------------------------------------------------------------------
    def _collect(self, text, videos, images, kwargs):
        sampling = {k: kwargs.pop(k) for k in _OWN_CALL_KWARGS if k in kwargs}
        texts = None if text is None else ([text] if isinstance(text, str) else list(text))
        if texts is not None and not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a string or a list of strings")
        video_list = _flatten_videos(videos) if videos is not None else []
        image_list = _flatten_images(images) if images is not None else []
        clips = self._decode_videos(video_list, sampling)
        image_frames = [self._load_image(i) for i in image_list]
        if texts is None:
            media = [_Media("video", c.frames, c) for c in clips] + [_Media("image", f[None]) for f in image_frames]
            return [None], [media]
        image_token, video_token = self._backbone.image_token, self._backbone.video_token
        pattern = re.compile(f"({re.escape(image_token)})|({re.escape(video_token)})")
        orders = [[("image" if m.group(1) else "video") for m in pattern.finditer(t)] for t in texts]
        n_images = sum(o.count("image") for o in orders)
        n_videos = sum(o.count("video") for o in orders)
        if n_images != len(image_frames):
            raise ValueError(f"images: the prompts have {n_images} {image_token} placeholders but {len(image_frames)} images were passed")
        if n_videos != len(clips):
            raise ValueError(f"videos: the prompts have {n_videos} {video_token} placeholders but {len(clips)} videos were passed")
        image_iter, clip_iter = iter(image_frames), iter(clips)
        samples = []
        for order in orders:
            media = []
            for kind in order:
                if kind == "image":
                    media.append(_Media("image", next(image_iter)[None]))
                else:
                    clip = next(clip_iter)
                    media.append(_Media("video", clip.frames, clip))
            samples.append(media)
        return texts, samples

    def _decode_videos(self, videos: list, sampling: dict) -> list[VideoClip]:
        metadata = sampling.get("video_metadata")
        if metadata is not None:
            metadata = [metadata] if isinstance(metadata, (dict, VideoMetadata)) else list(metadata)
            if len(metadata) != len(videos):
                raise ValueError(f"video_metadata: expected one entry per video ({len(videos)}), got {len(metadata)}")
        num_frames, fps = sampling.get("num_frames"), sampling.get("fps")
        if sampling.get("do_sample_frames") is False:
            num_frames = fps = None
        clips = []
        for i, video in enumerate(videos):
            meta = metadata[i] if metadata is not None else None
            video_fps = _meta_get(meta, "fps")
            indices = _meta_get(meta, "frames_indices")
            is_path = isinstance(video, (str, os.PathLike))
            path_num_frames, path_fps = num_frames, fps
            if is_path and num_frames is None and fps is None:
                # a file with no sampling request: sample as the backbone's own video processor would
                path_num_frames = getattr(self.video_processor, "num_frames", None)
                path_fps = None if path_num_frames is not None else getattr(self.video_processor, "fps", None)
            clip = to_video_clip(
                video,
                num_frames=path_num_frames if is_path else num_frames,
                fps=path_fps if is_path else fps,
                video_fps=None if is_path else video_fps,
                frame_indices=None if is_path or indices is None else [int(j) for j in indices],
            )
            total = _meta_get(meta, "total_num_frames")
            if total is not None and not is_path:
                clip = replace(clip, total_num_frames=int(total))
            clips.append(clip)
        return clips

    def _load_image(self, image) -> torch.Tensor:
        if isinstance(image, (str, os.PathLike)):
            image = self.image_processor.fetch_images(str(image))
        return to_rgb_image(image)

    # planning ---------------------------------------------------------------------------------------------
    def _units(self, media: list[_Media]):
        """Resizing units of one prompt: (per-media base sizes, units, frames per unit, padded frame counts)."""
        bases, units, unit_frames, padded = [], [], [], []
        tps = self._adapter.temporal_patch_size
        for item in media:
            t, h, w = item.frames.shape[:3]
            if item.kind == "video":
                base = self._adapter.video_base_size(t, h, w)
                factor, n_chunks = self._adapter.video_factor, -(-t // tps)
                units += [UnitSpec(base[0], base[1], factor, self.min_visual_tokens)] * n_chunks
                unit_frames += [tps] * n_chunks
                padded.append(n_chunks * tps)
            else:
                base = self._adapter.image_base_size(h, w)
                units.append(UnitSpec(base[0], base[1], self._adapter.image_factor, self.min_visual_tokens))
                unit_frames.append(1)
                padded.append(1)
            bases.append(base)
        return bases, units, unit_frames, padded

    def _scales_for(self, media: list[_Media], spec, text: str | None) -> list[list[float]]:
        """Per-media per-frame scales from an explicit spec, the allocator, or the default scale."""
        counts = [int(m.frames.shape[0]) for m in media]
        if spec is None and self._allocator is not None:
            spec = self._allocator.predict_scales([m.frames for m in media], self._query_text(text))
        if spec is None:
            spec = self.default_scale
        if isinstance(spec, FixedScale):
            spec = spec.scale
        if isinstance(spec, torch.Tensor):
            spec = spec.detach().cpu().tolist()
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            spec = [float(spec)] * sum(counts)
        if not isinstance(spec, (list, tuple)):
            raise TypeError(f"scales must be a number, a sequence or a tensor, got {type(spec).__name__}")
        nested = len(spec) == len(media) and any(isinstance(s, (list, tuple, torch.Tensor)) for s in spec)
        if nested:
            per_media = []
            for s, n in zip(spec, counts):
                s = s.detach().cpu().tolist() if isinstance(s, torch.Tensor) else s
                s = [s] * n if isinstance(s, (int, float)) else list(s)
                per_media.append(validate_scales(s, expected=n, min_scale=self.min_scale, max_scale=self.max_scale))
            return per_media
        flat = validate_scales(spec, expected=sum(counts), min_scale=self.min_scale, max_scale=self.max_scale)
        out, start = [], 0
        for n in counts:
            out.append(flat[start : start + n])
            start += n
        return out

    def _query_text(self, text: str | None) -> str | None:
        """The prompt as the allocator should read it: the last user turn (not the system prompt or role names:
        CAPOTrainer trains on the question alone), chat-template special tokens and placeholders removed."""
        if text is None:
            return None
        text = self._adapter.last_user_turn(text)
        specials = set(self.tokenizer.all_special_tokens) | set(self.tokenizer.get_added_vocab())
        specials |= {self._backbone.image_token, self._backbone.video_token}
        pattern = "|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True) if t)
        return " ".join(re.sub(pattern, " ", text).split()) if pattern else text

    def _allocate_samples(self, texts, samples, scales, budget, max_visual_tokens) -> list[Allocation]:
        budget = self.budget if budget is None else budget
        max_visual_tokens = self.max_visual_tokens if max_visual_tokens is None else max_visual_tokens
        self._check_budget(budget, max_visual_tokens)
        if len(samples) > 1 and scales is not None and not isinstance(scales, (int, float, FixedScale)):
            if len(scales) != len(samples):
                raise ValueError(f"scales: expected one entry per prompt ({len(samples)}), got {len(scales)}")
            per_sample = list(scales)
        else:
            per_sample = [scales] * len(samples)
        return [
            self._allocate_one(media, self._scales_for(media, spec, text), budget, max_visual_tokens)
            for text, media, spec in zip(texts, samples, per_sample)
        ]

    def _allocate_one(self, media, per_media_scales, budget, max_visual_tokens) -> Allocation:
        if not media:
            return Allocation(media=[], requested_budget=budget, max_visual_tokens=max_visual_tokens)
        bases, units, unit_frames, padded = self._units(media)
        # padded frames repeat the last frame, so they repeat its scale too
        frame_scales = [s for scales, n in zip(per_media_scales, padded) for s in scales + [scales[-1]] * (n - len(scales))]
        reached = None
        if budget is not None or max_visual_tokens is not None:
            solution = solve_budget(
                units, frame_scales, unit_frames, budget=budget, max_visual_tokens=max_visual_tokens,
                min_scale=self.min_scale, max_scale=self.max_scale, tolerance=self.budget_tolerance,
            )
            frame_scales, sizes, reached = solution.frame_scales, solution.sizes, solution.reachable
        else:
            sizes = plan_sizes(units, chunk_scales(frame_scales, unit_frames))
        out, unit_start, frame_start = [], 0, 0
        for item, base, scales, n_padded in zip(media, bases, per_media_scales, padded):
            n_units = n_padded // (self._adapter.temporal_patch_size if item.kind == "video" else 1)
            item_units, item_sizes = units[unit_start : unit_start + n_units], sizes[unit_start : unit_start + n_units]
            clip = item.clip
            out.append(
                MediaAllocation(
                    kind=item.kind,
                    scales=[float(s) for s in frame_scales[frame_start : frame_start + len(scales)]],
                    chunk_sizes=[tuple(s) for s in item_sizes],
                    base_size=tuple(base),
                    visual_tokens=total_tokens(item_units, item_sizes),
                    baseline_visual_tokens=sum(u.base_tokens for u in item_units),
                    frame_indices=list(clip.frame_indices) if clip else [0],
                    timestamps=list(clip.timestamps) if clip else [0.0],
                )
            )
            unit_start += n_units
            frame_start += n_padded
        return Allocation(media=out, requested_budget=budget, max_visual_tokens=max_visual_tokens, budget_reached=reached)

    def _check_allocations(self, allocations: list[Allocation], samples):
        if len(allocations) != len(samples):
            raise ValueError(f"allocation: expected one Allocation per prompt ({len(samples)}), got {len(allocations)}")
        tps = self._adapter.temporal_patch_size
        for allocation, media in zip(allocations, samples):
            if [m.kind for m in allocation.media] != [m.kind for m in media]:
                raise ValueError("allocation: its media (kinds/order) do not match the prompt's placeholders")
            for planned, item in zip(allocation.media, media):
                expected = -(-int(item.frames.shape[0]) // tps) if item.kind == "video" else 1
                if len(planned.chunk_sizes) != expected or len(planned.scales) != int(item.frames.shape[0]):
                    raise ValueError(
                        f"allocation: planned for {len(planned.scales)} frames / {len(planned.chunk_sizes)} chunks, "
                        f"but the {item.kind} has {int(item.frames.shape[0])} frames / {expected} chunks"
                    )

    # encoding ---------------------------------------------------------------------------------------------
    def _resize(self, sub_processor, frames: torch.Tensor, size: tuple[int, int], native: bool) -> torch.Tensor:
        """Resize uint8 frames [N, 3, H, W] to ``size`` with the backbone's own resize call.

        Chunks at their scale-1 size use the backbone's own filter (bit-identical native input); all others use
        the configured operator (bilinear by default).
        """
        resample = sub_processor.resample if native else RESAMPLE_FILTERS[self.resample]
        return TorchvisionBackend.resize(
            sub_processor, frames, size=SizeDict(height=size[0], width=size[1]), resample=resample
        )

    def _encode(self, texts, samples, allocations, kwargs) -> BatchFeature:
        backbone, tps = self._backbone, self._adapter.temporal_patch_size
        image_tensors, video_runs, video_run_meta, run_counts, clip_metas = [], [], [], [], []
        for media, allocation in zip(samples, allocations):
            for item, planned in zip(media, allocation.media):
                frames = item.frames.permute(0, 3, 1, 2).contiguous()  # [T, 3, H, W], as the native path does
                if item.kind == "image":
                    image_tensors.append(
                        self._resize(self.image_processor, frames, planned.chunk_sizes[0], planned.chunk_sizes[0] == planned.base_size)[0]
                    )
                    continue
                if pad := -frames.shape[0] % tps:  # the backbone repeats the last frame, so do we (before resizing)
                    frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
                runs = _runs(planned.chunk_sizes)
                for size, first, count in runs:
                    chunk = frames[first * tps : (first + count) * tps]
                    video_runs.append(self._resize(self.video_processor, chunk, size, size == planned.base_size))
                    indices = item.clip.frame_indices[first * tps : (first + count) * tps]
                    video_run_meta.append(
                        VideoMetadata(
                            total_num_frames=item.clip.total_num_frames, fps=item.clip.fps,
                            frames_indices=list(indices), width=size[1], height=size[0],
                        )
                    )
                run_counts.append(len(runs))
                clip_metas.append(item.clip.to_metadata())

        data: dict[str, Any] = {}
        image_replacements, video_replacements = [], []
        if image_tensors:
            processed = self.image_processor(
                images=image_tensors, do_resize=False, input_data_format="channels_first", return_tensors="pt"
            )
            data.update(processed)
            image_replacements = [
                backbone.replace_image_token(processed, image_idx=i) for i in range(len(image_tensors))
            ]
        if video_runs:
            processed = self.video_processor(
                videos=video_runs, do_resize=False, do_sample_frames=False, input_data_format="channels_first",
                cap_pixels_per_frame=bool(self.video_processor.cap_pixels_per_frame), return_tensors="pt",
            )
            data.update({k: processed[k] for k in ("pixel_values_videos", "video_grid_thw")})
            run = 0
            for count in run_counts:
                pieces = []
                for j in range(run, run + count):
                    view = {"video_grid_thw": processed["video_grid_thw"][j : j + 1], "video_metadata": [video_run_meta[j]]}
                    pieces.append(backbone.replace_video_token(view, video_idx=0))
                video_replacements.append("".join(pieces))
                run += count
            data.update(self._adapter.video_model_inputs(clip_metas))

        merged = backbone._merge_kwargs(tokenizer_init_kwargs=backbone.tokenizer.init_kwargs, **kwargs)
        text_kwargs = merged["text_kwargs"]
        return_tensors = text_kwargs.get("return_tensors")
        return_mm_token_type_ids = text_kwargs.pop("return_mm_token_type_ids", merged["return_mm_token_type_ids"])
        text_kwargs.pop("return_text_replacement_offsets", None)
        expanded, _ = backbone.get_text_with_replacements(list(texts), image_replacements, video_replacements)
        text_inputs = backbone.tokenizer(expanded, **text_kwargs)
        backbone._check_special_mm_tokens(expanded, text_inputs, modalities=["image", "video"])
        if return_mm_token_type_ids:
            text_inputs["mm_token_type_ids"] = backbone.create_mm_token_type_ids(text_inputs["input_ids"])
        data = {**text_inputs, **data}
        return BatchFeature(data, tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return self._backbone.model_input_names


def _runs(sizes: Sequence[tuple[int, int]]) -> list[tuple[tuple[int, int], int, int]]:
    """Consecutive equal sizes as (size, first index, count): one grid row per run (uniform scale = native row)."""
    runs = []
    for i, size in enumerate(sizes):
        if runs and runs[-1][0] == tuple(size):
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((tuple(size), i, 1))
    return runs


def _meta_get(meta, key):
    if meta is None:
        return None
    return meta.get(key) if isinstance(meta, dict) else getattr(meta, key, None)


def _is_frame(x) -> bool:
    # a 3-D array is a frame only with a channel axis ([H, W, C] or [C, H, W], C in 1/3/4); otherwise it is a
    # grayscale video [T, H, W] (pass [T, H, W, 1] to make a 1/3/4-frame grayscale video unambiguous)
    if type(x).__module__.startswith("PIL"):
        return True
    if not hasattr(x, "ndim"):
        return False
    return x.ndim == 2 or (x.ndim == 3 and (x.shape[-1] in (1, 3, 4) or x.shape[0] in (1, 3, 4)))


def _is_video(x) -> bool:
    if isinstance(x, (str, os.PathLike, VideoClip)):
        return True
    if hasattr(x, "ndim") and not isinstance(x, (list, tuple)):
        return x.ndim in (3, 4)  # [T, H, W] grayscale or [T, H, W, C] / [T, C, H, W]
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(_is_frame(f) for f in x)


def _flatten_videos(videos) -> list:
    """Videos as a flat list; accepts one video, a list of videos, or per-prompt lists of videos."""
    if _is_video(videos):
        return [videos]
    if isinstance(videos, (list, tuple)):
        return [v for item in videos for v in _flatten_videos(item)]
    raise TypeError(
        "videos: expected a path, a uint8 array/tensor [T, H, W, C], a list of frames, a VideoClip, or lists of "
        f"those; got {type(videos).__name__}"
    )


def _flatten_images(images) -> list:
    """Images as a flat list; accepts one image, a list, or per-prompt lists (``apply_chat_template`` nests)."""
    if isinstance(images, (list, tuple)):
        return [i for item in images for i in _flatten_images(item)]
    return [images]


ResAdaptProcessor.register_for_auto_class("AutoProcessor")
