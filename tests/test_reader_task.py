"""The reader task (resadapt_hf.reader_task): hand-computed stripes, the record schema, seeded splits, the
needle's visibility to the prior's statistics, and clear errors on bad settings."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from resadapt_hf.data import load_records
from resadapt_hf.processing.frame_statistics import frame_detail_and_change
from resadapt_hf.processing.processing_resadapt import resize_operator
from resadapt_hf.reader_task import (
    LETTERS,
    OPTIONS,
    PATTERNS,
    SPLIT_SEEDS,
    WHEN_OPTIONS,
    WHEN_QUESTION,
    ReaderTaskConfig,
    needle_only_scales,
    pattern_tile,
    reader_records,
    reader_sample,
)


def test_pattern_tiles_hand_computed():
    # a quarter cycle per pixel: cos(pi / 2 * u) is 1, 0, -1, 0 along u
    expected = {
        0: [[1, 1, 1, 1], [0, 0, 0, 0], [-1, -1, -1, -1], [0, 0, 0, 0]],  # horizontal: u = y (the row)
        1: [[1, 0, -1, 0], [1, 0, -1, 0], [1, 0, -1, 0], [1, 0, -1, 0]],  # vertical: u = x (the column)
        2: [[1, 0, -1, 0], [0, -1, 0, 1], [-1, 0, 1, 0], [0, 1, 0, -1]],  # rising: u = x + y
        3: [[1, 0, -1, 0], [0, 1, 0, -1], [-1, 0, 1, 0], [0, -1, 0, 1]],  # falling: u = x - y
    }
    for pattern, tile in expected.items():
        np.testing.assert_allclose(pattern_tile(pattern, 4, 0.25), np.array(tile, dtype=np.float32), atol=1e-6)
    np.testing.assert_allclose(pattern_tile(1, 4, 0.25, phase=np.pi), -pattern_tile(1, 4, 0.25), atol=1e-6)
    # rising stripes are constant along lines that go up to the right: (y, x) and (y - 1, x + 1)
    tile = pattern_tile(2, 8, 0.3)
    np.testing.assert_allclose(tile[5, 2], tile[4, 3], atol=1e-6)


def test_record_schema_and_answer():
    record = reader_sample(3, seed=5)
    assert record["frames"].dtype == torch.uint8 and tuple(record["frames"].shape) == (8, 168, 168, 3)
    assert record["options"] == list(OPTIONS) and record["problem_type"] == "multiple_choice"
    assert record["answer"] == LETTERS[PATTERNS.index(record["pattern"])]
    assert record["needle_frames"][0] in range(8)
    assert 0.28 <= record["frequency"] <= 0.45
    top, left, side = record["needle_box"]
    assert side == 56 and top % 28 == 0 and left % 28 == 0 and max(top, left) <= 168 - 56
    assert load_records([record])[0]["answer"] == record["answer"]  # the project's data schema accepts it


def _detail(frames: torch.Tensor) -> torch.Tensor:
    """Per pixel, the magnitude of what a 5-px box blur removes (fine detail), ``[T, H, W]``."""
    luma = frames.float().mean(-1)[:, None]
    return (luma - F.avg_pool2d(luma, 5, 1, 2, count_include_pad=False))[:, 0].abs()


def test_needle_frame_holds_the_stripes_once():
    for index in range(6):
        record = reader_sample(index, seed=1)
        detail = _detail(record["frames"])
        top, left, side = record["needle_box"]
        needle = record["needle_frames"][0]
        inside = detail[needle, top + 2 : top + side - 2, left + 2 : left + side - 2].mean()
        outside = detail.clone()
        outside[needle, max(0, top - 2) : top + side + 2, max(0, left - 2) : left + side + 2] = 0
        local = F.avg_pool2d(outside[:, None], 14)  # mean detail per 14-px patch
        # amplitude 70 stripes against pixel noise of 6: the block is the only place with strong fine detail
        assert inside > 25 and local.amax() < inside / 3, (inside, local.amax())


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


def _orientation(crop: np.ndarray) -> int:
    """The pattern index whose orientation matches the strongest non-constant 2-D frequency of ``crop``."""
    n = crop.shape[0]
    window = np.hanning(n)
    spectrum = np.abs(np.fft.fft2((crop - crop.mean()) * window[:, None] * window[None, :]))
    spectrum[0, 0] = 0
    ky, kx = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    fy, fx = (k if k <= n // 2 else k - n for k in (ky, kx))
    if abs(fx) <= abs(fy) / 2:
        return 0  # varies along y only: horizontal stripes
    if abs(fy) <= abs(fx) / 2:
        return 1
    return 2 if fx * fy > 0 else 3  # an aliased frequency flips both signs, which keeps the orientation


def _ideal_reads(records, size: int) -> float:
    """How often the needle's orientation is read off its spectrum after the processor's resize operator takes the
    needle frame to ``size`` px (the patch is located from the record: this measures reading, not finding)."""
    hits = []
    for record in records:
        frame = record["frames"][record["needle_frames"][0]].permute(2, 0, 1)[None].float()
        small = resize_operator(frame, (size, size))[0].mean(0).numpy()
        top, left, side = record["needle_box"]
        k = size / record["frames"].shape[1]
        y, x, n = math.ceil(top * k), math.ceil(left * k), int(side * k) - 1
        hits.append(_orientation(small[y : y + n, x : x + n]) == PATTERNS.index(record["pattern"]))
    return sum(hits) / len(hits)


def test_reading_the_stripes_needs_resolution_graded_by_size():
    """The point of the task, for a spectral reader that is told where the patch is (an upper bound on what a model
    can do): every step down the token grid loses more videos, the floor (56 px) is near chance (0.25), the full
    168 px reads every one, and upscaling keeps them."""
    records = reader_records(120, seed=SPLIT_SEEDS["validation"])
    reads = {size: _ideal_reads(records, size) for size in (56, 84, 112, 140, 168, 224)}
    assert reads[56] <= 0.4 and reads[168] == 1.0 and reads[224] >= 0.95, reads
    steps = [reads[s] for s in (56, 84, 112, 140, 168)]
    assert all(b >= a + 0.05 for a, b in zip(steps, steps[1:])), reads


@pytest.mark.parametrize("kwargs, match", [
    ({"num_frames": 3}, "num_frames must be an even int"),
    ({"size": 100}, r"size must be a positive multiple of grid \(28\)"),
    ({"block": 42}, r"block must be a multiple of grid \(28\) in \[28, size=168\]"),
    ({"block": 196}, r"block must be a multiple of grid \(28\) in \[28, size=168\]"),
    ({"frequencies": (0.3, 0.5)}, r"frequencies must be \(low, high\) with 0 < low <= high < 0.5"),
    ({"frequencies": (0.4, 0.3)}, r"frequencies must be \(low, high\)"),
    ({"frequencies": (0.3,)}, r"frequencies must be \(low, high\)"),
    ({"amplitude": 200}, r"amplitude must be in \[1, 127\]"),
    ({"grid": 2}, "grid must be an int >= 4"),
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
        pattern_tile(4, 8, 0.3)
    with pytest.raises(ValueError, match=r"frequency must be in \(0, 0.5\)"):
        pattern_tile(0, 8, 0.5)


def test_when_question_asks_for_the_needle_quarter_of_the_same_video():
    which, when = reader_sample(11, seed=3), reader_sample(11, seed=3, question="when")
    assert torch.equal(which["frames"], when["frames"]) and when["question_kind"] == "when"
    assert when["question"] == WHEN_QUESTION and when["options"] == list(WHEN_OPTIONS)
    for record in reader_records(40, seed=3, question="when"):
        # 8 frames: frames 0-1 are the first quarter (A), 2-3 the second (B), ...
        assert record["answer"] == "ABCD"[record["needle_frames"][0] // 2]
    answers = [r["answer"] for r in reader_records(200, question="when")]
    assert min(answers.count(letter) for letter in LETTERS) >= 30
    with pytest.raises(ValueError, match=r"question must be one of \('which_way', 'when'\)"):
        reader_sample(0, question="where")
    with pytest.raises(ValueError, match="question 'when' needs num_frames divisible by 4"):
        reader_sample(0, config=ReaderTaskConfig(num_frames=6), question="when")
