"""Export a complete Hub folder, load it in a clean process from the card's own quick start, and push it (mocked)."""

import argparse
import json
import re
import shutil
import textwrap

import pytest
import yaml

from conftest import run_without_package, tiny_backbone
from resadapt_hf import ResAdaptProcessor
from resadapt_hf import hub
from resadapt_hf.allocators import build_allocator

REPO = "me/resadapt-tiny"
CODE_FILES = {
    "allocation.py", "backbone_base.py", "backbone_qwen2_vl.py", "backbone_qwen3_vl.py", "backbones.py",
    "frame_statistics.py", "prior_allocator.py", "processing_resadapt.py", "resize_plan.py", "video_convert.py",
    "video_decode.py", "video_input.py",
}
PROCESSOR_FILES = CODE_FILES | {"README.md", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
                                "chat_template.jinja"}
LEARNED_FILES = PROCESSOR_FILES | {
    "configuration_resadapt.py", "modeling_resadapt.py", "allocator/config.json", "allocator/model.safetensors",
    "allocator/configuration_resadapt.py", "allocator/modeling_resadapt.py", "allocator/frame_statistics.py",
}
EVAL_FILES = {"frontier.png", "scale_heatmap.png"}


def files_in(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def write_eval(directory):
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    for name in EVAL_FILES:
        Image.new("RGB", (8, 8), (200, 30, 30)).save(directory / name)
    results = {
        "format": "resadapt-eval/1", "backbone": "tiny-qwen2_5_vl", "dataset": "synthetic-needle", "task": "synthetic",
        "seed": 0, "num_samples": 8, "budgets": [0.5], "allocators": ["model", "fixed"],
        "aggregate": [
            {"allocator": "model", "budget": 0.5, "retention": 0.4981, "retention_std": 0.012, "visual_tokens": 98.25,
             "score": 0.75, "accuracy": 0.75, "num_samples": 8, "per_task": {}},
            {"allocator": "fixed", "budget": 0.5, "retention": 0.5012, "retention_std": 0.0, "visual_tokens": 99.0,
             "score": 0.5, "accuracy": 0.5, "num_samples": 8, "per_task": {}},
        ],
        "frontier_png": "frontier.png", "heatmap_png": "scale_heatmap.png",
    }
    (directory / "results.json").write_text(json.dumps(results))
    return directory


def learned_processor(**settings):
    _, backbone = tiny_backbone("qwen2_5_vl")
    return ResAdaptProcessor.from_backbone(backbone, allocator=build_allocator("tiny-statistics"), **settings)


def prior_processor(**settings):
    _, backbone = tiny_backbone("qwen2_5_vl")
    return ResAdaptProcessor.from_backbone(backbone, allocator=build_allocator("prior"), **settings)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Learned (with eval) and prior exports, plus the tiny backbone saved next to them."""
    root = tmp_path_factory.mktemp("hub")
    model, _ = tiny_backbone("qwen2_5_vl")
    backbone_dir = root / "backbone"
    model.save_pretrained(backbone_dir)
    eval_dir = write_eval(root / "eval_out")
    learned = hub.export_folder(learned_processor(budget=0.5), root / "learned", eval_dir=eval_dir, repo_id=REPO,
                                backbone=str(backbone_dir), training_args={"num_generations": 4, "cost_mode": "capo"})
    prior = hub.export_folder(prior_processor(), root / "prior", repo_id=REPO, backbone=str(backbone_dir))
    return {"root": root, "backbone": backbone_dir, "learned": learned, "prior": prior, "eval": eval_dir}


@pytest.fixture
def hub_calls(monkeypatch):
    """Mock the huggingface_hub functions where hub.py looks them up; record every call and the uploaded files."""
    import huggingface_hub

    calls = []

    def create_repo(repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def create_branch(repo_id, **kwargs):
        calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(**kwargs):
        from pathlib import Path

        calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files_in(Path(kwargs["folder_path"]))}))
        return "commit-info"

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "create_branch", create_branch)
    monkeypatch.setattr(huggingface_hub, "upload_folder", upload_folder)
    return calls


def test_export_writes_a_complete_folder(exported):
    learned, prior = exported["learned"], exported["prior"]
    assert files_in(learned) == LEARNED_FILES | EVAL_FILES
    assert files_in(prior) == PROCESSOR_FILES
    config = json.loads((learned / "processor_config.json").read_text())
    assert config["auto_map"]["AutoProcessor"] == "processing_resadapt.ResAdaptProcessor"
    allocator = json.loads((learned / "allocator" / "config.json").read_text())
    assert allocator["auto_map"] == {"AutoConfig": "configuration_resadapt.ResAdaptConfig",
                                     "AutoModel": "modeling_resadapt.ResAdaptAllocator"}
    card = (learned / "README.md").read_text()
    assert "| model | 0.500 | 0.498 | 0.012 | 98.2 | 0.750 | 0.750 | 8 |" in card
    assert "(frontier.png)" in card and "(scale_heatmap.png)" in card
    assert "| `num_generations` | 4 |" in card
    assert "has not been evaluated" in (prior / "README.md").read_text()
    for folder in (learned, prior):
        assert hub.validate_folder(folder) == folder
    with pytest.raises(ValueError, match="not empty"):
        hub.export_folder(prior_processor(), prior, repo_id=REPO)


CARD_RUNNER = textwrap.dedent(
    """
    import json, sys
    for name, code in json.loads(open(sys.argv[1] + "/cards.json").read()):
        namespace = {}
        exec(code, namespace)
        processor = namespace["processor"]
        print("RESULT", name, type(processor).__module__, type(processor.allocator).__name__,
              round(namespace["allocation"].retention, 6), namespace["out"].shape[1] > namespace["inputs"]["input_ids"].shape[1])
    """
)


def test_card_quick_start_runs_in_a_clean_process(exported, tmp_path):
    """The card's own quick start: AutoProcessor(trust_remote_code) -> processor(budget=0.5) -> generate, with
    resadapt_hf blocked, for a learned and a prior allocator."""
    from resadapt_hf.sample_clips import write_demo_clip

    clip = write_demo_clip(tmp_path / "clip.mp4", num_frames=8, height=120, width=160)
    cards = []
    for name in ("learned", "prior"):
        readme = (exported[name] / "README.md").read_text()
        code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
        assert f'"{REPO}"' in code and f'"{exported["backbone"]}"' in code
        code = code.replace(f'"{REPO}"', repr(str(exported[name]))).replace('"clip.mp4"', repr(str(clip)))
        assert "num_frames=32" in code and "max_new_tokens=64" in code
        cards.append((name, code.replace("num_frames=32", "num_frames=8").replace("max_new_tokens=64", "max_new_tokens=4")))
    (tmp_path / "cards.json").write_text(json.dumps(cards))
    result = run_without_package(CARD_RUNNER, tmp_path, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {l.split()[1]: l.split() for l in result.stdout.splitlines() if l.startswith("RESULT")}
    assert set(lines) == {"learned", "prior"}
    assert lines["learned"][3] == "ResAdaptAllocator" and lines["prior"][3] == "PriorAllocator"
    for name, fields in lines.items():
        assert fields[2].startswith("transformers_modules"), fields
        assert fields[-1] == "True"
        # the same plan in this process, through the installed package
        processor = ResAdaptProcessor.from_pretrained(str(exported[name]))
        _, backbone = tiny_backbone("qwen2_5_vl")
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens in this video?"}]}]
        text = backbone.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        plan = processor.allocate(text=text, videos=[str(clip)], do_sample_frames=True, num_frames=8, budget=0.5)
        assert float(fields[4]) == round(plan.retention, 6)
        assert plan.budget_reached and abs(plan.retention - 0.5) < 0.05


def test_push_folder_uploads_exactly_the_export(exported, hub_calls):
    info = hub.push_folder(exported["learned"], REPO, private=True, commit_message="first upload")
    assert info == "commit-info"
    assert [c[0] for c in hub_calls] == ["create_repo", "upload_folder"]
    assert hub_calls[0][1] == REPO and hub_calls[0][2]["private"] is True and hub_calls[0][2]["exist_ok"] is True
    upload = hub_calls[1][2]
    assert upload["repo_id"] == REPO and upload["revision"] is None and upload["commit_message"] == "first upload"
    assert upload["files"] == LEARNED_FILES | EVAL_FILES


def test_push_to_a_branch_creates_it(exported, hub_calls):
    folder = hub.export_folder(prior_processor(), exported["root"] / "branch", repo_id=REPO, revision="v2",
                               backbone=str(exported["backbone"]))
    hub.push_folder(folder, REPO, revision="v2", token="hf_test")
    assert [c[0] for c in hub_calls] == ["create_repo", "create_branch", "upload_folder"]
    assert hub_calls[1][2] == {"branch": "v2", "token": "hf_test", "exist_ok": True}
    assert hub_calls[2][2]["revision"] == "v2" and hub_calls[2][2]["token"] == "hf_test"
    # the card pins the branch it is pushed to; pushing it elsewhere is refused
    with pytest.raises(ValueError, match="revision"):
        hub.push_folder(folder, REPO, revision="main")
    with pytest.raises(ValueError, match="does not load"):
        hub.push_folder(folder, "someone/else", revision="v2")
    assert len(hub_calls) == 3


def test_push_to_hub_exports_to_a_temporary_folder(hub_calls):
    hub.push_to_hub(prior_processor(), REPO, backbone="Qwen/Qwen2.5-VL-3B-Instruct", commit_message="m")
    upload = hub_calls[-1][2]
    assert upload["files"] == PROCESSOR_FILES and upload["commit_message"] == "m"
    assert not __import__("os").path.exists(upload["folder_path"])  # cleaned up


def broken_copy(exported, tmp_path, name="learned"):
    folder = tmp_path / "broken"
    shutil.copytree(exported[name], folder)
    return folder


def test_missing_auto_map_target_is_refused_before_upload(exported, tmp_path, hub_calls):
    folder = broken_copy(exported, tmp_path)
    (folder / "modeling_resadapt.py").unlink()
    config = json.loads((folder / "processor_config.json").read_text())
    config["auto_map"]["AutoProcessor"] = "processing_resadapt.NoSuchProcessor"
    (folder / "processor_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as info:
        hub.push_folder(folder, REPO)
    message = str(info.value)
    assert "needs modeling_resadapt.py, which is missing" in message
    assert "defines no 'NoSuchProcessor'" in message
    assert hub_calls == []


def test_pickle_files_are_refused_before_upload(exported, tmp_path, hub_calls):
    folder = broken_copy(exported, tmp_path, "prior")
    (folder / "training_args.bin").write_bytes(b"\x80\x04K\x01.")
    (folder / "allocator").mkdir()
    (folder / "allocator" / "optimizer.pt").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ValueError, match=r"pickle files.*allocator/optimizer.pt.*training_args.bin"):
        hub.push_folder(folder, REPO)
    assert hub_calls == []


def test_other_problems_are_listed_together(exported, tmp_path, hub_calls):
    folder = broken_copy(exported, tmp_path)
    (folder / "allocator" / "model.safetensors").write_bytes(b"not safetensors")
    readme = folder / "README.md"
    readme.write_text(readme.read_text().split("---\n", 2)[2])  # drop the front matter
    (folder / "frontier.png").unlink()
    with pytest.raises(ValueError) as info:
        hub.push_folder(folder, REPO)
    message = str(info.value)
    assert "cannot be read as safetensors" in message and "no YAML front matter" in message
    assert hub_calls == []
    (folder / "README.md").unlink()
    with pytest.raises(ValueError, match="README.md is missing"):
        hub.validate_folder(folder, load_allocator=False)


def push_args(source, **overrides):
    parser = hub.add_push_arguments(argparse.ArgumentParser())
    argv = [str(source), "--repo-id", REPO]
    for key, value in overrides.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return parser.parse_args(argv)


def test_cli_push_from_a_trained_output(exported, tmp_path, hub_calls, capsys):
    from resadapt_hf.allocators import save_resadapt

    _, backbone = tiny_backbone("qwen2_5_vl")
    trained = save_resadapt(tmp_path / "run", build_allocator("tiny-statistics"), backbone, budget=0.3)
    (trained / "training_args.bin").write_bytes(b"\x80\x04K\x01.")  # what Trainer.save_model leaves behind
    (trained / "checkpoint-2").mkdir()
    (trained / "checkpoint-2" / "optimizer.pt").write_bytes(b"\x80\x04K\x01.")
    train_yaml = tmp_path / "train.yaml"
    train_yaml.write_text(yaml.safe_dump({"num_generations": 8, "learning_rate": 2e-5, "task": "dataset"}))

    out = tmp_path / "export"
    args = push_args(trained, dry_run=True, eval=exported["eval"], backbone="Qwen/Qwen2.5-VL-3B-Instruct",
                     training_args=train_yaml, output_dir=out, dataset="me/videos")
    assert hub.run_push(args) == 0
    assert hub_calls == []
    assert "dry run" in capsys.readouterr().out
    assert files_in(out) == LEARNED_FILES | EVAL_FILES
    card = (out / "README.md").read_text()
    assert "| `num_generations` | 8 |" in card and "| `learning_rate` | 2e-05 |" in card and "- me/videos" in card
    assert json.loads((out / "processor_config.json").read_text())["budget"] == 0.3

    args = push_args(trained, backbone="Qwen/Qwen2.5-VL-3B-Instruct", private=True, revision="exp",
                     commit_message="from the CLI")
    assert hub.run_push(args) == 0
    assert [c[0] for c in hub_calls] == ["create_repo", "create_branch", "upload_folder"]
    upload = hub_calls[-1][2]
    assert hub_calls[0][2]["private"] is True and upload["revision"] == "exp"
    assert upload["commit_message"] == "from the CLI" and upload["files"] == LEARNED_FILES

    assert hub.run_push(push_args(trained)) == 2  # no backbone recorded or given
    assert "--backbone" in capsys.readouterr().err
    assert hub.run_push(push_args(tmp_path / "nowhere", backbone="a/b")) == 2


def test_trainer_push_goes_through_push_folder(tmp_path, hub_calls, monkeypatch):
    import huggingface_hub

    from resadapt_hf.trainer import CAPOConfig, CAPOTrainer

    pushed = []
    real_push = hub.push_folder
    monkeypatch.setattr(hub, "push_folder", lambda folder, repo_id, **kw: pushed.append((folder, repo_id, kw))
                        or real_push(folder, repo_id, **kw))
    monkeypatch.setattr(huggingface_hub, "whoami", lambda token=None: {"name": "trainer-user"})
    _, backbone = tiny_backbone("qwen2_5_vl")
    processor = ResAdaptProcessor.from_backbone(backbone, budget=0.4, backbone_name_or_path="Qwen/Qwen2.5-VL-3B-Instruct")
    args = CAPOConfig(output_dir=str(tmp_path / "out"), num_generations=2, per_device_train_batch_size=2,
                      max_steps=1, report_to=[], use_cpu=True, hub_model_id="capo-run", hub_private_repo=True,
                      hub_token="hf_trainer", hub_revision="step-1", cost_mode="direct", disable_tqdm=True)
    record = {"frames": [[[[0, 0, 0]] * 8] * 8] * 4, "question": "Q?", "answer": "A", "problem_type": "free_form"}
    trainer = CAPOTrainer(build_allocator("tiny-statistics"), lambda *a: None, args, [record], processor=processor)
    trainer.push_to_hub(commit_message="done")

    assert len(pushed) == 1
    folder, repo_id, kwargs = pushed[0]
    assert repo_id == "trainer-user/capo-run"
    assert kwargs == {"private": True, "revision": "step-1", "commit_message": "done", "token": "hf_trainer"}
    assert [c[0] for c in hub_calls] == ["create_repo", "create_branch", "upload_folder"]
    assert hub_calls[-1][2]["files"] == LEARNED_FILES
    card = (folder / "README.md").read_text()
    assert 'AutoProcessor.from_pretrained("trainer-user/capo-run", trust_remote_code=True, revision="step-1")' in card
    assert "| `cost_mode` | direct |" in card and "| `direct_cost_weight` |" in card
    assert "hf_trainer" not in card
    loaded = ResAdaptProcessor.from_pretrained(str(folder))
    assert loaded.budget == 0.4 and type(loaded.allocator).__name__ == "ResAdaptAllocator"
