"""The synthetic needle task: a deterministic, resolution-sensitive environment for the RL machinery on CPU."""

import re

import pytest
import torch

from resadapt_hf.processing.frame_statistics import frame_detail_and_change
from resadapt_hf.processing.resize_plan import unit_size
from resadapt_hf.synthetic import (
    NeedleReader,
    NeedleTaskConfig,
    distinct_sizes,
    make_needle_dataset,
    make_needle_sample,
    parse_choice,
    reader_accuracy_curve,
    resize_frames,
)

NUM_VIDEOS = 32
ANSWER_FORMAT = re.compile(r"^<think>.+</think><answer>\\boxed\{([A-D])\}</answer>$", re.S)


@pytest.fixture(scope="module")
def config():
    return NeedleTaskConfig()


@pytest.fixture(scope="module")
def reader(config):
    return NeedleReader.calibrate(config)


@pytest.fixture(scope="module")
def samples(config):
    return [make_needle_sample(config, i) for i in range(NUM_VIDEOS)]


@pytest.fixture(scope="module")
def tables(reader, samples):
    return [reader.precompute(s) for s in samples]


def test_samples_are_deterministic_and_well_formed(config):
    a, b = make_needle_sample(config, 5), make_needle_sample(config, 5)
    assert torch.equal(a.frames, b.frames) and a.answer == b.answer and a.options == b.options
    assert not torch.equal(a.frames, make_needle_sample(config, 6).frames)
    assert not torch.equal(a.frames, make_needle_sample(NeedleTaskConfig(seed=1), 5).frames)
    assert a.frames.dtype == torch.uint8 and tuple(a.frames.shape) == (8, 128, 128, 3) == (8, *config.source_size, 3)
    assert len(a.options) == 4 and len(set(a.option_digits)) == 4
    assert a.options[a.answer_index] == f"{a.answer}. {a.glyph}" and a.answer in "ABCD"
    record = a.to_record()
    assert set(record) == {"frames", "question", "options", "answer", "problem_type", "needle_frames"}
    assert record["problem_type"] == "multiple_choice" and record["question"] == "Which digit appears in the video?"
    records = make_needle_dataset(config, 3)
    assert len(records) == 3 and torch.equal(records[2]["frames"], make_needle_sample(config, 2).frames)
    # calibration is deterministic too
    r1, r2 = NeedleReader.calibrate(config, num_videos=2), NeedleReader.calibrate(config, num_videos=2)
    assert all(torch.equal(r1.statistics[k][0], r2.statistics[k][0]) for k in r1.statistics)


def test_needle_frame_differs_from_distractors(config, samples):
    answers, positions = set(), set()
    for sample in samples[:8]:
        top, left, h, w = sample.glyph_box
        box = sample.frames[:, top : top + h, left : left + w].float()
        needle = sample.needle_frames[0]
        distractors = [t for t in range(config.num_frames) if t != needle]
        # distractors differ only by pixel noise; the needle adds a bright glyph
        gap = (box[needle] - box[distractors].mean(0)).mean()
        spread = (box[distractors] - box[distractors].mean(0)).mean(dim=(1, 2, 3)).abs().max()
        assert gap > 10 and gap > 5 * spread
        answers.add(sample.answer)
        positions.add(needle)
    assert len(answers) > 1 and len(positions) > 1
    two = make_needle_sample(NeedleTaskConfig(num_needles=2), 0)
    first, second = two.needle_frames
    assert second == first + 1


def test_reader_resolution_curve(config, reader, tables):
    # all frames at one scale: near chance at 0.2, reliable from 1.2 on
    acc = {s: reader.accuracy_at(tables, [s] * config.num_frames) for s in (0.2, 0.4, 0.8, 1.2, 1.8)}
    assert acc[0.2] <= 0.45
    assert acc[1.2] >= 0.85 and acc[1.8] >= 0.85
    assert acc[0.2] <= acc[0.4] < acc[0.8] <= acc[1.2] + 0.05
    assert reader_accuracy_curve(config, scales=(0.2,), num_videos=2, reader=reader).keys() == {0.2}


def test_only_the_needle_chunk_needs_resolution(config, reader, samples, tables):
    high = reader.accuracy_at(tables, [1.4] * config.num_frames)
    scales = []
    for sample in samples:
        row = [0.2] * config.num_frames
        chunk = sample.needle_frames[0] // 2 * 2
        row[chunk] = row[chunk + 1] = 1.4
        scales.append(row)
    adaptive = reader.accuracy_at(tables, scales)
    assert adaptive >= high - 0.07 and adaptive >= 0.85
    # ... at a fraction of the tokens
    unit = config.unit
    tokens = lambda s: (lambda hw: hw[0] * hw[1])(unit_size(unit, s)) // config.factor**2  # noqa: E731
    assert tokens(1.4) + 3 * tokens(0.2) < 0.5 * 4 * tokens(1.4)
    # the needle chunk low, everything else high: the reader fails
    starved = [[1.8 if abs(t // 2 - s.needle_frames[0] // 2) else 0.2 for t in range(8)] for s in samples]
    assert reader.accuracy_at(tables, starved) <= 0.5


def test_frame_statistics_see_the_needle(samples):
    # the Allocator's statistics encoder and the prior allocator need features that separate needle frames
    hits = sum(int(frame_detail_and_change(s.frames)[0].argmax()) in s.needle_frames for s in samples)
    assert hits >= 0.8 * len(samples)


def test_answer_format_and_table_agree_with_literal_path(config, reader, samples, tables):
    generator = torch.Generator().manual_seed(0)
    for sample, table in zip(samples[:6], tables[:6]):
        scales = (torch.rand(config.num_frames, generator=generator) * 1.6 + 0.2).tolist()
        chunks = resize_frames(sample.frames, scales, config)
        assert len(chunks) == 4 and all(c.dtype == torch.uint8 and c.shape[0] == 2 for c in chunks)
        for c, (a, b) in zip(chunks, zip(scales[::2], scales[1::2])):
            assert tuple(c.shape[1:3]) == unit_size(config.unit, (a + b) / 2)
        text = reader.answer(chunks, sample.options)
        match = ANSWER_FORMAT.match(text)
        assert match and parse_choice(text) == match.group(1) == table.predict(scales)
    batch = torch.rand(8, config.num_frames, generator=generator) * 1.6 + 0.2
    rewards = tables[0].rewards(batch)
    assert rewards.shape == (8,) and set(rewards.tolist()) <= {0.0, 1.0}
    assert sorted(reader.sizes) == distinct_sizes(config) and len(reader.sizes) == 13
    assert parse_choice("B") is None


def test_odd_frame_counts_and_non_square_frames():
    config = NeedleTaskConfig(num_frames=5, height=48, width=80, glyph_height=10, glyph_width=8)
    sample = make_needle_sample(config, 0)
    chunks = resize_frames(sample.frames, [1.0] * 5, config)
    assert [tuple(c.shape) for c in chunks] == [(2, 48, 80, 3)] * 3
    assert torch.equal(chunks[-1][0], chunks[-1][1])  # the trailing frame is padded by repetition
    reader = NeedleReader.calibrate(config, num_videos=2)
    table = reader.precompute(sample)
    assert table.scores.shape == (5, len(distinct_sizes(config)), 10)
    assert table.predict([0.37, 1.1, 0.93, 1.77, 0.21]) in "ABCD"


@pytest.mark.parametrize(
    "bad",
    [
        dict(num_needles=3), dict(num_needles=0), dict(num_frames=0), dict(height=60), dict(width=0),
        dict(glyph_height=70), dict(glyph_width=1), dict(glyph_alpha=0), dict(glyph_alpha=1.5), dict(noise_std=-1),
        dict(num_options=11), dict(num_options=1), dict(seed=-1), dict(min_scale=0), dict(max_scale=0.9),
        dict(factor=0), dict(noise_std=float("nan")), dict(num_frames=2.5),
    ],
)
def test_bad_config_values(bad):
    with pytest.raises(ValueError):
        NeedleTaskConfig(**bad)


def test_bad_call_arguments(config, reader, samples):
    with pytest.raises(ValueError, match="index"):
        make_needle_sample(config, -1)
    with pytest.raises(ValueError, match="frame_scales"):
        resize_frames(samples[0].frames, [1.0] * 3, config)
    with pytest.raises(ValueError, match=r"scales must be finite and within \[0.2, 1.8\]"):
        resize_frames(samples[0].frames, [0.0] * 8, config)  # the processor's own validator
    with pytest.raises(ValueError, match="options"):
        reader.answer(resize_frames(samples[0].frames, [1.0] * 8, config), ["A) three", "B) four"])
    with pytest.raises(ValueError, match="num_videos"):
        NeedleReader.calibrate(config, num_videos=0)


def test_needle_rollout_reads_resized_frames_and_reports_retention(config, reader):
    from resadapt_hf.rewards import accuracy_reward
    from resadapt_hf.rollout import GenerationSettings, Rollout, RolloutRequest
    from resadapt_hf.synthetic import NeedleRollout

    rollout = NeedleRollout(config, reader)
    assert isinstance(rollout, Rollout) and rollout.generates_text is False
    records = make_needle_dataset(config, 16)
    scales = torch.tensor([[1.4] * 8, [0.2] * 8, [0.2, 0.2, 1.2, 1.2, 0.6, 0.6, 1.8, 1.8]])
    requests = [RolloutRequest(record, record["frames"], scales) for record in records]
    results = rollout(requests, num_rollouts=2, generation=GenerationSettings())
    assert len(results) == 16
    high, low = [], []
    for index, (record, result) in enumerate(zip(records, results)):
        assert len(result.completions) == 3 and result.num_rollouts == 2
        # the literal path: the operator's resize, then the reader; the same answer N times (deterministic)
        sample = make_needle_sample(config, index)
        assert result.completions == [[reader.answer_sample(sample, s)] * 2 for s in scales.tolist()]
        sizes = [[tuple(c.shape[1:3]) for c in resize_frames(record["frames"], s, config)] for s in scales.tolist()]
        tokens = [sum((h // config.factor) * (w // config.factor) for h, w in chunks) for chunks in sizes]
        baseline = len(sizes[0]) * config.unit.base_tokens  # 4 chunks of 8 x 8 tokens
        assert result.retention.tolist() == pytest.approx([t / baseline for t in tokens])
        assert result.retention[0] > 1.0 > 0.2 > result.retention[1]
        scores = accuracy_reward(None, [result.completions[0][0], result.completions[1][0]],
                                 answer=[record["answer"]] * 2, problem_type=["multiple_choice"] * 2,
                                 options=[record["options"]] * 2)
        high.append(scores[0])
        low.append(scores[1])
    assert sum(high) / 16 >= 0.85 and sum(low) / 16 <= 0.5
    # the reader ignores generation settings: greedy, hot sampling and a 1-token limit give the same answers
    other = GenerationSettings(max_new_tokens=1, do_sample=False, temperature=3.0, prompts_per_call=0)
    assert rollout(requests[:4], num_rollouts=2, generation=other) == results[:4]
    with pytest.raises(TypeError, match="GenerationSettings"):
        rollout(requests[:1], num_rollouts=2, generation=None)


def test_needle_task_resizes_with_the_processors_operator(config, samples):
    """One operator: the needle task's chunks are the processor's resize_operator output, which is also what a
    ResAdaptProcessor produces for a chunk away from its scale-1 size (checked on a tiny Qwen2.5-VL)."""
    from resadapt_hf.processing.processing_resadapt import ResAdaptProcessor, resize_operator
    from resadapt_hf.tiny import build_tiny_processor

    frames = samples[0].frames
    scales = [0.5, 0.5, 1.3, 1.3, 0.8, 0.8, 1.0, 1.0]
    chunks = resize_frames(frames, scales, config)
    for k, chunk in enumerate(chunks):
        pair = frames[2 * k : 2 * k + 2].permute(0, 3, 1, 2).contiguous()
        size = tuple(chunk.shape[1:3])
        expected = pair if size == tuple(pair.shape[-2:]) else resize_operator(pair, size)
        assert torch.equal(chunk, expected.permute(0, 2, 3, 1))
    # the processor's own resize of a non-native chunk is that operator, with the backbone's processor as backend
    processor = ResAdaptProcessor.from_backbone(build_tiny_processor("qwen2_5_vl"))
    pair = frames[:2].permute(0, 3, 1, 2).contiguous()
    geometry = type("G", (), {"do_resize": True, "resample": None})()
    via_processor = processor._resize(processor.video_processor, pair, (56, 84), (112, 112), geometry)
    assert torch.equal(via_processor, resize_operator(pair, (56, 84)))
    with pytest.raises(ValueError, match="resample must be one of"):
        resize_operator(pair, (56, 84), "nearest")
