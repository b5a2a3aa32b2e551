"""resadapt eval over several processes: the job sharding, the part-file merge (also of an interrupted run), and a
real 2-process ``torchrun`` (CPU, gloo) whose output must equal a single-process run's."""

import json
import os
import random
import socket
import subprocess
import sys
import time

import pytest

from resadapt_hf.evaluate import EvalConfig, NeedleBackend, build_jobs, evaluate, merge_parts, read_records, shard_jobs

TIMING_FIELDS = ("allocator_seconds", "backbone_seconds")
# small but complete: every allocator (the learned one a seeded random preset), two budgets, the vanilla reference
ALLOCATORS = ["learned", "prior", "fixed", "random", "vanilla"]
BUDGETS = [0.5, 0.25]
NUM_SAMPLES = 4
SYNTHETIC = {"num_frames": 4}
JOBS_PER_SAMPLE = (len(ALLOCATORS) - 1) * len(BUDGETS) + 1


def _without_timings(records):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def _key(record):
    return record["allocator"], record["budget"], record["sample_id"]


def _config(out, **overrides):
    values = dict(out=str(out), task="synthetic", allocators=ALLOCATORS, learned="tiny-statistics", budgets=BUDGETS,
                  num_samples=NUM_SAMPLES, synthetic=SYNTHETIC, progress=False)
    return EvalConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A single-process run of the settings the multi-process tests use."""
    out = tmp_path_factory.mktemp("one_process")
    results = evaluate(_config(out))
    return out, results, read_records(out / "records.jsonl")


# sharding -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_are_disjoint_complete_whole_samples_and_balanced(world_size):
    ids = [f"s{i}" for i in range(7)]
    jobs = build_jobs(ids, ["prior", "random", "vanilla"], [0.5, 0.25])
    assert len(jobs) == 7 * 5 and [j.index for j in jobs] == list(range(len(jobs)))
    shards = [shard_jobs(jobs, rank, world_size) for rank in range(world_size)]
    taken = [job for shard in shards for job in shard]
    assert sorted(taken) == sorted(jobs) and len(set(taken)) == len(jobs)  # complete, each job once
    owners = {}
    for rank, shard in enumerate(shards):
        assert [j.index for j in shard] == sorted(j.index for j in shard)  # job-list order within a shard
        for job in shard:
            assert owners.setdefault(job.sample_id, rank) == rank  # a sample is never split
    per_rank = [len({j.sample_id for j in shard}) for shard in shards]
    assert max(per_rank) - min(per_rank) <= 1
    # samples are dealt round-robin: sample i goes to rank i % world_size
    assert all(owners[f"s{i}"] == i % world_size for i in range(7))


def test_shards_do_not_depend_on_the_order_of_the_jobs():
    jobs = build_jobs([f"s{i}" for i in range(9)], ["learned", "fixed", "vanilla"], [0.75, 0.5, 0.25])
    shuffled = list(jobs)
    random.Random(0).shuffle(shuffled)
    for rank in range(4):
        assert shard_jobs(shuffled, rank, 4) == shard_jobs(jobs, rank, 4)
    # a resumed run shards what is left: still whole samples, dealt over the remaining ones
    pending = [j for j in jobs if j.sample_index not in (0, 1, 2)]
    assert {j.sample_id for j in shard_jobs(pending, 0, 2)} == {"s3", "s5", "s7"}


@pytest.mark.parametrize("rank, world_size", [(2, 2), (-1, 2), (0, 0), (0, True)])
def test_shard_refuses_a_bad_rank_or_world_size(rank, world_size):
    with pytest.raises(ValueError, match="rank|world_size"):
        shard_jobs([], rank, world_size)


# part files -----------------------------------------------------------------------------------------------------
def test_interrupted_multi_process_run_is_merged_on_resume(reference, tmp_path):
    """Simulate a 2-process run killed mid-way: some records already merged, the rest in two part files (one cut
    off mid-line). The next run merges the parts, recomputes only what is missing, and ends with the same folder
    as a run that was never interrupted."""
    _, results, records = reference
    merged, rank0, rank1 = records[:5], records[5:12:2], records[6:12:2]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in merged))
    (tmp_path / "records.part-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rank0))
    (tmp_path / "records.part-00001.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rank1) + json.dumps(records[12])[:30])
    config = _config(tmp_path)
    backend = NeedleBackend(config.needle_config(), budget_tolerance=config.budget_tolerance)
    again = evaluate(config, backbone=backend)
    assert backend.calls == len(records) - 12  # records[12] was cut off: recomputed with the rest
    assert again == results
    assert _without_timings(read_records(tmp_path / "records.jsonl")) == _without_timings(records)
    assert not list(tmp_path.glob("records.part-*"))


def test_merge_keeps_every_key_once_in_job_list_order(tmp_path):
    rec = lambda allocator, budget, sample_id, tag: {"allocator": allocator, "budget": budget,  # noqa: E731
                                                     "sample_id": sample_id, "tag": tag}
    (tmp_path / "records.jsonl").write_text(json.dumps(rec("prior", 0.5, "a", "kept")) + "\n")
    (tmp_path / "records.part-00001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        rec("vanilla", None, "b", "rank1"), rec("prior", 0.5, "a", "copy"), rec("prior", 0.9, "a", "old budget")]))
    (tmp_path / "records.part-00000.jsonl").write_text(json.dumps(rec("prior", 0.5, "b", "rank0")) + "\n")
    order = {job.key: job.index for job in build_jobs(["a", "b"], ["prior", "vanilla"], [0.5])}.get
    added = merge_parts(tmp_path, order)
    assert [r["tag"] for r in added] == ["rank0", "rank1", "old budget"]  # job order, then keys outside the list
    assert [r["tag"] for r in read_records(tmp_path / "records.jsonl")] == ["kept", "rank0", "rank1", "old budget"]
    assert not list(tmp_path.glob("records.part-*")) and merge_parts(tmp_path, order) == []


# a real torchrun ------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_equal_one_process(reference, tmp_path):
    one_out, results, records = reference
    out = tmp_path / "two_processes"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "resadapt_hf.evaluate", "--task", "synthetic", "--allocators", *ALLOCATORS, "--learned",
        "tiny-statistics", "--budgets", *map(str, BUDGETS), "--num-samples", str(NUM_SAMPLES), "--synthetic",
        json.dumps(SYNTHETIC), "--out", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-4000:]
    # the main process ran its shard only (samples 0 and 2 of 4), with the progress bar; the other printed nothing
    main_shard = 2 * JOBS_PER_SAMPLE
    assert "resadapt eval (shard 1 of 2)" in done.stderr and f"{main_shard}/{main_shard}" in done.stderr
    assert done.stdout.count("wrote ") == 1 and "vanilla" in done.stdout

    merged = read_records(out / "records.jsonl")
    keys = [_key(r) for r in merged]
    expected = {(a, None if a == "vanilla" else b, f"needle-{100_000 + i}") for i in range(NUM_SAMPLES)
                for a in ALLOCATORS for b in BUDGETS}
    assert len(keys) == len(set(keys)) == len(expected) == NUM_SAMPLES * JOBS_PER_SAMPLE and set(keys) == expected
    # the same records in the same order as one process (only the timings differ), the same results and settings
    assert _without_timings(merged) == _without_timings(records)
    assert json.loads((out / "results.json").read_text()) == results
    assert json.loads((out / "config.json").read_text()) == json.loads((one_out / "config.json").read_text())
    assert (out / "frontier.png").stat().st_size > 0 and (out / "scale_heatmap.png").stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "frontier.png", "records.jsonl",
                                                     "results.json", "scale_heatmap.png"]  # no part or temp file
    print(f"torchrun, 2 processes: {seconds:.1f} s")
