"""``resadapt train`` under ``torchrun --nproc_per_node 2`` (gloo, CPU): the CLI's defaults work with no
workaround flag, every rank ends with the same Allocator, and it equals a 1-process run of the same global batch."""

import os
import socket
import subprocess
import sys

import torch
from safetensors.torch import load_file

ARGS = ["train", "--task", "synthetic", "--allocator", "tiny-statistics", "--num_generations", "4",
        "--max_steps", "3", "--report_to", "none", "--logging_steps", "1", "--learning_rate", "3e-3",
        "--synthetic", '{"num_samples": 8}', "--save_strategy", "no", "--seed", "7"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    # each rank saves its own copy next to the main process's export, to compare the ranks' weights
    probe = ("import sys, torch.distributed as dist; from resadapt_hf import trainer as T; "
             "save = T.CAPOTrainer.save_model\n"
             "def save_model(self, output_dir=None, _internal_call=False):\n"
             "    save(self, output_dir, _internal_call)\n"
             "    if output_dir and not _internal_call:\n"
             "        from safetensors.torch import save_file\n"
             "        m = self.accelerator.unwrap_model(self.model)\n"
             "        save_file({k: v.contiguous() for k, v in m.state_dict().items()},"
             " f'{output_dir}/rank{self.accelerator.process_index}.safetensors')\n"
             "T.CAPOTrainer.save_model = save_model\n"
             "from resadapt_hf.cli import main; sys.exit(main(sys.argv[1:]))")
    script = tmp_path / "probe.py"
    script.write_text(probe)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
          str(script), *ARGS, "--per_device_train_batch_size", "4", "--output_dir", str(two)], tmp_path)
    _run([sys.executable, "-m", "resadapt_hf.cli", *ARGS, "--per_device_train_batch_size", "8",
          "--output_dir", str(one)], tmp_path)
    rank0, rank1 = load_file(two / "rank0.safetensors"), load_file(two / "rank1.safetensors")
    assert _max_diff(rank0, rank1) == 0.0  # DDP keeps the replicas identical
    saved_two, saved_one = load_file(two / "model.safetensors"), load_file(one / "model.safetensors")
    assert _max_diff(saved_two, saved_one) <= 1e-5  # the split of the global batch does not matter

    # ...while training really moved the weights away from the seeded initialisation
    from transformers import set_seed

    from resadapt_hf.allocators import build_allocator

    set_seed(7)
    initial = {k: v for k, v in build_allocator("tiny-statistics").state_dict().items() if k in saved_one}
    assert _max_diff({k: saved_one[k] for k in initial}, initial) > 1e-3
    assert torch.isfinite(torch.cat([v.flatten().float() for v in saved_two.values()])).all()
