"""The ResAdapt Allocator (arXiv 2603.28610, §3.2; reference code `smol_v2`): a learned per-frame resolution policy.

A frozen encoder turns every frame (at low resolution) into a few tokens and the question into query tokens. A small
trainable predictor (spatial attention within a frame, temporal attention across frames, gated cross-attention to
the question, FFN; all pre-LN and residual) pools each frame into ``h_t`` and a head maps it to a Beta distribution
over the latent action ``a_t`` in (0, 1); the resize scale is ``s_t = min_scale + a_t (max_scale - min_scale)``.

Pieces, one class per concern:

* :class:`SmolVLMFeatureEncoder` / :class:`StatisticsFeatureEncoder`: frames + question ids -> feature tokens.
* :class:`AllocationPredictor`: feature tokens -> (alpha, beta, h) per frame, built from :class:`PredictorBlock`,
  :class:`QueryConditionedPooling` and :class:`BetaActionHead`.
* :class:`AllocatorPolicy`: the per-frame Beta policy of one forward pass (sample, log-prob, entropy, mean scales).
* :class:`ResAdaptAllocator`: the ``PreTrainedModel`` tying them together; ``predict_scales`` is the hook the
  ResAdapt processor calls.

Ships flat next to the weights on the Hugging Face Hub (``trust_remote_code``): torch, transformers, safetensors,
stdlib and same-folder siblings only.
"""

from __future__ import annotations

import math
import os
import re
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .configuration_resadapt import SMOLVLM_MODEL_TYPES, ResAdaptConfig
from .frame_statistics import FRAME_STATISTIC_CHANNELS, frame_statistic_tokens, standardised_statistic_tokens

# Latent actions are kept this far from 0 and 1 so that Beta log-probs stay finite.
ACTION_EPS = 1e-6
# tanh(0.1) ~ 0.1: the question starts with a small but non-zero say, so the cross-attention weights get gradients
# from the first step (a zero gate, as in Flamingo, would leave them untouched until the gate itself moves).
CROSS_GATE_INIT = 0.1
INIT_STD = 0.02
ROPE_BASE = 10000.0
# SmolVLM's image processor normalises with mean = std = 0.5 (pixels in [-1, 1]).
SMOLVLM_PIXEL_MEAN = 0.5
SMOLVLM_PIXEL_STD = 0.5
# The query tokenizer is saved in this subfolder of a checkpoint: next to config.json, AutoTokenizer would read the
# config's auto_map and ask for trust_remote_code just to load a tokenizer.
QUERY_TOKENIZER_SUBFOLDER = "query_tokenizer"
# Frames are resized in chunks of this many so the float copy of long high-resolution videos stays bounded.
RESIZE_CHUNK = 32


# ----------------------------------------------------------------------------------------------------------------
# Rotary position embedding (positions of tokens in a frame, of frames in a video)
# ----------------------------------------------------------------------------------------------------------------


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def _rope(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [..., P, d]`` (d even) by angles ``positions [P] * inverse frequencies``; computed in fp32."""
    dim = x.shape[-1]
    inv_freq = 1.0 / ROPE_BASE ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    return x * cos + _rotate_half(x) * sin


def spatial_rope(num_tokens: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Rotary embedding over a frame's tokens: 2-D (row / column, half the head width each) when the tokens form a
    square grid, as both encoders' do; 1-D over the token index otherwise."""
    side = math.isqrt(num_tokens)

    def rotate(x: torch.Tensor) -> torch.Tensor:
        index = torch.arange(num_tokens, device=x.device)
        if side * side != num_tokens:
            return _rope(x, index)
        half = x.shape[-1] // 2
        return torch.cat((_rope(x[..., :half], index // side), _rope(x[..., half:], index % side)), dim=-1)

    return rotate


def temporal_rope(num_frames: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Rotary embedding over the frame index. Padded frames sit after the real ones, so real frames keep the
    positions they have when their video is run alone."""
    return lambda x: _rope(x, torch.arange(num_frames, device=x.device))


# ----------------------------------------------------------------------------------------------------------------
# Predictor
# ----------------------------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention through ``F.scaled_dot_product_attention``.

    Args:
        dim: width of the queries (and of the output).
        num_heads, head_dim: heads and their width.
        context_dim: width of keys/values; ``None`` for self-attention.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads, self.head_dim = num_heads, head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim if context_dim is None else context_dim, inner, bias=False)
        self.to_v = nn.Linear(dim if context_dim is None else context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        return x.view(n, length, self.num_heads, self.head_dim).transpose(1, 2)  # [N, H, length, d]

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        rope: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """
        Args:
            x: [N, Lq, dim] queries.
            context: [N, Lk, context_dim] keys/values; ``None`` attends to ``x``.
            key_mask: [N, Lk] bool, True = attend. Every row must keep at least one key.
            rope: rotary embedding applied to queries and keys (self-attention only).
        Returns:
            [N, Lq, dim].
        """
        source = x if context is None else context
        q, k, v = self._heads(self.to_q(x)), self._heads(self.to_k(source)), self._heads(self.to_v(source))
        if rope is not None:
            q, k = rope(q), rope(k)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        n, _, length, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(n, length, self.num_heads * self.head_dim))


class FeedForward(nn.Module):
    """Pre-LN FFN: LN -> Linear(D, mult*D) -> GELU -> Linear(mult*D, D)."""

    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, mult * dim, bias=False)
        self.down = nn.Linear(mult * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(self.norm(x))))


class PredictorBlock(nn.Module):
    """Spatial self-attention within each frame, temporal self-attention across frames (per spatial position), gated
    cross-attention from frame tokens to query tokens, FFN; each pre-LN and residual (paper Fig. 2a)."""

    def __init__(self, config: ResAdaptConfig):
        super().__init__()
        dim = config.hidden_size
        self.spatial_norm = nn.LayerNorm(dim)
        self.spatial_attn = Attention(dim, config.num_heads, config.head_dim)
        self.temporal_norm = nn.LayerNorm(dim)
        self.temporal_attn = Attention(dim, config.temporal_heads, config.head_dim)
        self.cross_norm = nn.LayerNorm(dim)
        self.cross_context_norm = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, config.num_heads, config.head_dim)
        self.cross_gate = nn.Parameter(torch.empty(1))  # tanh gate, set to CROSS_GATE_INIT in _init_weights
        self.ffn = FeedForward(dim, config.ffn_mult)

    def forward(
        self, x: torch.Tensor, frame_mask: torch.Tensor, query: torch.Tensor, query_mask: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            x: [B, T, L, D] frame tokens.
            frame_mask: [B, T] bool, True for real frames (each row has at least one).
            query: [B, N, D] query tokens.
            query_mask: [B, N] bool, True for real query tokens (each row has at least one).
        Returns:
            [B, T, L, D].
        """
        b, t, length, dim = x.shape
        # Spatial: the L tokens of one frame attend to each other.
        flat = x.reshape(b * t, length, dim)
        x = x + self.spatial_attn(self.spatial_norm(flat), rope=spatial_rope(length)).view(b, t, length, dim)
        # Temporal: one sequence of T frames per spatial position; padded frames are masked out as keys so they
        # cannot influence real frames.
        seq = x.permute(0, 2, 1, 3).reshape(b * length, t, dim)
        keys = frame_mask[:, None, :].expand(b, length, t).reshape(b * length, t)
        mixed = self.temporal_attn(self.temporal_norm(seq), key_mask=keys, rope=temporal_rope(t))
        x = x + mixed.view(b, length, t, dim).permute(0, 2, 1, 3)
        # Cross: every frame token reads the question.
        tokens = x.reshape(b, t * length, dim)
        read = self.cross_attn(self.cross_norm(tokens), context=self.cross_context_norm(query), key_mask=query_mask)
        x = x + (torch.tanh(self.cross_gate) * read).view(b, t, length, dim)
        return x + self.ffn(x)


class QueryConditionedPooling(nn.Module):
    """Attention pooling of each frame's L tokens into one vector, with a learned query shifted by the mean question
    token (so what a frame is summarised by depends on the question)."""

    def __init__(self, config: ResAdaptConfig):
        super().__init__()
        dim, inner = config.hidden_size, config.num_heads * config.head_dim
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.token_norm = nn.LayerNorm(dim)
        self.query_norm = nn.LayerNorm(dim)
        self.latent = nn.Parameter(torch.empty(inner))  # learned base query, normal(0.02) in _init_weights
        self.condition = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, query_summary: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: [B, T, L, D] frame tokens.
            query_summary: [B, D] masked mean of the query tokens.
        Returns:
            [B, T, D] per-frame features h_t.
        """
        b, t, length, _ = x.shape
        heads, width = self.num_heads, self.head_dim
        tokens = self.token_norm(x).reshape(b * t, length, -1)
        k = self.to_k(tokens).view(b * t, length, heads, width).transpose(1, 2)
        v = self.to_v(tokens).view(b * t, length, heads, width).transpose(1, 2)
        q = self.latent + self.condition(self.query_norm(query_summary))  # [B, inner]
        q = q[:, None, :].expand(b, t, heads * width).reshape(b * t, 1, heads, width).transpose(1, 2)
        pooled = F.scaled_dot_product_attention(q, k, v)  # [B*T, H, 1, d]
        return self.to_out(pooled.reshape(b, t, heads * width))


class BetaOutput(nn.Linear):
    """The head's last Linear (D/2 -> 2). Its own class so ``_init_weights`` can give it zero weights and the
    Beta-init biases (a rule on the parent module would never run: transformers skips modules without direct
    parameters when initialising remote-code models)."""


class BetaActionHead(nn.Module):
    """h_t -> (alpha_t, beta_t) = 1 + softplus(u_t), u_t = Linear(GELU(Linear(LN(h_t)))).

    The "+1" keeps both parameters above 1, so every Beta is unimodal. The last Linear starts at zero weights with
    biases that put the initial distribution at mean ``init_mean_action`` and concentration ``init_concentration``
    (see :meth:`initial_bias`), identical for every frame.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.hidden = nn.Linear(dim, dim // 2)
        self.out = BetaOutput(dim // 2, 2)

    @staticmethod
    def initial_bias(mean_action: float, concentration: float) -> tuple[float, float]:
        """Biases (b_alpha, b_beta) with 1 + softplus(b) = (m k, (1 - m) k): inverse softplus of m k - 1, ..."""
        alpha, beta = mean_action * concentration, (1.0 - mean_action) * concentration
        return math.log(math.expm1(alpha - 1.0)), math.log(math.expm1(beta - 1.0))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h: [B, T, D] -> (alpha, beta) [B, T] each, float32 whatever the model dtype."""
        u = self.out(F.gelu(self.hidden(self.norm(h)))).float()
        return 1.0 + F.softplus(u[..., 0]), 1.0 + F.softplus(u[..., 1])


class AllocationPredictor(nn.Module):
    """Trainable part of the Allocator: projections to D, predictor blocks, per-frame pooling, Beta head."""

    def __init__(self, config: ResAdaptConfig, frame_width: int, query_width: int):
        super().__init__()
        dim = config.hidden_size
        self.frame_proj = nn.Linear(frame_width, dim, bias=False)
        self.query_proj = nn.Linear(query_width, dim, bias=False)
        self.blocks = nn.ModuleList(PredictorBlock(config) for _ in range(config.num_layers))
        self.pooling = QueryConditionedPooling(config)
        self.head = BetaActionHead(dim)

    def forward(
        self,
        frame_features: torch.Tensor,
        frame_mask: torch.Tensor,
        query_features: torch.Tensor,
        query_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            frame_features: [B, T, L, F] encoder tokens per frame (zeros for padded frames).
            frame_mask: [B, T] bool, True for real frames.
            query_features: [B, N, Q] encoder tokens of the question.
            query_mask: [B, N] bool, True for real query tokens.
        Returns:
            alpha [B, T] fp32, beta [B, T] fp32, h [B, T, D] (model dtype); padded frames get alpha = beta = 1
            (Uniform(0, 1): log-prob and entropy 0) and h = 0.
        """
        x = self.frame_proj(frame_features)
        z = self.query_proj(query_features)
        for block in self.blocks:
            x = block(x, frame_mask, z, query_mask)
        weights = query_mask.to(z.dtype)[..., None]
        summary = (z * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        h = self.pooling(x, summary)
        alpha, beta = self.head(h)
        one = torch.ones_like(alpha)
        alpha, beta = torch.where(frame_mask, alpha, one), torch.where(frame_mask, beta, one)
        return alpha, beta, h * frame_mask[..., None].to(h.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------------------------------


def _smolvlm_from_config(encoder_config: dict) -> nn.Module:
    """A SmolVLM / Idefics3 base model (vision tower, connector, text model; no LM head) with random weights."""
    from transformers import AutoConfig, AutoModel

    settings = {k: v for k, v in encoder_config.items() if k not in ("model_type", "transformers_version")}
    config = AutoConfig.for_model(encoder_config["model_type"], **settings)
    return AutoModel.from_config(config)


class SmolVLMFeatureEncoder(nn.Module):
    """Frozen SmolVLM / Idefics3 encoder: frame tokens from the vision tower + pixel-shuffle connector, query tokens
    from the text model's last hidden state.

    ``model`` is ``None`` until :meth:`ResAdaptAllocator.load_encoder` fetches the pretrained encoder by name, unless
    ``config.encoder_config`` is set (then it is built from that config here, and a checkpoint provides weights).
    """

    def __init__(self, config: ResAdaptConfig):
        super().__init__()
        self.image_size = config.encoder_image_size
        self.hidden_size = config.encoder_hidden_size
        self.model = None
        if config.encoder_config is not None:
            self.attach(_smolvlm_from_config(config.encoder_config))

    @property
    def frame_width(self) -> int:
        return self.hidden_size

    @property
    def query_width(self) -> int:
        return self.hidden_size

    def attach(self, model: nn.Module) -> None:
        """Use ``model`` (a SmolVLM / Idefics3 base model) as the encoder, frozen and in eval mode."""
        model_type = getattr(model.config, "model_type", None)
        if model_type not in SMOLVLM_MODEL_TYPES or not hasattr(model, "connector"):
            raise ValueError(f"encoder: expected a SmolVLM/Idefics3 base model, got {type(model).__name__}")
        width = model.config.text_config.hidden_size
        if width != self.hidden_size:
            raise ValueError(f"encoder_hidden_size={self.hidden_size} but the encoder's features are {width} wide")
        vision = model.config.vision_config
        step = vision.patch_size * model.config.scale_factor
        if self.image_size % step:
            raise ValueError(
                f"encoder_image_size must be a multiple of patch_size * scale_factor = {step} for this encoder, "
                f"got {self.image_size}"
            )
        self.model = model.requires_grad_(False).eval()

    @property
    def tokens_per_frame(self) -> int:
        vision = self.model.config.vision_config
        return (self.image_size // vision.patch_size) ** 2 // self.model.config.scale_factor**2

    def pixel_values(self, video: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> [T, 3, S, S] normalised pixels: squashed to S x S (bilinear, antialias, as SmolVLM's
        video processor squashes frames to its square), /255, (x - 0.5) / 0.5."""
        size = (self.image_size, self.image_size)
        chunks = []
        for start in range(0, video.shape[0], RESIZE_CHUNK):
            x = video[start : start + RESIZE_CHUNK].permute(0, 3, 1, 2).float().div_(255.0)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            chunks.append(((x - SMOLVLM_PIXEL_MEAN) / SMOLVLM_PIXEL_STD).to(dtype))
        return torch.cat(chunks)

    @torch.no_grad()
    def frame_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] -> [N, tokens_per_frame, F].

        Vision tower then connector, which is what ``get_image_features`` computes; called directly because
        ``get_image_features`` also drops all-zero images as padding through data-dependent indexing (a frame could
        silently vanish, and meta-device FLOP counting breaks).
        """
        hidden = self.model.vision_model(pixel_values=pixel_values).last_hidden_state
        return self.model.connector(hidden)

    @torch.no_grad()
    def query_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, N] ids (right-padded) -> [B, N, F] last hidden states of the (causal) text model."""
        out = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask.long())
        return out.last_hidden_state

    def encode_videos(self, videos: Sequence[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
        """All frames of all videos in ONE encoder pass -> per-video [T_i, L, F]."""
        pixels = torch.cat([self.pixel_values(v, dtype) for v in videos])
        return list(self.frame_features(pixels).split([int(v.shape[0]) for v in videos]))


class StatisticsFeatureEncoder(nn.Module):
    """Weight-free per-patch detail/change statistics of each frame and a trainable hashed-word query embedding."""

    def __init__(self, config: ResAdaptConfig):
        super().__init__()
        self.grid = config.statistics_grid
        self.query_embedding = nn.Embedding(config.query_buckets, config.hidden_size)

    @property
    def frame_width(self) -> int:
        return 3 * FRAME_STATISTIC_CHANNELS  # z-scores, per-frame max z-scores, log levels: standardised_statistic_tokens

    @property
    def query_width(self) -> int:
        return self.query_embedding.embedding_dim

    def query_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, N] bucket ids -> [B, N, D] embeddings (padding positions are masked downstream)."""
        return self.query_embedding(input_ids)

    def encode_videos(self, videos: Sequence[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
        """Per video (the change channels and the z-scores compare frames of one video) -> [T_i, grid^2, 3C]."""
        return [standardised_statistic_tokens(frame_statistic_tokens(v, grid=self.grid)).to(dtype) for v in videos]


def hashed_word_ids(text: str, buckets: int) -> list[int]:
    """Lower-cased ``\\w+`` words -> ``zlib.crc32(word) % buckets`` (stable across processes, unlike ``hash``)."""
    return [zlib.crc32(word.encode("utf-8")) % buckets for word in re.findall(r"\w+", text.lower())]


# ----------------------------------------------------------------------------------------------------------------
# Policy
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class AllocatorPolicy:
    """Per-frame Beta policy from one Allocator forward pass.

    Sampling, log-probs and entropies reuse ``alpha``/``beta``: drawing M allocations costs no further encoder or
    predictor pass. Everything is in the latent action space a in (0, 1); ``log_prob`` drops the constant
    log-Jacobian ``-log(max_scale - min_scale)`` of the affine map to scales (it cancels in PPO ratios).
    Padded frames (``frame_mask`` False) have alpha = beta = 1, log-prob 0, entropy 0, scale 1.0.

    A dataclass on purpose: ``DistributedDataParallel`` (with ``find_unused_parameters``, transformers' default for
    a ``PreTrainedModel``) walks the forward output for tensors to trace the graph back to the parameters; it looks
    inside dataclasses but not inside plain objects, where it would find no tensor and mark every parameter unused.

    Attributes:
        alpha, beta: [B, T] float32, both > 1 for real frames.
        frame_mask: [B, T] bool.
        frame_features: [B, T, D] pooled per-frame features h_t (model dtype; zeros for padded frames), e.g. for a
            temporal-similarity regulariser.
        min_scale, max_scale: the scale range.
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    frame_mask: torch.Tensor
    frame_features: torch.Tensor
    min_scale: float
    max_scale: float

    def __post_init__(self):
        self.min_scale, self.max_scale = float(self.min_scale), float(self.max_scale)

    def select(self, index: int) -> "AllocatorPolicy":
        """The policy of batch row ``index`` alone ([1, T] tensors, still attached to the graph)."""
        rows = slice(index, index + 1)
        return AllocatorPolicy(self.alpha[rows], self.beta[rows], self.frame_mask[rows], self.frame_features[rows],
                               self.min_scale, self.max_scale)

    @property
    def concentration(self) -> torch.Tensor:
        """alpha + beta, [B, T]."""
        return self.alpha + self.beta

    @property
    def num_frames(self) -> torch.Tensor:
        """Real frames per sample, [B] long."""
        return self.frame_mask.sum(-1)

    def to_scales(self, actions: torch.Tensor) -> torch.Tensor:
        """Latent actions in (0, 1) -> scales ``min_scale + a (max_scale - min_scale)`` (same shape)."""
        return self.min_scale + actions * (self.max_scale - self.min_scale)

    def to_actions(self, scales: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_scales`, clamped to [ACTION_EPS, 1 - ACTION_EPS]."""
        actions = (scales - self.min_scale) / (self.max_scale - self.min_scale)
        return actions.clamp(ACTION_EPS, 1.0 - ACTION_EPS)

    def _padding_action(self) -> torch.Tensor:
        return self.to_actions(torch.ones_like(self.alpha))

    def mean_actions(self) -> torch.Tensor:
        """Beta means alpha / (alpha + beta), [B, T] (the deterministic action)."""
        mean = self.alpha / (self.alpha + self.beta)
        return torch.where(self.frame_mask, mean, self._padding_action())

    def deterministic_scales(self) -> torch.Tensor:
        """Scales of the Beta means, [B, T] float32 (inference action)."""
        return self.to_scales(self.mean_actions())

    @torch.no_grad()
    def sample(
        self, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``num_samples`` allocations (no gradient: score-function training uses :meth:`log_prob`).

        Args:
            num_samples: M.
            generator: optional ``torch.Generator`` on the policy's device, for reproducible draws.
        Returns:
            actions [M, B, T] in [ACTION_EPS, 1 - ACTION_EPS], scales [M, B, T]; padded frames get scale 1.0.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        shape = (num_samples, *self.alpha.shape)
        concentration = torch.stack((self.alpha, self.beta), dim=-1).expand(*shape, 2).contiguous()
        # Beta(a, b) is the first coordinate of Dirichlet(a, b); this is the op torch.distributions.Beta samples
        # with, and unlike Beta.sample it accepts a generator.
        actions = torch._sample_dirichlet(concentration, generator=generator)[..., 0]
        actions = actions.clamp(ACTION_EPS, 1.0 - ACTION_EPS)
        actions = torch.where(self.frame_mask, actions, self._padding_action())
        return actions, self.to_scales(actions)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Per-frame Beta log-density of latent actions.

        Args:
            actions: [..., B, T] in (0, 1) (clamped to [ACTION_EPS, 1 - ACTION_EPS]).
        Returns:
            [..., B, T] float32; 0 for padded frames. Sum over T for the joint log-prob of an allocation.
        """
        a = actions.float().clamp(ACTION_EPS, 1.0 - ACTION_EPS)
        alpha, beta = self.alpha, self.beta
        log_norm = torch.lgamma(alpha + beta) - torch.lgamma(alpha) - torch.lgamma(beta)
        value = (alpha - 1.0) * torch.log(a) + (beta - 1.0) * torch.log1p(-a) + log_norm
        return torch.where(self.frame_mask, value, torch.zeros_like(value))

    def entropy(self) -> torch.Tensor:
        """Per-frame differential entropy of Beta(alpha, beta) in latent space, [B, T]; 0 for padded frames."""
        value = torch.distributions.Beta(self.alpha, self.beta, validate_args=False).entropy()
        return torch.where(self.frame_mask, value, torch.zeros_like(value))


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------


def _check_query(text, name: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name}: the Allocator needs a non-empty question to condition on, got {text!r}")
    return text


class ResAdaptAllocator(PreTrainedModel):
    """ResAdapt Allocator: frozen encoder + trainable predictor -> per-frame Beta policy over resize scales.

    The encoder is built at construction only when it needs no download: ``encoder_type="statistics"``, or
    ``"smolvlm"`` with ``config.encoder_config`` set. With the default config (``encoder_config=None``) the
    pretrained SmolVLM2 encoder is fetched by name by :meth:`load_encoder`, which :meth:`forward` calls on first
    use (call it yourself before wrapping the model for distributed training). So building the default config, e.g.
    on the meta device to count parameters, fetches nothing. :meth:`load_encoder` also records ``encoder_config``,
    so a later ``save_pretrained`` writes a self-contained checkpoint (encoder weights and query tokenizer included)
    that reloads offline. The encoder is frozen (``requires_grad_(False)``) and stays in eval mode.

    Attributes:
        query_tokenizer: tokenizer of the smolvlm encoder's text model (not a submodule). ``None`` until needed;
            then loaded from the checkpoint folder (``save_pretrained`` stores it there) or ``encoder_name_or_path``.
    """

    config_class = ResAdaptConfig
    base_model_prefix = "allocator"
    main_input_name = "frames"

    def __init__(self, config: ResAdaptConfig):
        super().__init__(config)
        if config.encoder_type == "smolvlm":
            self.encoder = SmolVLMFeatureEncoder(config)
        else:
            self.encoder = StatisticsFeatureEncoder(config)
        self.predictor = AllocationPredictor(config, self.encoder.frame_width, self.encoder.query_width)
        self.query_tokenizer = None
        self.post_init()

    # -- weights -------------------------------------------------------------------------------------------------

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, BetaOutput):
            # Zero weights: every frame starts at the same broad Beta with the configured mean and concentration.
            b_alpha, b_beta = BetaActionHead.initial_bias(self.config.init_mean_action, self.config.init_concentration)
            init.zeros_(module.weight)
            init.copy_(module.bias, torch.tensor([b_alpha, b_beta], dtype=module.bias.dtype))
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=INIT_STD)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=INIT_STD)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, PredictorBlock):
            init.constant_(module.cross_gate, CROSS_GATE_INIT)
        elif isinstance(module, QueryConditionedPooling):
            init.normal_(module.latent, mean=0.0, std=INIT_STD)

    def _freeze_encoder(self) -> None:
        if isinstance(self.encoder, SmolVLMFeatureEncoder) and self.encoder.model is not None:
            self.encoder.model.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "ResAdaptAllocator":
        super().train(mode)
        self._freeze_encoder()  # the frozen encoder always runs in eval mode
        return self

    def load_encoder(self) -> None:
        """Fetch the pretrained smolvlm encoder ``config.encoder_name_or_path`` if none is built yet (a no-op
        otherwise), onto this model's device and dtype, and record its config in ``config.encoder_config``."""
        if not isinstance(self.encoder, SmolVLMFeatureEncoder) or self.encoder.model is not None:
            return
        from transformers import AutoModelForImageTextToText

        full = AutoModelForImageTextToText.from_pretrained(self.config.encoder_name_or_path, dtype=self.dtype)
        self.encoder.attach(full.model.to(self.device))  # keep vision tower, connector, text model; drop LM head
        self.config.encoder_config = self.encoder.model.config.to_dict()

    def _tokenizer(self):
        if self.query_tokenizer is None:
            from transformers import AutoTokenizer

            self.query_tokenizer = AutoTokenizer.from_pretrained(self.config.encoder_name_or_path)
        return self.query_tokenizer

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained`` (safetensors) plus the query tokenizer, when one is set, in
        ``query_tokenizer/``, so that the folder reloads without fetching anything."""
        if self.query_tokenizer is not None and kwargs.get("is_main_process", True):
            # written before the weights: with push_to_hub=True the parent uploads the folder at the end
            self.query_tokenizer.save_pretrained(os.path.join(save_directory, QUERY_TOKENIZER_SUBFOLDER))
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """``PreTrainedModel.from_pretrained``, then: reject non-finite weights (ValueError), re-freeze the encoder,
        and pick up a query tokenizer saved in the same folder."""
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if kwargs.get("output_loading_info") else loaded
        model._check_finite_weights(pretrained_model_name_or_path)
        model._freeze_encoder()
        if model.config.encoder_type == "smolvlm" and model.query_tokenizer is None:
            model.query_tokenizer = _saved_tokenizer(pretrained_model_name_or_path, kwargs)
        return loaded

    def _check_finite_weights(self, source) -> None:
        for name, tensor in list(self.named_parameters()) + list(self.named_buffers()):
            if tensor.device.type != "meta" and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(
                    f"{source}: weight {name!r} contains NaN or infinite values; the checkpoint is corrupt"
                )

    # -- inputs --------------------------------------------------------------------------------------------------

    @staticmethod
    def _as_video(item, name: str) -> torch.Tensor:
        """One video: uint8 [T, H, W, 3] tensor (or array), or a sequence of [H, W, 3] frames of one size."""
        if isinstance(item, (list, tuple)):
            if not item:
                raise ValueError(f"{name}: a video needs at least one frame")
            frames = [torch.as_tensor(f) for f in item]
            sizes = {tuple(f.shape) for f in frames}
            if len(sizes) != 1:
                raise ValueError(f"{name}: all frames of one video must have the same size, got {sorted(sizes)}")
            item = torch.stack(frames)
        video = torch.as_tensor(item)
        if video.dtype != torch.uint8 or video.ndim != 4 or video.shape[-1] != 3 or min(video.shape) < 1:
            raise ValueError(
                f"{name}: expected uint8 [T>=1, H, W, 3] RGB frames, got {video.dtype} {list(video.shape)}"
            )
        return video

    def _as_videos(self, frames, frame_mask: torch.Tensor | None) -> list[torch.Tensor]:
        if isinstance(frames, torch.Tensor) and frames.ndim == 5:
            if frame_mask is None:
                return [self._as_video(v, f"frames[{i}]") for i, v in enumerate(frames)]
            mask = torch.as_tensor(frame_mask, dtype=torch.bool, device=frames.device)
            if mask.shape != frames.shape[:2]:
                raise ValueError(f"frame_mask: expected shape {list(frames.shape[:2])}, got {list(mask.shape)}")
            counts = mask.sum(-1)
            prefix = torch.arange(mask.shape[1], device=mask.device)[None, :] < counts[:, None]
            if not torch.equal(mask, prefix) or bool((counts == 0).any()):
                raise ValueError("frame_mask: every row must be True for its first T_i >= 1 frames and False after")
            return [self._as_video(v[: int(n)], f"frames[{i}]") for i, (v, n) in enumerate(zip(frames, counts))]
        if frame_mask is not None:
            raise ValueError("frame_mask: only used with a padded uint8 [B, T, H, W, 3] tensor")
        if isinstance(frames, torch.Tensor) and frames.ndim == 4:
            return [self._as_video(frames, "frames")]
        if not isinstance(frames, (list, tuple)) or not frames:
            raise ValueError("frames: expected a uint8 [B, T, H, W, 3] tensor or a non-empty list of [T, H, W, 3]")
        return [self._as_video(v, f"frames[{i}]") for i, v in enumerate(frames)]

    def query_token_ids(self, queries: Sequence[str], name: str = "query") -> tuple[torch.Tensor, torch.Tensor]:
        """Questions -> right-padded ids [B, N] and mask [B, N] bool, at most ``max_query_tokens`` each.

        smolvlm: the encoder's tokenizer (no special tokens); statistics: hashed lower-cased words.
        Raises ValueError for an empty question (or, for statistics, one without any word).
        """
        limit = self.config.max_query_tokens
        rows = []
        for i, text in enumerate(queries):
            label = name if len(queries) == 1 else f"{name}[{i}]"
            _check_query(text, label)
            if self.config.encoder_type == "smolvlm":
                ids = self._tokenizer()(text, add_special_tokens=False)["input_ids"]
            else:
                ids = hashed_word_ids(text, self.config.query_buckets)
            if not ids:
                raise ValueError(f"{label}: no word tokens in {text!r}")
            rows.append(ids[:limit])
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = True
        return ids.to(self.device), mask.to(self.device)

    # -- forward -------------------------------------------------------------------------------------------------

    def encode_queries(self, queries: Sequence[str], name: str = "query") -> tuple[torch.Tensor, torch.Tensor]:
        """Questions -> query features [B, N, Q] and mask [B, N]; each distinct question is encoded once (the
        processor asks the same question for every media item)."""
        unique = list(dict.fromkeys(queries))
        ids, mask = self.query_token_ids(unique, name)
        features = self.encoder.query_features(ids, mask)
        index = torch.tensor([unique.index(q) for q in queries], device=features.device)
        return features[index], mask[index]

    def encode_frames(self, videos: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 videos [T_i, H, W, 3] -> padded frame features [B, T_max, L, F] (zeros after T_i), mask [B, T_max]."""
        videos = [v.to(self.device, non_blocking=True) for v in videos]
        per_video = self.encoder.encode_videos(videos, self.dtype)
        t_max = max(f.shape[0] for f in per_video)
        features = per_video[0].new_zeros(len(per_video), t_max, *per_video[0].shape[1:])
        mask = torch.zeros(len(per_video), t_max, dtype=torch.bool, device=features.device)
        for i, f in enumerate(per_video):
            features[i, : f.shape[0]] = f
            mask[i, : f.shape[0]] = True
        return features, mask

    def policy_from_features(
        self,
        frame_features: torch.Tensor,
        frame_mask: torch.Tensor,
        query_features: torch.Tensor,
        query_mask: torch.Tensor,
    ) -> AllocatorPolicy:
        """Predictor only, on encoder outputs (e.g. cached across PPO epochs: the encoder is frozen).

        Args:
            frame_features: [B, T, L, F]; frame_mask: [B, T] bool (every row has a True).
            query_features: [B, N, Q]; query_mask: [B, N] bool (every row has a True).
        """
        frame_features, query_features = frame_features.to(self.dtype), query_features.to(self.dtype)
        alpha, beta, h = self.predictor(frame_features, frame_mask, query_features, query_mask)
        return AllocatorPolicy(alpha, beta, frame_mask, h, self.config.min_scale, self.config.max_scale)

    def forward(self, frames, query: str | Sequence[str], frame_mask: torch.Tensor | None = None) -> AllocatorPolicy:
        """Per-frame Beta policy for a batch of videos (an image is a video with T = 1).

        Args:
            frames: uint8 RGB, either a padded [B, T, H, W, 3] tensor (with ``frame_mask``) or a list of B videos,
                each a [T_i, H, W, 3] tensor or a list of [H, W, 3] frames of one size. Videos may differ in size.
            query: the question, one per video or one string for all.
            frame_mask: [B, T] bool for a padded tensor, True on each row's first T_i frames.
        Returns:
            :class:`AllocatorPolicy` with alpha/beta [B, T_max].
        Raises:
            ValueError: malformed frames or mask, an empty question, or mismatched counts.
        """
        videos = self._as_videos(frames, frame_mask)
        queries = [query] * len(videos) if isinstance(query, str) or query is None else list(query)
        if len(queries) != len(videos):
            raise ValueError(f"query: expected one question per video ({len(videos)}), got {len(queries)}")
        for i, text in enumerate(queries):
            _check_query(text, "query" if len(queries) == 1 else f"query[{i}]")
        self.load_encoder()
        query_features, query_mask = self.encode_queries(queries)
        frame_features, mask = self.encode_frames(videos)
        return self.policy_from_features(frame_features, mask, query_features, query_mask)

    @torch.no_grad()
    def predict_scales(self, media: Sequence[torch.Tensor], text: str | None) -> list[list[float]]:
        """The ResAdapt processor's allocator hook: deterministic (Beta-mean) scale of every frame.

        Args:
            media: uint8 [T_i, H, W, 3] per media item (an image is T = 1); items are separate objects and do not
                see each other.
            text: the question (chat-template tokens already removed by the processor).
        Returns:
            One list of T_i python floats in [min_scale, max_scale] per item.
        Raises:
            ValueError: empty/missing question ("text: ..."), malformed or mismatched media.
        """
        _check_query(text, "text")
        if not isinstance(media, (list, tuple)) or not media:
            raise ValueError("media: expected a non-empty list of uint8 [T, H, W, 3] tensors")
        videos = [self._as_video(m, f"media[{i}]") for i, m in enumerate(media)]
        policy = self(videos, text)
        scales = policy.deterministic_scales().cpu()
        return [scales[i, : int(n)].tolist() for i, n in enumerate(policy.num_frames.tolist())]


def _saved_tokenizer(path, kwargs: dict):
    """The tokenizer stored with the weights by :meth:`ResAdaptAllocator.save_pretrained`, or None."""
    from transformers import AutoTokenizer
    from transformers.utils import cached_file

    names = ("cache_dir", "force_download", "local_files_only", "token", "revision")
    hub = {k: kwargs[k] for k in names if k in kwargs}
    subfolder = "/".join(p for p in (kwargs.get("subfolder", ""), QUERY_TOKENIZER_SUBFOLDER) if p)
    found = cached_file(
        path, "tokenizer_config.json", subfolder=subfolder, _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False, **hub,
    )
    return None if found is None else AutoTokenizer.from_pretrained(path, subfolder=subfolder, **hub)


ResAdaptConfig.register_for_auto_class()
ResAdaptAllocator.register_for_auto_class("AutoModel")

__all__ = ["AllocatorPolicy", "ResAdaptAllocator", "ResAdaptConfig"]
