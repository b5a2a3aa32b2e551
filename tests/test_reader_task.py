"""The reader task (resadapt_hf.reader_task): hand-computed patterns, the record schema, seeded splits, the
needle's visibility to the prior's statistics, and clear errors on bad settings."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from resadapt_hf.data import load_records
from resadapt_hf.processing.frame_statistics import frame_detail_and_change
from resadapt_hf.reader_task import (
    LETTERS,
    OPTIONS,
    PATTERNS,
    SPLIT_SEEDS,
    ReaderTaskConfig,
    needle_only_scales,
    pattern_tile,
    reader_records,
    reader_sample,
)


def test_pattern_tiles_hand_computed():
    o, i = -1.0, 1.0
    expected = {
        0: [[o, o, i, i], [o, o, i, i], [i, i, o, o], [i, i, o, o]],  # checkerboard of 2-px cells
        1: [[o, o, o, o], [o, o, o, o], [i, i, i, i], [i, i, i, i]],  # horizontal stripes
        2: [[o, o, i, i], [o, o, i, i], [o, o, i, i], [o, o, i, i]],  # vertical stripes
    }
    for pattern, tile in expected.items():
        np.testing.assert_array_equal(pattern_tile(pattern, 4, 2), np.array(tile, dtype=np.float32))
    # diagonal stripes of 1-px cells: (x + y // 2) % 2, x the column, y the row; distinct from the checkerboard
    diagonal = [[o, i, o, i], [o, i, o, i], [i, o, i, o], [i, o, i, o]]
    np.testing.assert_array_equal(pattern_tile(3, 4, 1), np.array(diagonal, dtype=np.float32))
    tiles = [pattern_tile(p, 8, 1).tobytes() for p in range(4)]
    assert len(set(tiles)) == 4


def test_record_schema_and_answer():
    record = reader_sample(3, seed=5)
    assert record["frames"].dtype == torch.uint8 and tuple(record["frames"].shape) == (8, 168, 168, 3)
    assert record["options"] == list(OPTIONS) and record["problem_type"] == "multiple_choice"
    assert record["answer"] == LETTERS[PATTERNS.index(record["pattern"])]
    assert record["needle_frames"][0] in range(8)
    top, left, side = record["needle_box"]
    assert side == 28 and top % 28 == 0 and left % 28 == 0 and max(top, left) <= 168 - 28
    assert load_records([record])[0]["answer"] == record["answer"]  # the project's data schema accepts it


def test_needle_frame_holds_the_pattern_once():
    config = ReaderTaskConfig()
    for index in range(6):
        record = reader_sample(index, seed=1)
        frames = record["frames"].float().mean(-1)  # luma-ish
        tile = torch.from_numpy(pattern_tile(PATTERNS.index(record["pattern"]), config.block, record["cell"]))
        for t in range(config.num_frames):
            frame = frames[t][None, None]
            local = frame - F.avg_pool2d(frame, 5, 1, 2, count_include_pad=False)
            # correlation with the tile at every position, per pixel: ~amplitude at the block, small elsewhere
            scores = F.conv2d(local, tile[None, None])[0, 0] / config.block**2
            if t != record["needle_frames"][0]:
                assert scores.abs().max() < 0.25 * config.amplitude
                continue
            assert scores.max() > 0.7 * config.amplitude
            y, x = divmod(int(scores.argmax()), scores.shape[1])
            far = torch.ones_like(scores, dtype=torch.bool)
            far[max(0, y - config.block) : y + config.block, max(0, x - config.block) : x + config.block] = False
            assert scores[far].abs().max() < 0.25 * config.amplitude


def test_needle_only_scales_hand_computed():
    record = reader_sample(0, seed=5)
    record["needle_frames"] = [5]  # chunk 2 holds frames 4 and 5
    assert needle_only_scales(record) == [0.2, 0.2, 0.2, 0.2, 1.0, 1.0, 0.2, 0.2]
    assert needle_only_scales(record, high=1.5, low=0.3)[3:6] == [0.3, 1.5, 1.5]


def test_same_stream_same_video_and_splits_differ():
    a, b = reader_sample(7, seed=0), reader_sample(7, seed=0)
    assert torch.equal(a["frames"], b["frames"]) and a["answer"] == b["answer"]
    train = {reader_sample(i, SPLIT_SEEDS["train"])["frames"].numpy().tobytes() for i in range(20)}
    test = {r["frames"].numpy().tobytes() for r in reader_records(20)}  # default: the held-out test split
    assert not train & test
    assert len(SPLIT_SEEDS) == len(set(SPLIT_SEEDS.values()))


def test_answers_are_balanced():
    answers = [r["answer"] for r in reader_records(200, seed=SPLIT_SEEDS["test"])]
    counts = [answers.count(letter) for letter in LETTERS]
    assert min(counts) >= 30, counts  # each pattern about a quarter of the time


def test_prior_statistics_see_the_needle_frame():
    """The Allocator's statistics and the prior read frame detail at coarse resolution: the needle frame must be the
    most detailed frame of its video, or no allocator could find it."""
    hits = 0
    records = reader_records(40, seed=SPLIT_SEEDS["validation"])
    for record in records:
        detail, _ = frame_detail_and_change(record["frames"])
        hits += int(detail.argmax()) == record["needle_frames"][0]
    assert hits >= 38, hits


def _template_reads(records, size: int) -> dict[int, float]:
    """Per cell size: how often a matched filter names the pattern of the needle block after an antialiased resize
    of the needle frame to ``size`` px and back (what survives the processor's resize to that size)."""
    config = ReaderTaskConfig()
    hits: dict[int, list[bool]] = {}
    for record in records:
        templates = torch.stack([torch.from_numpy(pattern_tile(p, config.block, record["cell"])) for p in range(4)])
        frame = record["frames"][record["needle_frames"][0]].permute(2, 0, 1)[None].float()
        small = F.interpolate(frame, size=(size, size), mode="bilinear", antialias=True)
        back = F.interpolate(small, size=frame.shape[-2:], mode="bilinear", antialias=True)[0].mean(0)
        sharp = frame[0].mean(0)
        # the block that holds the pattern (found on the original frame: we test reading, not finding)
        energy = (sharp - F.avg_pool2d(sharp[None, None], 3, 1, 1)[0, 0]).abs()
        windows = F.avg_pool2d(energy[None, None], config.block, 1)[0, 0]  # every block position, to the pixel
        y, x = divmod(int(windows.argmax()), windows.shape[1])
        crop = back[y : y + config.block, x : x + config.block]
        guess = int((templates * (crop - crop.mean())).sum((-1, -2)).argmax())
        hits.setdefault(record["cell"], []).append(guess == PATTERNS.index(record["pattern"]))
    return {cell: sum(v) / len(v) for cell, v in hits.items()}


def test_pattern_needs_resolution_by_cell_size():
    """The point of the task, for a matched filter that is told where the block is (an upper bound on what a reader
    can do): at scale 1 (168 px) both cell sizes are read; at half size (84 px) the 1-px patterns are gone while
    most 2-px ones survive, so a uniform downscale loses the fine half of the videos first."""
    records = reader_records(120, seed=SPLIT_SEEDS["validation"])
    full, half = (_template_reads(records, size) for size in (168, 84))
    assert min(full.values()) >= 0.9, full
    assert half[1] <= 0.4 and half[2] >= 0.7, half


@pytest.mark.parametrize("kwargs, match", [
    ({"num_frames": 3}, "num_frames must be an even int"),
    ({"size": 100}, "size must be a positive multiple of block"),
    ({"cells": (0,)}, r"cells must be ints in \[1, block // 2"),
    ({"cells": ()}, r"cells must be ints in \[1, block // 2"),
    ({"amplitude": 200}, r"amplitude must be in \[1, 127\]"),
    ({"block": 2}, "block must be an int >= 4"),
])
def test_bad_config_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReaderTaskConfig(**kwargs)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        reader_records(0)
    with pytest.raises(ValueError, match="index must be an int >= 0"):
        reader_sample(-1)
    with pytest.raises(ValueError, match=r"pattern must be in \[0, 3\]"):
        pattern_tile(4, 8, 2)
