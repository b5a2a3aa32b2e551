"""Tiny random-weight vision-language backbones, built offline from configs.

The models made here have the *architecture* of real Hugging Face VLMs
(Qwen2-VL, Qwen2.5-VL, Qwen3-VL, SmolVLM2) but a few layers of width 64 and
randomly initialised weights, and they come with a matching processor whose
tokenizer is trained on the spot from a short built-in text.  Nothing is
downloaded, so they are meant for unit tests, CI and demos that must run
without network access or a GPU.  Their outputs are meaningless.

They are *not* real checkpoints: to use a real model, load it by name on a
machine with the weights, e.g.
``AutoModelForImageTextToText.from_pretrained("Qwen/Qwen2.5-VL-3B-Instruct")``
and ``AutoProcessor.from_pretrained(...)``; everything that works on the tiny
backbones works the same way on those.

Everything is deterministic: the tokenizer is the same in every process and
``build_tiny_backbone(family, seed=s)`` gives the same weights for the same
``s``.  The results round-trip through ``save_pretrained`` and load back with
``AutoProcessor`` / ``AutoModelForImageTextToText``.

Pixel budgets (the processors' ``size={"shortest_edge": min_pixels,
"longest_edge": max_pixels}``) default to small values so that tests stay
fast; see ``DEFAULT_PIXELS``.  Note the Qwen2-VL/2.5-VL video processors apply
the budget *per frame*, while the Qwen3-VL video processor applies it to the
*whole clip* (frames x height x width).
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import ProcessorMixin

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "smolvlm")

# Side of one merged vision token in pixels (patch_size * spatial_merge_size):
# Qwen2-VL / Qwen2.5-VL use 14 px patches, Qwen3-VL uses 16 px patches.
QWEN2_FACTOR = 28
QWEN3_FACTOR = 32

# Default (min_pixels, max_pixels) per Qwen family: 4 to 64 merged tokens per
# image (or per frame for Qwen2/2.5 video; per clip for Qwen3 video).  Real
# checkpoints use far larger budgets; these keep sequences short for tests.
DEFAULT_PIXELS = {
    "qwen2_vl": (QWEN2_FACTOR * QWEN2_FACTOR * 4, QWEN2_FACTOR * QWEN2_FACTOR * 64),
    "qwen2_5_vl": (QWEN2_FACTOR * QWEN2_FACTOR * 4, QWEN2_FACTOR * QWEN2_FACTOR * 64),
    "qwen3_vl": (QWEN3_FACTOR * QWEN3_FACTOR * 4, QWEN3_FACTOR * QWEN3_FACTOR * 64),
}

# SmolVLM: the vision tower sees square 64 px tiles cut into 16 px patches
# (4 x 4 = 16), and pixel shuffle with scale_factor 2 leaves 16 / 2**2 = 4
# tokens per tile, which is the processor's `image_seq_len`.
SMOLVLM_TILE = 64
SMOLVLM_PATCH = 16
SMOLVLM_SCALE_FACTOR = 2
SMOLVLM_IMAGE_SEQ_LEN = (SMOLVLM_TILE // SMOLVLM_PATCH) ** 2 // SMOLVLM_SCALE_FACTOR**2

# Shared width of the tiny language models.
TEXT_HIDDEN = 64

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

SMOLVLM_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<image>",
    "<video>",
    "<fake_token_around_image>",
    "<global-img>",
    # Tile-position markers the processor inserts when it splits an image.
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)

# Qwen-style chat template.  No default system prompt, so prompts stay short.
QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] }}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'video' -%}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif item['type'] == 'text' -%}"
    "{{ item['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\n' }}"
    "{%- endif -%}"
)

# SmolVLM2-style template ("<|im_start|>User: ...<end_of_utterance>\nAssistant:").
SMOLVLM_CHAT_TEMPLATE = (
    "{{ '<|im_start|>' }}"
    "{%- for message in messages -%}"
    "{{ message['role'] | capitalize }}"
    "{%- if message['content'] is string -%}"
    "{{ ': ' + message['content'] }}"
    "{%- else -%}"
    # As in SmolVLM2: no space after the colon when the message opens with an
    # image.  (SmolVLMProcessor swaps in its own template for video prompts,
    # which behaves the same way.)
    "{%- if message['content'][0]['type'] == 'image' -%}{{ ':' }}{%- else -%}{{ ': ' }}{%- endif -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}"
    "{{ '<image>' }}"
    "{%- elif item['type'] == 'video' -%}"
    "{{ '<video>' }}"
    "{%- elif item['type'] == 'text' -%}"
    "{{ item['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<end_of_utterance>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ 'Assistant:' }}"
    "{%- endif -%}"
)

# BPE training text.  It covers what the processors and the chat templates
# write around the special tokens (timestamps such as "<1.5 seconds>", the
# SmolVLM video intro "... series of eight frames from a 0:00:02 [H:MM:SS]
# video", "Frame from 00:01:"), so real prompts tokenize into few pieces.
_CORPUS = (
    "0 1 2 3 4 5 6 7 8 9 10 11 12 16 24 32 64 100 0.0 0.5 1.0 1.5 2.0 2.5 3.0 3.5",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
    ". , ; : ! ? ' \" ( ) [ ] { } < > / \\ - _ + = * & % $ # @ | ~ ^ `",
    "<0.5 seconds> <1.5 seconds> <2.5 seconds> <3.5 seconds> seconds second",
    "system user assistant System User Assistant Assistant: User: \n\n",
    "You are a helpful assistant. You are provided the following series of "
    "one two three four five six seven eight nine ten frames from a 0:00:02 [H:MM:SS] video.",
    "Frame from 00:00: Frame from 00:01: Frame from 00:02:",
    "Describe this video. Describe this image. What happens in the video?",
    "What is in the picture? The video shows a small object moving across the frame.",
    "There is text, a flat background, fine texture and a moving square.",
    "The answer is yes. The answer is no. Count the objects. How many frames?",
    "left right top bottom red green blue white black color shape time fast slow",
)

# Small enough for a tiny embedding table, large enough that the corpus words
# become single tokens (the training text yields exactly this many entries).
_VOCAB_SIZE = 512


def _check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {FAMILIES}, got {family!r}")
    return family


def build_tiny_tokenizer(family: str) -> transformers.PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer with the family's special tokens.

    The tokenizer is trained from a fixed built-in text with the ``tokenizers``
    library (512 entries, special tokens included), so it is identical in
    every process.  The family's chat template is set as
    ``tokenizer.chat_template``.

    Args:
        family: one of ``FAMILIES``.  The three Qwen families share one
            Qwen-style tokenizer; ``"smolvlm"`` gets SmolVLM2's special tokens.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` whose named special tokens
        (``image_token``, ``video_token``, ...) are the ones the family's
        processor looks up.

    Raises:
        ValueError: if ``family`` is not in ``FAMILIES``.
    """
    _check_family(family)
    is_smol = family == "smolvlm"
    special = SMOLVLM_SPECIAL_TOKENS if is_smol else QWEN_SPECIAL_TOKENS

    bpe = Tokenizer(models.BPE())
    # Qwen-like byte-level BPE: no prefix space, so decode(encode(s)) == s.
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=list(special),  # ids 0..len(special)-1, in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)

    if is_smol:
        tok = transformers.PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            eos_token="<end_of_utterance>",
            pad_token="<|endoftext|>",
            extra_special_tokens={
                "image_token": "<image>",
                "video_token": "<video>",
                "fake_image_token": "<fake_token_around_image>",
                "global_image_token": "<global-img>",
                "end_of_utterance_token": "<end_of_utterance>",
            },
        )
        tok.chat_template = SMOLVLM_CHAT_TEMPLATE
    else:
        tok = transformers.PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            extra_special_tokens={
                "image_token": "<|image_pad|>",
                "video_token": "<|video_pad|>",
                "vision_bos_token": "<|vision_start|>",
                "vision_eos_token": "<|vision_end|>",
            },
        )
        tok.chat_template = QWEN_CHAT_TEMPLATE
    return tok


def build_tiny_processor(
    family: str, *, min_pixels: int | None = None, max_pixels: int | None = None
) -> ProcessorMixin:
    """Build the family's real processor class around a tiny tokenizer.

    Args:
        family: one of ``FAMILIES``.
        min_pixels: Qwen families only: lower pixel budget, passed as
            ``size["shortest_edge"]`` to the image and video processors.
            Defaults to ``DEFAULT_PIXELS[family][0]``.
        max_pixels: Qwen families only: upper pixel budget
            (``size["longest_edge"]``).  Defaults to ``DEFAULT_PIXELS[family][1]``.
            For Qwen2-VL/2.5-VL video the budget is per frame; for Qwen3-VL
            video it is for the whole clip.

    Returns:
        A ``Qwen2VLProcessor``, ``Qwen2_5_VLProcessor``, ``Qwen3VLProcessor`` or
        ``SmolVLMProcessor``.  Video processors do not sample frames
        (``do_sample_frames=False``): every frame passed in is used.

    Raises:
        ValueError: if ``family`` is unknown, or pixel budgets are given for
            ``"smolvlm"`` (its processor resizes by longest edge instead).
    """
    _check_family(family)
    tok = build_tiny_tokenizer(family)

    if family == "smolvlm":
        if min_pixels is not None or max_pixels is not None:
            raise ValueError("`min_pixels`/`max_pixels` apply to the Qwen families only, not 'smolvlm'")
        image_processor = transformers.SmolVLMImageProcessor(
            size={"longest_edge": 2 * SMOLVLM_TILE},  # up to 2 x 2 tiles plus the global view
            max_image_size={"longest_edge": SMOLVLM_TILE},
        )
        video_processor = transformers.SmolVLMVideoProcessor(
            size={"longest_edge": SMOLVLM_TILE},  # frames are never split, one tile each
            max_image_size={"longest_edge": SMOLVLM_TILE},
            do_sample_frames=False,
        )
        return transformers.SmolVLMProcessor(
            image_processor=image_processor,
            tokenizer=tok,
            video_processor=video_processor,
            image_seq_len=SMOLVLM_IMAGE_SEQ_LEN,
            chat_template=SMOLVLM_CHAT_TEMPLATE,
        )

    default_min, default_max = DEFAULT_PIXELS[family]
    size = {
        "shortest_edge": default_min if min_pixels is None else min_pixels,
        "longest_edge": default_max if max_pixels is None else max_pixels,
    }
    # cap_pixels_per_frame=False keeps the plain budget above and silences the
    # warning that the per-frame cap will become the default.
    video_kwargs = dict(size=dict(size), do_sample_frames=False, cap_pixels_per_frame=False)
    if family == "qwen3_vl":
        # Qwen3-VL has no image processor of its own: it reuses Qwen2-VL's with
        # 16 px patches and, like the real checkpoints, mean = std = 0.5 (the
        # Qwen3-VL video processor already defaults to those).
        image_processor = transformers.Qwen2VLImageProcessor(
            patch_size=16, size=dict(size), image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
        )
        video_processor = transformers.Qwen3VLVideoProcessor(patch_size=16, **video_kwargs)
        processor_cls = transformers.Qwen3VLProcessor
    else:
        image_processor = transformers.Qwen2VLImageProcessor(size=dict(size))
        video_processor = transformers.Qwen2VLVideoProcessor(**video_kwargs)
        processor_cls = (
            transformers.Qwen2VLProcessor if family == "qwen2_vl" else transformers.Qwen2_5_VLProcessor
        )
    return processor_cls(
        image_processor=image_processor,
        tokenizer=tok,
        video_processor=video_processor,
        chat_template=QWEN_CHAT_TEMPLATE,
    )


def _text_config(tok, **extra) -> dict[str, Any]:
    return dict(
        vocab_size=len(tok),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=2 * TEXT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        # BOS is the pad token (never prepended); Qwen's default id 151643
        # would be out of vocabulary.
        bos_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **extra,
    )


def _qwen_token_ids(tok) -> dict[str, int]:
    ids = tok.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def _config(family: str, tok, overrides: dict[str, Any]):
    """Top-level config for `family`; `overrides` replace/extend its kwargs."""
    if family == "qwen2_vl":
        kwargs = dict(
            # head_dim 16 -> 8 rotary frequencies split over (t, h, w).
            text_config=_text_config(
                tok, rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]}
            ),
            vision_config=dict(
                depth=2,
                embed_dim=64,
                hidden_size=TEXT_HIDDEN,  # Qwen2-VL: the merger projects to the text width
                num_heads=4,
                mlp_ratio=2,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
            ),
            **_qwen_token_ids(tok),
        )
        cls = transformers.Qwen2VLConfig
    elif family == "qwen2_5_vl":
        kwargs = dict(
            text_config=_text_config(
                tok, rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3]}
            ),
            vision_config=dict(
                depth=2,
                hidden_size=64,
                intermediate_size=128,
                num_heads=4,
                out_hidden_size=TEXT_HIDDEN,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=56,  # 2 x 2 merged tokens per attention window
                fullatt_block_indexes=[1],
                tokens_per_second=2,
            ),
            **_qwen_token_ids(tok),
        )
        cls = transformers.Qwen2_5_VLConfig
    elif family == "qwen3_vl":
        kwargs = dict(
            text_config=_text_config(
                tok,
                head_dim=16,
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": 1e4,
                    "mrope_section": [4, 2, 2],
                    "mrope_interleaved": True,
                },
            ),
            vision_config=dict(
                depth=2,
                hidden_size=64,
                intermediate_size=128,
                num_heads=4,
                out_hidden_size=TEXT_HIDDEN,
                patch_size=16,
                spatial_merge_size=2,
                temporal_patch_size=2,
                num_position_embeddings=64,  # an 8 x 8 grid, interpolated to any size
                deepstack_visual_indexes=[0, 1],
            ),
            **_qwen_token_ids(tok),
        )
        cls = transformers.Qwen3VLConfig
    else:  # smolvlm
        kwargs = dict(
            vision_config=dict(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=SMOLVLM_TILE,
                patch_size=SMOLVLM_PATCH,
            ),
            text_config=_text_config(tok, model_type="llama"),
            scale_factor=SMOLVLM_SCALE_FACTOR,
            image_token_id=tok.convert_tokens_to_ids("<image>"),
            pad_token_id=tok.pad_token_id,
        )
        cls = transformers.SmolVLMConfig
    kwargs.update(overrides)
    return cls(**kwargs)


_MODEL_CLASSES = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
}


def build_tiny_backbone(family: str, *, seed: int = 0, processor=None, **config_overrides):
    """Build a tiny random-weight model of `family` and its processor.

    Args:
        family: one of ``FAMILIES``.
        seed: seeds ``torch.manual_seed`` right before the model is built, so
            equal seeds give identical weights (the global RNG is advanced).
        processor: a processor to return instead of a fresh
            ``build_tiny_processor(family)``, e.g. one with other pixel budgets.
            Its tokenizer must be the tiny one (the config uses its token ids).
        **config_overrides: top-level config kwargs that replace the defaults,
            e.g. ``text_config={...}`` (replaces the whole text sub-config) or
            ``tie_word_embeddings=True``.

    Returns:
        ``(model, processor)``: a ``*ForConditionalGeneration`` model in eval
        mode with float32 weights, and the processor.

    Raises:
        ValueError: if ``family`` is not in ``FAMILIES``.
    """
    _check_family(family)
    if processor is None:
        processor = build_tiny_processor(family)
    tok = processor.tokenizer
    config = _config(family, tok, config_overrides)

    torch.manual_seed(seed)
    model = getattr(transformers, _MODEL_CLASSES[family])(config).to(torch.float32).eval()
    # Set on the generation config so generate() neither warns nor guesses.
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, processor
