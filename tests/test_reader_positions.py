"""benchmarks/reader_positions.py: the deliberately wrong temporal positions it measures the reader with, on the
prepared tiny reader (the positions are checked, not the answers), and a smoke run of the whole benchmark."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from resadapt_hf.loading import load_backbone
from resadapt_hf.processing.processing_resadapt import ResAdaptProcessor
from resadapt_hf.reader_task import reader_records
from resadapt_hf.reader_training import ReaderBatches
from resadapt_hf.rewards import SYSTEM_PROMPT
from resadapt_hf.rollout import BackboneRollout

REPO = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("reader_positions", REPO / "benchmarks" / "reader_positions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prepared():
    model, backbone_processor = load_backbone("tiny-reader", device="cpu")
    processor = ResAdaptProcessor.from_backbone(backbone_processor)
    rollout = BackboneRollout(model, processor, system_prompt=SYSTEM_PROMPT)
    return model, ReaderBatches(rollout, processor)


def _video_temporal_ids(model, inputs, row):
    keys = ("video_grid_thw", "attention_mask", "second_per_grid_ts", "mm_token_type_ids")
    positions, _ = model.model.get_rope_index(inputs["input_ids"], image_grid_thw=None,
                                              **{k: inputs[k] for k in keys})
    return positions[0, row, inputs["mm_token_type_ids"][row] == 2]


def test_wrong_temporal_positions_hand_checked(prepared):
    model, batches = prepared
    bench = _benchmark()
    records = bench.with_frame_rate(reader_records(2, question="when"))
    # video 1 has mixed chunk sizes: 36, 9, 4 and 121 tokens
    inputs, _ = batches.encode(records, [[1.0] * 8, [1.0, 1.0, 0.5, 0.5, 0.2, 0.2, 1.8, 1.8]])
    assert inputs["second_per_grid_ts"].tolist() == [1.0, 1.0]  # 2 fps clips: chunks are 2 temporal ids apart
    correct = _video_temporal_ids(model, inputs, 1)
    start = int(correct[0])
    chunk_of_token = torch.repeat_interleave(torch.arange(4), torch.tensor([36, 9, 4, 121]))
    assert torch.equal(correct, start + 2 * chunk_of_token)
    with bench.temporal_positions(model, "equal"):
        assert (_video_temporal_ids(model, inputs, 1) == start).all()
    with bench.temporal_positions(model, "reversed"):
        assert torch.equal(_video_temporal_ids(model, inputs, 1), start + 2 * (3 - chunk_of_token))
    with bench.temporal_positions(model, "correct"):
        assert torch.equal(_video_temporal_ids(model, inputs, 1), correct)
    assert torch.equal(_video_temporal_ids(model, inputs, 1), correct)  # the prepared positions are back
    with pytest.raises(ValueError, match="mode must be one of"):
        with bench.temporal_positions(model, "shuffled"):
            pass


def test_benchmark_smoke(tmp_path):
    out = tmp_path / "results.json"
    bench = _benchmark()
    assert bench.main(["--steps", "2", "--eval_every", "1", "--videos", "4", "--batch_size", "4", "--threads", "1",
                       "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [row["step"] for row in data["curve"]] == [1, 2]
    rows = data["rows"]
    assert len(rows) == 2 * 2 * 3  # questions x allocations x position modes
    assert all(0 <= row["accuracy"] <= 1 for row in rows.values())
    assert "follows_positions" in rows["when | scale 1 | reversed"]
