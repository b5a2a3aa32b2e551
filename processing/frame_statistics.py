"""Cheap, weight-free per-frame statistics: how much detail a frame has and how much it changes.

Shared by the training-free prior allocator (``prior_allocator.py``) and the Allocator's ``statistics`` encoder
(``modeling_resadapt.py``): both need features that *see* small, resolution-sensitive content (text, glyphs,
fine texture), which frozen random encoders do not (see IMPLEMENTATION_NOTES, synthetic needle task).

Per frame, on a ``grid x grid`` layout of patches, :func:`frame_statistic_tokens` returns
``FRAME_STATISTIC_CHANNELS`` channels:

0. gradient energy (mean ``|dx| + |dy|`` of luma): detail;
1. downscale loss (luma minus its 2x down-and-up-sampled copy, mean absolute): detail that a lower
   resolution would destroy;
2. Laplacian energy: the finest detail;
3. luma mean;  4. luma standard deviation;  5. chroma energy (mean ``|R - G| + |B - G|``);
6. change to the previous frame;  7. change to the next frame (mean absolute luma difference; the edge frames
   reuse their only neighbour).

Frames are first brought to at most ``work_size`` pixels on the long side (area interpolation), so the cost does
not grow with the source resolution. Values are in [0, 1]-ish units of 8-bit intensity / 255.

Ships flat next to the weights on the Hub (torch only); ``modeling/frame_statistics.py`` is a symlink to this file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FRAME_STATISTIC_CHANNELS = 8
DETAIL_CHANNELS = (0, 1, 2)
CHANGE_CHANNELS = (6, 7)
_LUMA = (0.299, 0.587, 0.114)


def _to_working_frames(frames: torch.Tensor, work_size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, h, w] in [0, 1] with ``max(h, w) <= work_size``."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {tuple(frames.shape)} {frames.dtype}")
    if frames.shape[0] == 0:
        raise ValueError("frames: need at least one frame")
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)
    height, width = x.shape[-2:]
    if max(height, width) > work_size:
        ratio = work_size / max(height, width)
        size = (max(1, round(height * ratio)), max(1, round(width * ratio)))
        x = F.interpolate(x, size=size, mode="area")
    return x


def frame_statistic_tokens(frames: torch.Tensor, grid: int = 8, work_size: int = 256) -> torch.Tensor:
    """Per-patch statistics of each frame.

    Args:
        frames: uint8 [T, H, W, 3] RGB frames of ONE video (or a single image with T = 1).
        grid: patches per side; every frame gives ``grid * grid`` tokens.
        work_size: long side (pixels) the statistics are computed at.

    Returns:
        float32 [T, grid * grid, FRAME_STATISTIC_CHANNELS], on ``frames.device``.
    """
    x = _to_working_frames(frames, work_size)
    luma = (x * torch.tensor(_LUMA, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)  # [T, 1, h, w]
    dx = F.pad((luma[..., :, 1:] - luma[..., :, :-1]).abs(), (0, 1, 0, 0))
    dy = F.pad((luma[..., 1:, :] - luma[..., :-1, :]).abs(), (0, 0, 0, 1))
    gradient = dx + dy
    h, w = luma.shape[-2:]
    coarse = F.interpolate(
        F.interpolate(luma, size=(max(1, h // 2), max(1, w // 2)), mode="area"), size=(h, w), mode="bilinear",
        align_corners=False,
    )
    downscale_loss = (luma - coarse).abs()
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=x.device).view(1, 1, 3, 3)
    laplacian = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), kernel).abs()
    chroma = (x[:, 0:1] - x[:, 1:2]).abs() + (x[:, 2:3] - x[:, 1:2]).abs()
    if luma.shape[0] > 1:
        step = (luma[1:] - luma[:-1]).abs()
        previous = torch.cat([step[:1], step])
        following = torch.cat([step, step[-1:]])
    else:
        previous = following = torch.zeros_like(luma)

    def pooled(m: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(m, grid)  # [T, 1, grid, grid]

    luma_mean = pooled(luma)
    luma_std = (pooled(luma * luma) - luma_mean**2).clamp_min(0).sqrt()
    channels = [
        pooled(gradient), pooled(downscale_loss), pooled(laplacian), luma_mean, luma_std, pooled(chroma),
        pooled(previous), pooled(following),
    ]
    return torch.cat(channels, dim=1).flatten(2).transpose(1, 2).contiguous()  # [T, grid*grid, C]


def standardised_statistic_tokens(tokens: torch.Tensor, floor: float = 1e-3, clip: float = 8.0) -> torch.Tensor:
    """Encoder input made from :func:`frame_statistic_tokens` of one video: what stands out, where, and how much.

    The raw statistics are small (about 0.01 to 0.6) and dominated by what every frame shares, so after a
    randomly initialised projection and the predictor's LayerNorms a frame with a small glyph differs from its
    neighbours by well under 1% of the feature norm (measured: 0.3% after the Beta head's LayerNorm, so the head
    gave every frame the same scale). And a glyph fills one patch of ``grid**2``: attention pooling, uniform at
    initialisation, averages it away (its z-score of about 8 becomes 8/64 against patch noise of the same size).
    Three views fix both without learned statistics:

    * the z-score of each channel over all frames and patches of the video (clipped to ``[-clip, clip]``): a
      patch with a glyph, or a frame that changes, stands out by several units whatever the video's overall level;
    * the frame's largest z-score per channel, repeated on each of its patches: whether the frame holds such an
      outlier anywhere survives any pooling (measured: a supervised needle-vs-distractor fit of the tiny Allocator
      went from no separation to full separation, and the CAPO policy could only then tell needle frames apart);
    * ``log10(value + floor)``: the absolute level (a detailed video needs more pixels than a flat one).

    Args:
        tokens: float [T, P, C] statistics of one video.
    Returns:
        float [T, P, 3 * C]: z-scores in channels ``[0, C)``, per-frame maxima of the z-scores in ``[C, 2C)``,
        log levels in ``[2C, 3C)``.
    """
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be [T, P, C], got shape {tuple(tokens.shape)}")
    mean = tokens.mean(dim=(0, 1), keepdim=True)
    # a channel constant over the video (e.g. change of a single image) has no outliers: std floor keeps z = 0
    std = tokens.std(dim=(0, 1), keepdim=True, unbiased=False).clamp_min(floor)
    z = ((tokens - mean) / std).clamp(-clip, clip)
    frame_max = z.amax(dim=1, keepdim=True).expand_as(z)
    return torch.cat([z, frame_max, torch.log10(tokens.clamp_min(0) + floor)], dim=-1)


def frame_detail_and_change(frames: torch.Tensor, grid: int = 8, work_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame-level summaries [T] each: detail (mean of the busiest quarter of patches, so a small dense region
    such as a caption or a glyph counts) and change (mean absolute difference to the neighbouring frames)."""
    tokens = frame_statistic_tokens(frames, grid=grid, work_size=work_size)
    detail_map = tokens[..., list(DETAIL_CHANNELS)].sum(-1)  # [T, P]
    top = max(1, detail_map.shape[1] // 4)
    detail = detail_map.topk(top, dim=1).values.mean(1)
    change = tokens[..., list(CHANGE_CHANNELS)].mean(dim=(1, 2))
    return detail, change
