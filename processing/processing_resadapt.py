"""ResAdaptProcessor: resize every temporal chunk of a video (and every image) before an unchanged backbone sees it.

Wraps a backbone processor (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) and runs transformers' own ``ProcessorMixin.__call__``
with two hooks changed. Per call it

1. prepares the media exactly as the backbone's processors would before resizing: files decoded with PyAV, frames
   chosen by the backbone video processor's own ``sample_frames`` with its ``do_sample_frames``/``num_frames``/``fps``
   rules and ``VideoMetadata``, channels first, ``convert_to_rgb``, ``device`` (``video_input.prepare_video``);
2. plans each prompt (:func:`allocation.plan_allocation`): per-frame scales (explicit ``scales``, an ``allocator``,
   or 1.0) -> one size per temporal chunk -> optional projection onto a retention ``budget`` / ``max_visual_tokens``;
3. in ``_process_images``/``_process_videos`` (the per-modality hooks ``ProcessorMixin.__call__`` calls) resizes
   each chunk to its planned size with the backbone's own resize call and hands the pixels to the backbone's own
   image/video processors with resizing off; placeholders come from the backbone processor's own builders, one
   grid row per run of equally sized chunks. Tokenising, ``mm_token_type_ids`` and the rest stay transformers'.

At scale 1 everywhere the output is bit-identical to the backbone processor's for every input it accepts (see
``docs/inputs.md`` in the repository for the few inputs it refuses and ResAdapt accepts). Qwen2-VL/Qwen2.5-VL need
:meth:`ResAdaptProcessor.prepare_backbone` once per loaded model to read mixed chunk sizes.

This file ships flat next to the weights on the Hub: torch/transformers/stdlib and same-folder siblings only.
"""


import copy
import functools
import math
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import transformers
from transformers import BatchFeature, ProcessorMixin
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import PILImageResampling, SizeDict
from transformers.processing_utils import ImagesKwargs, ProcessingKwargs, Unpack, VideosKwargs
from transformers.video_utils import VideoMetadata

from .allocation import Allocation, FixedScale, MediaSpec, PlanSettings, plan_allocation
from .backbones import adapter_for_processor
from .prior_allocator import PriorAllocator
from .resize_plan import (
    DEFAULT_BUDGET_TOLERANCE,
    DEFAULT_MAX_SCALE,
    DEFAULT_MIN_SCALE,
    DEFAULT_MIN_VISUAL_TOKENS,
    check_budget,
)
from .video_input import (
    VideoClip,
    _is_pil_image,
    check_device,
    check_processor_pixels,
    flatten_images,
    flatten_videos,
    frame_rate_of_given_frames,
    per_video,
    per_video_metadata,
    prepare_video,
)

RESAMPLE_FILTERS = {"bilinear": PILImageResampling.BILINEAR, "bicubic": PILImageResampling.BICUBIC}
ALLOCATOR_SUBFOLDER = "allocator"
ALLOCATOR_TYPES = ("prior", "fixed", "model")
SAMPLING_KEYS = ("do_sample_frames", "num_frames", "fps", "video_metadata")
TRANSFORMERS_DEFAULT_FPS = 24.0
"""What transformers assumes when a video's frame rate is unknown (``VideoMetadata.sampled_fps``, Qwen3-VL)."""
# keys the hooks must not forward to the sub-processors: resizing is done, sampling is done, the plan is ours
_NOT_FORWARDED = ("allocation", "do_resize", "size", "min_pixels", "max_pixels", "input_data_format",
                  "do_sample_frames", "num_frames", "fps", "video_metadata", "return_metadata")


class ResAdaptImagesKwargs(ImagesKwargs, total=False):
    """``allocation``: the per-prompt plans the image hook resizes to (set by ``__call__``)."""

    allocation: Any


class ResAdaptVideosKwargs(VideosKwargs, total=False):
    """``allocation``: the per-prompt plans the video hook resizes to (set by ``__call__``)."""

    allocation: Any


class ResAdaptProcessingKwargs(ProcessingKwargs, total=False):
    """ResAdapt's call arguments on top of transformers' (see :meth:`ResAdaptProcessor.__call__`)."""

    images_kwargs: ResAdaptImagesKwargs
    videos_kwargs: ResAdaptVideosKwargs
    scales: Any
    budget: float | None
    max_visual_tokens: int | None
    allocation: Any
    return_allocation: bool


_OWN_CALL_KEYS = ("scales", "budget", "max_visual_tokens", "allocation", "return_allocation")


@dataclass
class _Media:
    """One image or video of a prompt as the backbone prepares it: frames ``[T, C, H, W]`` (images: T = 1)."""

    kind: str
    frames: torch.Tensor
    metadata: VideoMetadata | None = None


@dataclass
class _Batch:
    """A call's media: per prompt (in placeholder order) and flat per modality (in the order the hooks see)."""

    texts: list[str] | None
    samples: list[list[_Media]]
    images: list[torch.Tensor] = field(default_factory=list)
    videos: list[torch.Tensor] = field(default_factory=list)
    video_metadata: list[VideoMetadata] = field(default_factory=list)
    image_args: dict = field(default_factory=dict)
    video_args: dict = field(default_factory=dict)


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

    valid_processor_kwargs = ResAdaptProcessingKwargs

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
        # the placeholder tokens ProcessorMixin.__call__ expands and counts are the backbone's
        for name in ("image_token", "video_token", "image_token_id", "video_token_id"):
            setattr(self, name, getattr(self._backbone, name))
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
        self._settings = PlanSettings(  # checks the scale range, token floor and tolerance
            min_scale=self.min_scale, max_scale=self.max_scale, min_visual_tokens=self.min_visual_tokens,
            budget_tolerance=self.budget_tolerance,
        )
        if self.resample not in RESAMPLE_FILTERS:
            raise ValueError(f"resample must be one of {sorted(RESAMPLE_FILTERS)}, got {self.resample!r}")
        if not (self.min_scale <= self.default_scale <= self.max_scale):
            raise ValueError(
                f"default_scale must be within [{self.min_scale}, {self.max_scale}], got {self.default_scale}"
            )
        check_budget(self.budget, self.max_visual_tokens, max_scale=self.max_scale)

    # the backbone's class-level call defaults, read by ProcessorMixin._merge_kwargs (e.g. Qwen2.5-VL/Qwen3-VL
    # ask their video processor for metadata, Qwen3-VL drops token_type_ids)
    @property
    def text_kwargs(self) -> dict:
        return dict(getattr(type(self._backbone), "text_kwargs", None) or {})

    @property
    def images_kwargs(self) -> dict:
        return dict(getattr(type(self._backbone), "images_kwargs", None) or {})

    @property
    def videos_kwargs(self) -> dict:
        return dict(getattr(type(self._backbone), "videos_kwargs", None) or {})

    @property
    def return_mm_token_type_ids(self) -> bool:
        return bool(getattr(type(self._backbone), "return_mm_token_type_ids", False))

    @property
    def model_input_names(self) -> list[str]:
        return self._backbone.model_input_names

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
            videos, images: as in :meth:`__call__`.
            scales: per prompt, a number (or ``FixedScale``), a flat per-frame sequence over the prompt's media in
                prompt order (images count as one frame), or one sequence per media item; with several prompts, a
                list with one such entry per prompt (or one number for all).
            budget: target retention, overriding the processor default.
            max_visual_tokens: hard token cap per prompt, overriding the processor default.
            kwargs: the video/image arguments of :meth:`__call__` (``num_frames``, ``fps``, ``do_sample_frames``,
                ``video_metadata``, ``do_resize``, ``size``, ...).

        Returns:
            An :class:`Allocation` for a single prompt (``text`` a string or None), else a list of them.
        """
        batch = self._prepare(text, images, videos, dict(kwargs))
        allocations = self._plan(batch, scales, budget, max_visual_tokens)
        return allocations if isinstance(text, (list, tuple)) else allocations[0]

    def __call__(
        self,
        images=None,
        text: str | list[str] | None = None,
        videos=None,
        audio=None,
        **kwargs: Unpack[ResAdaptProcessingKwargs],
    ) -> BatchFeature:
        """Tokenise prompts and produce resized pixels that the backbone consumes directly.

        Arguments are the backbone processor's (same order; images, videos and their keyword arguments are read
        by the backbone's own rules, see ``docs/inputs.md``) plus:

        Args:
            scales, budget, max_visual_tokens: as in :meth:`allocate`.
            allocation: a previous :meth:`allocate` result (one per prompt) to apply as is.
            return_allocation: also return the allocations under the ``"allocation"`` key (not a model input).
            device: where frames are resized and processed (``"cpu"``, ``"cuda"``, ...), as the backbone's fast
                processors take it.

        Returns:
            ``BatchFeature`` with the backbone processor's keys: ``input_ids``, ``attention_mask``,
            ``mm_token_type_ids`` and, as present, ``pixel_values`` + ``image_grid_thw``, ``pixel_values_videos``
            + ``video_grid_thw`` (one row per run of equally sized chunks), ``second_per_grid_ts``.
        """
        if audio is not None:
            raise ValueError("audio: ResAdaptProcessor handles images and videos only")
        if text is None:
            raise ValueError("text: the prompt(s) with image/video placeholders are required")
        own = {key: kwargs.pop(key) for key in _OWN_CALL_KEYS if key in kwargs}
        batch = self._prepare(text, images, videos, kwargs)
        allocation = own.get("allocation")
        if allocation is not None:
            allocations = [allocation] if isinstance(allocation, Allocation) else list(allocation)
            self._check_allocations(allocations, batch)
        else:
            allocations = self._plan(batch, own.get("scales"), own.get("budget"), own.get("max_visual_tokens"))
        images_kwargs = {**(kwargs.pop("images_kwargs", None) or {}), "allocation": allocations}
        videos_kwargs = {**(kwargs.pop("videos_kwargs", None) or {}), "allocation": allocations}
        if batch.videos:
            videos_kwargs["video_metadata"] = batch.video_metadata
        features = super().__call__(
            images=batch.images or None, text=text, videos=batch.videos or None,
            images_kwargs=images_kwargs, videos_kwargs=videos_kwargs, **kwargs,
        )
        if own.get("return_allocation"):
            features["allocation"] = allocations
        return features

    # preparation ------------------------------------------------------------------------------------------
    def _prepare(self, text, images, videos, kwargs: dict) -> _Batch:
        """Decode, sample and prepare every image and video as the backbone would, and assign them to prompts.

        Pops the sampling arguments from ``kwargs`` (and its ``videos_kwargs``): they are spent here."""
        texts = None if text is None else ([text] if isinstance(text, str) else list(text))
        if texts is not None and not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a string or a list of strings")
        video_args = _explicit_args(kwargs, "videos", self.video_processor, pop=SAMPLING_KEYS)
        image_args = _explicit_args(kwargs, "images", self.image_processor)
        for args in (video_args, image_args):
            check_device(args.get("device"))
        video_list = flatten_videos(videos) if videos is not None else []
        image_list = flatten_images(images) if images is not None else []
        orders = None
        if texts is not None:  # check the placeholders before decoding anything
            orders = self._placeholder_order(texts)
            for kind, given in (("image", len(image_list)), ("video", len(video_list))):
                wanted = sum(order.count(kind) for order in orders)
                if wanted != given:
                    token = self.image_token if kind == "image" else self.video_token
                    raise ValueError(
                        f"{kind}s: the prompts have {wanted} {token} placeholders but {given} {kind}s were passed"
                    )
        prepared_videos, metadata = self._prepare_videos(video_list, video_args)
        prepared_images = [self._prepare_image(image, image_args, i) for i, image in enumerate(image_list)]
        batch = _Batch(texts=texts, samples=[], images=prepared_images, videos=prepared_videos,
                       video_metadata=metadata, image_args=image_args, video_args=video_args)
        videos_iter = iter(_Media("video", f, m) for f, m in zip(prepared_videos, metadata))
        images_iter = iter(_Media("image", f[None]) for f in prepared_images)
        if orders is None:  # allocate() without a prompt: one prompt holding every video, then every image
            batch.samples = [list(videos_iter) + list(images_iter)]
        else:
            batch.samples = [[next(images_iter if k == "image" else videos_iter) for k in order] for order in orders]
        return batch

    def _placeholder_order(self, texts: list[str]) -> list[list[str]]:
        """Per prompt, the kinds of its placeholders in order, matched exactly as ``get_text_with_replacements``
        (which ``ProcessorMixin.__call__`` expands them with) matches them."""
        counts = [sum(t.count(token) for t in texts) for token in (self.image_token, self.video_token)]
        _, offsets = self.get_text_with_replacements(list(texts), [""] * counts[0], [""] * counts[1])
        if not offsets:
            return [[] for _ in texts]
        return [[match["type"] for match in sample] for sample in offsets]

    def _prepare_videos(self, videos: list, args: dict) -> tuple[list[torch.Tensor], list[VideoMetadata]]:
        vp, count = self.video_processor, len(videos)
        do_sample = bool(args.get("do_sample_frames", getattr(vp, "do_sample_frames", False)))
        rates = per_video("fps", args.get("fps"), count)
        metadata = per_video_metadata(args.get("video_metadata"), count)
        rate_list = isinstance(args.get("fps"), (list, tuple))
        if not do_sample and any(key in args for key in ("num_frames", "fps")) and not rate_list and count:
            warnings.warn(
                f"num_frames/fps are ignored: do_sample_frames is False ({type(vp).__name__}'s setting or yours), so "
                "every frame given is used, as the backbone's own processor does; pass do_sample_frames=True to sample",
                stacklevel=3,
            )
        convert = vp.convert_to_rgb if args.get("do_convert_rgb", getattr(vp, "do_convert_rgb", True)) else None
        prepared, metas = [], []
        for i, video in enumerate(videos):
            name = f"videos[{i}]"
            clip = isinstance(video, VideoClip)
            if clip and ("num_frames" in args or ("fps" in args and not rate_list)):
                raise ValueError(f"{name}: a VideoClip is already sampled; num_frames/fps apply to paths and arrays")
            sampler = self._frame_sampler(args, rates[i]) if do_sample and not clip else None
            frames, meta = prepare_video(
                video, metadata=metadata[i], sample_indices_fn=sampler, input_data_format=args.get("input_data_format"),
                convert_to_rgb=convert, device=args.get("device"), name=name,
            )
            if rate_list and not do_sample:
                meta.fps = frame_rate_of_given_frames(meta.fps, rates[i], i)
            self._check_video_metadata(meta, name)
            prepared.append(frames)
            metas.append(meta)
        return prepared, metas

    def _frame_sampler(self, args: dict, fps):
        """The backbone's ``sample_frames`` with the arguments its ``preprocess`` would bind (its own settings,
        then the call's); an explicit ``num_frames`` replaces the processor's default ``fps`` and vice versa."""
        vp = self.video_processor
        names = set(getattr(vp.valid_kwargs, "__annotations__", {}))
        bound = {name: getattr(vp, name, None) for name in names}
        bound.update({k: v for k, v in args.items() if k in names})
        for name in ("input_data_format", "do_convert_rgb", "do_sample_frames", "device", "video_metadata"):
            bound.pop(name, None)
        num_frames = bound.get("num_frames")
        if "num_frames" in args and "fps" not in args:
            fps = None
        elif "fps" in args and "num_frames" not in args:
            num_frames = None
        elif "fps" not in args:
            fps = bound.get("fps")
        if num_frames is not None and fps is not None:
            raise ValueError(f"pass either num_frames or fps, not both (got num_frames={num_frames}, fps={fps})")
        if num_frames is None and fps is None:
            raise ValueError(
                f"do_sample_frames=True needs num_frames or fps: {type(vp).__name__} has no default for either"
            )
        if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1):
            raise ValueError(f"num_frames must be an int >= 1, got {num_frames!r}")
        if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < math.inf):
            raise ValueError(f"fps must be a finite number > 0 (frames per second), got {fps!r}")
        bound.update(num_frames=num_frames, fps=fps)
        return functools.partial(vp.sample_frames, **bound)

    def _check_video_metadata(self, meta: VideoMetadata, name: str) -> None:
        if self._adapter.needs_frame_indices and meta.frames_indices is None:
            raise ValueError(
                f"{name}: {self.backbone_processor_class} times frames by their source index, but video_metadata has "
                "no frames_indices and the array is not the whole video (total_num_frames != frames given); pass "
                "frames_indices"
            )
        if self._adapter.uses_video_fps and meta.fps is None:
            warnings.warn(
                f"{name}: its frame rate is unknown (no video_metadata fps), so {self.backbone_processor_class} times "
                f"it at transformers' default of {TRANSFORMERS_DEFAULT_FPS:g} fps, as the backbone's own processor "
                "does; pass video_metadata=[{'fps': ...}] for real timing",
                stacklevel=4,
            )

    def _prepare_image(self, image, args: dict, index: int) -> torch.Tensor:
        """One image as the backbone's image processor has it before resizing (``fetch_images`` for paths,
        ``process_image``: channels first, ``convert_to_rgb``, device)."""
        name = f"images[{index}]"
        if isinstance(image, os.PathLike):
            image = os.fspath(image)
        if isinstance(image, str):
            image = self.image_processor.fetch_images(image)
        if not (_is_pil_image(image) or isinstance(image, torch.Tensor) or type(image).__module__ == "numpy"):
            raise TypeError(f"{name}: unsupported type {type(image).__name__}; accepted: a PIL image, an array or "
                            "tensor [H, W, C] / [C, H, W] / [H, W], or a path")
        if hasattr(image, "ndim") and image.ndim not in (2, 3):
            raise ValueError(f"{name}: expected [H, W, C], [C, H, W] or [H, W], got shape {list(image.shape)}")
        try:
            pixels = self.image_processor.process_image(
                image, do_convert_rgb=args.get("do_convert_rgb", self.image_processor.do_convert_rgb),
                input_data_format=args.get("input_data_format"), device=args.get("device"),
            )
        except ValueError as err:
            raise ValueError(f"{name}: {err}; accepted: [H, W, C] or [C, H, W] with C in (1, 3, 4), or [H, W]") from err
        check_processor_pixels(pixels, name)
        return pixels

    def _allocator_view(self, media: _Media, args: dict) -> torch.Tensor:
        """The frames as uint8 ``[T, H, W, 3]`` on the CPU, for the allocator: what the backbone sees, in 0..255."""
        frames = media.frames.permute(0, 2, 3, 1)
        if frames.is_floating_point():  # undo the backbone's rescale: value * rescale_factor is what it reads as 0..1
            sub = self.video_processor if media.kind == "video" else self.image_processor
            rescale = args.get("do_rescale", sub.do_rescale)
            factor = 255.0 * (args.get("rescale_factor", sub.rescale_factor) if rescale else 1.0)
            frames = (frames.float() * factor).round_().clamp_(0, 255).to(torch.uint8)
        # a view, not a copy: copying 32 720p frames to channels-last costs more than the prior itself
        return frames.cpu()

    # planning ---------------------------------------------------------------------------------------------
    def _specs(self, media: list[_Media], batch: _Batch) -> list[MediaSpec]:
        video_geometry = self._adapter.video_geometry(batch.video_args)
        image_geometry = self._adapter.image_geometry(batch.image_args)
        specs = []
        for item in media:
            t, _, h, w = item.frames.shape
            if item.kind == "image":
                base = self._adapter.image_base_size(h, w, image_geometry)
                specs.append(MediaSpec("image", 1, base, image_geometry.factor, 1, (0,), (0.0,)))
                continue
            meta = item.metadata
            indices = tuple(meta.frames_indices) if meta.frames_indices is not None else tuple(range(t))
            rate = meta.fps or TRANSFORMERS_DEFAULT_FPS
            specs.append(MediaSpec(
                "video", t, self._adapter.video_base_size(t, h, w, video_geometry), video_geometry.factor,
                video_geometry.temporal_patch_size, indices, tuple(i / rate for i in indices),
            ))
        return specs

    def _plan(self, batch: _Batch, scales, budget, max_visual_tokens) -> list[Allocation]:
        budget = self.budget if budget is None else budget
        max_visual_tokens = self.max_visual_tokens if max_visual_tokens is None else max_visual_tokens
        check_budget(budget, max_visual_tokens, max_scale=self.max_scale)
        samples = batch.samples
        if len(samples) > 1 and scales is not None and not isinstance(scales, (int, float, FixedScale)):
            if len(scales) != len(samples):
                raise ValueError(f"scales: expected one entry per prompt ({len(samples)}), got {len(scales)}")
            per_sample = list(scales)
        else:
            per_sample = [scales] * len(samples)
        texts = batch.texts or [None] * len(samples)
        allocations = []
        for text, media, spec in zip(texts, samples, per_sample):
            if spec is None and self._allocator is not None and media:
                views = [self._allocator_view(m, batch.video_args if m.kind == "video" else batch.image_args)
                         for m in media]
                spec = self._allocator.predict_scales(views, self._query_text(text))
            allocations.append(plan_allocation(
                self._specs(media, batch), self.default_scale if spec is None else spec,
                budget=budget, max_visual_tokens=max_visual_tokens, settings=self._settings,
            ))
        return allocations

    def _query_text(self, text: str | None) -> str | None:
        """The prompt as the allocator should read it: the last user turn (not the system prompt or role names:
        CAPOTrainer trains on the question alone), chat-template special tokens and placeholders removed."""
        if text is None:
            return None
        text = self._adapter.last_user_turn(text)
        specials = set(self.tokenizer.all_special_tokens) | set(self.tokenizer.get_added_vocab())
        specials |= {self.image_token, self.video_token}
        pattern = "|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True) if t)
        return " ".join(re.sub(pattern, " ", text).split()) if pattern else text

    def _check_allocations(self, allocations: list[Allocation], batch: _Batch):
        samples = batch.samples
        if len(allocations) != len(samples) or not all(isinstance(a, Allocation) for a in allocations):
            raise ValueError(f"allocation: expected one Allocation per prompt ({len(samples)}), got {len(allocations)}")
        for allocation, specs in zip(allocations, (self._specs(media, batch) for media in samples)):
            if [m.kind for m in allocation.media] != [s.kind for s in specs]:
                raise ValueError("allocation: its media (kinds/order) do not match the prompt's placeholders")
            for planned, spec in zip(allocation.media, specs):
                if len(planned.chunk_sizes) != spec.num_chunks or len(planned.scales) != spec.num_frames:
                    raise ValueError(
                        f"allocation: planned for {len(planned.scales)} frames / {len(planned.chunk_sizes)} chunks, "
                        f"but the {spec.kind} has {spec.num_frames} frames / {spec.num_chunks} chunks"
                    )
                if tuple(planned.base_size) != tuple(spec.base_size):
                    raise ValueError(f"allocation: planned for a base size of {tuple(planned.base_size)}, but the "
                                     f"{spec.kind} has {tuple(spec.base_size)} at scale 1")

    # the per-modality hooks of ProcessorMixin.__call__ ------------------------------------------------------
    def _process_images(self, images, **kwargs):
        plans = [m for a in kwargs["allocation"] for m in a.media if m.kind == "image"]
        geometry = self._adapter.image_geometry(kwargs)
        resized = [
            self._resize(self.image_processor, image[None], plan.chunk_sizes[0], plan.base_size, geometry)[0]
            for image, plan in zip(images, plans)
        ]
        forwarded = {k: v for k, v in kwargs.items() if k not in _NOT_FORWARDED}
        processed = self.image_processor(resized, do_resize=False, input_data_format="channels_first", **forwarded)
        replacements = [self._backbone.replace_image_token(processed, image_idx=i) for i in range(len(resized))]
        return processed, replacements

    def _process_videos(self, videos, **kwargs):
        plans = [m for a in kwargs["allocation"] for m in a.media if m.kind == "video"]
        metadata = kwargs["video_metadata"]
        geometry = self._adapter.video_geometry(kwargs)
        tps = geometry.temporal_patch_size
        runs, run_metadata, run_counts = [], [], []
        for frames, plan, meta in zip(videos, plans, metadata):
            if pad := -frames.shape[0] % tps:  # the backbone repeats the last frame, so do we (before resizing)
                frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
            video_runs = _runs(plan.chunk_sizes)
            for size, first, count in video_runs:
                runs.append(self._resize(
                    self.video_processor, frames[first * tps : (first + count) * tps], size, plan.base_size, geometry
                ))
                indices = meta.frames_indices
                run_metadata.append(VideoMetadata(
                    total_num_frames=meta.total_num_frames, fps=meta.fps, width=size[1], height=size[0],
                    frames_indices=None if indices is None else list(indices[first * tps : (first + count) * tps]),
                ))
            run_counts.append(len(video_runs))
        forwarded = {k: v for k, v in kwargs.items() if k not in _NOT_FORWARDED}
        forwarded["cap_pixels_per_frame"] = geometry.cap_pixels_per_frame  # sizes are final: the cap is moot
        processed = self.video_processor(
            runs, do_resize=False, do_sample_frames=False, video_metadata=run_metadata,
            input_data_format="channels_first", return_metadata=True, **forwarded,
        )
        replacements, run = [], 0
        for count in run_counts:  # one placeholder per video, expanded run by run with the backbone's own builder
            views = ({"video_grid_thw": processed["video_grid_thw"][j : j + 1], "video_metadata": [run_metadata[j]]}
                     for j in range(run, run + count))
            replacements.append("".join(self._backbone.replace_video_token(view, video_idx=0) for view in views))
            run += count
        data = {key: processed[key] for key in ("pixel_values_videos", "video_grid_thw")}
        data.update(self._adapter.video_model_inputs(metadata))
        data["video_metadata"] = metadata
        return data, replacements

    def _resize(self, sub_processor, frames: torch.Tensor, size, base_size, geometry) -> torch.Tensor:
        """Resize frames [N, C, H, W] to ``size`` with the backbone's own resize call.

        Chunks at their scale-1 size use the backbone's own filter (bit-identical native input); all others use
        the configured operator (bilinear by default)."""
        native = tuple(size) == tuple(base_size)
        if native and tuple(frames.shape[-2:]) == tuple(size) and not geometry.do_resize:
            return frames  # do_resize=False: the backbone takes the frames as they are
        if native:
            return TorchvisionBackend.resize(sub_processor, frames, size=SizeDict(height=size[0], width=size[1]),
                                             resample=geometry.resample)
        return resize_operator(frames, size, self.resample, sub_processor)


def resize_operator(frames: torch.Tensor, size, resample: str = "bilinear", sub_processor=None) -> torch.Tensor:
    """The ResAdapt resize operator for a chunk away from its scale-1 size: frames ``[N, C, H, W]`` to ``size``
    ``(h, w)`` with transformers' torchvision resize (antialiased) and the ``resample`` filter (``"bilinear"``, the
    paper's operator, or ``"bicubic"``). ``sub_processor`` is the backbone's image/video processor whose resize call
    this is; None uses a plain torchvision backend (the same computation), for callers without a backbone such as
    the synthetic needle task."""
    if resample not in RESAMPLE_FILTERS:
        raise ValueError(f"resample must be one of {sorted(RESAMPLE_FILTERS)}, got {resample!r}")
    return TorchvisionBackend.resize(sub_processor or _plain_backend(), frames,
                                     size=SizeDict(height=int(size[0]), width=int(size[1])),
                                     resample=RESAMPLE_FILTERS[resample])


_PLAIN_BACKEND: list = []


def _plain_backend() -> TorchvisionBackend:
    if not _PLAIN_BACKEND:
        _PLAIN_BACKEND.append(TorchvisionBackend())
    return _PLAIN_BACKEND[0]


# helpers ----------------------------------------------------------------------------------------------------
def _runs(sizes: Sequence[tuple[int, int]]) -> list[tuple[tuple[int, int], int, int]]:
    """Consecutive equal sizes as (size, first index, count): one grid row per run (uniform scale = native row)."""
    runs = []
    for i, size in enumerate(sizes):
        if runs and runs[-1][0] == tuple(size):
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((tuple(size), i, 1))
    return runs


def _explicit_args(kwargs: dict, modality: str, sub_processor, pop: Sequence[str] = ()) -> dict:
    """The arguments a call gives one modality's sub-processor, in transformers' priority order (deprecated
    ``common_kwargs`` < flat keyword arguments < ``{modality}_kwargs``); ``pop`` keys are removed from ``kwargs``."""
    valid = set(getattr(sub_processor.valid_kwargs, "__annotations__", {})) | set(pop)
    nested = dict(kwargs.get(f"{modality}_kwargs") or {})
    args = {k: v for k, v in (kwargs.get("common_kwargs") or {}).items() if k in valid}
    args.update({k: v for k, v in kwargs.items() if k in valid})
    args.update(nested)
    for key in pop:
        kwargs.pop(key, None)
        nested.pop(key, None)
    if f"{modality}_kwargs" in kwargs:
        kwargs[f"{modality}_kwargs"] = nested
    return args


ResAdaptProcessor.register_for_auto_class("AutoProcessor")
