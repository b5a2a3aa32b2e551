"""ResAdapt Gradio Space: per-frame resolution allocation in front of an unchanged backbone.

Pick a clip (or upload one), ask a question, set a budget (target retention = share of the backbone's own visual
tokens to keep) and an allocator. The app decodes the clip server-side with PyAV, asks the allocator for per-frame
scales, projects them onto the budget, resizes every 2-frame chunk and lets the backbone answer from those pixels;
the same clip and budget also go through FixedScale and native scale 1, side by side.

Backbones ("answered by"): Qwen2.5-VL / Qwen3-VL checkpoints (the GPU default); ``tiny-reader``, the CPU default, a
1.2M-parameter Qwen2.5-VL trained on the reader task (``resadapt_hf.tiny_reader``: which fine pattern one frame of a
168 x 168 clip carries), prompted exactly as it was trained; ``needle-reader``, the calibrated reader of the synthetic
needle task (not a language model: it reads which digit a clip shows); and ``tiny-qwen*`` random-weight models
(offline, meaningless answers). On CPU the default allocator is the learned one shipped with the reader (preset
``tiny-reader-allocator``: trained with CAPO against it). The first example is a held-out pattern clip of the reader
task with its known answer, so the page can say whether each answer is right; on CPU the needle examples below it
switch the answerer to ``needle-reader`` (with the prior allocator).

Run locally (offline)::

    python space/app.py                      # http://127.0.0.1:7860
    RESADAPT_BACKBONE=tiny-qwen3_vl python space/app.py --port 7861

API (``gradio_client``)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    plan = client.predict(video=handle_file("clip.mp4"), question="What happens?", budget=0.25, api_name="/allocate")
    print(plan["visual_tokens"], "of", plan["baseline_visual_tokens"], "visual tokens kept")
    answer, result = client.predict(video=handle_file("clip.mp4"), question="What happens?", budget=0.25,
                                    api_name="/answer")
    print(answer, result["correct"], [run["answer"] for run in result["comparison"]])

Settings come from environment variables (see ``AppConfig.from_env``); nothing but model/allocator loading touches
the network (analytics off, no share link, system fonts only).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before gradio / huggingface_hub are imported: no analytics or telemetry calls.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the sibling modules (answerers.py, views.py, examples.py) import by name, however app.py is started
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true", "yes")
try:  # ZeroGPU Spaces: `spaces` must be imported before torch initialises CUDA
    import spaces  # type: ignore
except ImportError:  # anywhere else: plain CPU or CUDA
    spaces = None

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import OrderedDict  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from answerers import NEEDLE_READER, TINY_READER, TINY_READER_DESCRIPTION, NeedleReaderAnswerer, Request  # noqa: E402
from answerers import VLMAnswerer, reader_input_note  # noqa: E402
from examples import write_examples  # noqa: E402
from resadapt_hf import FixedScale, PriorAllocator, load_video  # noqa: E402
from resadapt_hf.processing.resize_plan import DEFAULT_MAX_SCALE  # noqa: E402
from resadapt_hf.rewards import SYSTEM_PROMPT  # noqa: E402
from views import CSS, HEAD, Result, Run, allocation_html, aspect_notes, budget_note, chunk_pictures  # noqa: E402
from views import headline_html, notes_html, result_json, same_as_fixed_note, side_by_side_html  # noqa: E402

TINY_PREFIX = "tiny-"
DEFAULT_GPU_BACKBONE = "Qwen/Qwen2.5-VL-3B-Instruct"
# The CPU default answerer: the trained tiny reader shipped in the package (it answers the pattern example)
DEFAULT_CPU_BACKBONE = TINY_READER
# The learned allocator shipped with the tiny reader (resadapt_hf.tiny_reader.READER_ALLOCATOR_DIR), by a short name
READER_ALLOCATOR_PRESET = "tiny-reader-allocator"
CHEAP_ANSWERERS = (TINY_READER, NEEDLE_READER)  # answer in well under a second on CPU: autorun on page load
BACKBONE_CHOICES = (
    TINY_READER,
    NEEDLE_READER,
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
BACKBONE_LABELS = {
    TINY_READER: f"{TINY_READER} (1.2M-param Qwen2.5-VL trained on the pattern task, CPU)",
    NEEDLE_READER: f"{NEEDLE_READER} (calibrated needle reader, not a language model)",
}
RUN_LABELS = {"prior": "Prior allocator", "fixed": "FixedScale", "learned": "Learned allocator"}
PAPER_URL = "https://arxiv.org/abs/2603.28610"
DEFAULT_QUESTION = "Describe what happens in the video."
BUDGET_MIN = 0.01
BUDGET_MAX = round(DEFAULT_MAX_SCALE**2, 4)  # every frame at the largest scale: the most a budget can ask for
MAX_NEW_TOKENS = 512


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


def _env_flag(name: str, default: bool) -> bool:
    raw = _env(name, "")
    return default if not raw else raw.lower() not in ("0", "false", "no", "off")


def random_backbone(name: str) -> bool:
    """The ``tiny-qwen*`` test backbones: random weights, meaningless answers (``tiny-reader`` is trained)."""
    return name.startswith(TINY_PREFIX) and name != TINY_READER


def default_allocator(backbone: str) -> str:
    """The page's default allocator for a default backbone: the learned allocator shipped with ``tiny-reader`` (it
    was trained against it), else the training-free prior."""
    return READER_ALLOCATOR_PRESET if backbone == TINY_READER else "prior"


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
    allocator: str = ""  # RESADAPT_ALLOCATOR: prior | fixed | <learned repo id / folder / preset>; "": default_allocator
    device: str = "cpu"  # RESADAPT_DEVICE: auto | cpu | cuda
    max_seconds: float = 60.0  # RESADAPT_MAX_SECONDS: longest clip accepted
    max_frames: int = 32  # RESADAPT_MAX_FRAMES: most frames sampled from a clip
    num_frames: int = 16  # RESADAPT_NUM_FRAMES: default frames sampled
    max_file_mb: int = 50  # RESADAPT_MAX_FILE_MB: upload limit (gradio max_file_size)
    max_new_tokens: int = 48  # RESADAPT_MAX_NEW_TOKENS: default answer length (tiny-reader's answer: 36 tokens)
    budget: float = 0.25  # RESADAPT_BUDGET: default target retention
    concurrency: int = 1  # RESADAPT_CONCURRENCY: requests run at once (queue default_concurrency_limit)
    queue_size: int = 16  # RESADAPT_QUEUE_SIZE: waiting requests before "queue full"
    cached_backbones: int = 1  # RESADAPT_CACHED_BACKBONES: models kept loaded (LRU)
    gpu_duration: int = 120  # RESADAPT_GPU_DURATION: ZeroGPU seconds reserved per call
    preload: bool = True  # RESADAPT_PRELOAD: load the default backbone when the app is built
    autorun: bool = True  # RESADAPT_AUTORUN: answer the first example on page load (default: CHEAP_ANSWERERS only)
    code_url: str = ""  # RESADAPT_CODE_URL: the header's code link (default on a Space: its files)

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
        space = os.environ.get("SPACE_ID", "")
        return cls(
            backbone=backbone,
            backbones=backbones,
            allocator=_env("RESADAPT_ALLOCATOR", default_allocator(backbone)),
            device=device,
            max_seconds=_env_number("RESADAPT_MAX_SECONDS", 60.0),
            max_frames=_env_number("RESADAPT_MAX_FRAMES", 32, int),
            num_frames=_env_number("RESADAPT_NUM_FRAMES", 16, int),
            max_file_mb=_env_number("RESADAPT_MAX_FILE_MB", 50, int),
            max_new_tokens=_env_number("RESADAPT_MAX_NEW_TOKENS", 128 if gpu else 48, int),
            budget=_env_number("RESADAPT_BUDGET", 0.25),
            concurrency=_env_number("RESADAPT_CONCURRENCY", 1, int),
            queue_size=_env_number("RESADAPT_QUEUE_SIZE", 16, int),
            cached_backbones=_env_number("RESADAPT_CACHED_BACKBONES", 1, int),
            gpu_duration=_env_number("RESADAPT_GPU_DURATION", 120, int),
            preload=_env_flag("RESADAPT_PRELOAD", True),
            # a page view must not cost a GPU generation: autorun only where the default answerer is cheap
            autorun=_env_flag("RESADAPT_AUTORUN", backbone in CHEAP_ANSWERERS),
            code_url=_env("RESADAPT_CODE_URL", f"https://huggingface.co/spaces/{space}/tree/main" if space else ""),
        )

    def __post_init__(self):
        if self.max_seconds <= 0 or self.max_frames < 1 or self.max_file_mb < 1 or self.concurrency < 1:
            raise ValueError("max_seconds, max_frames, max_file_mb and concurrency must be positive")
        if not BUDGET_MIN <= self.budget <= BUDGET_MAX:
            raise ValueError(f"budget must be between {BUDGET_MIN} and {BUDGET_MAX}, got {self.budget}")
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {self.max_new_tokens}")
        self.num_frames = max(1, min(self.num_frames, self.max_frames))
        self.allocator = self.allocator.strip() or default_allocator(self.backbone)
        self.cached_backbones = max(1, self.cached_backbones)

    @property
    def max_file_size(self) -> str:
        return f"{self.max_file_mb}mb"


# ------------------------------------------------------------------------------------------- model / allocator cache


class ModelCache:
    """Loads answerers (backbones, the needle reader) and allocators once and reuses them (thread-safe; language
    models are LRU-evicted)."""

    def __init__(self, config: AppConfig):
        self.config = config
        self._lock = threading.RLock()
        self._backbones: OrderedDict[str, tuple] = OrderedDict()  # name -> (model, answerer)
        self._prepared: set[str] = set()
        self._reader: NeedleReaderAnswerer | None = None
        self._allocators: dict[str, object] = {}
        self.allocator_labels: dict[str, str] = {}
        self._generate = _make_generate(self)

    def answerer(self, name: str):
        """The answerer a backbone name stands for, loaded on first use."""
        if name == NEEDLE_READER:
            with self._lock:
                if self._reader is None:
                    from resadapt_hf.tiny import build_tiny_processor

                    fallback = VLMAnswerer("tiny-qwen2_5_vl grid", build_tiny_processor("qwen2_5_vl"), None, "planner")
                    self._reader = NeedleReaderAnswerer(fallback=fallback)
                return self._reader
        return self.backbone(name)[1]

    def backbone(self, name: str):
        """``(model, VLMAnswerer)`` of a language-model backbone, loaded on first use."""
        with self._lock:
            if name in self._backbones:
                self._backbones.move_to_end(name)
                return self._backbones[name]
            while len(self._backbones) >= self.config.cached_backbones:
                old, _ = self._backbones.popitem(last=False)
                self._prepared.discard(old)
                if self.config.device == "cuda" and not ZERO_GPU:
                    torch.cuda.empty_cache()
            model, processor = self._load_backbone(name)
            generate = lambda inputs, n: self._generate(name, inputs, n)  # noqa: E731
            if name == TINY_READER:  # the prompt it was trained with; a note on inputs it was not trained on
                answerer = VLMAnswerer(name, processor, generate, TINY_READER_DESCRIPTION, system_prompt=SYSTEM_PROMPT,
                                       input_note=reader_input_note)
            else:
                description = "random weights: its answers are meaningless" if random_backbone(name) else "language model"
                answerer = VLMAnswerer(name, processor, generate, description)
            self._backbones[name] = (model, answerer)
            return self._backbones[name]

    def _load_backbone(self, name: str):
        from resadapt_hf.loading import load_backbone

        try:
            return load_backbone(name, device=self.config.device, zero_gpu=ZERO_GPU)
        except (OSError, ValueError) as err:
            raise gr.Error(f"Could not load the backbone {name!r}: {err}") from err

    def prepared_model(self, name: str):
        """The backbone model, prepared for per-chunk sizes (once; on ZeroGPU inside the GPU call)."""
        model, answerer = self.backbone(name)
        with self._lock:
            if name not in self._prepared:
                answerer.processor("prior", self.allocator("prior", None)[1]).prepare_backbone(model)
                self._prepared.add(name)
        return model

    def allocator(self, kind: str, spec: str | None):
        """``(key, allocator object)`` for an allocator choice; learned ones are loaded once."""
        if kind in ("prior", "fixed"):
            key = kind
        elif kind == "learned":
            spec = (spec or "").strip()
            if not spec:
                raise gr.Error("Learned allocator: type a Hub repo id, a local folder or a preset (e.g. "
                               f"{READER_ALLOCATOR_PRESET}).")
            key = f"learned:{spec}"
        else:
            raise gr.Error(f"Unknown allocator {kind!r}: choose one of {', '.join(v for _, v in ALLOCATOR_KINDS)}.")
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
                    f"{type(obj).__name__}({spec!r})" if isinstance(obj, torch.nn.Module) else repr(obj))
            return key, self._allocators[key]

    def _load_learned(self, spec: str):
        """A learned allocator from a preset (``tiny-reader-allocator``: the one shipped with the tiny reader, or a
        ``resadapt_hf.allocators`` preset), a saved ResAdapt repo (``allocator/`` subfolder) or a bare allocator
        folder/repo (``resadapt_hf.loading.load_allocator``: the package's own class, safetensors only, no remote
        code run)."""
        from resadapt_hf.loading import load_allocator
        from resadapt_hf.tiny_reader import READER_ALLOCATOR_DIR

        try:
            model = load_allocator(str(READER_ALLOCATOR_DIR) if spec == READER_ALLOCATOR_PRESET else spec)
        except Exception as err:  # noqa: BLE001 - any load failure becomes a message for the user
            raise gr.Error(f"Could not load the learned allocator {spec!r}: {err}") from err
        if isinstance(model, torch.nn.Module):
            # on ZeroGPU the allocator stays on the CPU: allocate() runs outside the @spaces.GPU window
            on_gpu = self.config.device == "cuda" and not ZERO_GPU
            model = model.to("cuda" if on_gpu else "cpu").eval()
        return model


# ------------------------------------------------------------------------------------------------ GPU section


def _gpu(duration: int):
    """``@spaces.GPU(duration=...)`` on ZeroGPU Spaces, else a no-op decorator."""
    if spaces is not None and ZERO_GPU:
        return spaces.GPU(duration=duration)
    return lambda fn: fn


def _make_generate(cache: ModelCache):
    # one GPU call for every run of the side-by-side: ZeroGPU attaches the GPU per call
    @_gpu(cache.config.gpu_duration)
    def generate(backbone: str, inputs_list, max_new_tokens: int) -> list[tuple[list[int], float]]:
        model = cache.prepared_model(backbone)
        device = next(model.parameters()).device
        out = []
        for inputs in inputs_list:
            inputs = inputs.to(device)
            started = time.perf_counter()
            with torch.inference_mode():
                ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            if device.type == "cuda":
                torch.cuda.synchronize()
            out.append((ids[0, inputs["input_ids"].shape[1]:].cpu().tolist(), time.perf_counter() - started))
        return out

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


def decode_video(path: str, num_frames: int, config: AppConfig):
    """Check and decode an uploaded video with PyAV: ``(VideoClip, notes)``; every problem is a ``gr.Error``."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise gr.Error(f"The uploaded video {name!r} is missing on the server; please upload it again.")
    size = os.path.getsize(path)
    if size == 0:
        raise gr.Error(f"The uploaded video {name!r} is empty (0 bytes). Upload a real video file (mp4, webm, mkv, ...).")
    if size > config.max_file_mb * 1024 * 1024:
        raise gr.Error(f"The uploaded video {name!r} is {size / 2**20:.1f} MB; this demo accepts up to "
                       f"{config.max_file_mb} MB.")
    too_long = (f"The clip is {{:.1f}} s long; this demo accepts clips up to {config.max_seconds:g} s. "
                "Trim it and try again.")
    seconds = _probe_seconds(path)
    if seconds is not None and seconds > config.max_seconds + 1e-6:
        raise gr.Error(too_long.format(seconds))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            clip = load_video(path, num_frames=num_frames)
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(f"Could not read the uploaded file as a video: {_clean_error(err, path)}. "
                           "Upload a playable video file (mp4, webm, mkv, ...).") from err
        except ImportError as err:  # PyAV missing: a deployment problem, say so
            raise gr.Error("Video decoding is unavailable on this server.") from err
    if clip.duration is not None and clip.duration > config.max_seconds + 1e-6:
        raise gr.Error(too_long.format(clip.duration))
    return clip, [_clean_error(w.message, path) for w in caught]


def check_budget(budget) -> float:
    if budget is None or isinstance(budget, bool):
        raise gr.Error("Set a budget: the target retention, e.g. 0.25 keeps a quarter of the visual tokens.")
    budget = float(budget)
    if not math.isfinite(budget) or not BUDGET_MIN - 1e-9 <= budget <= BUDGET_MAX + 1e-9:
        raise gr.Error(f"Budget must be between {BUDGET_MIN:g} and {BUDGET_MAX:g} (the share of the backbone's own "
                       f"visual tokens to keep; {BUDGET_MAX:g} = every frame at the largest scale), got {budget:g}.")
    return budget


def check_whole(label: str, value, low: int, high: int) -> int:
    number = float(value)
    if not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise gr.Error(f"{label} must be a whole number from {low} to {high}, got {number:g}.")
    return int(number)


def check_max_tokens(value) -> int | None:
    if value is None or value == "":
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise gr.Error(f"Max visual tokens must be a whole number >= 0 (0 = no cap), got {value:g}.")
    return int(value) or None


def read_image(image) -> Image.Image | None:
    if image is None:
        return None
    try:
        return (image if isinstance(image, Image.Image) else Image.open(image)).convert("RGB")
    except (OSError, ValueError) as err:
        raise gr.Error("Could not read the uploaded image; upload a PNG, JPEG or WebP file.") from err


# --------------------------------------------------------------------------------------------------- the app


class ResAdaptApp:
    """The request handlers, independent of the layout (easy to call from tests)."""

    def __init__(self, config: AppConfig | None = None):
        self.config = config or AppConfig.from_env()
        self.cache = ModelCache(self.config)
        self.known_answers = []  # KnownAnswer of the bundled examples (write_examples fills it)

    def _plan(self, answerer, request, key, allocator, **kw):
        try:
            return answerer.plan(request, key, allocator, **kw)
        except (ValueError, TypeError) as err:
            raise gr.Error(f"Could not plan the allocation: {err}") from err

    def run(self, video, image, question, budget, max_visual_tokens, num_frames, allocator, allocator_repo, backbone,
            compare, max_new_tokens, answer: bool) -> tuple[Result, Request]:
        """Check the inputs, allocate with the chosen allocator (and FixedScale / native when ``compare``) and,
        with ``answer``, let the backbone answer each allocation."""
        config = self.config
        question = (question or "").replace("\r\n", "\n").strip() or DEFAULT_QUESTION
        if video is None and image is None:
            raise gr.Error("Upload a video or an image (or pick an example) first.")
        backbone = (backbone or config.backbone).strip()
        if backbone not in config.backbones:
            raise gr.Error(f"Backbone {backbone!r} is not offered here; choose one of: {', '.join(config.backbones)}.")
        n = check_whole("Frames sampled", config.num_frames if num_frames is None else num_frames, 1, config.max_frames)
        max_new = check_whole("Max new tokens", config.max_new_tokens if max_new_tokens is None else max_new_tokens,
                              1, MAX_NEW_TOKENS)
        cap = check_max_tokens(max_visual_tokens)
        budget = check_budget(config.budget if budget is None else budget)
        kind = allocator or "prior"
        key, allocator_obj = self.cache.allocator(kind, allocator_repo)
        answerer = self.cache.answerer(backbone)
        notes: list[str] = []
        clip = None
        if video is not None:
            clip, notes = decode_video(video, n, config)
        request = Request(clip, read_image(image), question)

        started = time.perf_counter()
        runs = [Run("allocator", RUN_LABELS[kind], self.cache.allocator_labels[key],
                    self._plan(answerer, request, key, allocator_obj, budget=budget, cap=cap))]
        allocator_ms = (time.perf_counter() - started) * 1000
        if compare:
            if kind != "fixed":
                runs.append(Run("fixed", "FixedScale", "FixedScale (one scale for every frame)",
                                self._plan(answerer, request, key, allocator_obj, scales=1.0, budget=budget, cap=cap)))
            runs.append(Run("native", "Native (scale 1)", "none: every frame at the backbone's own size",
                            self._plan(answerer, request, key, allocator_obj, scales=1.0)))
        timings = {"allocator": allocator_ms}
        if answer:
            started = time.perf_counter()
            for run, reply in zip(runs, answerer.answer(request, [r.allocation for r in runs], max_new)):
                run.reply = reply
            timings["answers"] = (time.perf_counter() - started) * 1000  # all runs of the side by side
        known = next((k for k in self.known_answers if k.applies_to(request)), None)
        for run in runs:
            run.correct = known.grade(run.reply) if known else None

        sources = ([tuple(clip.frames.shape[1:3])] if clip is not None else []) + (
            [(request.image.height, request.image.width)] if request.image is not None else [])
        result = Result(backbone, answerer.description, question, budget, cap, runs, sources, answerer.min_scale,
                        answerer.max_scale, known, timings_ms=timings)
        result.notes = notes + self._notes(result, request, answerer, key, allocator_obj)
        return result, request

    def _notes(self, result: Result, request: Request, answerer, key: str, allocator) -> list[str]:
        """Plain-words notes on a result: why a budget was out of reach, which answerer grid was used, allocations
        equal to FixedScale's, grid rounding that changes the frames' shape, missing or meaningless answers."""
        notes = []
        main = result.main
        if main.allocation.budget_reached is False:  # the reachable range: every frame at the smallest/largest scale
            low = self._plan(answerer, request, key, allocator, scales=answerer.min_scale).retention
            high = self._plan(answerer, request, key, allocator, scales=answerer.max_scale).retention
            notes.append(budget_note(result, (low, high)))
        grid = answerer.grid_note(request)
        notes += [n for n in (grid, same_as_fixed_note(result)) if n]
        notes += aspect_notes(result)
        if main.reply is not None and not main.reply.answered and grid is None:
            notes.append(main.reply.text)
        input_note = answerer.input_note(request)
        if input_note:
            notes.append(input_note)
        if random_backbone(result.backbone):
            notes.append(f"{result.backbone} has random weights: its answers are meaningless (offline demo mode).")
        return notes

    # endpoints ----------------------------------------------------------------------------------------------------
    def views(self, result: Result, request: Request):
        """The page's outputs: (headline, answer text, side by side, notes, allocation view, JSON)."""
        sources = ([request.clip.frames] if request.clip is not None else []) + (
            [torch.from_numpy(np.array(request.image)).unsqueeze(0)] if request.image is not None else [])
        reply = result.main.reply
        text = "" if reply is None else reply.text + (f"\n{reply.explanation}" if reply.explanation else "")
        return (headline_html(result), text, side_by_side_html(result), notes_html(result),
                allocation_html(result, chunk_pictures(sources, result.main.allocation)), result_json(result))

    def answer_ui(self, *inputs):
        """The "Answer" button: allocate, resize, answer (with the side by side) and show everything."""
        return self.views(*self.run(*inputs, answer=True))

    def allocate_ui(self, *inputs):
        """The "Allocate only" button: the same views without answers."""
        return self.views(*self.run(*inputs, answer=False))

    def allocate(self, video=None, image=None, question=None, budget=None, max_visual_tokens=0, num_frames=None,
                 allocator="prior", allocator_repo="", backbone=None, compare=True):
        """The /allocate API: the allocation JSON (scales, chunk sizes, tokens, retention; FixedScale and native
        for comparison), without answers."""
        result, _ = self.run(video, image, question, budget, max_visual_tokens, num_frames, allocator, allocator_repo,
                             backbone, compare, None, answer=False)
        return result_json(result)

    def answer(self, video=None, image=None, question=None, budget=None, max_visual_tokens=0, num_frames=None,
               allocator="prior", allocator_repo="", backbone=None, compare=True, max_new_tokens=None):
        """The /answer API: (answer text, result JSON with the side by side and, for examples, correctness)."""
        result, _ = self.run(video, image, question, budget, max_visual_tokens, num_frames, allocator, allocator_repo,
                             backbone, compare, max_new_tokens, answer=True)
        return result.main.reply.text, result_json(result)


# -------------------------------------------------------------------------------------------------------- layout


def header_html(config: AppConfig) -> str:
    model = config.backbone if "/" in config.backbone else DEFAULT_GPU_BACKBONE
    links = [f'<a href="{PAPER_URL}" target="_blank" rel="noopener">Paper (arXiv 2603.28610)</a>',
             f'<a href="https://huggingface.co/{model}" target="_blank" rel="noopener">'
             f'{"Model" if model == config.backbone else "GPU model"}: {model.split("/")[-1]}</a>']
    if config.code_url:
        links.append(f'<a href="{config.code_url}" target="_blank" rel="noopener">Code</a>')
    return (
        '<div class="ra-header"><h1>ResAdapt: adaptive per-frame resolution</h1>'
        '<div class="ra-lead">A light allocator picks a resolution for every frame; each 2-frame chunk is resized '
        "before an <b>unchanged</b> backbone sees it. The <b>budget</b> is the share of the backbone's own visual "
        f'tokens to keep. <span class="ra-links">{" ".join(links)}</span></div></div>'
    )


def build_demo(config: AppConfig | None = None, examples_dir: str | os.PathLike | None = None) -> gr.Blocks:
    """Build the Blocks app (queue configured). ``demo.resadapt`` holds the ResAdaptApp, ``demo.resadapt_examples``
    the example folder (pass it to ``launch(allowed_paths=...)``), ``demo.resadapt_example_list`` the examples and
    ``demo.resadapt_example_card`` the HTML of the example card at the top."""
    app = ResAdaptApp(config)
    config = app.config
    folder = Path(examples_dir or tempfile.mkdtemp(prefix="resadapt-space-examples-"))
    examples, bar_html = write_examples(folder)
    app.known_answers = [e.known for e in examples if e.known is not None]
    if config.preload:  # load the default answerer now (ZeroGPU: prepare_backbone runs inside the GPU call)
        if config.backbone == NEEDLE_READER or ZERO_GPU:
            app.cache.answerer(config.backbone)
        else:
            app.cache.prepared_model(config.backbone)
    default_kind = config.allocator if config.allocator in ("prior", "fixed") else "learned"
    # the learned allocator's box holds the shipped reader allocator unless another learned one is the default
    default_repo = config.allocator if default_kind == "learned" else (
        READER_ALLOCATOR_PRESET if TINY_READER in config.backbones else "")
    first = examples[0]
    backbone_choices = [
        (BACKBONE_LABELS.get(b, f"{b} (random weights)" if random_backbone(b) else b), b) for b in config.backbones]
    # On a CPU page each example brings the answerer that reads it and its allocator (the pattern clip: tiny-reader
    # with the page's default allocator, the needle clips: needle-reader with the prior); with a real checkpoint as
    # the default, that checkpoint (and the chosen allocator) answers every example.
    cpu_page = config.backbone in CHEAP_ANSWERERS

    def example_settings(example) -> list:
        """Values for (backbone, allocator, allocator repo): the example's, or gr.skip() to keep the chosen ones."""
        if not cpu_page or example.backbone not in config.backbones:
            return [gr.skip()] * 3
        if example.allocator == "default":
            return [example.backbone, default_kind, default_repo]
        if example.allocator in ("prior", "fixed"):
            return [example.backbone, example.allocator, gr.skip()]
        return [example.backbone, gr.skip(), gr.skip()]

    with gr.Blocks(title="ResAdapt: adaptive per-frame resolution", analytics_enabled=False) as demo:
        with gr.Row(elem_id="examples-bar", equal_height=False):
            with gr.Column(scale=3, min_width=280):
                gr.HTML(header_html(config) + bar_html, elem_id="header")
            with gr.Column(scale=1, min_width=200, elem_id="example-buttons"):
                gr.HTML("<b>Examples</b> (generated at startup)", elem_id="examples-title")
                example_buttons = [gr.Button(e.title, size="sm", elem_id=f"example-{e.key}") for e in examples]
        with gr.Row(elem_id="main-row"):
            with gr.Column(scale=5, elem_id="results-col"):
                waiting = "" if config.autorun else (
                    '<div class="ra-sub">Press <b>Answer</b> to run the example below, or pick another one.</div>')
                headline = gr.HTML(waiting, elem_id="headline", label="Headline")
                side_by_side = gr.HTML(elem_id="side-by-side", label="Side by side")
                answer = gr.Textbox(label="Answer", lines=2, interactive=False, elem_id="answer")
                notes = gr.HTML(elem_id="notes", label="Notes")
            with gr.Column(scale=4, elem_id="inputs-col"):
                video = gr.Video(label="Video", sources=["upload"], format=None, include_audio=True,
                                 elem_id="video-input", height=200)
                question = gr.Textbox(label="Question", value=first.question, lines=2, elem_id="question")
                budget = gr.Slider(BUDGET_MIN, BUDGET_MAX, value=config.budget, step=0.01,
                                   label="Budget (target retention)", elem_id="budget",
                                   info=f"share of the backbone's own visual tokens to keep, {BUDGET_MIN:g} to "
                                        f"{BUDGET_MAX:g}")
                allocator = gr.Radio(list(ALLOCATOR_KINDS), value=default_kind, label="Allocator", elem_id="allocator-kind")
                backbone = gr.Dropdown(backbone_choices, value=config.backbone, label="Answered by", elem_id="backbone",
                                       info="Qwen: real checkpoints (GPU); tiny-reader: trained on the pattern "
                                            "clips only; tiny-qwen: random weights")
                with gr.Row():
                    run = gr.Button("Answer", variant="primary", elem_id="run-button")
                    plan_only = gr.Button("Allocate only", elem_id="allocate-button")
                with gr.Accordion("More settings", open=False, elem_id="more-settings"):
                    image = gr.Image(label="…or an image", type="pil", sources=["upload"], elem_id="image-input",
                                     height=160)
                    allocator_repo = gr.Textbox(value=default_repo, label="Learned allocator: repo id, folder or preset",
                                                info=f"{READER_ALLOCATOR_PRESET}: the allocator trained with CAPO "
                                                     f"against {TINY_READER}, shipped with it",
                                                placeholder=f"user/resadapt-qwen2.5-vl | ./my_allocator | "
                                                            f"{READER_ALLOCATOR_PRESET}",
                                                elem_id="allocator-repo")
                    max_tokens = gr.Number(value=0, minimum=0, precision=0, label="Max visual tokens (0 = no cap)",
                                           elem_id="max-visual-tokens")
                    num_frames = gr.Slider(1, config.max_frames, value=config.num_frames, step=1, precision=0,
                                           label="Frames sampled", elem_id="num-frames")
                    max_new_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=config.max_new_tokens, step=1, precision=0,
                                               label="Max new tokens (language models)", elem_id="max-new-tokens")
                    compare = gr.Checkbox(value=True, label="Side by side with FixedScale and native scale 1",
                                          elem_id="compare")
        gr.Markdown("### How the budget was spent")
        allocation_view = gr.HTML(elem_id="allocation-view", label="Allocation")
        with gr.Accordion("Result JSON (what the API returns)", open=False):
            plan_json = gr.JSON(label="Result", elem_id="allocation-json")
        api_answer = gr.Button("answer (API)", visible=False)  # triggers of the public endpoints
        api_allocate = gr.Button("allocate (API)", visible=False)

        api_inputs = [video, image, question, budget, max_tokens, num_frames, allocator, allocator_repo, backbone, compare]
        ui_inputs = [*api_inputs, max_new_tokens]
        ui_outputs = [headline, answer, side_by_side, notes, allocation_view, plan_json]
        example_fields = [video, image, question, budget, num_frames]

        cleared = ["", "", "", "", "", None]  # before every run: an error must not leave old results on screen

        def then(event, handler):
            return event.then(handler, ui_inputs, ui_outputs, api_visibility="private")

        then(run.click(lambda: cleared, None, ui_outputs, queue=False, api_visibility="private"), app.answer_ui)
        then(plan_only.click(lambda: cleared, None, ui_outputs, queue=False, api_visibility="private"), app.allocate_ui)
        for example, button in zip(examples, example_buttons):
            then(button.click(lambda e=example: [*e.fields(), *example_settings(e), *cleared], None,
                              [*example_fields, backbone, allocator, allocator_repo, *ui_outputs], queue=False,
                              api_visibility="private"), app.answer_ui)
        loaded = demo.load(first.fields, None, example_fields, queue=False, api_visibility="private")
        if config.autorun:
            loaded.then(app.answer_ui, ui_inputs, ui_outputs, api_visibility="private")
        api_answer.click(app.answer, inputs=ui_inputs, outputs=[answer, plan_json], api_name="answer",
                         api_description="Allocate, resize and answer (with FixedScale and native side by side): "
                                         "(answer text, result JSON).")
        api_allocate.click(app.allocate, inputs=api_inputs, outputs=[plan_json], api_name="allocate",
                           api_description="Per-frame scales, per-chunk sizes and tokens, requested vs achieved "
                                           "retention (no answers).")

    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    demo.resadapt = app
    demo.resadapt_examples = folder
    demo.resadapt_example_list = examples
    demo.resadapt_example_card = bar_html
    return demo


def launch_kwargs(demo: gr.Blocks, config: AppConfig) -> dict:
    """The launch settings shared by ``main`` and the tests (upload limit, example folder, theme, no share link)."""
    theme = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                           font_mono=["ui-monospace", "monospace"])  # system fonts: no font download
    return dict(
        max_file_size=config.max_file_size, allowed_paths=[str(demo.resadapt_examples)], show_error=True, share=False,
        theme=theme, css=CSS, head=HEAD,
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
