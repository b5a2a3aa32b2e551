"""What answers in the Space: a Qwen-VL backbone behind a ``ResAdaptProcessor``, or the calibrated needle reader.

Both plan allocations and answer through one small interface (:class:`Answerer`), so the Space picks either by its
backbone name (``tiny-reader``, ``needle-reader``, ``tiny-qwen2_5_vl``, ``Qwen/Qwen2.5-VL-3B-Instruct``, ...).

* :class:`VLMAnswerer`: allocation by ``ResAdaptProcessor.allocate``, answers by greedy generation on exactly that
  allocation (the processor resizes every chunk before the unchanged backbone sees it). It serves the Qwen
  checkpoints, the random ``tiny-*`` backbones and ``tiny-reader``, the trained tiny Qwen2.5-VL of
  ``resadapt_hf.tiny_reader`` (the CPU default), which gets exactly the prompt it was trained with
  (:func:`reader_prompt`: ``rewards.SYSTEM_PROMPT`` as the system message, the question and its options one per line).
  An answer in the ``<answer>\\boxed{B}</answer>`` form that names an option is shown as that option
  (``"B. vertical stripes"``), with the model's own output beside it.
* :class:`NeedleReaderAnswerer`: the synthetic needle task of ``resadapt_hf.synthetic``, exactly as
  ``resadapt_hf.evaluate.NeedleBackend`` runs it: the allocation is planned on the task's grid (scale 1 = 64 x 64
  px in 8 px steps, 2-frame chunks) with the processor's own planner, the frames are resized by the ResAdapt
  operator (``resize_frames``) and the calibrated reader answers from those pixels. It reads the task's 128 x 128
  clips with a digit multiple-choice question; anything else is planned on the tiny Qwen2.5-VL grid and gets no
  answer (it says so).

Also here: parsing a question's options, known answers of the bundled examples and the grading of an answer against
one.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch
from PIL import Image

from resadapt_hf import Allocation, ResAdaptProcessor, VideoClip
from resadapt_hf.reader_task import OPTIONS as READER_OPTIONS
from resadapt_hf.reader_task import QUESTION as READER_QUESTION
from resadapt_hf.reader_task import ReaderTaskConfig
from resadapt_hf.rewards import extract_answer
from resadapt_hf.synthetic import NeedleReader, NeedleTaskConfig, parse_choice, plan_needle, resize_frames
from resadapt_hf.tiny_reader import READER_NAME

NEEDLE_READER = "needle-reader"
READER_DESCRIPTION = "calibrated needle reader, not a language model"
TINY_READER = READER_NAME  # "tiny-reader"
TINY_READER_DESCRIPTION = "1.2M-parameter Qwen2.5-VL trained on the pattern task only"
# an option marker: "A." / "A)" before text (or directly before a digit, "A.7"), not inside a word
_MARKER = re.compile(r"(?<![A-Za-z0-9])([A-J])[.)](?:[ \t]+|(?=\d))")
_LEADING_LETTER = re.compile(r"^\W*\(?([A-J])\)?(?:[.):,\s]|$)")
_THINK = re.compile(r"<think>(.*?)</think>", re.S)

# a model's generation step: (backbone inputs, max new tokens) -> one (new token ids, seconds) per input
Generate = Callable[[Sequence, int], list[tuple[list[int], float]]]


@dataclass(frozen=True)
class Request:
    """The decoded inputs of one request."""

    clip: VideoClip | None
    image: Image.Image | None
    question: str


@dataclass(frozen=True)
class Reply:
    """One answer.

    Attributes:
        text: the answer as shown (the option it names, e.g. ``"C. 3"`` or ``"B. vertical stripes"``, for the
            needle reader and for a language model's ``<answer>\\boxed{B}</answer>``; else the generated text).
        choice: the option letter the answer names, when the question has options and the answer names one.
        explanation: how the answer was read: the needle reader's reasoning, or a language model's own output when
            ``text`` is the option it boxed (else None).
        answered: False when this answerer cannot answer the input; ``text`` then says why.
        seconds: time spent answering.
    """

    text: str
    choice: str | None
    explanation: str | None
    answered: bool
    seconds: float


class Answerer(Protocol):
    """The backbone side of the Space: plans allocations and answers on them."""

    name: str
    description: str
    language_model: bool
    min_scale: float
    max_scale: float

    def plan(self, request: Request, allocator_key: str, allocator, *, scales=None, budget: float | None = None,
             cap: int | None = None) -> Allocation: ...

    def grid_note(self, request: Request) -> str | None: ...

    def input_note(self, request: Request) -> str | None: ...

    def answer(self, request: Request, allocations: Sequence[Allocation], max_new_tokens: int) -> list[Reply]: ...


# ------------------------------------------------------------------------------------------------- text helpers


def clean_text(text: str) -> str:
    """Readable answer text: U+FFFD (bytes that decoded to no character) and control characters removed, runs of
    spaces collapsed. Random tiny weights emit such bytes; a real model rarely does."""
    kept = "".join(c for c in str(text) if c == "\n" or (c.isprintable() and c != "\ufffd"))
    return "\n".join(" ".join(line.split()) for line in kept.splitlines()).strip()


def parse_options(question: str) -> dict[str, str]:
    """The options of a multiple-choice question, as ``{letter: text}``: one per line
    (``"...?\\nA. horizontal stripes\\nB. vertical stripes"``) or inline (``"... A. 7  B. 8  C. 3"``). Empty unless
    there are at least two, lettered A, B, C, ... in order; the last option ends at a line break or a run of spaces."""
    text = question or ""
    markers = list(_MARKER.finditer(text))
    chain: list[re.Match] = []
    for i, marker in enumerate(markers):
        if marker.group(1) != "A":
            continue
        run = [marker]
        for following in markers[i + 1:]:
            if following.group(1) != chr(ord(run[-1].group(1)) + 1):
                break
            run.append(following)
        if len(run) >= len(chain):  # the longest run; the last of equals (options follow the question)
            chain = run
    if len(chain) < 2:
        return {}
    options = {}
    for k, marker in enumerate(chain):
        if k + 1 < len(chain):
            value = text[marker.end():chain[k + 1].start()]
        else:
            value = re.split(r"\n| {2,}|\t", text[marker.end():], maxsplit=1)[0]
        value = " ".join(value.split()).rstrip(",;( ")
        if not value:
            return {}
        options[marker.group(1)] = value
    last = chain[-1].group(1)
    if len(options) > 1 and all(re.fullmatch(r"\d", v) for k, v in options.items() if k != last):
        digit = re.match(r"\d(?!\w|[.,]\d)", options[last])  # digit options: the last one is its digit ("D. 6 Answer ...")
        if digit:
            options[last] = digit.group(0)
    return options


def boxed_choice(text: str, options: dict[str, str]) -> str | None:
    """The option letter a ``<think>...</think><answer>\\boxed{X}</answer>`` answer names (``rewards.extract_answer``:
    ``"B"``, ``"B. vertical stripes"`` or the option's text in the box), or None."""
    if not options:
        return None
    extracted = extract_answer(text or "")
    if not extracted:
        return None
    match = _LEADING_LETTER.match(extracted)
    if match and match.group(1) in options:
        return match.group(1)
    named = [letter for letter, value in options.items() if " ".join(extracted.split()).lower() == value.lower()]
    return named[0] if len(named) == 1 else None


def named_choice(text: str, options: dict[str, str]) -> str | None:
    """The option letter an answer names: ``<answer>\\boxed{X}</answer>``, a leading letter (``"C"``, ``"C. 3"``,
    ``"(C)"``), or exactly one of the options as words (a digit option's digit standing alone, a word option's
    whole text). None when it names none (or several)."""
    if not options:
        return None
    letter = parse_choice(text or "")
    if letter in options:
        return letter
    letter = boxed_choice(text, options)
    if letter is not None:
        return letter
    match = _LEADING_LETTER.match(text or "")
    if match and match.group(1) in options:
        return match.group(1)
    # digits standing alone as words ("6", "6." or "(6)"), not parts of "12", "0.5" or noise like "8\ufffd00("
    digits = set(re.findall(r"(?:^|(?<=[\s(\"']))(\d)(?=$|[\s.,;:!?)\"'](?!\d))", text or ""))
    lowered = " ".join((text or "").split()).lower()
    named = [letter for letter, value in options.items()
             if (value in digits if re.fullmatch(r"\d", value) else
                 re.search(rf"(?<!\w){re.escape(value.lower())}(?!\w)", lowered) is not None)]
    return named[0] if len(named) == 1 else None


# ----------------------------------------------------------------------------------------------------- tiny reader


def reader_prompt() -> str:
    """The question text ``tiny-reader`` was trained on: the reader task's question, then its options one per line
    (what ``rollout.BackboneRollout.prompt`` puts in the user message)."""
    return READER_QUESTION + "\n" + "\n".join(READER_OPTIONS)


def reader_input_note(request: Request) -> str | None:
    """None when ``request`` is what ``tiny-reader`` was trained on (one clip of the reader task's size and frame count,
    its question); else a note that its answer means nothing there."""
    task = ReaderTaskConfig()
    clip = request.clip
    if (clip is not None and request.image is None
            and tuple(clip.frames.shape[:3]) == (task.num_frames, task.size, task.size)
            and " ".join(request.question.split()) == " ".join(reader_prompt().split())):
        return None
    return (f"{TINY_READER} was trained only on the pattern task (clips of {task.num_frames} frames of {task.size}×"
            f"{task.size} px, the question “{READER_QUESTION}” with its four options); on other inputs it still "
            "names a letter, which means nothing. Choose a Qwen checkpoint (GPU) for your own clips and questions.")


# ------------------------------------------------------------------------------------------------- known answers


def frames_digest(frames: torch.Tensor) -> str:
    """SHA-256 of decoded uint8 frames: identifies a bundled example by its pixels, not its file name."""
    return hashlib.sha256(frames.contiguous().numpy().tobytes()).hexdigest()


@dataclass(frozen=True)
class KnownAnswer:
    """The right answer of a bundled example: it applies to exactly these decoded frames and this question."""

    digest: str
    question: str
    letter: str
    text: str

    def applies_to(self, request: Request) -> bool:
        return (
            request.clip is not None and request.image is None
            and " ".join(request.question.split()) == " ".join(self.question.split())
            and frames_digest(request.clip.frames) == self.digest
        )

    def grade(self, reply: Reply | None) -> bool | None:
        """True / False for an answer, None when there is none (allocation only, or the answerer declined)."""
        if reply is None or not reply.answered:
            return None
        return reply.choice == self.letter


# ------------------------------------------------------------------------------------------------------ answerers


class VLMAnswerer:
    """A Qwen-VL backbone behind ``ResAdaptProcessor`` (one processor per allocator, reused).

    Args:
        name: the backbone's name in the Space.
        backbone_processor: its own processor.
        generate: the generation step, or None for a planner that never answers (the reader's fallback grid).
        description: how the page describes it (e.g. "random weights").
        system_prompt: a system message for every prompt (``tiny-reader``: ``rewards.SYSTEM_PROMPT``, the one it was
            trained with); None (the Qwen checkpoints, the random tiny backbones): no system message.
        input_note: ``request -> note or None``: a plain-words note on inputs the backbone's answers mean nothing for.
    """

    language_model = True

    def __init__(self, name: str, backbone_processor, generate: Generate | None, description: str,
                 system_prompt: str | None = None, input_note: Callable[[Request], str | None] | None = None):
        self.name, self.description = name, description
        self.system_prompt = system_prompt
        self._input_note = input_note
        self._backbone_processor = backbone_processor
        self._generate = generate
        self._processors: dict[str, ResAdaptProcessor] = {}
        self._lock = threading.Lock()
        reference = ResAdaptProcessor.from_backbone(backbone_processor)
        self.min_scale, self.max_scale = reference.min_scale, reference.max_scale

    def processor(self, allocator_key: str, allocator) -> ResAdaptProcessor:
        with self._lock:
            if allocator_key not in self._processors:
                self._processors[allocator_key] = ResAdaptProcessor.from_backbone(
                    self._backbone_processor, allocator=allocator)
            return self._processors[allocator_key]

    def prompt(self, processor: ResAdaptProcessor, request: Request) -> str:
        """The chat-template prompt: [system message,] user message = [video,] [image,] question (as typed)."""
        content = ([{"type": "video"}] if request.clip is not None else []) + (
            [{"type": "image"}] if request.image is not None else [])
        messages = [{"role": "user", "content": [*content, {"type": "text", "text": request.question}]}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @staticmethod
    def media(request: Request) -> dict:
        return {"videos": [request.clip] if request.clip is not None else None,
                "images": [request.image] if request.image is not None else None}

    def plan(self, request, allocator_key, allocator, *, scales=None, budget=None, cap=None) -> Allocation:
        processor = self.processor(allocator_key, allocator)
        return processor.allocate(text=self.prompt(processor, request), **self.media(request), scales=scales,
                                  budget=budget, max_visual_tokens=cap)

    def grid_note(self, request: Request) -> str | None:
        return None

    def input_note(self, request: Request) -> str | None:
        return self._input_note(request) if self._input_note is not None else None

    def answer(self, request, allocations, max_new_tokens) -> list[Reply]:
        if self._generate is None:
            raise ValueError(f"{self.name} plans allocations only; it has no model to answer with")
        with self._lock:  # any of this backbone's processors builds the same inputs for a given allocation
            processor = next(iter(self._processors.values()))
        prompt = self.prompt(processor, request)
        inputs = [processor(text=[prompt], **self.media(request), allocation=a, return_tensors="pt")
                  for a in allocations]
        options = parse_options(request.question)
        return [self.reply(processor.tokenizer.decode(new_ids, skip_special_tokens=True), len(new_ids), options,
                           seconds) for new_ids, seconds in self._generate(inputs, max_new_tokens)]

    @staticmethod
    def reply(output: str, num_tokens: int, options: dict[str, str], seconds: float) -> Reply:
        """A generated text as a :class:`Reply`: an ``<answer>\\boxed{X}</answer>`` naming an option is shown as
        that option (``"B. vertical stripes"``) with the model's output (on one line) as the explanation; other
        text is shown as generated (cleaned), with the option it names, if any."""
        text = clean_text(output)
        if not text:
            return Reply(f"(no readable text: the model produced {num_tokens} token(s))", None, None, True, seconds)
        letter = boxed_choice(text, options)
        if letter is not None:
            return Reply(f"{letter}. {options[letter]}", letter, f"model output: {' '.join(text.split())}", True,
                         seconds)
        return Reply(text, named_choice(text, options), None, True, seconds)


class NeedleReaderAnswerer:
    """The calibrated needle reader of ``resadapt_hf.synthetic`` as the Space's answerer (not a language model).

    Args:
        config: the needle task (default: ``NeedleTaskConfig()``, the one evaluation and training use).
        fallback: plans inputs the reader cannot read (another video size, images): the tiny Qwen2.5-VL grid.
    """

    name = NEEDLE_READER
    description = READER_DESCRIPTION
    language_model = False

    def __init__(self, config: NeedleTaskConfig | None = None, fallback: VLMAnswerer | None = None):
        self.config = config or NeedleTaskConfig()
        self.reader = NeedleReader.calibrate(self.config)
        self.fallback = fallback
        self.min_scale, self.max_scale = self.config.min_scale, self.config.max_scale

    def reads(self, request: Request) -> bool:
        """Whether the reader can read this input: one video of the task's frame size, no image."""
        return (request.clip is not None and request.image is None
                and tuple(request.clip.frames.shape[1:3]) == self.config.source_size)

    def _size_text(self) -> str:
        height, width = self.config.source_size
        return f"{width}×{height}"

    def input_note(self, request: Request) -> str | None:
        return None

    def grid_note(self, request: Request) -> str | None:
        if self.reads(request):
            return None
        return (f"The needle reader reads only the needle task's {self._size_text()} px clips, so this input gets no "
                "answer; its allocation is planned on the tiny Qwen2.5-VL grid (28 px patches).")

    def plan(self, request, allocator_key, allocator, *, scales=None, budget=None, cap=None) -> Allocation:
        if not self.reads(request):
            if self.fallback is None:
                raise ValueError(self.grid_note(request))
            return self.fallback.plan(request, allocator_key, allocator, scales=scales, budget=budget, cap=cap)
        clip = request.clip
        if scales is None:  # the allocator sees the decoded frames, as the processor's allocator view does
            scales = allocator.predict_scales([clip.frames], request.question)[0]
        elif not isinstance(scales, (list, tuple)):  # one scale for every frame (FixedScale, native scale 1)
            scales = [float(getattr(scales, "scale", scales))] * clip.num_frames
        return plan_needle(self.config, scales, budget=budget, max_visual_tokens=cap,
                           frame_indices=clip.frame_indices, timestamps=clip.timestamps)

    def answer(self, request, allocations, max_new_tokens) -> list[Reply]:
        # max_new_tokens does not apply: the reader is a deterministic function of the pixels, it generates no text
        if not self.reads(request):
            text = (f"No answer: the needle reader reads only the needle task's {self._size_text()} px clips. "
                    "Choose a language-model backbone for other inputs.")
            return [Reply(text, None, None, False, 0.0)] * len(allocations)
        options = parse_options(request.question)
        if not options or not all(re.fullmatch(r"\d", value) for value in options.values()):
            text = ("No answer: the needle reader answers digit questions with options, e.g. "
                    "“Which digit appears in the video? A. 7  B. 8  C. 3  D. 6”.")
            return [Reply(text, None, None, False, 0.0)] * len(allocations)
        return [self._read(request, allocation, options) for allocation in allocations]

    def _read(self, request: Request, allocation: Allocation, options: dict[str, str]) -> Reply:
        started = time.perf_counter()
        chunks = resize_frames(request.clip.frames, allocation.scales, self.config)
        received = [tuple(c.shape[1:3]) for c in chunks]
        if received != [tuple(s) for s in allocation.chunk_sizes]:  # the reader must read what the plan says
            raise RuntimeError(f"resized chunk sizes {received} differ from the planned {allocation.chunk_sizes}")
        output = self.reader.answer(chunks, [f"{letter}. {digit}" for letter, digit in options.items()])
        letter = parse_choice(output)
        think = _THINK.search(output)
        explanation = clean_text(think.group(1)) if think else None
        return Reply(f"{letter}. {options[letter]}", letter, explanation, True, time.perf_counter() - started)
