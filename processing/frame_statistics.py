"""Cheap, weight-free per-frame statistics: how much detail a frame has and how much it changes.

Used by the Allocator's ``statistics`` encoder (``modeling_resadapt.py``) and the training-free prior allocator
(``prior_allocator.py``): both need features that *see* small, resolution-sensitive content (text, glyphs, fine
texture), which frozen randomly initialised encoders do not (on the project's synthetic needle task a random
SmolVLM-style encoder could not tell the needle frame from its neighbours; these statistics can).

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
not grow with the source resolution. Values are in [0, 1]-ish units of 8-bit intensity / 255. The trained
statistics encoder depends on these exact numbers: change them only together with a retrained encoder.

The prior's fast path, :func:`prior_detail_and_change`, computes the same detail and change summaries as
:func:`frame_detail_and_change` but (1) downsamples the *uint8* frames with an antialiased bilinear filter
(:func:`downsample_frames`, torch's vectorised uint8 kernel on the channels-last layout decoded frames already
have) instead of converting full-resolution frames to float and area-resizing them, and (2) computes only the
channels it needs, with shifted differences instead of a one-channel 3x3 convolution. On frames already within
``work_size`` the two agree to float rounding; on larger frames they differ only by the downsampling filter.
Costs are in ``docs/prior.md``.

Ships flat next to the weights on the Hub (torch only); ``modeling/frame_statistics.py`` is a symlink to this file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FRAME_STATISTIC_CHANNELS = 8
DETAIL_CHANNELS = (0, 1, 2)
CHANGE_CHANNELS = (6, 7)
_LUMA = (0.299, 0.587, 0.114)


def _check_frames(frames: torch.Tensor) -> None:
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames must be a torch.Tensor (uint8 [T, H, W, 3]), got {type(frames).__name__}")
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {tuple(frames.shape)} {frames.dtype}")
    if frames.shape[0] == 0:
        raise ValueError("frames: need at least one frame")


def working_size(height: int, width: int, work_size: int) -> tuple[int, int]:
    """(h, w) the statistics are computed at: the frame itself if its long side is within ``work_size``, else the
    aspect-preserving size with long side ``work_size`` (each side rounded, at least 1)."""
    if isinstance(work_size, bool) or not isinstance(work_size, (int, float)) or not 1 <= work_size < float("inf"):
        raise ValueError(f"work_size must be a finite number >= 1 (pixels on the long side), got {work_size!r}")
    if max(height, width) <= work_size:
        return height, width
    ratio = work_size / max(height, width)
    return max(1, round(height * ratio)), max(1, round(width * ratio))


def _to_working_frames(frames: torch.Tensor, work_size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, h, w] in [0, 1] with ``max(h, w) <= work_size``."""
    _check_frames(frames)
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)
    height, width = x.shape[-2:]
    size = working_size(height, width, work_size)
    if size != (height, width):
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


def downsample_frames(frames: torch.Tensor, work_size: int = 256) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> uint8 [T, 3, h, w] at :func:`working_size`, antialiased bilinear (a triangle filter
    widened by the reduction factor, as torchvision's ``resize(..., antialias=True)``); returned as is (a view) when
    the frames are already small enough.

    Resizing the uint8 frames directly is what makes this cheap: torch has a vectorised uint8 kernel for the
    channels-last memory layout that decoded ``[T, H, W, 3]`` frames already have (permuting gives it for free);
    converting a full-resolution frame to float alone costs several times more than this resize.
    """
    _check_frames(frames)
    x = frames.permute(0, 3, 1, 2)
    height, width = x.shape[-2:]
    size = working_size(height, width, work_size)
    if size == (height, width):
        return x
    if x.device.type == "cpu":
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    # torch's antialiased uint8 kernel is CPU-only; elsewhere filter in float and round back (same filter)
    y = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def detail_and_change_from_luma(luma: torch.Tensor, grid: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame-level detail and change [T] each from luma [T, 1, h, w] in [0, 1]: the summaries of
    :func:`frame_detail_and_change` (channels 0-2 and 6-7 of :func:`frame_statistic_tokens`, same definitions),
    computed without the channels the prior does not use.

    detail: per patch, gradient energy + downscale loss + Laplacian energy, averaged over the busiest quarter of the
    ``grid x grid`` patches. change: mean absolute luma difference to the previous and the next frame (the edge
    frames reuse their only neighbour; 0 for a single frame), averaged over patches.
    """
    if luma.ndim != 4 or luma.shape[1] != 1 or luma.shape[0] == 0:
        raise ValueError(f"luma must be [T, 1, h, w] with T >= 1, got shape {tuple(luma.shape)}")
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be an integer >= 1, got {grid!r}")
    # Few whole-tensor ops, written into one buffer (no padded copies, one abs and one pooling for every map):
    # each op is a synchronisation point of torch's thread pool, and with other processes competing for the cores
    # that, not arithmetic, dominated the measured cost. Edge-slice assignments touch T * h (or T * w) values only.
    frames, _, h, w = luma.shape
    maps = luma.new_empty((5 * frames - 1, 1, h, w))  # dx, dy, laplacian, downscale loss: T each; change: T - 1
    dx, dy, laplacian, loss, step = maps.split([frames, frames, frames, frames, frames - 1])
    torch.sub(luma[..., :, 1:], luma[..., :, :-1], out=dx[..., :, :-1])  # forward differences, 0 past the edge
    dx[..., :, -1] = 0
    torch.sub(luma[..., 1:, :], luma[..., :-1, :], out=dy[..., :-1, :])
    dy[..., -1, :] = 0
    # 4-neighbour Laplacian with replicate padding = forward minus backward difference (the backward difference of
    # the first column/row is 0 under replicate padding): reuses dx/dy instead of a slow one-channel convolution
    torch.add(dx, dy, out=laplacian)
    laplacian[..., :, 1:] -= dx[..., :, :-1]
    laplacian[..., 1:, :] -= dy[..., :-1, :]
    coarse = F.interpolate(
        F.interpolate(luma, size=(max(1, h // 2), max(1, w // 2)), mode="area"), size=(h, w), mode="bilinear",
        align_corners=False,
    )
    torch.sub(luma, coarse, out=loss)
    torch.sub(luma[1:], luma[:-1], out=step)
    pooled = F.adaptive_avg_pool2d(maps.abs_(), grid).flatten(1)  # [5T - 1, P]
    detail_map = pooled[:4 * frames].view(4, frames, -1).sum(0)  # pooling is linear: sum of the pooled maps
    top = max(1, detail_map.shape[1] // 4)
    detail = detail_map.topk(top, dim=1).values.mean(1)
    if frames == 1:
        return detail, torch.zeros_like(detail)
    steps = pooled[4 * frames :].mean(1)  # [T - 1]: mean absolute difference of each consecutive pair
    return detail, (torch.cat([steps[:1], steps]) + torch.cat([steps, steps[-1:]])) / 2


def prior_detail_and_change(
    frames: torch.Tensor, grid: int = 8, work_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """The prior's statistics: :func:`frame_detail_and_change`'s detail and change [T] of uint8 [T, H, W, 3] frames,
    measured on :func:`downsample_frames` (antialiased uint8 resize to ``work_size`` on the long side) instead of
    an area resize of float frames. Equal to :func:`frame_detail_and_change` to float rounding when the frames are
    within ``work_size``. Deterministic: no randomness, nothing learned."""
    # the small copy in channels-last layout whatever the input's layout (a no-op for decoded [T, H, W, 3] frames):
    # the 1x1 convolution below is several times slower on channels-first memory
    small = downsample_frames(frames, work_size).contiguous(memory_format=torch.channels_last).float()
    # luma as a 1x1 convolution: one op, and the fastest form measured
    weights = torch.tensor(_LUMA, dtype=small.dtype, device=small.device).div_(255.0).view(1, 3, 1, 1)
    return detail_and_change_from_luma(F.conv2d(small, weights), grid)
