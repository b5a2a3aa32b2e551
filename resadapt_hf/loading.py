"""Load what the commands and the Space run: a backbone by name and a learned allocator by preset, folder or repo.

One place for both, used by ``resadapt train``, ``resadapt eval`` and the Gradio Space.
"""

from __future__ import annotations

import os

import torch

__all__ = ["distributed_rank", "load_allocator", "load_backbone"]


def distributed_rank() -> tuple[int, int]:
    """``(local_rank, world_size)`` of this process under ``torchrun`` / ``accelerate launch`` (``(0, 1)`` alone).

    Read from the launchers' environment variables, so it works before any process group exists (a backbone is
    loaded before the trainer initialises distribution).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return local_rank, world_size


def load_backbone(name: str, *, device: str | None = None, zero_gpu: bool = False):
    """``(model, processor)`` of a backbone: ``"tiny-reader"`` is the trained tiny reader shipped in the package
    (``resadapt_hf.tiny_reader``: answers the reader task, CPU, no download); ``"tiny-<family>"`` builds a tiny
    random Qwen-VL model (``resadapt_hf.tiny``); anything else is loaded by name/path with
    ``AutoModelForImageTextToText``.

    Placement: on a GPU machine a single process spreads the model over every visible GPU (bf16,
    ``device_map="auto"``); under a multi-process launch (``WORLD_SIZE`` > 1: torchrun, ``accelerate launch``) each
    rank puts its own full copy on its own GPU, ``cuda:LOCAL_RANK`` (data parallelism: the frozen backbone is
    replicated, the prompts are sharded). On CPU the model is fp32.

    Args:
        name: Hub id, local path, ``tiny-reader``, or ``tiny-qwen2_vl`` / ``tiny-qwen2_5_vl`` / ``tiny-qwen3_vl``.
        device: ``"cuda"``, ``"cpu"`` or None (cuda when available).
        zero_gpu: on a ZeroGPU Space the GPU is attached per call: load in bf16 and ``.to("cuda")`` instead of a
            ``device_map``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"backbone must be a Hub id, a local path, 'tiny-reader' or 'tiny-<family>', got {name!r}")
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or None, got {device!r}")
    cuda = torch.cuda.is_available() if device is None else device == "cuda"
    local_rank, world_size = distributed_rank()
    target = f"cuda:{local_rank}" if cuda and world_size > 1 else ("cuda" if cuda else "cpu")
    if name == "tiny-reader":
        from .tiny_reader import load_tiny_reader

        return load_tiny_reader(target)
    if name.startswith("tiny-"):
        from .processing.backbones import ADAPTERS
        from .tiny import build_tiny_backbone

        families = sorted({a.family for a in ADAPTERS})
        family = name[len("tiny-"):]
        if family not in families:
            raise ValueError(
                f"backbone: tiny backbones are tiny-reader and {[f'tiny-{f}' for f in families]}, got {name!r}"
            )
        model, processor = build_tiny_backbone(family)
        return model.to(target).eval(), processor
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(name)
    if not cuda:
        model = AutoModelForImageTextToText.from_pretrained(name, dtype=torch.float32)
    elif zero_gpu or world_size > 1:
        model = AutoModelForImageTextToText.from_pretrained(name, dtype=torch.bfloat16).to(target)
    else:
        model = AutoModelForImageTextToText.from_pretrained(name, dtype=torch.bfloat16, device_map="auto")
    return model.eval(), processor


def load_allocator(spec):
    """A learned allocator: an object with ``predict_scales`` (returned as is), a preset of
    ``resadapt_hf.allocators.PRESETS``, or a folder / Hub repo id holding an Allocator at its root (``config.json``)
    or in ``allocator/`` (a complete ResAdapt repo); a ResAdapt repo whose ``processor_config.json`` names a prior
    or FixedScale allocator gives that one.

    Weights load with this package's own ``ResAdaptAllocator`` from safetensors: the repo's remote code is not run
    (the package is installed, so there is no need to trust it).
    """
    if callable(getattr(spec, "predict_scales", None)):
        return spec
    if not isinstance(spec, (str, os.PathLike)) or not str(spec):
        raise ValueError(f"learned must be an allocator folder, a Hub repo id or a preset, got {spec!r}")
    from .allocators import PRESETS, build_allocator

    spec = str(spec)
    if spec in PRESETS:
        return build_allocator(spec)
    if not os.path.isdir(spec) and (spec.startswith((".", "/", "~")) or spec.count("/") > 1
                                    or os.sep != "/" and os.sep in spec):
        raise FileNotFoundError(f"learned: no such allocator folder {spec} (and not a Hub repo id 'owner/name')")
    from transformers.utils import cached_file

    from .modeling.modeling_resadapt import ResAdaptAllocator
    from .processing.processing_resadapt import ALLOCATOR_SUBFOLDER, ResAdaptProcessor

    def has(filename: str, subfolder: str = "") -> bool:
        return cached_file(spec, filename, subfolder=subfolder, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False) is not None

    if has("config.json", ALLOCATOR_SUBFOLDER):
        return ResAdaptAllocator.from_pretrained(spec, subfolder=ALLOCATOR_SUBFOLDER, use_safetensors=True).eval()
    if has("config.json"):
        return ResAdaptAllocator.from_pretrained(spec, use_safetensors=True).eval()
    if has("processor_config.json"):
        allocator = ResAdaptProcessor.from_pretrained(spec).allocator
        if allocator is not None:
            return allocator
    raise ValueError(
        f"learned: {spec} holds no allocator (expected config.json, {ALLOCATOR_SUBFOLDER}/config.json or a "
        f"processor_config.json naming one)"
    )
