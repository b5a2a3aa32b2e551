"""The tiny reader's training glue (resadapt_hf.reader_training): per-token labels of the vision pretraining at any
chunk size, the chunk grids read back from the processor's video_grid_thw, and the training allocations."""

import numpy as np
import torch

from resadapt_hf.reader_task import ReaderTaskConfig, reader_sample
from resadapt_hf.reader_training import chunk_scales, chunk_token_grids, draw_scales, token_labels

BACKGROUND, IGNORED = 4, -100


def _record(box, needle_frame, answer="C"):
    record = reader_sample(0, seed=9)
    return {**record, "needle_box": list(box), "needle_frames": [needle_frame], "answer": answer}


def test_token_labels_at_scale_1_hand_computed():
    # a 56 px patch at top 56, left 28 of a 168 px frame: merged tokens (28 px) rows 2-3, columns 1-2 of chunk 1
    record = _record((56, 28, 56), needle_frame=3)
    labels = token_labels(record, ReaderTaskConfig(), [(6, 6)] * 4, token_side=28)
    assert labels.shape == (4 * 36,)
    chunk1 = labels[36:72].view(6, 6)
    expected = torch.full((6, 6), BACKGROUND)
    expected[2:4, 1:3] = 2  # "C"
    assert torch.equal(chunk1, expected)
    assert (labels[:36] == BACKGROUND).all() and (labels[72:] == BACKGROUND).all()


def test_token_labels_of_a_resized_chunk_hand_computed():
    # the needle chunk at 112 px (4 x 4 tokens): the patch becomes y in [37.3, 74.7], x in [18.7, 56]; token rows 1
    # and 2 are each 2/3 covered in y, column 1 fully and column 0 one third in x: (1|2, 1) get the class (2/3 of
    # the token), (1|2, 0) are ignored (2/9), every other token is background
    record = _record((56, 28, 56), needle_frame=0, answer="A")
    labels = token_labels(record, ReaderTaskConfig(), [(4, 4), (2, 2), (6, 6), (2, 2)], token_side=28)
    assert labels.shape == (16 + 4 + 36 + 4,)
    expected = torch.full((4, 4), BACKGROUND)
    expected[1:3, 1] = 0
    expected[1:3, 0] = IGNORED
    assert torch.equal(labels[:16].view(4, 4), expected)
    assert (labels[16:] == BACKGROUND).all()


def test_chunk_token_grids_expand_runs_per_video():
    # two videos of 4 chunks: [1, 1, 0.5, 0.5] -> runs (2 chunks of 12x12 patches, 2 of 6x6); uniform -> one row
    grid_thw = torch.tensor([[2, 12, 12], [2, 6, 6], [4, 8, 8]])
    assert chunk_token_grids(grid_thw, 4, merge=2) == [[(6, 6), (6, 6), (3, 3), (3, 3)], [(4, 4)] * 4]


def test_training_allocations_stay_in_the_allocator_range():
    assert chunk_scales([1.0, 0.5], 4) == [1.0, 1.0, 0.5, 0.5]
    rng = np.random.default_rng(0)
    draws = [draw_scales(rng, needle=5, num_frames=8) for _ in range(400)]
    assert all(len(d) == 8 and all(0.2 <= s <= 1.8 for s in d) and d[::2] == d[1::2] for d in draws)
    assert sum(d == [1.0] * 8 for d in draws) > 60  # about a quarter at native scale
    needle_sizes = {round(d[4], 1) for d in draws}
    assert min(needle_sizes) <= 0.3 and max(needle_sizes) >= 1.7  # the needle chunk is read at every size
