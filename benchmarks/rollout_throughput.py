"""Rollout throughput: batched ``BackboneRollout`` (one ``generate`` call per prompt) vs one call per allocation.

A CAPO step rolls out every prompt under M sampled allocations, N times each. Before ``resadapt_hf.rollout``,
``BackboneRollout`` made one batch-1 ``generate`` call per allocation (``num_return_sequences=N``): M calls per
prompt. Now the M allocations are M left-padded rows of one call. This script times, in one process, interleaved
(each repetition runs every path once, in a rotating order, after one untimed warm-up per path):

* ``sequential``  one call per allocation, M calls of ``num_return_sequences=N`` per prompt (the old behaviour);
* ``batched``     one call per prompt, M rows x N sequences (``prompts_per_call=1``, the default);
* ``packed``      one call for every prompt of the step (``prompts_per_call=0``).

The backbone is the tiny random Qwen2.5-VL of ``resadapt_hf.tiny`` (fp32, CPU), prompts are random 8-frame
clips with per-frame scales drawn uniformly in [0.2, 1.8] (so every row has its own chunk sizes and length).
Generation samples (``do_sample=True``, temperature 1, the training setting) with ``min_new_tokens`` =
``max_new_tokens`` so every path generates exactly the same number of tokens (checked). Reported: rollouts/s
(P x M x N completions per step / median step time) and the batched/sequential ratio of rollouts/s. A separate
greedy run checks that the batched completions equal the sequential ones.

On a CPU the gain comes from fewer, larger calls (per-call overhead and per-token Python work shared by the
rows); an accelerator, idle on batch-1 decoding, gains more. Run ``python benchmarks/rollout_throughput.py``;
``--quick`` is a smoke run. Results go to ``benchmarks/results/rollout_throughput.json`` unless ``--out`` says
otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processor_speed import machine_info, output_path  # noqa: E402
from resadapt_hf import ResAdaptProcessor  # noqa: E402
from resadapt_hf.data import decode_record  # noqa: E402
from resadapt_hf.rollout import BackboneRollout, GenerationSettings, RolloutRequest  # noqa: E402
from resadapt_hf.tiny import build_tiny_backbone  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "rollout_throughput.json"
PATHS = ("sequential", "batched", "packed")
MIN_SCALE, MAX_SCALE = 0.2, 1.8


def _settings_arg(text: str) -> list[tuple[int, int]]:
    """``"8x1,4x2"`` -> [(8, 1), (4, 2)] (M allocations x N rollouts)."""
    pairs = []
    for item in text.split(","):
        m, _, n = item.strip().partition("x")
        if not (m.isdigit() and n.isdigit() and int(m) >= 1 and int(n) >= 1):
            raise argparse.ArgumentTypeError(f"settings: expected MxN pairs like 8x1,4x2, got {item!r}")
        pairs.append((int(m), int(n)))
    return pairs


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default 4; quick: 2)")
    parser.add_argument("--settings", type=_settings_arg, default=None,
                        help="M x N pairs (default 8x1,4x2,2x4,16x1; quick: 4x1,2x2)")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per path (default 5; quick: 2)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="tokens per completion (min = max)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip")
    parser.add_argument("--height", type=int, default=112, help="clip height")
    parser.add_argument("--width", type=int, default=140, help="clip width")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="clips and scales")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 prompts, 4x1 and 2x2, 2 reps")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="JSON file, or a folder for rollout_throughput.json")
    args = parser.parse_args(argv)
    quick = dict(prompts=2, settings=[(4, 1), (2, 2)], reps=2)
    full = dict(prompts=4, settings=[(8, 1), (4, 2), (2, 4), (16, 1)], reps=5)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.prompts, args.reps, args.max_new_tokens, args.frames, args.threads) < 1:
        parser.error("--prompts, --reps, --max-new-tokens, --frames and --threads must be >= 1")
    return args


class CallCounter:
    """Wraps ``model.generate`` (on the instance): counts calls, input rows, new tokens and padding."""

    def __init__(self, model):
        self.original = model.generate
        self.reset()
        model.generate = self

    def reset(self):
        self.calls = self.rows = self.sequences = self.prompt_tokens = self.padded_tokens = 0
        self.new_token_counts = set()

    def __call__(self, **kwargs):
        out = self.original(**kwargs)
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        self.calls += 1
        self.rows += ids.shape[0]
        self.sequences += out.shape[0]
        self.prompt_tokens += int(mask.sum())
        self.padded_tokens += int(mask.numel() - mask.sum())
        self.new_token_counts.add(out.shape[1] - ids.shape[1])
        return out


def _requests(args, num_allocations: int) -> list[RolloutRequest]:
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    requests = []
    for i in range(args.prompts):
        frames = rng.integers(0, 256, (args.frames, args.height, args.width, 3), dtype=np.uint8)
        record = decode_record({"frames": frames, "question": f"What happens in clip {i}?",
                                "options": ["A. it moves", "B. it stays", "C. it fades"], "answer": "A",
                                "problem_type": "multiple_choice"})
        scales = MIN_SCALE + (MAX_SCALE - MIN_SCALE) * torch.rand(num_allocations, args.frames, generator=generator)
        requests.append(RolloutRequest(record, record["frames"], scales))
    return requests


def _sequential(rollout, requests, num_rollouts, generation):
    """The old behaviour: one batch-1 call per allocation."""
    results = []
    for request in requests:
        for m in range(request.num_allocations):
            single = RolloutRequest(request.record, request.frames, request.frame_scales[m : m + 1])
            results += rollout([single], num_rollouts=num_rollouts, generation=generation)
    return results


def main(argv=None) -> int:
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, backbone = build_tiny_backbone("qwen2_5_vl", seed=0)
    processor = ResAdaptProcessor.from_backbone(backbone)
    rollout = BackboneRollout(model, processor)
    counter = CallCounter(rollout.backbone)
    tokens = args.max_new_tokens
    sampling = GenerationSettings(max_new_tokens=tokens, generation_kwargs={"min_new_tokens": tokens})

    # correctness: greedy batched completions equal the one-call-per-allocation ones
    greedy = dataclasses.replace(sampling, do_sample=False)
    check_requests = _requests(args, args.settings[0][0])
    batched_greedy = rollout(check_requests, num_rollouts=1, generation=greedy)
    sequential_greedy = _sequential(rollout, check_requests, 1, greedy)
    flat = [c for r in batched_greedy for c in r.completions]
    checks = {"greedy_batched_equals_sequential": flat == [c for r in sequential_greedy for c in r.completions]}

    rows = []
    for num_allocations, num_rollouts in args.settings:
        requests = _requests(args, num_allocations)
        runners = {
            "sequential": lambda: _sequential(rollout, requests, num_rollouts, sampling),
            "batched": lambda: rollout(requests, num_rollouts=num_rollouts, generation=sampling),
            "packed": lambda: rollout(requests, num_rollouts=num_rollouts,
                                      generation=dataclasses.replace(sampling, prompts_per_call=0)),
        }
        produced = {}
        for name in PATHS:  # warm-up (untimed), and what each path sends to generate
            counter.reset()
            runners[name]()
            produced[name] = {
                "generate_calls": counter.calls, "input_rows": counter.rows, "sequences": counter.sequences,
                "prompt_tokens": counter.prompt_tokens, "padded_tokens": counter.padded_tokens,
                "new_tokens_per_sequence": sorted(counter.new_token_counts),
            }
        times = {name: [] for name in PATHS}
        for rep in range(args.reps):
            shift = rep % len(PATHS)
            for name in PATHS[shift:] + PATHS[:shift]:  # rotate the order: no path always runs first/last
                t0 = time.perf_counter()
                runners[name]()
                times[name].append(time.perf_counter() - t0)
        completions = args.prompts * num_allocations * num_rollouts
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        per_second = {name: completions / medians[name] for name in PATHS}
        rows.append({
            "M": num_allocations, "N": num_rollouts, "prompts": args.prompts, "rollouts_per_step": completions,
            "produced": produced, "times_s": times, "median_s": medians, "rollouts_per_s": per_second,
            "batched_over_sequential": per_second["batched"] / per_second["sequential"],
            "packed_over_sequential": per_second["packed"] / per_second["sequential"],
        })
        checks[f"same_new_tokens_{num_allocations}x{num_rollouts}"] = all(
            produced[name]["new_tokens_per_sequence"] == [tokens] for name in PATHS
        )

    result = {
        "benchmark": "rollout_throughput",
        "machine": machine_info(),
        "settings": {
            "quick": args.quick,
            "reps": args.reps,
            "warmup_runs_per_path": 1,
            "order": "interleaved, rotating per repetition",
            "backbone": "resadapt_hf.tiny qwen2_5_vl (random weights, fp32, CPU)",
            "prompts": args.prompts,
            "frames": args.frames,
            "height": args.height,
            "width": args.width,
            "scales": f"uniform in [{MIN_SCALE}, {MAX_SCALE}] per frame",
            "generation": dataclasses.asdict(sampling),
            "seed": args.seed,
        },
        "checks": checks,
        "results": rows,
        "batched_over_sequential": {f"{r['M']}x{r['N']}": r["batched_over_sequential"] for r in rows},
        "packed_over_sequential": {f"{r['M']}x{r['N']}": r["packed_over_sequential"] for r in rows},
    }

    print(f"rollout throughput: tiny Qwen2.5-VL, {args.prompts} prompts x {args.frames} frames {args.width}x"
          f"{args.height}, {tokens} new tokens, {args.reps} reps (median), torch threads {torch.get_num_threads()}")
    print(f"{'M x N':>6} {'calls seq/bat/pack':>19} {'seq rollouts/s':>15} {'batched':>9} {'packed':>9} "
          f"{'batched/seq':>12} {'packed/seq':>11}")
    for r in rows:
        calls = "/".join(str(r["produced"][name]["generate_calls"]) for name in PATHS)
        rate = r["rollouts_per_s"]
        print(f"{r['M']:>2} x {r['N']:<2} {calls:>19} {rate['sequential']:>15.1f} {rate['batched']:>9.1f} "
              f"{rate['packed']:>9.1f} {r['batched_over_sequential']:>11.2f}x {r['packed_over_sequential']:>10.2f}x")
    print("checks: " + ", ".join(f"{k}={v}" for k, v in checks.items()))
    path = output_path(args.out, "rollout_throughput.json")
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
