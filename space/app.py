"""ResAdapt Gradio Space: per-frame resolution allocation in front of an unchanged Qwen-VL backbone.

Upload a video (or an image), ask a question, pick a budget (target retention = share of the backbone's own visual
tokens to keep) and an allocator. The app decodes the clip server-side with PyAV (``resadapt_hf.load_video``), asks the
allocator for per-frame scales, projects them onto the budget (``ResAdaptProcessor.allocate``), resizes every 2-frame
chunk before the unchanged backbone sees it, and generates the answer. It shows the per-frame scales, the frames at
their allocated size, token counts and timings, and the requested vs achieved retention.

Run locally (offline, tiny random backbone, training-free prior allocator)::

    python space/app.py                      # http://127.0.0.1:7860
    RESADAPT_BACKBONE=tiny-qwen3_vl python space/app.py --port 7861

API (``gradio_client``)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    plan = client.predict(video=handle_file("clip.mp4"), question="What happens?", budget=0.25, api_name="/allocate")
    answer, plan, *_ = client.predict(video=handle_file("clip.mp4"), question="What happens?", budget=0.25,
                                      api_name="/answer")

Settings come from environment variables (see ``AppConfig.from_env``); nothing but model/allocator loading touches
the network (analytics off, no share link, system fonts only).
"""

from __future__ import annotations

import os

# Before gradio / huggingface_hub are imported: no analytics or telemetry calls.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true", "yes")
try:  # ZeroGPU Spaces: `spaces` must be imported before torch initialises CUDA
    import spaces  # type: ignore
except ImportError:  # anywhere else: plain CPU or CUDA
    spaces = None

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import OrderedDict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from resadapt_hf import Allocation, FixedScale, PriorAllocator, ResAdaptProcessor, VideoClip, load_video  # noqa: E402

TINY_PREFIX = "tiny-"
DEFAULT_GPU_BACKBONE = "Qwen/Qwen2.5-VL-3B-Instruct"
DEFAULT_CPU_BACKBONE = "tiny-qwen2_5_vl"
BACKBONE_CHOICES = (
    "tiny-qwen2_5_vl",
    "tiny-qwen3_vl",
    "Qwen/Qwen2.5-VL-3B-Instruct",
    "Qwen/Qwen2.5-VL-7B-Instruct",
    "Qwen/Qwen3-VL-2B-Instruct",
    "Qwen/Qwen3-VL-4B-Instruct",
)
ALLOCATOR_KINDS = (
    ("Training-free prior (frame detail + change, no weights)", "prior"),
    ("FixedScale (same scale for every frame)", "fixed"),
    ("Learned allocator (Hub repo id, local folder or preset)", "learned"),
)
DEFAULT_QUESTION = "Describe what happens in the video."
STATS_COLUMNS = (
    "frames", "tokens before (scale 1)", "tokens after", "requested retention", "achieved retention", "allocator ms",
    "preprocess ms", "backbone ms",
)
TOLERANCE = 0.02  # |achieved - requested| retention the processor's budget solver aims for


# ------------------------------------------------------------------------------------------------------ settings


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value if value else default


def _env_number(name: str, default: float, cast=float):
    raw = _env(name, "")
    if not raw:
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a valid {cast.__name__}") from None


def _cuda_available() -> bool:
    try:
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - a broken driver means "no GPU" for a demo
        return False


@dataclasses.dataclass
class AppConfig:
    """Settings of one app instance. ``from_env`` reads them from ``RESADAPT_*`` environment variables."""

    backbone: str = DEFAULT_CPU_BACKBONE  # RESADAPT_BACKBONE: default backbone (a choice below or any repo id)
    backbones: tuple[str, ...] = BACKBONE_CHOICES  # RESADAPT_BACKBONES: comma-separated dropdown choices
    allocator: str = "prior"  # RESADAPT_ALLOCATOR: prior | fixed | <learned repo id / folder / preset>
    device: str = "cpu"  # RESADAPT_DEVICE: auto | cpu | cuda
    max_seconds: float = 60.0  # RESADAPT_MAX_SECONDS: longest clip accepted
    max_frames: int = 32  # RESADAPT_MAX_FRAMES: most frames sampled from a clip
    num_frames: int = 16  # RESADAPT_NUM_FRAMES: default frames sampled
    max_file_mb: int = 50  # RESADAPT_MAX_FILE_MB: upload limit (gradio max_file_size)
    max_new_tokens: int = 8  # RESADAPT_MAX_NEW_TOKENS: default answer length
    budget: float = 0.5  # RESADAPT_BUDGET: default target retention
    concurrency: int = 1  # RESADAPT_CONCURRENCY: requests run at once (queue default_concurrency_limit)
    queue_size: int = 16  # RESADAPT_QUEUE_SIZE: waiting requests before "queue full"
    cached_backbones: int = 1  # RESADAPT_CACHED_BACKBONES: models kept loaded (LRU)
    gpu_duration: int = 120  # RESADAPT_GPU_DURATION: ZeroGPU seconds reserved per call
    preload: bool = True  # RESADAPT_PRELOAD: load the default backbone when the app is built

    @classmethod
    def from_env(cls) -> "AppConfig":
        device = _env("RESADAPT_DEVICE", "auto").lower()
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"RESADAPT_DEVICE must be auto, cpu or cuda, got {device!r}")
        if device == "auto":
            device = "cuda" if (ZERO_GPU or _cuda_available()) else "cpu"
        gpu = device == "cuda"
        backbone = _env("RESADAPT_BACKBONE", DEFAULT_GPU_BACKBONE if gpu else DEFAULT_CPU_BACKBONE)
        backbones = tuple(b.strip() for b in _env("RESADAPT_BACKBONES", ",".join(BACKBONE_CHOICES)).split(",") if b.strip())
        if backbone not in backbones:
            backbones = (backbone, *backbones)
        return cls(
            backbone=backbone,
            backbones=backbones,
            allocator=_env("RESADAPT_ALLOCATOR", "prior"),
            device=device,
            max_seconds=_env_number("RESADAPT_MAX_SECONDS", 60.0),
            max_frames=_env_number("RESADAPT_MAX_FRAMES", 32, int),
            num_frames=_env_number("RESADAPT_NUM_FRAMES", 16, int),
            max_file_mb=_env_number("RESADAPT_MAX_FILE_MB", 50, int),
            max_new_tokens=_env_number("RESADAPT_MAX_NEW_TOKENS", 128 if gpu else 8, int),
            budget=_env_number("RESADAPT_BUDGET", 0.5),
            concurrency=_env_number("RESADAPT_CONCURRENCY", 1, int),
            queue_size=_env_number("RESADAPT_QUEUE_SIZE", 16, int),
            cached_backbones=_env_number("RESADAPT_CACHED_BACKBONES", 1, int),
            gpu_duration=_env_number("RESADAPT_GPU_DURATION", 120, int),
            preload=_env("RESADAPT_PRELOAD", "1") not in ("0", "false", "False", "no"),
        )

    def __post_init__(self):
        if self.max_seconds <= 0 or self.max_frames < 1 or self.max_file_mb < 1 or self.concurrency < 1:
            raise ValueError("max_seconds, max_frames, max_file_mb and concurrency must be positive")
        self.num_frames = max(1, min(self.num_frames, self.max_frames))
        self.cached_backbones = max(1, self.cached_backbones)

    @property
    def max_file_size(self) -> str:
        return f"{self.max_file_mb}mb"


# ------------------------------------------------------------------------------------------- model / allocator cache


class ModelCache:
    """Loads backbones, allocators and processors once and reuses them (thread-safe; backbones are LRU-evicted)."""

    def __init__(self, config: AppConfig):
        self.config = config
        self._lock = threading.RLock()
        self._backbones: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._allocators: dict[str, Any] = {}
        self.allocator_labels: dict[str, str] = {}
        self._processors: dict[tuple[str, str], ResAdaptProcessor] = {}

    # backbones ----------------------------------------------------------------------------------------------------
    def backbone(self, name: str):
        """``(model, backbone processor)``, loaded on first use."""
        with self._lock:
            if name in self._backbones:
                self._backbones.move_to_end(name)
                return self._backbones[name]
            while len(self._backbones) >= self.config.cached_backbones:
                old, _ = self._backbones.popitem(last=False)
                for key in [k for k in self._processors if k[0] == old]:
                    del self._processors[key]
                if self.config.device == "cuda" and not ZERO_GPU:
                    torch.cuda.empty_cache()
            loaded = self._load_backbone(name)
            self._backbones[name] = loaded
            return loaded

    def _load_backbone(self, name: str):
        from resadapt_hf.loading import load_backbone

        try:
            return load_backbone(name, device=self.config.device, zero_gpu=ZERO_GPU)
        except (OSError, ValueError) as err:
            raise gr.Error(f"Could not load the backbone {name!r}: {err}") from err

    # allocators ---------------------------------------------------------------------------------------------------
    def allocator(self, kind: str, spec: str | None):
        """``(key, allocator object)`` for an allocator choice; learned ones are loaded once."""
        if kind == "prior":
            key = "prior"
        elif kind == "fixed":
            key = "fixed"
        elif kind == "learned":
            spec = (spec or "").strip()
            if not spec:
                raise gr.Error("Learned allocator: type a Hub repo id, a local folder or a preset (e.g. tiny-statistics).")
            key = f"learned:{spec}"
        else:
            raise gr.Error(f"Unknown allocator {kind!r}: choose one of {[v for _, v in ALLOCATOR_KINDS]}.")
        with self._lock:
            if key not in self._allocators:
                if kind == "prior":
                    obj = PriorAllocator()
                elif kind == "fixed":
                    obj = FixedScale(1.0)  # uniform; the budget sets the actual scale
                else:
                    obj = self._load_learned(spec)
                self._allocators[key] = obj
                self.allocator_labels[key] = (
                    f"{type(obj).__name__}({spec!r})" if isinstance(obj, torch.nn.Module) else repr(obj)
                )
            return key, self._allocators[key]

    def _load_learned(self, spec: str):
        """A learned allocator from a preset, a saved ResAdapt repo (``allocator/`` subfolder) or a bare allocator
        folder/repo (``resadapt_hf.loading.load_allocator``: the package's own class, safetensors only, no remote
        code run)."""
        from resadapt_hf.loading import load_allocator

        try:
            model = load_allocator(spec)
        except Exception as err:  # noqa: BLE001 - any load failure becomes a message for the user
            raise gr.Error(f"Could not load the learned allocator {spec!r}: {err}") from err
        if isinstance(model, torch.nn.Module):
            # on ZeroGPU the allocator stays on the CPU: allocate() runs outside the @spaces.GPU window
            on_gpu = self.config.device == "cuda" and not ZERO_GPU
            model = model.to("cuda" if on_gpu else "cpu").eval()
        return model

    # processors ---------------------------------------------------------------------------------------------------
    def processor(self, backbone: str, allocator_key: str, allocator) -> ResAdaptProcessor:
        """A ResAdaptProcessor around the backbone's processor with this allocator (one per pair, reused)."""
        _, backbone_processor = self.backbone(backbone)
        with self._lock:
            key = (backbone, allocator_key)
            if key not in self._processors:
                self._processors[key] = ResAdaptProcessor.from_backbone(backbone_processor, allocator=allocator)
            return self._processors[key]

    def prepared_model(self, backbone: str):
        model, _ = self.backbone(backbone)
        # any processor for this backbone knows how to prepare it (idempotent: patches get_rope_index once)
        return self.processor(backbone, "prior", self.allocator("prior", None)[1]).prepare_backbone(model)


# ------------------------------------------------------------------------------------------------ GPU section


def _gpu(duration: int):
    """``@spaces.GPU(duration=...)`` on ZeroGPU Spaces, else a no-op decorator."""
    if spaces is not None and ZERO_GPU:
        return spaces.GPU(duration=duration)
    return lambda fn: fn


def _make_generate(cache: ModelCache):
    @_gpu(cache.config.gpu_duration)
    def generate(backbone: str, inputs, max_new_tokens: int) -> tuple[list[int], float]:
        model = cache.prepared_model(backbone)
        device = next(model.parameters()).device
        inputs = inputs.to(device)
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        return out[0, inputs["input_ids"].shape[1]:].cpu().tolist(), seconds

    return generate


# ------------------------------------------------------------------------------------------------ input checks


def _clean_error(err: Exception, path: str | None) -> str:
    """An exception message with the server-side temp path replaced by the file name."""
    text = str(err)
    if path:
        text = text.replace(repr(path), repr(os.path.basename(path))).replace(path, os.path.basename(path))
    return text


def _probe_seconds(path: str) -> float | None:
    """Duration of the first video stream from the container header (no decoding); None if unknown/unreadable."""
    import av

    try:
        with av.open(path, mode="r") as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / 1_000_000  # av.time_base
            rate = stream.average_rate or stream.guessed_rate
            return stream.frames / float(rate) if stream.frames and rate else None
    except Exception:  # noqa: BLE001 - load_video gives the precise decoding error
        return None


def decode_video(path: str, num_frames: int, config: AppConfig) -> tuple[VideoClip, list[str]]:
    """Check and decode an uploaded video with PyAV; every problem becomes a ``gr.Error`` with a clear message."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise gr.Error(f"The uploaded video {name!r} is missing on the server; please upload it again.")
    size = os.path.getsize(path)
    if size == 0:
        raise gr.Error(f"The uploaded video {name!r} is empty (0 bytes). Upload a real video file (mp4, webm, mkv, ...).")
    if size > config.max_file_mb * 1024 * 1024:
        raise gr.Error(f"The uploaded video {name!r} is {size / 2**20:.1f} MB; this demo accepts up to {config.max_file_mb} MB.")
    seconds = _probe_seconds(path)
    too_long = (
        f"The clip is {{:.1f}} s long; this demo accepts clips up to {config.max_seconds:g} s "
        "(RESADAPT_MAX_SECONDS). Trim it and try again."
    )
    if seconds is not None and seconds > config.max_seconds + 1e-6:
        raise gr.Error(too_long.format(seconds))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            clip = load_video(path, num_frames=num_frames)
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(
                f"Could not read the uploaded file as a video: {_clean_error(err, path)}. "
                "Upload a playable video file (mp4, webm, mkv, ...)."
            ) from err
        except ImportError as err:  # PyAV missing: a deployment problem, say so
            raise gr.Error(f"Video decoding is unavailable on this server: {err}") from err
    if clip.duration is not None and clip.duration > config.max_seconds + 1e-6:
        raise gr.Error(too_long.format(clip.duration))
    return clip, [_clean_error(w.message, path) for w in caught]


def check_budget(budget, max_scale: float) -> float:
    if budget is None or isinstance(budget, bool):
        raise gr.Error("Set a budget: the target retention, e.g. 0.25 keeps a quarter of the visual tokens.")
    budget = float(budget)
    if not math.isfinite(budget) or budget <= 0:
        raise gr.Error(
            f"Budget must be a target retention greater than 0 (the share of the backbone's own visual tokens to "
            f"keep, e.g. 0.25), got {budget:g}."
        )
    if budget > max_scale**2 + 1e-9:
        raise gr.Error(f"Budget must be at most {max_scale**2:g} (every frame at the largest scale {max_scale:g}), got {budget:g}.")
    return budget


def check_max_tokens(value) -> int | None:
    if value is None or value == "":
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise gr.Error(f"Max visual tokens must be a whole number >= 0 (0 = no cap), got {value:g}.")
    return int(value) or None


# --------------------------------------------------------------------------------------------------- the app


class ResAdaptApp:
    """The request handlers, independent of the layout (easy to call from tests)."""

    def __init__(self, config: AppConfig | None = None):
        self.config = config or AppConfig.from_env()
        self.cache = ModelCache(self.config)
        self._generate = _make_generate(self.cache)

    # shared front half: inputs -> (processor, prompt, media, allocation) ----------------------------------------
    def _plan(self, video, image, question, budget, max_visual_tokens, num_frames, allocator, allocator_repo, backbone):
        config = self.config
        question = (question or "").strip() or DEFAULT_QUESTION
        if video is None and image is None:
            raise gr.Error("Upload a video or an image (or pick an example) first.")
        backbone = (backbone or config.backbone).strip()
        if backbone not in config.backbones:
            raise gr.Error(f"Backbone {backbone!r} is not offered here; choose one of: {', '.join(config.backbones)}.")
        n = int(num_frames or config.num_frames)
        if not 1 <= n <= config.max_frames:
            raise gr.Error(f"Frames must be between 1 and {config.max_frames}, got {n}.")
        cap = check_max_tokens(max_visual_tokens)
        allocator_key, allocator_obj = self.cache.allocator(allocator or "prior", allocator_repo)
        processor = self.cache.processor(backbone, allocator_key, allocator_obj)
        budget = check_budget(budget, processor.max_scale)

        notes: list[str] = []
        clip = None
        if video is not None:
            clip, notes = decode_video(video, n, config)
        pil = None
        if image is not None:
            try:
                pil = (image if isinstance(image, Image.Image) else Image.open(image)).convert("RGB")
            except (OSError, ValueError) as err:
                raise gr.Error(f"Could not read the uploaded image: {err}") from err
        content = ([{"type": "video"}] if clip is not None else []) + ([{"type": "image"}] if pil is not None else [])
        messages = [{"role": "user", "content": [*content, {"type": "text", "text": question}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        media = {"videos": [clip] if clip is not None else None, "images": [pil] if pil is not None else None}

        started = time.perf_counter()
        try:
            allocation = processor.allocate(text=prompt, **media, budget=budget, max_visual_tokens=cap)
        except (ValueError, TypeError) as err:
            raise gr.Error(f"Could not allocate: {err}") from err
        allocator_ms = (time.perf_counter() - started) * 1000
        return dict(
            processor=processor, prompt=prompt, media=media, clip=clip, image=pil, allocation=allocation,
            budget=budget, cap=cap, backbone=backbone, question=question,
            allocator=self.cache.allocator_labels[allocator_key],
            allocator_ms=allocator_ms, notes=notes,
        )

    # views --------------------------------------------------------------------------------------------------------
    @staticmethod
    def _token_factor(sub_processor) -> int:
        return int(getattr(sub_processor, "patch_size", 14)) * int(getattr(sub_processor, "merge_size", 2))

    def allocation_json(self, plan: dict, timings: dict) -> dict:
        allocation: Allocation = plan["allocation"]
        out = allocation.to_dict()
        out.update(
            backbone=plan["backbone"],
            allocator=plan["allocator"],
            question=plan["question"],
            num_frames=len(allocation.scales),
            scales=[round(s, 4) for s in allocation.scales],
            chunk_sizes=[list(s) for s in allocation.chunk_sizes],
            frame_indices=allocation.frame_indices,
            timestamps=[round(t, 4) for t in allocation.timestamps],
            requested_retention=plan["budget"],
            achieved_retention=allocation.retention,
            timings_ms={k: round(v, 2) for k, v in timings.items()},
        )
        return out

    def views(self, plan: dict, timings: dict):
        """(scale plot DataFrame, gallery items, stats DataFrame, summary markdown) of one allocation."""
        allocation: Allocation = plan["allocation"]
        processor: ResAdaptProcessor = plan["processor"]
        rows, gallery = [], []
        frame_no = 0
        for item in allocation.media:
            if item.kind == "video":
                frames = plan["clip"].frames.numpy()
                tps = int(getattr(processor.video_processor, "temporal_patch_size", 2) or 2)
                factor = self._token_factor(processor.video_processor)
            else:
                frames = [plan["image"]]
                tps, factor = 1, self._token_factor(processor.image_processor)
            for t, scale in enumerate(item.scales):
                h, w = item.chunk_sizes[min(t // tps, len(item.chunk_sizes) - 1)]
                tokens = (h // factor) * (w // factor)
                label = f"{frame_no:02d}" if item.kind == "video" else f"{frame_no:02d} img"
                rows.append({"frame": label, "scale": round(float(scale), 4), "timestamp_s": round(item.timestamps[t], 3)
                             if t < len(item.timestamps) else 0.0})
                picture = frames[t] if item.kind == "image" else Image.fromarray(frames[t])
                index = item.frame_indices[t] if t < len(item.frame_indices) else t
                seconds = item.timestamps[t] if t < len(item.timestamps) else 0.0
                unit = "chunk" if tps > 1 else "image"
                gallery.append((
                    picture.resize((w, h), Image.BILINEAR),
                    f"s={scale:.2f} · {w}×{h} · {tokens} tok/{unit} · #{index} t={seconds:.2f}s",
                ))
                frame_no += 1
        plot = pd.DataFrame(rows, columns=["frame", "scale", "timestamp_s"])
        values = (
            len(allocation.scales), allocation.baseline_visual_tokens, allocation.visual_tokens, round(plan["budget"], 4),
            round(allocation.retention, 4), round(timings.get("allocator", 0.0), 1),
            round(timings["preprocess"], 1) if "preprocess" in timings else None,
            round(timings["backbone"], 1) if "backbone" in timings else None,
        )
        stats = pd.DataFrame([values], columns=list(STATS_COLUMNS))
        requested, achieved = plan["budget"], allocation.retention
        verdict = (
            f"within ±{TOLERANCE:g}" if abs(achieved - requested) <= TOLERANCE + 1e-9
            else "closest reachable value (the clip's scale range or the token cap limits it)"
        )
        lines = [
            f"**Requested retention {requested:.3f} → achieved {achieved:.3f}** ({verdict}); "
            f"{allocation.visual_tokens} of {allocation.baseline_visual_tokens} visual tokens"
            + (f", cap {plan['cap']}" if plan["cap"] else "") + ".",
            f"Backbone `{plan['backbone']}`, allocator `{plan['allocator']}`.",
        ]
        if plan["backbone"].startswith(TINY_PREFIX):
            lines.append("The tiny backbone has **random weights**: its answers are meaningless (offline demo mode).")
        lines += [f"Note: {n}" for n in plan["notes"]]
        return plot, gallery, stats, "\n\n".join(lines)

    # endpoints ----------------------------------------------------------------------------------------------------
    def allocate(self, video, image, question, budget, max_visual_tokens, num_frames, allocator, allocator_repo, backbone):
        """The /allocate API: the allocation as JSON (per-frame scales, chunk sizes, tokens, retention), no generation."""
        return self._allocate(video, image, question, budget, max_visual_tokens, num_frames, allocator, allocator_repo,
                              backbone)[0]

    def allocate_views(self, video, image, question, budget, max_visual_tokens, num_frames, allocator, allocator_repo,
                       backbone):
        """The "Allocate only" button: (JSON plan, plot, gallery, stats, summary)."""
        plan_json, views = self._allocate(video, image, question, budget, max_visual_tokens, num_frames, allocator,
                                          allocator_repo, backbone)
        return (plan_json, *views)

    def _allocate(self, *args):
        plan = self._plan(*args)
        timings = {"allocator": plan["allocator_ms"]}
        self._warn(plan)
        return self.allocation_json(plan, timings), self.views(plan, timings)

    def answer(self, video, image, question, budget, max_visual_tokens, num_frames, allocator, allocator_repo, backbone,
               max_new_tokens):
        """Allocate, resize, run the unchanged backbone: (answer, JSON plan, plot, gallery, stats, summary)."""
        plan = self._plan(video, image, question, budget, max_visual_tokens, num_frames, allocator, allocator_repo, backbone)
        max_new = int(max_new_tokens or self.config.max_new_tokens)
        if not 1 <= max_new <= 1024:
            raise gr.Error(f"Max new tokens must be between 1 and 1024, got {max_new}.")
        processor: ResAdaptProcessor = plan["processor"]
        started = time.perf_counter()
        inputs = processor(text=[plan["prompt"]], **plan["media"], allocation=plan["allocation"], return_tensors="pt")
        preprocess_ms = (time.perf_counter() - started) * 1000
        self.cache.backbone(plan["backbone"])  # load outside the (ZeroGPU) GPU window; prepared inside it
        new_ids, seconds = self._generate(plan["backbone"], inputs, max_new)
        text = processor.tokenizer.decode(new_ids, skip_special_tokens=True)
        # random tiny weights can emit control bytes; keep the text box readable
        text = "".join(c if c.isprintable() or c in "\n\t" else " " for c in text).strip()
        if not text:
            text = f"(the model produced no text: {len(new_ids)} new token(s), ids {new_ids[:8]})"
        timings = {"allocator": plan["allocator_ms"], "preprocess": preprocess_ms, "backbone": seconds * 1000}
        self._warn(plan)
        plot, gallery, stats, summary = self.views(plan, timings)
        return text, self.allocation_json(plan, timings), plot, gallery, stats, summary

    @staticmethod
    def _warn(plan: dict):
        for note in plan["notes"]:
            gr.Warning(note)
        if plan["allocation"].budget_reached is False:
            gr.Warning(
                f"Budget {plan['budget']:g} is not reachable for this input; the closest retention "
                f"{plan['allocation'].retention:.3f} was used."
            )


# ------------------------------------------------------------------------------------------------------ examples


def write_examples(folder: Path) -> dict[str, Path]:
    """Few-KB example media generated at startup (``resadapt_hf.sample_clips``): a 2 s clip and one of its frames."""
    from resadapt_hf.sample_clips import make_demo_frames, write_demo_clip

    folder.mkdir(parents=True, exist_ok=True)
    clip = write_demo_clip(folder / "resadapt_demo_clip.mp4", num_frames=16, height=240, width=320, fps=8)
    frame = make_demo_frames(num_frames=16, height=240, width=320)[10]  # a text-like ("glyphs") frame
    image = folder / "resadapt_demo_frame.png"
    Image.fromarray(frame).save(image)
    return {"clip": clip, "image": image}


# -------------------------------------------------------------------------------------------------------- layout

CSS = """
#frame-gallery img { image-rendering: auto; }
#budget-summary { min-height: 3em; }
"""


def build_demo(config: AppConfig | None = None, examples_dir: str | os.PathLike | None = None) -> gr.Blocks:
    """Build the Blocks app (queue configured). ``demo.resadapt`` holds the ResAdaptApp, ``demo.resadapt_examples``
    the example folder (pass it to ``launch(allowed_paths=...)``)."""
    app = ResAdaptApp(config)
    config = app.config
    examples = write_examples(Path(examples_dir or tempfile.mkdtemp(prefix="resadapt-space-examples-")))
    if config.preload:  # load the default backbone now (ZeroGPU: prepare_backbone runs inside the GPU call)
        app.cache.backbone(config.backbone) if ZERO_GPU else app.cache.prepared_model(config.backbone)
    default_kind = config.allocator if config.allocator in ("prior", "fixed") else "learned"
    default_repo = "" if default_kind != "learned" else config.allocator

    with gr.Blocks(title="ResAdapt: adaptive per-frame resolution for Qwen-VL", analytics_enabled=False) as demo:
        gr.Markdown(
            "# ResAdapt: adaptive per-frame resolution\n"
            "A light **Allocator** predicts a resolution scale per frame; every 2-frame chunk is resized before an "
            "**unchanged** Qwen-VL backbone sees it. The **budget** is the target *retention*: the share of the "
            "backbone's own visual tokens to keep (1.0 = native size, 0.25 = a quarter of the tokens). "
            f"Clips up to {config.max_seconds:g} s and {config.max_file_mb} MB; frames are decoded on the server."
        )
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Video", sources=["upload"], format=None, include_audio=True,
                                 elem_id="video-input", height=260)
                image = gr.Image(label="…or an image", type="pil", sources=["upload"], elem_id="image-input",
                                 height=180)
                question = gr.Textbox(label="Question", value="What happens in the video?", lines=2,
                                      elem_id="question")
                budget = gr.Slider(0.0, 2.0, value=config.budget, step=0.01, label="Budget (target retention)",
                                   info="share of the backbone's scale-1 visual tokens to keep", elem_id="budget")
                with gr.Row():
                    max_tokens = gr.Number(value=0, minimum=0, precision=0, label="Max visual tokens (0 = no cap)",
                                           elem_id="max-visual-tokens")
                    num_frames = gr.Slider(1, config.max_frames, value=config.num_frames, step=1,
                                           label="Frames sampled", elem_id="num-frames")
                allocator = gr.Radio(list(ALLOCATOR_KINDS), value=default_kind, label="Allocator",
                                     elem_id="allocator-kind")
                allocator_repo = gr.Textbox(value=default_repo, label="Learned allocator: repo id, folder or preset",
                                            placeholder="user/resadapt-qwen2.5-vl  |  ./my_allocator  |  tiny-statistics",
                                            elem_id="allocator-repo")
                with gr.Row():
                    backbone = gr.Dropdown(list(config.backbones), value=config.backbone, label="Backbone",
                                           info="tiny: random weights, offline; Qwen: real checkpoints (GPU)",
                                           elem_id="backbone")
                    max_new_tokens = gr.Slider(1, 512, value=config.max_new_tokens, step=1, label="Max new tokens",
                                               elem_id="max-new-tokens")
                with gr.Row():
                    run = gr.Button("Answer", variant="primary", elem_id="run-button")
                    plan_only = gr.Button("Allocate only", elem_id="allocate-button")
            with gr.Column(scale=1):
                answer = gr.Textbox(label="Answer", lines=4, elem_id="answer", interactive=False)
                summary = gr.Markdown(elem_id="budget-summary")
                plot = gr.BarPlot(x="frame", y="scale", title="Per-frame scale (1 = the backbone's own size)",
                                  y_lim=[0, 1.8], x_title="frame", y_title="scale", height=240,
                                  elem_id="scale-plot", label="Per-frame scales")
                stats = gr.Dataframe(headers=list(STATS_COLUMNS), label="Tokens and timings", elem_id="stats-table",
                                     interactive=False, wrap=True)
                gallery = gr.Gallery(label="Frames at their allocated size", columns=4, object_fit="scale-down",
                                     height="auto", elem_id="frame-gallery")
                with gr.Accordion("Allocation JSON", open=False):
                    plan_json = gr.JSON(label="Allocation", elem_id="allocation-json")
        api_only = gr.Button("allocate (API)", visible=False)  # trigger of the public /allocate endpoint

        gr.Examples(
            examples=[
                [str(examples["clip"]), None, "What moves across the frames?", 0.25],
                [str(examples["clip"]), None, "Read the text on the page.", 0.5],
                [None, str(examples["image"]), "What is written here?", 0.5],
            ],
            inputs=[video, image, question, budget],
            cache_examples=False,
            label="Examples (generated at startup: a 2 s synthetic clip, flat -> texture -> text -> flat)",
        )

        common = [video, image, question, budget, max_tokens, num_frames, allocator, allocator_repo, backbone]
        run.click(app.answer, inputs=[*common, max_new_tokens], outputs=[answer, plan_json, plot, gallery, stats, summary],
                  api_name="answer", api_description="Allocate, resize and run the backbone: answer + allocation.")
        plan_only.click(app.allocate_views, inputs=common, outputs=[plan_json, plot, gallery, stats, summary],
                        api_visibility="private")
        api_only.click(app.allocate, inputs=common, outputs=[plan_json], api_name="allocate",
                       api_description="Per-frame scales, chunk sizes, tokens, requested/achieved retention "
                                       "(no generation).")

    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    demo.resadapt = app
    demo.resadapt_examples = examples["clip"].parent
    return demo


def launch_kwargs(demo: gr.Blocks, config: AppConfig) -> dict:
    """The launch settings shared by ``main`` and the tests (upload limit, example folder, theme, no share link)."""
    theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                           font_mono=["ui-monospace", "monospace"])  # system fonts: no font download
    return dict(
        max_file_size=config.max_file_size, allowed_paths=[str(demo.resadapt_examples)], show_error=True, share=False,
        theme=theme, css=CSS,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="ResAdapt Gradio Space")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1" if not os.environ.get("SPACE_ID") else "0.0.0.0"),
                        help="server name (env GRADIO_SERVER_NAME; default 127.0.0.1, 0.0.0.0 on Spaces)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="server port (env GRADIO_SERVER_PORT; default 7860)")
    args = parser.parse_args(argv)
    config = AppConfig.from_env()
    print(f"ResAdapt Space: backbone={config.backbone} allocator={config.allocator} device={config.device} "
          f"zero_gpu={ZERO_GPU} max_seconds={config.max_seconds:g} max_file={config.max_file_size} "
          f"package={Path(sys.modules['resadapt_hf'].__file__).parent}", flush=True)
    demo = build_demo(config)
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(demo, config))


if __name__ == "__main__":
    main()
