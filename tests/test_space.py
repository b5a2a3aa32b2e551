"""The Gradio Space (space/app.py), launched in-process with tiny random models and driven through gradio_client.

One app per module (tiny backbone built once): answers at two budgets, the /allocate JSON endpoint, an image input,
and bad inputs (non-video, empty file, over-long clip, budget 0, nothing uploaded, over-size upload), each a clear
message, with the app still serving valid requests afterwards. Offline: HF_HUB_OFFLINE and no analytics (conftest).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from space_launch import launched_space  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAX_SECONDS = 3  # the test limit: the valid clip lasts 2 s, the long one 5 s
MAX_FILE_MB = 1
QUESTION = "What moves across the frames?"
SPACE_ENV = {
    "RESADAPT_BACKBONE": "tiny-qwen2_5_vl",
    "RESADAPT_ALLOCATOR": "prior",
    "RESADAPT_DEVICE": "cpu",
    "RESADAPT_MAX_SECONDS": str(MAX_SECONDS),
    "RESADAPT_MAX_FILE_MB": str(MAX_FILE_MB),
    "RESADAPT_NUM_FRAMES": "16",
    "RESADAPT_MAX_NEW_TOKENS": "4",
    "GRADIO_ANALYTICS_ENABLED": "False",
}


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
    """(module, demo, client, url) of a launched app; closed at the end of the module."""
    with launched_space(SPACE_ENV, tmp_path_factory.mktemp("space_examples")) as (app, demo, url):
        client = Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("client_downloads")))
        yield app, demo, client, url


def _answer(client, video=None, image=None, budget=0.5, **kw):
    return client.predict(
        video=handle_file(str(video)) if video else None, image=handle_file(str(image)) if image else None,
        question=kw.pop("question", QUESTION), budget=budget, api_name="/answer", **kw,
    )


def _allocate(client, video=None, budget=0.5, **kw):
    return client.predict(video=handle_file(str(video)) if video else None, image=None, question=QUESTION,
                          budget=budget, api_name="/allocate", **kw)


def test_api_lists_both_endpoints(space):
    _, _, client, _ = space
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/answer" in endpoints and "/allocate" in endpoints
    names = [p["parameter_name"] for p in endpoints["/allocate"]["parameters"]]
    assert names[:4] == ["video", "image", "question", "budget"]
    assert len(endpoints["/allocate"]["returns"]) == 1  # just the allocation JSON (the UI views travel in a State)


def test_answer_at_two_budgets(space, media):
    _, _, client, _ = space
    plans = {}
    for budget in (0.5, 0.25):
        answer, plan, plot, gallery, stats, summary = _answer(client, video=media["clip"], budget=budget)
        assert isinstance(answer, str) and answer.strip(), "the answer field must be filled"
        assert plan["requested_retention"] == budget
        assert abs(plan["achieved_retention"] - budget) <= 0.02
        assert len(plan["scales"]) == plan["num_frames"] == 16 and len(plan["chunk_sizes"]) == 8
        assert all(0.2 - 1e-6 <= s <= 1.8 + 1e-6 for s in plan["scales"])
        assert plan["visual_tokens"] == sum(m["visual_tokens"] for m in plan["media"])
        assert plan["timings_ms"]["backbone"] > 0 and plan["timings_ms"]["allocator"] > 0
        assert len(gallery) == 16  # one picture per frame, drawn at its chunk's size
        assert stats["headers"][:3] == ["frames", "tokens before (scale 1)", "tokens after"]
        assert stats["data"][0][2] == plan["visual_tokens"]
        assert f"{budget:.3f}" in summary and "random weights" in summary
        assert plot is not None
        plans[budget] = plan
    assert plans[0.25]["visual_tokens"] < plans[0.5]["visual_tokens"]
    assert plans[0.25]["baseline_visual_tokens"] == plans[0.5]["baseline_visual_tokens"]


def test_allocate_endpoint_matches_the_package(space, media):
    _, _, client, _ = space
    plan = _allocate(client, video=media["clip"], budget=0.25)
    assert isinstance(plan, dict)
    for key in ("scales", "chunk_sizes", "visual_tokens", "baseline_visual_tokens", "requested_retention",
                "achieved_retention", "budget_reached", "frame_indices", "timestamps"):
        assert key in plan, key
    assert abs(plan["achieved_retention"] - 0.25) <= 0.02 and plan["budget_reached"] is True

    # the app only wires the package: the same clip through ResAdaptProcessor gives the same plan
    from resadapt_hf import PriorAllocator, ResAdaptProcessor, load_video
    from resadapt_hf.tiny import build_tiny_processor

    processor = ResAdaptProcessor.from_backbone(build_tiny_processor("qwen2_5_vl"), allocator=PriorAllocator())
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    expected = processor.allocate(text, videos=load_video(media["clip"], num_frames=16), budget=0.25)
    assert plan["chunk_sizes"] == [list(s) for s in expected.chunk_sizes]
    assert plan["visual_tokens"] == expected.visual_tokens
    assert plan["scales"] == pytest.approx(expected.scales, abs=1e-4)


def test_allocate_only_button_views(space, media):
    """The UI's "Allocate only" button (private endpoint): JSON plus plot, gallery, stats and summary."""
    _, demo, _, _ = space
    plan, plot, gallery, stats, summary = demo.resadapt.allocate_views(
        str(media["clip"]), None, QUESTION, 0.25, 0, 16, "prior", "", "tiny-qwen2_5_vl")
    assert list(plot["frame"]) == [f"{i:02d}" for i in range(16)]
    assert list(plot["scale"]) == pytest.approx(plan["scales"], abs=1e-4)
    assert len(gallery) == 16
    for (picture, caption), scale, t in zip(gallery, plan["scales"], range(16)):
        h, w = plan["chunk_sizes"][t // 2]
        assert picture.size == (w, h) and f"s={scale:.2f}" in caption  # drawn at the allocated size
    assert stats["tokens after"][0] == plan["visual_tokens"] and stats["backbone ms"][0] is None
    assert "0.250" in summary


def test_image_input_and_fixed_scale(space, media, tmp_path):
    from PIL import Image

    from resadapt_hf.sample_clips import make_demo_frames

    _, _, client, _ = space
    png = tmp_path / "page.png"
    Image.fromarray(make_demo_frames(num_frames=16, height=240, width=320)[10]).save(png)
    answer, plan, _, gallery, _, _ = _answer(client, image=png, budget=0.5, allocator="fixed",
                                             question="What is written here?")
    assert answer.strip()
    assert [m["kind"] for m in plan["media"]] == ["image"] and len(gallery) == 1
    assert plan["allocator"].startswith("FixedScale")


def test_learned_allocator_folder(space, media, tmp_path):
    """A saved ResAdapt repo folder (allocator/ subfolder, safetensors) loads by path, without remote code, and gives
    the same scales as the allocator object it was saved from."""
    from resadapt_hf.allocators import build_allocator, save_resadapt
    from resadapt_hf.tiny import build_tiny_processor

    _, _, client, _ = space
    allocator = build_allocator("tiny-statistics")
    folder = save_resadapt(tmp_path / "repo", allocator, build_tiny_processor("qwen2_5_vl"))
    plan = _allocate(client, video=media["clip"], budget=0.5, allocator="learned", allocator_repo=str(folder))
    assert plan["allocator"].startswith("ResAdaptAllocator(") and abs(plan["achieved_retention"] - 0.5) <= 0.02

    from resadapt_hf import ResAdaptProcessor, load_video

    processor = ResAdaptProcessor.from_backbone(build_tiny_processor("qwen2_5_vl"), allocator=allocator)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    expected = processor.allocate(text, videos=load_video(media["clip"], num_frames=16), budget=0.5)
    assert plan["chunk_sizes"] == [list(s) for s in expected.chunk_sizes]


BAD_INPUTS = [
    ("text", {}, "Could not read the uploaded file as a video"),
    ("empty", {}, "is empty (0 bytes)"),
    ("long", {}, f"accepts clips up to {MAX_SECONDS} s"),
    ("clip", {"budget": 0}, "Budget must be a target retention greater than 0"),
    (None, {}, "Upload a video or an image"),
    ("clip", {"allocator": "learned", "allocator_repo": "/nonexistent/allocator"}, "Could not load the learned allocator"),
]


@pytest.mark.parametrize("which, overrides, message", BAD_INPUTS, ids=[c[2][:24] for c in BAD_INPUTS])
def test_bad_input_gives_a_clear_error_then_the_app_still_serves(space, media, which, overrides, message):
    _, _, client, _ = space
    with pytest.raises(Exception) as caught:
        _answer(client, video=media[which] if which else None, **{"budget": 0.5, **overrides})
    assert message in str(caught.value), str(caught.value)
    assert type(caught.value).__name__ == "AppError"  # a gr.Error, shown to the user, not a crash
    plan = _allocate(client, video=media["clip"], budget=0.5)
    assert abs(plan["achieved_retention"] - 0.5) <= 0.02


def test_upload_size_limit(space, media):
    import httpx

    _, _, client, url = space
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


def test_space_card_and_requirements_match_setup_cfg():
    """README front matter is a valid Space card; requirements.txt pins what setup.cfg pins; gradio comes from
    sdk_version (= the `space` extra), not from requirements."""
    import configparser
    import re

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
    for name in ("av", "numpy", "pillow", "pandas"):
        assert name in required, name
