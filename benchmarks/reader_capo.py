"""CAPO through the whole real path on CPU: an Allocator trained against the trained tiny reader, evaluated at
matched budgets against the training-free prior, FixedScale, random and vanilla (scale 1).

Every rollout is real: the reader task's frames are resized per 2-frame chunk by ``ResAdaptProcessor``, read by the
tiny reader's Qwen2.5-VL vision tower, placed with per-chunk M-RoPE positions (``prepare_backbone``), answered by
``generate`` (M allocations of a prompt in one call) and graded by ``rewards``; no calibrated reader is involved.

    python benchmarks/reader_capo.py                # 3 seeds of CAPO + the none/direct ablation (seed 0)
    python benchmarks/reader_capo.py --quick        # a smoke run (a few steps, a few videos)

For each seed the same ``tiny-statistics`` Allocator is trained with ``CAPOTrainer`` on the reader task's training
split, saved, and evaluated by the eval runner (``resadapt_hf.evaluate.evaluate``, task ``reader``: the held-out
split) at budgets 0.75 / 0.5 / 0.35 / 0.25. Seed 0's evaluation also runs prior, fixed, random and vanilla (they do
not depend on the Allocator's seed) and writes the frontier and scale-heatmap PNGs. Writes
``benchmarks/results/reader_capo/{results.json, training_curves.png, eval_*/}`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
import warnings
from pathlib import Path

import torch

from resadapt_hf.allocators import build_allocator
from resadapt_hf.evaluate import evaluate
from resadapt_hf.loading import load_backbone
from resadapt_hf.plots import line_chart
from resadapt_hf.processing.processing_resadapt import ResAdaptProcessor
from resadapt_hf.reader_task import SPLIT_SEEDS, reader_records
from resadapt_hf.rewards import SYSTEM_PROMPT
from resadapt_hf.rollout import BackboneRollout
from resadapt_hf.trainer import CAPOConfig, CAPOTrainer

MODES = ("capo", "none", "direct")
BASELINES = ("prior", "fixed", "random", "vanilla")
MAX_NEW_TOKENS = 48  # the reader's completion is 36 tokens


def train_allocator(model, processor, records, mode: str, seed: int, args, folder: Path):
    """A ``tiny-statistics`` Allocator trained with CAPO (``cost_mode=mode``) through ``BackboneRollout``."""
    torch.manual_seed(seed)
    allocator = build_allocator("tiny-statistics")
    config = CAPOConfig(
        output_dir=str(folder), cost_mode=mode, max_steps=args.steps, num_generations=args.allocations,
        per_device_train_batch_size=args.prompts * args.allocations, learning_rate=args.learning_rate,
        logging_steps=max(1, args.steps // 20), report_to=[], save_strategy="no", seed=seed, disable_tqdm=True,
        lr_scheduler_type="constant", max_completion_length=MAX_NEW_TOKENS, video_num_frames=None,
        rollout_prompts_per_call=0, tau_fix=args.tau_fix, lambda_capo=args.lambda_capo, cost_gamma=args.cost_gamma,
        kappa_mix=args.kappa_mix,
    )
    rollout = BackboneRollout(model, processor, system_prompt=SYSTEM_PROMPT)
    trainer = CAPOTrainer(allocator, rollout, config, records, processor=processor)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.save_model(str(folder))
    curve = [h for h in trainer.state.log_history if "mean_scale" in h]
    return folder, seconds, curve


def evaluate_allocator(model, backbone_processor, learned, allocators, args, folder: Path) -> dict:
    if folder.exists():
        shutil.rmtree(folder)
    return evaluate(task="reader", out=str(folder), backbone=(model, backbone_processor), learned=learned,
                    allocators=list(allocators), budgets=list(args.budgets), num_samples=args.eval_videos,
                    max_new_tokens=MAX_NEW_TOKENS, num_frames=None, seed=0, progress=False,
                    plots=bool(set(allocators) - {"learned"}))


def by_key(results: dict) -> dict:
    return {(e["allocator"], e["budget"]): e for e in results["aggregate"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ablation", nargs="*", choices=MODES[1:], default=list(MODES[1:]),
                        help="other cost modes, trained with the first seed")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--allocations", type=int, default=8, help="M allocations per prompt")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    # a short CPU run needs a stronger pull towards the budget than CAPO's paper defaults (tau_fix 0.4, lambda_capo
    # 0.25, gamma 0.05, kappa_mix 0.5): with them, 60 steps at lr 5e-4 left the retention at 1.0 (first reader).
    # kappa_mix 1 puts the pivot at the group's own mean cost, so a group whose allocations are all right still
    # ranks them by cost; with kappa_mix 0.5 and tau_fix 0.1 the pivot sits far below such a group's costs, so its
    # advantages are floored at eps_pos (Eq. 17) and nearly equal, and this reader's run climbed to retention 2.3
    # (every chunk upscaled) with no signal back;
    # with tau_fix 0.4, gamma 0.1 it found the needle (retention 0.39 at step 90), then jumped to 2.8 (measured)
    parser.add_argument("--kappa-mix", type=float, default=1.0, help="weight of the group's mean cost in the pivot")
    parser.add_argument("--tau-fix", type=float, default=0.1, help="CAPO's fixed cost target (Eq. 14)")
    parser.add_argument("--lambda-capo", type=float, default=1.0, help="weight of CAPO's cost shaping (Eq. 16)")
    parser.add_argument("--cost-gamma", type=float, default=0.2, help="CAPO's residual linear cost pressure")
    parser.add_argument("--train-videos", type=int, default=256)
    parser.add_argument("--eval-videos", type=int, default=100)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.75, 0.5, 0.35, 0.25])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/reader_capo")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 steps, 4 videos, 1 seed, no ablation")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.ablation, args.steps, args.prompts, args.train_videos, args.eval_videos = [0], [], 2, 2, 8, 4
        args.budgets = args.budgets[:2]
    warnings.filterwarnings("ignore", message=".*fps.*")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, backbone_processor = load_backbone("tiny-reader", device="cpu")
    processor = ResAdaptProcessor.from_backbone(backbone_processor, backbone_name_or_path="tiny-reader")
    records = reader_records(args.train_videos, seed=SPLIT_SEEDS["train"])

    runs = [("capo", seed) for seed in args.seeds] + [(mode, args.seeds[0]) for mode in args.ablation]
    trained, evaluations = {}, {}
    for index, (mode, seed) in enumerate(runs):
        name = f"{mode}_seed{seed}"
        folder, seconds, curve = train_allocator(model, processor, records, mode, seed, args, out / "allocators" / name)
        trained[name] = {"mode": mode, "seed": seed, "train_seconds": round(seconds, 1), "curve": curve,
                         "allocator": str(folder)}
        allocators = ("learned", *BASELINES) if index == 0 else ("learned",)
        evaluations[name] = evaluate_allocator(model, backbone_processor, str(folder), allocators, args, out / f"eval_{name}")
        print(f"{name}: trained in {seconds:.0f} s", flush=True)

    first = by_key(evaluations[f"capo_seed{args.seeds[0]}"])
    table = []
    for budget in args.budgets:
        capo = [by_key(evaluations[f"capo_seed{s}"])[("learned", budget)] for s in args.seeds]
        row = {"budget": budget,
               "capo_accuracy_mean": statistics.fmean(e["accuracy"] for e in capo),
               "capo_accuracy_per_seed": [e["accuracy"] for e in capo],
               "capo_retention_mean": statistics.fmean(e["retention"] for e in capo)}
        for mode in args.ablation:
            row[f"{mode}_accuracy"] = by_key(evaluations[f"{mode}_seed{args.seeds[0]}"])[("learned", budget)]["accuracy"]
        for name in ("prior", "fixed", "random"):
            row[f"{name}_accuracy"] = first[(name, budget)]["accuracy"]
            row[f"{name}_retention"] = first[(name, budget)]["retention"]
        table.append(row)
    vanilla = first[("vanilla", None)]

    header = f"{'budget':>6} {'capo (mean of seeds)':>22} {'prior':>6} {'fixed':>6} {'random':>6}"
    header += "".join(f" {m:>7}" for m in args.ablation) + f" {'vanilla':>8}"
    print(header)
    for row in table:
        line = (f"{row['budget']:>6.2f} {row['capo_accuracy_mean']:>8.3f} @ r={row['capo_retention_mean']:.3f}     "
                f"{row['prior_accuracy']:>6.3f} {row['fixed_accuracy']:>6.3f} {row['random_accuracy']:>6.3f}")
        line += "".join(f" {row[f'{m}_accuracy']:>7.3f}" for m in args.ablation)
        print(line + f" {vanilla['accuracy']:>8.3f}")

    curves = {name: [(h["step"], h["mean_scale"]) for h in run["curve"]] for name, run in trained.items()}
    line_chart(curves, out / "training_curves.png", title="CAPO on the tiny reader: mean sampled scale",
               xlabel="step", ylabel="mean sampled scale", ylim=(0.2, 1.8), sort_x=False)
    payload = {"benchmark": "reader_capo", "settings": vars(args), "backbone": "tiny-reader",
               "eval_split_seed": SPLIT_SEEDS["test"], "vanilla": vanilla, "table": table, "runs": trained,
               "evaluations": {k: v["aggregate"] for k, v in evaluations.items()}}
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str))
    print(f"wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
