"""Dataset schema: loading from files and datasets, validation that names the bad row, decoding once."""

import json

import numpy as np
import pytest

from resadapt_hf.data import decode_record, load_records, validate_record
from resadapt_hf.sample_clips import write_demo_clip


def _row(**overrides):
    row = {"frames": np.zeros((4, 16, 16, 3), np.uint8), "question": "Which digit?", "answer": "B",
           "problem_type": "multiple_choice", "options": ["A. 1", "B. 2", "C. 3", "D. 4"]}
    row.update(overrides)
    return row


def test_jsonl_with_relative_video_paths(tmp_path):
    write_demo_clip(tmp_path / "clip.mp4", num_frames=8)
    rows = [{"video": "clip.mp4", "question": "What moves?", "answer": "a red square", "problem_type": "free_form"}]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    records = load_records(tmp_path / "data.jsonl")
    decoded = decode_record(records[0], num_frames=4)
    assert decoded["frames"].shape[0] == 4 and decoded["frame_indices"] == [0, 2, 5, 7]
    assert len(decoded["timestamps"]) == 4


def test_hf_datasets_source():
    from datasets import Dataset, DatasetDict

    data = Dataset.from_list([{"frames": np.zeros((2, 8, 8, 3), np.uint8).tolist(), "question": "q", "answer": "1",
                               "problem_type": "numerical"}])
    assert load_records(data)[0]["answer"] == "1"
    assert len(load_records(DatasetDict(train=data))) == 1
    with pytest.raises(ValueError, match="split"):
        load_records(DatasetDict(train=data), split="test")


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"question": ""}, "question"),
        ({"problem_type": "essay"}, "problem_type"),
        ({"options": None}, "options"),
        ({"video": "x.mp4"}, "exactly one of"),
        ({"problem_type": "grounded_qa"}, "segments"),
    ],
)
def test_bad_rows_are_named(bad, message):
    with pytest.raises(ValueError, match=f"row 3: .*{message}"):
        validate_record(_row(**bad), 3)
    with pytest.raises(ValueError, match="row 1"):
        load_records([_row(), _row(**bad)])
