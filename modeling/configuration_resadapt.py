"""Configuration of the ResAdapt Allocator (arXiv 2603.28610, §3.2): a frozen encoder plus a small trainable predictor
that emits one Beta distribution over the resize scale of every frame.

Ships flat next to the weights on the Hugging Face Hub (remote code): transformers and stdlib only.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import PretrainedConfig

ENCODER_TYPES = ("smolvlm", "statistics")
# Encoder families whose models have SmolVLM's layout (`vision_model` + pixel-shuffle `connector` + `text_model`).
SMOLVLM_MODEL_TYPES = ("smolvlm", "idefics3")
DEFAULT_ENCODER = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
# Width of DEFAULT_ENCODER's frame and query features (its SmolLM2-135M text width, which the connector projects to).
DEFAULT_ENCODER_HIDDEN_SIZE = 576


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class ResAdaptConfig(PretrainedConfig):
    r"""Configuration of :class:`ResAdaptAllocator`, the learned per-frame resolution policy of ResAdapt.

    The Allocator reads every frame at low resolution together with the question and outputs, per frame ``t``, a Beta
    distribution ``Beta(alpha_t, beta_t)`` over a latent action ``a_t`` in (0, 1); the resize scale is
    ``s_t = min_scale + a_t * (max_scale - min_scale)``. Inference uses the Beta mean.

    Trainable parameters of the default configuration (smolvlm encoder, D = 1024, 2 layers): **43,676,164**
    (input projections 2 x 589,824; 2 predictor blocks of 18,884,609; query-conditioned pooling 4,199,424; Beta head
    527,874). The frozen SmolVLM2-256M encoder adds 228,099,648 frozen parameters (vision tower, connector and text
    model with its embeddings, as computed from the architecture; its LM head is not kept). With
    ``encoder_type="statistics"`` and otherwise default values there are 47,763,972 trainable parameters (the
    hashed query embedding, 4,194,304, is trainable; nothing is frozen). Both trainable counts are checked by the
    test suite on the meta device.

    Args:
        encoder_type (`str`, defaults to `"smolvlm"`):
            Which frozen feature encoder reads frames and question. `"smolvlm"`: a SmolVLM / Idefics3 model; frame
            tokens are its vision tower + pixel-shuffle connector outputs, query tokens are the last hidden states of
            its text model on the question (the paper's choice). `"statistics"`: weight-free per-patch detail/change
            statistics of each frame (`frame_statistics.py`) and a trainable hashed-word embedding of the question;
            no download, meant for CPU experiments and synthetic tasks where a random encoder cannot see detail.
        encoder_name_or_path (`str`, defaults to `"HuggingFaceTB/SmolVLM2-256M-Video-Instruct"`):
            `"smolvlm"` only: Hub id or local folder of the pretrained encoder (and of the query tokenizer when the
            checkpoint folder holds none). Used only while `encoder_config` is `None`.
        encoder_config (`dict`, *optional*):
            `"smolvlm"` only: full config (``to_dict()``) of a SmolVLM / Idefics3 model. When set, the encoder is
            built from it (random weights, overwritten by the checkpoint's when loading), so nothing is fetched by
            name; tests use a tiny one. ``ResAdaptAllocator.load_encoder()`` fills it in after fetching the
            pretrained encoder, so a saved Allocator is self-contained (encoder weights included).
        encoder_image_size (`int`, defaults to 512):
            `"smolvlm"` only: side of the square every frame is resized to (bilinear, antialiased; the aspect ratio
            is squashed as SmolVLM's own video processor does) before ``/255`` and normalisation with mean = std =
            0.5. 512 is SmolVLM2's native size (64 tokens per frame); 256 is four times cheaper (16 tokens per
            frame). Must be a multiple of ``patch_size * scale_factor`` of the encoder.
        encoder_hidden_size (`int`, *optional*):
            `"smolvlm"` only: width of the encoder's frame and query features. Taken from
            ``encoder_config["text_config"]["hidden_size"]`` when `encoder_config` is set (a different value is an
            error); otherwise defaults to 576, the width of SmolVLM2-256M. Checked again when the encoder loads.
        hidden_size (`int`, defaults to 1024):
            Width D of the predictor.
        num_layers (`int`, defaults to 2):
            Number of predictor blocks (spatial, temporal, gated cross-attention, FFN).
        num_heads (`int`, defaults to 16):
            Heads of the spatial, cross and pooling attention.
        head_dim (`int`, defaults to 64):
            Width of every attention head; a multiple of 4 (the spatial rotary embedding splits it into two axes).
        temporal_heads (`int`, defaults to 8):
            Heads of the temporal attention across frames (the reference code uses half of `num_heads`).
        ffn_mult (`int`, defaults to 4):
            FFN hidden width is ``ffn_mult * hidden_size``.
        min_scale (`float`, defaults to 0.2):
            Smallest resize scale (paper App. B.2), > 0.
        max_scale (`float`, defaults to 1.8):
            Largest resize scale (paper App. B.2), > `min_scale`.
        init_mean_scale (`float`, defaults to 1.0):
            Scale that the Beta mean maps to at initialisation (strictly between `min_scale` and `max_scale`). The
            head's last layer starts with zero weights, so every frame starts with the same distribution.
        init_concentration (`float`, defaults to 4.0):
            alpha + beta at initialisation: small means broad exploration (4.0 with mean 0.5 is Beta(2, 2), a scale
            standard deviation of about 0.36). Must be > 2 and large enough that both alpha and beta exceed 1
            (unimodal): ``init_concentration * min(m, 1 - m) > 1`` with ``m`` the initial mean action.
        query_buckets (`int`, defaults to 4096):
            `"statistics"` only: size of the hashed word vocabulary of the query embedding (words are
            ``re.findall(r"\w+", text.lower())``, bucket ``zlib.crc32(word) % query_buckets``).
        statistics_grid (`int`, defaults to 8):
            `"statistics"` only: patches per side of the frame statistics (``statistics_grid ** 2`` tokens per frame).
        max_query_tokens (`int`, defaults to 64):
            Query tokens kept (the first ones) for either encoder.
    """

    model_type = "resadapt_allocator"

    def __init__(
        self,
        encoder_type: str = "smolvlm",
        encoder_name_or_path: str = DEFAULT_ENCODER,
        encoder_config: dict | None = None,
        encoder_image_size: int = 512,
        encoder_hidden_size: int | None = None,
        hidden_size: int = 1024,
        num_layers: int = 2,
        num_heads: int = 16,
        head_dim: int = 64,
        temporal_heads: int = 8,
        ffn_mult: int = 4,
        min_scale: float = 0.2,
        max_scale: float = 1.8,
        init_mean_scale: float = 1.0,
        init_concentration: float = 4.0,
        query_buckets: int = 4096,
        statistics_grid: int = 8,
        max_query_tokens: int = 64,
        **kwargs,
    ):
        if encoder_type not in ENCODER_TYPES:
            raise ValueError(f"encoder_type must be one of {ENCODER_TYPES}, got {encoder_type!r}")
        if not isinstance(encoder_name_or_path, str) or not encoder_name_or_path.strip():
            raise ValueError(f"encoder_name_or_path must be a non-empty string, got {encoder_name_or_path!r}")
        if isinstance(encoder_config, PretrainedConfig):
            encoder_config = encoder_config.to_dict()
        if encoder_config is not None:
            if not isinstance(encoder_config, dict):
                raise ValueError(f"encoder_config must be a dict or None, got {type(encoder_config).__name__}")
            if encoder_type != "smolvlm":
                raise ValueError("encoder_config applies to encoder_type='smolvlm' only")
            if encoder_config.get("model_type") not in SMOLVLM_MODEL_TYPES:
                raise ValueError(
                    f"encoder_config['model_type'] must be one of {SMOLVLM_MODEL_TYPES}, "
                    f"got {encoder_config.get('model_type')!r}"
                )
            derived = _text_hidden_size(encoder_config)
            if encoder_hidden_size is not None and encoder_hidden_size != derived:
                raise ValueError(
                    f"encoder_hidden_size={encoder_hidden_size} does not match encoder_config's text hidden size "
                    f"{derived}; leave encoder_hidden_size unset"
                )
            encoder_hidden_size = derived
        if encoder_hidden_size is None and encoder_type == "smolvlm":
            encoder_hidden_size = DEFAULT_ENCODER_HIDDEN_SIZE
        if encoder_hidden_size is not None:
            _check_int("encoder_hidden_size", encoder_hidden_size, 1)
        _check_int("encoder_image_size", encoder_image_size, 1)
        for name, value, minimum in (
            ("hidden_size", hidden_size, 2),
            ("num_layers", num_layers, 0),
            ("num_heads", num_heads, 1),
            ("head_dim", head_dim, 4),
            ("temporal_heads", temporal_heads, 1),
            ("ffn_mult", ffn_mult, 1),
            ("query_buckets", query_buckets, 1),
            ("statistics_grid", statistics_grid, 1),
            ("max_query_tokens", max_query_tokens, 1),
        ):
            _check_int(name, value, minimum)
        if head_dim % 4:
            raise ValueError(f"head_dim must be a multiple of 4 (two rotary axes of even width), got {head_dim}")
        min_scale = _check_float("min_scale", min_scale)
        max_scale = _check_float("max_scale", max_scale)
        if min_scale <= 0:
            raise ValueError(f"min_scale must be > 0, got {min_scale}")
        if max_scale <= min_scale:
            raise ValueError(f"max_scale must be > min_scale ({min_scale}), got {max_scale}")
        init_mean_scale = _check_float("init_mean_scale", init_mean_scale)
        if not min_scale < init_mean_scale < max_scale:
            raise ValueError(
                f"init_mean_scale must lie strictly inside (min_scale, max_scale) = ({min_scale}, {max_scale}), "
                f"got {init_mean_scale}"
            )
        init_concentration = _check_float("init_concentration", init_concentration)
        mean_action = (init_mean_scale - min_scale) / (max_scale - min_scale)
        needed = 1.0 / min(mean_action, 1.0 - mean_action)
        if init_concentration <= max(2.0, needed):
            raise ValueError(
                f"init_concentration must be > {max(2.0, needed):.4g} so that alpha and beta both exceed 1 at "
                f"init_mean_scale={init_mean_scale} (unimodal Beta), got {init_concentration}"
            )

        self.encoder_type = encoder_type
        self.encoder_name_or_path = encoder_name_or_path
        self.encoder_config = encoder_config
        self.encoder_image_size = encoder_image_size
        self.encoder_hidden_size = encoder_hidden_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.temporal_heads = temporal_heads
        self.ffn_mult = ffn_mult
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.init_mean_scale = init_mean_scale
        self.init_concentration = init_concentration
        self.query_buckets = query_buckets
        self.statistics_grid = statistics_grid
        self.max_query_tokens = max_query_tokens
        super().__init__(**kwargs)

    @property
    def init_mean_action(self) -> float:
        """Mean of the latent action a in (0, 1) at initialisation."""
        return (self.init_mean_scale - self.min_scale) / (self.max_scale - self.min_scale)


def _text_hidden_size(encoder_config: dict) -> int:
    text_config = encoder_config.get("text_config")
    if not isinstance(text_config, dict) or "hidden_size" not in text_config:
        raise ValueError("encoder_config['text_config']['hidden_size'] is required")
    return int(text_config["hidden_size"])


__all__ = ["ResAdaptConfig"]
