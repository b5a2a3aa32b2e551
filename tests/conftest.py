"""Shared pytest setup: the suite never touches the network; tiny backbones are built once per session."""

import os
import tempfile

# Set before transformers / huggingface_hub are imported by any test module,
# so every from_pretrained call resolves local paths only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# dynamic (trust_remote_code) modules land in a throwaway cache, not the user's HF_HOME
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="resadapt-test-hf-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
_CACHE = {}


def tiny_backbone(family: str):
    """(model, backbone processor) for a tiny random backbone, cached for the session (treat as read-only)."""
    if family not in _CACHE:
        from resadapt_hf.tiny import build_tiny_backbone

        model, processor = build_tiny_backbone(family, seed=0)
        _CACHE[family] = (model.eval(), processor)
    return _CACHE[family]


def random_video(num_frames=8, height=90, width=120, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


def chat_text(processor, *kinds, question="What happens?"):
    content = [{"type": k} for k in kinds] + [{"type": "text", "text": question}]
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@pytest.fixture(params=QWEN_FAMILIES)
def family(request):
    return request.param


# Prelude of scripts run by run_without_package: the Hub files must stand on their own.
BLOCK_PACKAGE_IMPORTS = '''
import sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "resadapt_hf" or name.startswith("resadapt_hf."):
            raise ImportError("blocked " + name)

sys.meta_path.insert(0, _Block())
'''


def run_without_package(script: str, repo, tmp_path):
    """Run ``script`` (``sys.argv[1]`` = repo) in a fresh, offline process where ``resadapt_hf`` cannot be
    imported; return the completed process (stdout/stderr captured)."""
    import subprocess
    import sys

    loader = tmp_path / "loader.py"
    loader.write_text(BLOCK_PACKAGE_IMPORTS + script)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": ""}
    return subprocess.run([sys.executable, str(loader), str(repo)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
