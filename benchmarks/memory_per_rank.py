"""Memory per rank of CAPO training with Qwen2.5-VL-7B in bf16 (computed on the meta device, no download).

Under DDP every rank holds: the frozen backbone (bf16 weights, replicated), the Allocator (frozen SmolVLM2 encoder
in bf16 + the trainable predictor in fp32 with its gradients and two AdamW moments), and the KV cache of the rollouts
that share one ``generate`` call (``rollout_prompts_per_call`` prompts x M allocations x N rollouts). This script
counts parameters of the real-size configs and the KV cache for the paper's 32-frame setting at several retentions;
activations of the vision tower and of the prefill are transient and not counted (they are freed before decoding).

    python benchmarks/memory_per_rank.py [--frames 32] [--tokens-per-chunk 768] [--allocations 16]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import allocator_flops as af  # noqa: E402

GIB = 1024**3


def kv_bytes_per_token(text_config, bytes_per_value: int = 2) -> int:
    """Keys and values of every layer for one token (grouped-query attention: only the KV heads are cached)."""
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
    return 2 * text_config.num_hidden_layers * text_config.num_key_value_heads * head_dim * bytes_per_value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--tokens-per-chunk", type=int, default=768, help="visual tokens of a 2-frame chunk at scale 1")
    parser.add_argument("--text-tokens", type=int, default=300, help="system prompt + question + options")
    parser.add_argument("--completion", type=int, default=256, help="max_completion_length")
    parser.add_argument("--allocations", type=int, default=16, help="M x N sequences of one prompt")
    parser.add_argument("--out", default=str(HERE / "results" / "memory_per_rank.json"))
    args = parser.parse_args(argv)

    qwen = af.build_qwen()
    backbone_params = sum(p.numel() for p in qwen.parameters())
    allocator = af.allocator_parameters()
    kv_token = kv_bytes_per_token(qwen.config.text_config)
    fixed = {
        "backbone_bf16_gib": backbone_params * 2 / GIB,
        "allocator_encoder_bf16_gib": allocator["frozen_encoder"] * 2 / GIB,
        # fp32 weights + gradients + AdamW's two moments
        "allocator_predictor_training_gib": allocator["trainable"] * 4 * 4 / GIB,
    }
    rows = []
    for retention in (1.0, 0.5, 0.25):
        tokens = int(args.frames / 2 * args.tokens_per_chunk * retention) + args.text_tokens + args.completion
        kv = tokens * kv_token * args.allocations / GIB
        rows.append({"retention": retention, "sequence_tokens": tokens, "kv_cache_per_prompt_gib": kv,
                     "total_gib": sum(fixed.values()) + kv})
    result = {"backbone_parameters": backbone_params, "allocator": allocator, "kv_bytes_per_token": kv_token,
              "settings": vars(args), "fixed": fixed, "per_prompt_call": rows}

    print(f"Qwen2.5-VL-7B: {backbone_params / 1e9:.2f}B parameters -> {fixed['backbone_bf16_gib']:.1f} GiB in bf16 "
          f"(replicated on every rank)")
    print(f"Allocator: encoder {fixed['allocator_encoder_bf16_gib']:.2f} GiB bf16, predictor "
          f"{fixed['allocator_predictor_training_gib']:.2f} GiB (fp32 weights + grads + AdamW)")
    print(f"KV cache: {kv_token / 1024:.0f} KiB per token; one prompt = {args.allocations} sequences of "
          f"{args.frames} frames ({args.tokens_per_chunk} tokens per chunk at scale 1)")
    print("| retention | tokens / sequence | KV cache, one prompt per call | total per rank |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['retention']:.2f} | {row['sequence_tokens']} | {row['kv_cache_per_prompt_gib']:.1f} GiB | "
              f"{row['total_gib']:.1f} GiB |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
