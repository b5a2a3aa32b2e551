"""The tiny reader: a real ``Qwen2_5_VLForConditionalGeneration`` (1.2M parameters) trained from scratch on CPU
to answer the reader task (:mod:`resadapt_hf.reader_task`), shipped inside the package so that CAPO, evaluation,
``make demo`` and the Space run the whole real path (per-chunk resizing -> Qwen vision tower -> M-RoPE with
per-chunk grids -> ``generate`` -> graders) with answers that mean something, offline.

``load_backbone("tiny-reader")`` (or :func:`load_tiny_reader`) returns ``(model, processor)``. The weights, the
config and the processor files are in ``resadapt_hf/tiny_reader_weights/``; ``scripts/train_reader.py`` made them
(its log, ``training.json`` and curve are in ``benchmarks/results/``).

The architecture (:func:`reader_model_kwargs`) is the tiny test backbone's tokenizer and chat template with a
2-layer, 128-wide text side and a 2-layer, 128-wide vision tower (patch 14, 2 x 2 merge, 2-frame temporal
patches: one visual token per 28 x 28 px of a 2-frame chunk, as in Qwen2.5-VL).
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = [
    "READER_ALLOCATOR_DIR",
    "READER_DIR",
    "READER_NAME",
    "build_reader_backbone",
    "load_tiny_reader",
    "reader_completion",
    "reader_model_kwargs",
]

READER_NAME = "tiny-reader"
READER_DIR = Path(__file__).resolve().parent / "tiny_reader_weights"
# an Allocator trained with CAPO against the reader (benchmarks/reader_capo.py, seed 0), shipped next to it
READER_ALLOCATOR_DIR = READER_DIR / "allocator"
# The backbone's pixel bounds per frame: from 56 x 56 (4 tokens per chunk, the processor's default floor) to
# 320 x 320, so a 168 x 168 reader frame can be scaled anywhere in [0.2, 1.8] without the backbone clamping it.
MIN_PIXELS, MAX_PIXELS = 56 * 56, 320 * 320


def reader_completion(letter: str) -> str:
    """The completion the reader was trained to give: the think/answer/boxed format of ``rewards.SYSTEM_PROMPT``
    with an empty reasoning block (``format_ok`` accepts it; ``extract_answer`` reads the letter)."""
    return f"<think>\n</think>\n<answer>\\boxed{{{letter}}}</answer>"


def reader_model_kwargs(tokenizer) -> dict:
    """``text_config`` / ``vision_config`` of the reader for ``tiny.build_tiny_backbone("qwen2_5_vl", ...)``."""
    hidden = 128
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [4, 6, 6]},
    )
    vision_config = dict(
        depth=2, hidden_size=128, intermediate_size=256, num_heads=4, out_hidden_size=hidden, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1], tokens_per_second=2,
    )
    return {"text_config": text_config, "vision_config": vision_config}


def build_reader_backbone(seed: int = 0):
    """A freshly initialised (untrained) reader and its processor: what ``scripts/train_reader.py`` trains."""
    from .tiny import build_tiny_backbone, build_tiny_processor

    processor = build_tiny_processor("qwen2_5_vl")
    for sub in (processor.image_processor, processor.video_processor):
        sub.size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
        for name in ("min_pixels", "max_pixels"):
            if hasattr(sub, name):
                setattr(sub, name, MIN_PIXELS if name == "min_pixels" else MAX_PIXELS)
    model, processor = build_tiny_backbone("qwen2_5_vl", seed=seed, processor=processor,
                                           **reader_model_kwargs(processor.tokenizer))
    tok = processor.tokenizer
    # stop at the end of the assistant turn, as Qwen checkpoints do
    model.generation_config.eos_token_id = [tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id]
    return model, processor


def load_tiny_reader(device: str = "cpu"):
    """``(model, processor)`` of the shipped trained reader, from the package folder (no download)."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    if not (READER_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the tiny reader's weights are missing from {READER_DIR}; reinstall resadapt-hf or run "
            f"scripts/train_reader.py"
        )
    processor = AutoProcessor.from_pretrained(READER_DIR)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(READER_DIR, dtype=torch.float32)
    return model.to(device).eval(), processor
