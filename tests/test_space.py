"""The Gradio Space (space/app.py), launched in-process with its CPU defaults and driven through gradio_client.

One app per module (the tiny reader loaded once, the needle reader calibrated once, tiny backbones built on demand):
the API's schema and types, the documented client calls run verbatim, the headline pattern example (a held-out
reader-task clip answered by the CPU default, tiny-reader, with the trained prompt and the shipped learned allocator,
FixedScale and native side by side), the needle examples (needle-reader: right at budget 0.25, right and wrong at
0.15), the allocation JSON against the package and against the evaluation's NeedleBackend, readable answers of a
random tiny backbone, plain-words notes (unreachable budget, grid rounding, inputs tiny-reader was not trained on),
and bad inputs (each a clear message, the app still serving afterwards). Offline: HF_HUB_OFFLINE and no analytics
(conftest).

``test_trained_reader_answers_the_headline_example`` is the one test that needs the TRAINED tiny-reader weights (it
fails with an untrained placeholder in resadapt_hf/tiny_reader_weights/): run it alone with
``pytest tests/test_space.py -k trained_reader``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from space_launch import launched_space  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "space"))  # the Space's sibling modules, for the pure view tests
MAX_SECONDS = 3  # the test limit: the valid clip lasts 2 s, the long one 5 s
MAX_FILE_MB = 1
QUESTION = "What moves across the frames?"
SPACE_ENV = {  # the CPU defaults (backbone, allocator, budget, answer length) are the ones under test: left unset
    "RESADAPT_BACKBONE": "",
    "RESADAPT_ALLOCATOR": "",
    "RESADAPT_BUDGET": "",
    "RESADAPT_DEVICE": "cpu",
    "RESADAPT_MAX_SECONDS": str(MAX_SECONDS),
    "RESADAPT_MAX_FILE_MB": str(MAX_FILE_MB),
    "RESADAPT_MAX_NEW_TOKENS": "",
    "RESADAPT_AUTORUN": "0",
    "GRADIO_ANALYTICS_ENABLED": "False",
}
API_PARAMETERS = ["video", "image", "question", "budget", "max_visual_tokens", "num_frames", "allocator",
                  "allocator_repo", "backbone", "compare"]
RESULT_KEYS = {
    "backbone", "answerer", "allocator", "question", "requested_retention", "achieved_retention", "budget_reached",
    "max_visual_tokens", "visual_tokens", "baseline_visual_tokens", "scales", "frame_indices", "timestamps",
    "chunk_frames", "chunk_scales", "chunk_sizes", "chunk_visual_tokens", "media", "answer", "answer_explanation",
    "correct", "known_answer", "comparison", "notes", "timings_ms",
}
RUN_KEYS = {"run", "allocator", "requested_retention", "achieved_retention", "visual_tokens", "chunk_sizes", "answer",
            "correct"}
NEEDLE = {"backbone": "needle-reader", "allocator": "prior", "allocator_repo": ""}  # what the needle examples get
READER_NOTE = "tiny-reader was trained only on the pattern task"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from resadapt_hf.sample_clips import write_demo_clip

    folder = tmp_path_factory.mktemp("space_media")
    files = {
        "clip": write_demo_clip(folder / "clip.mp4", num_frames=16, height=240, width=320, fps=8),  # 2 s
        "long": write_demo_clip(folder / "long.mp4", num_frames=40, height=120, width=160, fps=8),  # 5 s
        "text": folder / "notes.mp4",
        "empty": folder / "empty.mp4",
        "huge": folder / "huge.mp4",
    }
    files["text"].write_text("this is a text file renamed to .mp4, not a video\n" * 20)
    files["empty"].write_bytes(b"")
    files["huge"].write_bytes(os.urandom(MAX_FILE_MB * 1024 * 1024 + 200_000))
    return files


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """(demo, client, url) of a launched app; closed at the end of the module."""
    with launched_space(SPACE_ENV, tmp_path_factory.mktemp("space_examples")) as (_, demo, url):
        client = Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("client_downloads")))
        yield demo, client, url


def _example(space, key: str):
    return next(e for e in space[0].resadapt_example_list if e.key == key)


@pytest.fixture(scope="module")
def reader(space):
    """The headline example: a held-out pattern clip of the reader task, with its known answer."""
    return space[0].resadapt_example_list[0]


@pytest.fixture(scope="module")
def needle(space):
    """The needle example (the generated needle clip with its known answer, at budget 0.25)."""
    return _example(space, "needle")


def _answer(client, video=None, image=None, budget=0.25, **kw):
    return client.predict(
        video=handle_file(str(video)) if video else None, image=handle_file(str(image)) if image else None,
        question=kw.pop("question", QUESTION), budget=budget, api_name="/answer", **kw,
    )


def _allocate(client, video=None, budget=0.25, **kw):
    return client.predict(video=handle_file(str(video)) if video else None, question=kw.pop("question", QUESTION),
                          budget=budget, api_name="/allocate", **kw)


# ---------------------------------------------------------------------------------------------------------- API


def test_api_schema_types_and_names(space):
    _, client, _ = space
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/answer", "/allocate"}  # the UI's own events stay private
    for name, extra in (("/allocate", []), ("/answer", ["max_new_tokens"])):
        parameters = {p["parameter_name"]: p for p in endpoints[name]["parameters"]}
        assert list(parameters) == API_PARAMETERS + extra
        for optional in ("video", "image"):  # neither is required: one of them is enough
            assert parameters[optional]["parameter_has_default"] and parameters[optional]["parameter_default"] is None
        for integer in ("num_frames", "max_visual_tokens", *extra):
            assert parameters[integer]["type"]["type"] == "integer", integer
        assert parameters["budget"]["parameter_default"] == 0.25
        assert parameters["backbone"]["parameter_default"] == "tiny-reader"  # the CPU default answerer
        # the CPU default allocator: the learned one shipped with (and trained against) the tiny reader
        assert parameters["allocator"]["parameter_default"] == "learned"
        assert parameters["allocator_repo"]["parameter_default"] == "tiny-reader-allocator"
    assert [r["label"] for r in endpoints["/allocate"]["returns"]] == ["Result"]
    assert [r["label"] for r in endpoints["/answer"]["returns"]] == ["Answer", "Result"]


def test_defaults_cpu_tiny_reader_gpu_qwen(monkeypatch):
    """CPU: tiny-reader answers, with the learned allocator shipped with it, the first example on page load. GPU: a
    real Qwen checkpoint with the prior, nothing generated on page load. needle-reader and the random tiny backbones
    stay offered, never first."""
    from space_launch import load_space_app

    app = load_space_app()
    for name in ("RESADAPT_BACKBONE", "RESADAPT_ALLOCATOR", "RESADAPT_AUTORUN", "RESADAPT_MAX_NEW_TOKENS", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RESADAPT_DEVICE", "cpu")
    cpu = app.AppConfig.from_env()
    assert (cpu.backbone, cpu.allocator, cpu.autorun, cpu.max_new_tokens) == (
        "tiny-reader", "tiny-reader-allocator", True, 48)
    assert cpu.backbones[0] == "tiny-reader" and {"needle-reader", "tiny-qwen2_5_vl", "tiny-qwen3_vl"} <= set(cpu.backbones)
    assert app.AppConfig().allocator == "tiny-reader-allocator"  # the dataclass default follows its backbone
    assert app.AppConfig(backbone="Qwen/Qwen2.5-VL-3B-Instruct").allocator == "prior"
    monkeypatch.setenv("RESADAPT_DEVICE", "cuda")
    gpu = app.AppConfig.from_env()
    assert (gpu.backbone, gpu.allocator, gpu.autorun) == ("Qwen/Qwen2.5-VL-3B-Instruct", "prior", False)
    assert "random" not in app.BACKBONE_LABELS["tiny-reader"] and app.random_backbone("tiny-qwen2_5_vl")
    assert not app.random_backbone("tiny-reader")


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _docstring_block(path: Path) -> str:
    doc = path.read_text().split('"""')[1]
    block = doc.split("API (``gradio_client``)::\n\n", 1)[1].split("\n\n", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines())


def test_documented_client_calls_run_verbatim(space, media, tmp_path, monkeypatch, capsys):
    """The examples of app.py's docstring and space/README.md, exactly as written (only the address of the Space
    is this test server's), on a clip named clip.mp4 in the working directory."""
    _, _, url = space
    (tmp_path / "clip.mp4").write_bytes(Path(media["clip"]).read_bytes())
    monkeypatch.chdir(tmp_path)
    blocks = [_docstring_block(REPO / "space" / "app.py"), *_python_blocks((REPO / "space" / "README.md").read_text())]
    assert len(blocks) == 2
    for code in blocks:
        assert "api_name=\"/allocate\"" in code and "api_name=\"/answer\"" in code
        assert re.search(r'client\.predict\(video=handle_file\("clip\.mp4"\), question="[^"]+", budget=0\.25, '
                         r'api_name="/allocate"\)', code), "the documented /allocate call passes video, question, budget"
        served = code.replace('"http://127.0.0.1:7860/"', repr(url)).replace('"<user>/<this-space>"', repr(url))
        assert served != code
        namespace: dict = {}
        exec(compile(served, "<documented example>", "exec"), namespace)  # noqa: S102 - our own documentation
        plan = namespace["plan"]
        assert plan["visual_tokens"] < plan["baseline_visual_tokens"] and abs(plan["achieved_retention"] - 0.25) <= 0.02
        assert isinstance(namespace["answer"], str) and namespace["result"]["comparison"]
    printed = capsys.readouterr().out
    assert "of" in printed and "visual tokens" in printed


# ----------------------------------------------------------------------------------------------- pattern example


def test_headline_example_is_a_held_out_pattern_clip(space, reader):
    """The first example: READER_EXAMPLE_INDEX of the reader task's test split, encoded so that the 1-px patterns
    survive (luma within a few levels, the needle patch's fine detail intact) and timed like the frames the reader was
    trained on; the trained question text prefilled, budget 0.25, 8 frames, the known answer as letter + option, and a
    thumbnail of its real frames in the card at the top."""
    import torch

    from examples import READER_EXAMPLE_INDEX
    from resadapt_hf import load_video
    from resadapt_hf.reader_task import OPTIONS, QUESTION, SPLIT_SEEDS, reader_sample

    demo, _, _ = space
    record = reader_sample(READER_EXAMPLE_INDEX, SPLIT_SEEDS["test"])
    assert reader.key == "reader" and reader.budget == 0.25 and reader.num_frames == 8
    assert reader.backbone == "tiny-reader" and reader.image is None
    assert reader.question == QUESTION + "\n" + "\n".join(OPTIONS)
    letter = record["answer"]
    assert (reader.known.letter, reader.known.text) == (letter, f"{letter}. {record['pattern']}")
    clip = load_video(reader.video, num_frames=reader.num_frames)
    assert tuple(clip.frames.shape) == (8, 168, 168, 3) and clip.fps == pytest.approx(24.0)
    error = (clip.frames.float() - record["frames"].float()).abs()
    assert error.mean() < 2.5 and error.max() <= 10

    def detail(frame):  # luma minus its 3x3 mean: the pattern (and the pixel noise)
        luma = frame.float().mean(-1)[None, None]
        return (luma - torch.nn.functional.avg_pool2d(luma, 3, 1, 1, count_include_pad=False))[0, 0]

    t = record["needle_frames"][0]
    original, decoded = detail(record["frames"][t]), detail(clip.frames[t])
    assert float((original * decoded).sum() / (original.norm() * decoded.norm())) > 0.99
    card = demo.resadapt_example_card
    assert 'class="ra-thumb" src="data:image/png;base64,' in card and reader.known.text in card
    assert f"sample {READER_EXAMPLE_INDEX}" in card and "tiny-reader" in card


@pytest.mark.filterwarnings("ignore:.*frame rate is unknown:UserWarning")  # the raw frames, as in training
def test_reader_gets_the_prompt_it_was_trained_with(space, reader):
    """The Space builds tiny-reader's prompt exactly as training did (BackboneRollout with rewards.SYSTEM_PROMPT on
    the record), and the decoded 24 fps clip gets the same token ids and temporal positions as the raw frames."""
    from answerers import Request
    from resadapt_hf import load_video
    from resadapt_hf.reader_task import SPLIT_SEEDS, reader_sample
    from resadapt_hf.rewards import SYSTEM_PROMPT
    from resadapt_hf.rollout import BackboneRollout

    from examples import READER_EXAMPLE_INDEX

    demo, _, _ = space
    cache = demo.resadapt.cache
    model, answerer = cache.backbone("tiny-reader")
    assert answerer.system_prompt == SYSTEM_PROMPT and "random" not in answerer.description
    key, allocator = cache.allocator("prior", None)
    processor = answerer.processor(key, allocator)
    record = reader_sample(READER_EXAMPLE_INDEX, SPLIT_SEEDS["test"])
    clip = load_video(reader.video, num_frames=reader.num_frames)
    prompt = answerer.prompt(processor, Request(clip, None, reader.question))
    assert prompt == BackboneRollout(model, processor, system_prompt=SYSTEM_PROMPT).prompt(record)
    inputs = [processor(text=[prompt], videos=[video], return_tensors="pt",
                        allocation=processor.allocate(text=prompt, videos=[video], scales=1.0))
              for video in (record["frames"], clip)]
    assert inputs[0]["input_ids"].tolist() == inputs[1]["input_ids"].tolist()
    assert inputs[0]["second_per_grid_ts"].tolist() == inputs[1]["second_per_grid_ts"].tolist()
    # the Qwen checkpoints and the random tiny backbones get no system message
    assert cache.backbone("tiny-qwen2_5_vl")[1].system_prompt is None


def test_reader_example_runs_the_real_path(space, reader):
    """Whatever the weights: the CPU default (tiny-reader, the shipped learned allocator) answers the first example
    at budget 0.25 with a quarter of the 144 visual tokens, FixedScale and native scale 1 alongside, each graded."""
    _, client, _ = space
    answer, result = _answer(client, video=reader.video, question=reader.question, budget=reader.budget,
                             num_frames=reader.num_frames)
    assert result["backbone"] == "tiny-reader" and "trained on the pattern task" in result["answerer"]
    assert result["allocator"] == "ResAdaptAllocator('tiny-reader-allocator')"
    assert result["baseline_visual_tokens"] == 144 and abs(result["visual_tokens"] - 36) <= 2
    assert result["budget_reached"] is True and result["known_answer"] == reader.known.text
    assert answer == result["answer"] and isinstance(result["correct"], bool)
    fixed, native = result["comparison"]
    assert (fixed["run"], fixed["requested_retention"], fixed["visual_tokens"]) == ("FixedScale", 0.25, 36)
    assert fixed["chunk_sizes"] == [[84, 84]] * 4 and isinstance(fixed["correct"], bool) and fixed["answer"]
    assert native["run"] == "Native (scale 1)" and native["visual_tokens"] == 144 and isinstance(native["correct"], bool)
    assert not any(READER_NOTE in n or "random weights" in n for n in result["notes"])


def test_trained_reader_answers_the_headline_example(space, reader):
    """THE MUST-SHOW (needs the trained tiny-reader weights; fails with the untrained placeholder): on the first
    bundled example, the page's CPU default answers right at budget 0.25 with its default allocator, and the side by
    side shows FixedScale's answer at the same budget.

    Run alone: ``pytest tests/test_space.py -k trained_reader``."""
    from answerers import parse_options

    demo, client, _ = space
    answer, result = _answer(client, video=reader.video, question=reader.question, budget=reader.budget,
                             num_frames=reader.num_frames)
    assert (result["backbone"], result["requested_retention"]) == ("tiny-reader", 0.25)
    assert result["correct"] is True and answer == reader.known.text, (answer, result["comparison"])
    fixed = result["comparison"][0]
    options = [f"{letter}. {text}" for letter, text in parse_options(reader.question).items()]
    assert fixed["run"] == "FixedScale" and fixed["requested_retention"] == 0.25 and fixed["answer"] in options
    # ... and the page shows it: the side-by-side table has FixedScale's row with its answer and verdict
    app = demo.resadapt
    config = app.config
    kind = "learned" if config.allocator not in ("prior", "fixed") else config.allocator
    views = app.answer_ui(reader.video, None, reader.question, reader.budget, 0, reader.num_frames, kind,
                          config.allocator if kind == "learned" else "", config.backbone, True, config.max_new_tokens)
    headline, shown, side_by_side = views[:3]
    assert "✓ right" in headline and shown.startswith(reader.known.text)
    row = re.search(r"<tr class='ra-run-fixed'>(.*?)</tr>", side_by_side).group(1)
    assert "FixedScale" in row and fixed["answer"] in row and ("✓ right" in row or "✗ wrong" in row)


def test_candidate_examples_helper_runs_the_space_path(space):
    """The helper that picks READER_EXAMPLE_INDEX (``python space/examples.py``) runs the Space's own answerer path;
    on the headline sample it reproduces the example's answers (same clip bytes, same path)."""
    from examples import READER_EXAMPLE_INDEX, candidate_examples

    demo, client, _ = space
    reader = demo.resadapt_example_list[0]
    row = candidate_examples(1, start=READER_EXAMPLE_INDEX, app=demo.resadapt)[0]
    assert row["index"] == READER_EXAMPLE_INDEX and row["answer"] == reader.known.letter
    assert row["default_allocator"] == "ResAdaptAllocator('tiny-reader-allocator')"
    assert set(row) >= {"native_right", "allocator_right", "prior_right", "fixed_right", "candidate", "frequency"}
    _, result = _answer(client, video=reader.video, question=reader.question, budget=0.25, num_frames=8)
    assert row["allocator_right"] == result["correct"]
    assert [row["fixed_right"], row["native_right"]] == [run["correct"] for run in result["comparison"]]


def test_reader_answer_is_shown_as_the_named_option(space):
    """tiny-reader's completion (``<think>\\n</think>\\n<answer>\\boxed{B}</answer>``) is shown as the option it
    names, graded by its letter, with the model's own output beside it (no trained weights needed)."""
    from answerers import KnownAnswer, VLMAnswerer, parse_options, reader_prompt
    from resadapt_hf.tiny_reader import reader_completion

    options = parse_options(reader_prompt())
    reply = VLMAnswerer.reply(reader_completion("B"), 36, options, 0.1)
    assert (reply.text, reply.choice, reply.answered) == ("B. vertical stripes", "B", True)
    assert reply.explanation == "model output: <think> </think> <answer>\\boxed{B}</answer>"
    assert KnownAnswer("", reader_prompt(), "B", "B. vertical stripes").grade(reply) is True
    garbled = VLMAnswerer.reply("<>>>>", 4, options, 0.1)  # no option named: shown as generated, graded wrong
    assert (garbled.text, garbled.choice, garbled.explanation) == ("<>>>>", None, None)
    assert KnownAnswer("", reader_prompt(), "B", "B. vertical stripes").grade(garbled) is False
    # a Qwen checkpoint that reasons in free text keeps its text; a boxed option text is read too
    assert VLMAnswerer.reply("I see horizontal stripes.", 6, options, 0.1).choice == "A"
    assert VLMAnswerer.reply("<answer>\\boxed{falling diagonal stripes}</answer>", 9, options,
                             0.1).text == "D. falling diagonal stripes"


# ------------------------------------------------------------------------------------------------ needle examples


def test_needle_example_is_right_at_a_quarter_budget(space, needle):
    """needle-reader (the answerer the needle examples bring) with the prior allocator answers the needle example
    right at budget 0.25 with a quarter of the visual tokens; FixedScale (same chunk sizes here: the prior is nearly
    uniform on this clip) and native scale 1 are shown alongside, and right too."""
    _, client, _ = space
    assert needle.backbone == "needle-reader"
    answer, result = _answer(client, video=needle.video, question=needle.question, budget=needle.budget, **NEEDLE)
    assert needle.budget == 0.25 and needle.known.text == "C. 3"
    assert answer == result["answer"] == needle.known.text and result["correct"] is True
    assert result["backbone"] == "needle-reader" and "not a language model" in result["answerer"]
    assert result["allocator"].startswith("PriorAllocator")
    assert (result["visual_tokens"], result["baseline_visual_tokens"]) == (64, 256)
    assert result["achieved_retention"] == 0.25 and result["budget_reached"] is True
    fixed, native = result["comparison"]
    assert fixed["run"] == "FixedScale" and fixed["correct"] is True and fixed["chunk_sizes"] == result["chunk_sizes"]
    assert native["run"].startswith("Native") and native["correct"] is True and native["visual_tokens"] == 256
    assert any("same size" in note for note in result["notes"])  # the page says FixedScale reads the same pixels
    assert "frame 3" in result["answer_explanation"]  # the needle frame of sample 8


def test_needle_example_matches_the_evaluation_backend(space, needle):
    """The Space's reader path is the evaluation's: NeedleBackend on the same decoded frames, with the prior's
    scales and budget 0.25, plans the same chunk sizes and reads the same option."""
    from resadapt_hf import PriorAllocator, load_video
    from resadapt_hf.evaluate.backends import NeedleBackend
    from resadapt_hf.synthetic import parse_choice

    demo, client, _ = space
    result = _allocate(client, video=needle.video, question=needle.question, budget=0.25, **NEEDLE)
    frames = load_video(needle.video).frames
    backend = NeedleBackend(reader=demo.resadapt.cache.answerer("needle-reader").reader)
    options = needle.question.split("? ", 1)[1].split("  ")
    sample = backend.prepare({"frames": frames, "question": needle.question, "options": options}, "needle-8")
    allocation = backend.allocate(sample, PriorAllocator().predict_scales([frames])[0], budget=0.25)
    assert [list(s) for s in allocation.chunk_sizes] == result["chunk_sizes"]
    assert result["scales"] == pytest.approx(allocation.scales, abs=1e-9)
    assert parse_choice(backend.generate(sample, allocation)) == needle.known.letter
    assert result["answer"] is None and result["correct"] is None  # /allocate answers nothing


def test_tighter_budget_shows_right_and_wrong(space, needle):
    _, client, _ = space
    tight = _example(space, "needle-tight")
    assert tight.video == needle.video and tight.budget == 0.15 and tight.backbone == "needle-reader"
    answer, result = _answer(client, video=tight.video, question=tight.question, budget=tight.budget, **NEEDLE)
    fixed, native = result["comparison"]
    assert result["correct"] is False and fixed["correct"] is False and native["correct"] is True
    assert answer != needle.known.text and native["answer"] == needle.known.text


def test_unreachable_budget_is_explained(space, needle):
    _, client, _ = space
    result = _allocate(client, video=needle.video, question=needle.question, budget=0.02, **NEEDLE)
    assert result["budget_reached"] is False and result["visual_tokens"] == 16  # 4 chunks at the 4-token floor
    assert any("out of reach" in n and "smallest scale (0.2)" in n and "0.062" in n for n in result["notes"])


# ------------------------------------------------------------------------------------------------- other inputs


def test_allocation_json_has_one_key_per_fact(space, media):
    """/allocate on an ordinary clip with the CPU default: planned on tiny-reader's grid, no answer, a note that
    tiny-reader's answers mean nothing here; every list is consistent with the others. With needle-reader: planned
    on the tiny Qwen2.5-VL grid, grid rounding that changes the frames' shape is explained."""
    _, client, _ = space
    plan = _allocate(client, video=media["clip"], budget=0.25)
    assert set(plan) == RESULT_KEYS
    assert all(set(run) == RUN_KEYS for run in plan["comparison"])
    frames = len(plan["scales"])
    assert frames == len(plan["frame_indices"]) == len(plan["timestamps"]) == 16
    chunks = len(plan["chunk_sizes"])
    assert chunks == len(plan["chunk_scales"]) == len(plan["chunk_visual_tokens"]) == len(plan["chunk_frames"]) == 8
    assert [f for c in plan["chunk_frames"] for f in c] == list(range(frames))
    assert sum(plan["chunk_visual_tokens"]) == plan["visual_tokens"]
    assert plan["media"] == [{"kind": "video", "source_size": [240, 320], "base_size": plan["media"][0]["base_size"],
                              "num_frames": 16, "num_chunks": 8}]
    assert plan["answer"] is None and plan["known_answer"] is None
    assert plan["backbone"] == "tiny-reader" and any(READER_NOTE in n for n in plan["notes"])
    needle_plan = _allocate(client, video=media["clip"], budget=0.25, **NEEDLE)
    notes = " ".join(needle_plan["notes"])
    assert "reads only the needle task" in notes and "Grid rounding changes the shape: the 320×240 px" in notes


def test_tiny_backbone_answers_are_readable_and_match_the_package(space, media):
    _, client, _ = space
    answer, result = _answer(client, video=media["clip"], budget=0.5, backbone="tiny-qwen2_5_vl", compare=False,
                             allocator="prior", max_new_tokens=4)
    assert answer.strip() and "\ufffd" not in answer and all(c.isprintable() or c == "\n" for c in answer)
    assert result["comparison"] == [] and any("random weights" in n for n in result["notes"])
    assert abs(result["achieved_retention"] - 0.5) <= 0.02

    # the app only wires the package: the same clip through ResAdaptProcessor gives the same plan
    from resadapt_hf import PriorAllocator, ResAdaptProcessor, load_video
    from resadapt_hf.tiny import build_tiny_processor

    processor = ResAdaptProcessor.from_backbone(build_tiny_processor("qwen2_5_vl"), allocator=PriorAllocator())
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    expected = processor.allocate(text, videos=load_video(media["clip"], num_frames=16), budget=0.5)
    assert result["chunk_sizes"] == [list(s) for s in expected.chunk_sizes]
    assert result["visual_tokens"] == expected.visual_tokens
    assert result["scales"] == pytest.approx(expected.scales, abs=1e-9)


def test_image_input_with_fixed_scale(space, tmp_path):
    from PIL import Image

    from resadapt_hf.sample_clips import make_demo_frames

    _, client, _ = space
    png = tmp_path / "page.png"
    Image.fromarray(make_demo_frames(num_frames=16, height=240, width=320)[10]).save(png)
    _, result = _answer(client, image=png, budget=0.5, allocator="fixed", question="What is written here?",
                        backbone="tiny-qwen2_5_vl", max_new_tokens=4)
    assert [m["kind"] for m in result["media"]] == ["image"] and len(result["chunk_sizes"]) == 1
    assert result["allocator"].startswith("FixedScale")
    assert [run["run"] for run in result["comparison"]] == ["Native (scale 1)"]  # FixedScale is the chosen one


def test_learned_allocator_folder(space, media, tmp_path):
    """A saved ResAdapt repo folder (allocator/ subfolder, safetensors) loads by path, without remote code, and gives
    the same chunk sizes as the allocator object it was saved from."""
    from resadapt_hf import ResAdaptProcessor, load_video
    from resadapt_hf.allocators import build_allocator, save_resadapt
    from resadapt_hf.tiny import build_tiny_processor

    _, client, _ = space
    allocator = build_allocator("tiny-statistics")
    folder = save_resadapt(tmp_path / "repo", allocator, build_tiny_processor("qwen2_5_vl"))
    plan = _allocate(client, video=media["clip"], budget=0.5, allocator="learned", allocator_repo=str(folder),
                     backbone="tiny-qwen2_5_vl")
    assert plan["allocator"].startswith("ResAdaptAllocator(") and abs(plan["achieved_retention"] - 0.5) <= 0.02
    processor = ResAdaptProcessor.from_backbone(build_tiny_processor("qwen2_5_vl"), allocator=allocator)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    expected = processor.allocate(text, videos=load_video(media["clip"], num_frames=16), budget=0.5)
    assert plan["chunk_sizes"] == [list(s) for s in expected.chunk_sizes]


BAD_INPUTS = [
    ("text", {}, "Could not read the uploaded file as a video"),
    ("empty", {}, "is empty (0 bytes)"),
    ("long", {}, f"accepts clips up to {MAX_SECONDS} s"),
    # the inputs' ranges are the server's: Gradio itself refuses values outside them
    ("clip", {"budget": 0}, "Value 0 is less than minimum value 0.01"),
    ("clip", {"budget": 5}, "Value 5 is greater than maximum value 3.24"),
    ("clip", {"num_frames": 0}, "Value 0 is less than minimum value 1"),
    (None, {}, "Upload a video or an image"),
    ("clip", {"allocator": "learned", "allocator_repo": "/nonexistent/allocator"}, "Could not load the learned allocator"),
]


@pytest.mark.parametrize("which, overrides, message", BAD_INPUTS, ids=[f"{c[0]}-{c[2][:20]}" for c in BAD_INPUTS])
def test_bad_input_gives_a_clear_error_then_the_app_still_serves(space, media, which, overrides, message):
    _, client, _ = space
    with pytest.raises(Exception) as caught:
        _answer(client, video=media[which] if which else None, **{"budget": 0.25, **overrides})
    text = str(caught.value)
    assert message in text, text
    assert type(caught.value).__name__ == "AppError"  # a gr.Error, shown to the user, not a crash
    assert "RESADAPT_" not in text and "Traceback" not in text  # no internal names in what a user reads
    plan = _allocate(client, video=media["clip"], budget=0.5)
    assert abs(plan["achieved_retention"] - 0.5) <= 0.02


def test_upload_size_limit(space, media):
    import httpx

    _, client, url = space
    # the client reads max_file_size from the app config and refuses before sending ...
    with pytest.raises(Exception) as caught:
        _allocate(client, video=media["huge"], budget=0.5)
    assert "exceeds the maximum file size" in str(caught.value), str(caught.value)
    # ... and the server enforces it for any other caller (browser, curl)
    with open(media["huge"], "rb") as handle:
        response = httpx.post(url + "gradio_api/upload", files={"files": ("huge.mp4", handle, "video/mp4")}, timeout=30)
    assert response.status_code == 413, (response.status_code, response.text[:200])
    assert "maximum allowed size" in response.text
    assert _allocate(client, video=media["clip"], budget=0.25)["budget_reached"] is True


# ------------------------------------------------------------------------------------------------ UI wiring, views


def test_budget_on_a_backbone_at_its_smallest_size_is_explained(space, media):
    """Tiny Qwen3-VL puts this clip at its smallest input size already at scale 1: no budget below 1 is reachable,
    and the page says why instead of only showing retention 1.0."""
    _, client, _ = space
    plan = _allocate(client, video=media["clip"], budget=0.25, backbone="tiny-qwen3_vl", allocator="prior")
    assert plan["budget_reached"] is False and plan["achieved_retention"] == 1.0
    assert any("already at the backbone's smallest size" in note for note in plan["notes"]), plan["notes"]


def test_every_run_first_clears_the_previous_results(space):
    """An error must not leave the previous run's outputs on screen: each button first blanks every output."""
    import gradio as gr

    demo, _, _ = space
    ids = {getattr(block, "elem_id", None): block._id for block in demo.blocks.values()}
    outputs = [ids[e] for e in ("headline", "side-by-side", "answer", "notes", "allocation-view", "allocation-json")]
    skip = gr.skip()  # keep what is chosen
    brings = {  # on a CPU page an example brings the answerer that reads it, and its allocator
        "example-reader": ["tiny-reader", "learned", "tiny-reader-allocator"],
        "example-needle": ["needle-reader", "prior", skip],
        "example-needle-tight": ["needle-reader", "prior", skip],
        "example-texture": [skip, skip, skip],
    }
    for button in ("run-button", "allocate-button", "example-reader", "example-needle", "example-needle-tight",
                   "example-texture"):
        first = [f for f in demo.fns.values() if (ids[button], "click") in [tuple(t) for t in f.targets]]
        assert len(first) == 1, button
        cleared = set(outputs) <= {block._id for block in first[0].outputs}
        values = first[0].fn()
        assert cleared and all(v in ("", None) for v in values[-len(outputs):]), button
        if button.startswith("example-"):
            where = [block._id for block in first[0].outputs]
            chosen = [values[where.index(ids[e])] for e in ("backbone", "allocator-kind", "allocator-repo")]
            assert chosen == brings[button], button


def test_answer_text_is_cleaned_and_options_are_read():
    from answerers import clean_text, named_choice, parse_options

    assert clean_text("8\ufffd00(8\ufffd00(\x07 ok") == "800(800( ok"
    options = parse_options("Which digit appears in the video? A. 7  B. 8  C. 3  D. 6")
    assert options == {"A": "7", "B": "8", "C": "3", "D": "6"}
    assert parse_options("Which digit? B. 7 C. 8") == {}  # options must start at A
    assert named_choice("<answer>\\boxed{C}</answer>", options) == "C"
    assert named_choice("C. 3", options) == "C" and named_choice("(B)", options) == "B"
    assert named_choice("The digit is 6.", options) == "D"
    assert named_choice("7 or 8", options) is None and named_choice("8\ufffd00(", options) is None
    assert named_choice("scale 0.5 and 12 frames", options) is None
    assert parse_options("Which digit? A.7 B.8 Answer with a letter.") == {"A": "7", "B": "8"}
    # word options, one per line (tiny-reader's trained question) or inline
    words = {"A": "horizontal stripes", "B": "vertical stripes", "C": "rising diagonal stripes",
             "D": "falling diagonal stripes"}
    assert parse_options("Which way do the fine stripes in the video run?\nA. horizontal stripes\n"
                         "B. vertical stripes\nC. rising diagonal stripes\nD. falling diagonal stripes") == words
    assert parse_options("Which way? A. horizontal stripes B. vertical stripes C. rising diagonal stripes "
                         "D. falling diagonal stripes") == words
    assert parse_options("Which one? (A) red, (B) blue") == {"A": "red", "B": "blue"}
    assert named_choice("<think>\n</think>\n<answer>\\boxed{C}</answer>", words) == "C"
    assert named_choice("Vertical stripes.", words) == "B" and named_choice("stripes", words) is None


def test_saved_text_and_chunk_table():
    from resadapt_hf.processing.allocation import MediaSpec, plan_allocation
    from views import chunk_table, saved_text

    assert saved_text(120, 480) == "kept 120 of 480 visual tokens (75% saved)"
    assert saved_text(600, 480) == "used 600 visual tokens, 25% more than the 480 at native size"
    allocation = plan_allocation([MediaSpec("video", 5, (64, 64), 8, 2)], [1.0, 1.0, 0.5, 0.5, 1.8])
    rows = chunk_table(allocation)
    assert [r["frames"] for r in rows] == [[0, 1], [2, 3], [4]]  # the last chunk: one frame, repeated by the backbone
    assert [(r["height"], r["visual_tokens"]) for r in rows] == [(64, 64), (32, 16), (112, 196)]
    assert [round(r["effective_scale"], 3) for r in rows] == [1.0, 0.5, 1.75]


def test_space_card_and_requirements_match_setup_cfg():
    """README front matter is a valid Space card; requirements.txt pins what setup.cfg pins; gradio comes from
    sdk_version (= the `space` extra), not from requirements."""
    import configparser

    from huggingface_hub import SpaceCard

    card = SpaceCard.load(REPO / "space" / "README.md").data.to_dict()
    for key in ("title", "emoji", "sdk", "sdk_version", "app_file", "suggested_hardware", "license", "models",
                "short_description"):
        assert card.get(key), key
    assert card["sdk"] == "gradio" and card["app_file"] == "app.py" and card["license"] == "apache-2.0"
    assert len(card["short_description"]) <= 60

    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert f"gradio=={card['sdk_version']}" in setup["options.extras_require"]["space"]
    pins = dict(re.findall(r"^\s*([A-Za-z0-9_.-]+)==(\S+)", setup["options"]["install_requires"], flags=re.M))
    lines = [line.split("#")[0].strip() for line in (REPO / "space" / "requirements.txt").read_text().splitlines()]
    required = dict(line.split("==", 1) for line in lines if "==" in line)
    assert "gradio" not in required
    for name, version in pins.items():
        assert required.get(name) == version, (name, version, required.get(name))
    for name in ("av", "numpy", "pillow"):
        assert name in required, name


def test_space_bundle_copies_every_module():
    """`make space-bundle` copies every Python module of space/ (app.py imports its siblings by name)."""
    makefile = (REPO / "Makefile").read_text()
    line = next(line for line in makefile.splitlines() if "$(SPACE_OUT)/" in line and line.strip().startswith("cp space/"))
    for module in sorted((REPO / "space").glob("*.py")):
        assert f"space/{module.name}" in line, module.name


def test_handlers_check_ranges_for_direct_callers(space, media):
    """The handlers repeat the inputs' ranges (for Python callers of ResAdaptApp), in words naming the input."""
    import gradio as gr

    demo, _, _ = space
    app = demo.resadapt
    for kwargs, message in (({"budget": 5}, "Budget must be between 0.01 and 3.24"),
                            ({"num_frames": 40}, "Frames sampled must be a whole number from 1 to 32")):
        with pytest.raises(gr.Error, match=message):
            app.allocate(video=str(media["clip"]), **kwargs)
