"""Task and format rewards for ResAdapt training (arXiv 2603.28610, App. B.3), in TRL's reward convention.

Two layers:

* Pure graders on strings: :func:`extract_answer`, :func:`format_ok`, :func:`mcq_score`, :func:`numeric_score`,
  :func:`exact_match_score`, :func:`rouge_l_score`, :func:`parse_segments`, :func:`tiou`, :func:`grounding_score`,
  the dispatcher :func:`task_reward` and the CAPO correctness bit :func:`is_correct`.
* TRL reward functions ``f(prompts, completions, **columns) -> list[float]``: :func:`accuracy_reward` and
  :func:`format_reward`. ``completions`` may be plain strings or chat-style message lists; dataset columns
  (``answer``, ``problem_type``, ``options``, ``segments``) arrive as lists aligned with ``completions``.
  Use them as ``GRPOTrainer(reward_funcs=[accuracy_reward, format_reward],
  args=GRPOConfig(reward_weights=[1.0, FORMAT_WEIGHT], ...))``.

Where the paper and the authors' code differ, this module follows the paper:

* MCQ is an exact option-letter match (the code uses a Dice overlap of letters).
* Free-form is ROUGE-L F (the code averages ROUGE-1/2/L).
* The format term is {0, 1} times 0.2 (the code uses {-1, 0, 1}).
* Correctness ``u`` is 0/1 exact for binary graders and ``> 0.35`` only for continuous ones (the code thresholds
  every type at 0.35).

``problem_type`` is one of the explicit values in :data:`PROBLEM_TYPES`; there is no substring guessing.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "CORRECTNESS_THRESHOLD",
    "FORMAT_WEIGHT",
    "PROBLEM_TYPES",
    "SYSTEM_PROMPT",
    "accuracy_reward",
    "completion_to_text",
    "exact_match_score",
    "extract_answer",
    "format_ok",
    "format_reward",
    "grounding_score",
    "is_correct",
    "mcq_score",
    "numeric_score",
    "parse_segments",
    "rouge_l_score",
    "task_reward",
    "tiou",
]

ProblemType = Literal["multiple_choice", "numerical", "exact", "free_form", "temporal_grounding", "grounded_qa"]
PROBLEM_TYPES: tuple[str, ...] = (
    "multiple_choice",
    "numerical",
    "exact",
    "free_form",
    "temporal_grounding",
    "grounded_qa",
)
# Graders whose score is a continuous quality; correctness for them needs a threshold (paper B.3).
_CONTINUOUS_TYPES = frozenset({"free_form", "temporal_grounding", "grounded_qa"})

# Paper App. B.3: malformed output is penalised with weight 0.2. format_reward returns {0, 1}; the trainer
# applies this weight (GRPOConfig.reward_weights). Scoring 0.2 * (format - 1), i.e. {-0.2, 0}, instead would only
# shift every reward in a group by the same constant, which GRPO's group normalisation removes.
FORMAT_WEIGHT = 0.2

# arXiv 2603.28610, App. B.3: a continuous metric counts as "correct" for CAPO above this value.
CORRECTNESS_THRESHOLD = 0.35

# The system prompt of the paper's Table 6 (arXiv 2603.28610), verbatim.
SYSTEM_PROMPT = (
    "You are a helpful assistant. You FIRST think about the reasoning process as an internal monologue and then "
    "provide the final answer. The reasoning process MUST BE enclosed within <think> </think> tags and the answer "
    "MUST BE enclosed within <answer> </answer> tags. The final answer MUST BE put in \\boxed{} and the \\boxed{} "
    "expression MUST BE contained entirely within the <answer> </answer> tags. Do not include any reasoning or "
    "explanations outside these tags."
)

# Slack for float comparisons at a boundary: 1.01 - 1.0 == 0.010000000000000009 must still be "within 0.01".
_FLOAT_SLACK = 1e-9


# --------------------------------------------------------------------------------------------------------------
# Answer extraction and format
# --------------------------------------------------------------------------------------------------------------

_BOX_START_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_BLOCK_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_THINK_BLOCK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
# The layout the paper's format regex requires; tag counts are checked separately (a lazy .*? alone would
# accept a second </think> inside the think block).
_FORMAT_RE = re.compile(r"\s*<think>.*?</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
_FORMAT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _balanced_end(text: str, open_index: int) -> int | None:
    """Index of the ``}`` that closes the ``{`` at ``open_index``, or None when the braces never balance.

    Braces escaped with a backslash (LaTeX ``\\{``) are literal and do not count.
    """
    depth = 0
    i = open_index
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # skip the escaped character
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _boxed_contents(text: str) -> list[str]:
    """Contents of the outermost, brace-balanced ``\\boxed{...}`` (or ``\\fbox{...}``) groups, in order.

    An unclosed box (a truncated generation) is skipped, not returned half-read.
    """
    found = []
    pos = 0
    while (match := _BOX_START_RE.search(text, pos)) is not None:
        open_index = match.end() - 1
        close_index = _balanced_end(text, open_index)
        if close_index is None:
            pos = match.end()  # an unbalanced box may still contain a balanced one
            continue
        found.append(text[open_index + 1 : close_index])
        pos = close_index + 1  # outermost only: a nested box is unwrapped below, not listed twice
    return found


def _last_boxed(text: str) -> str | None:
    """The stripped content of the last outermost ``\\boxed{}`` in ``text``, unwrapping ``\\boxed{\\boxed{x}}``;
    None when there is no box or it is empty."""
    boxes = _boxed_contents(text)
    if not boxes:
        return None
    content = boxes[-1].strip()
    # \boxed{\boxed{B}} -> B: unwrap while the content is exactly one box spanning all of it.
    while (match := _BOX_START_RE.match(content)) is not None:
        close_index = _balanced_end(content, match.end() - 1)
        if close_index != len(content) - 1:
            break
        content = content[match.end() : close_index].strip()
    return content or None


def _last_answer_block(text: str) -> str | None:
    """Content of the last closed ``<answer>...</answer>`` block, or None."""
    blocks = _ANSWER_BLOCK_RE.findall(text)
    return blocks[-1] if blocks else None


def extract_answer(text: str) -> str | None:
    """The model's final answer from ``<think>...</think><answer>...\\boxed{...}</answer>``.

    Tried in order, first non-empty result wins (whitespace stripped):

    1. the last ``\\boxed{}`` inside the last ``<answer>`` block (brace-balanced, nested braces allowed);
    2. the text of that ``<answer>`` block, when it holds no complete box;
    3. the last ``\\boxed{}`` anywhere (e.g. a truncated ``<answer>`` or a box in the reasoning);
    4. None.
    """
    if not isinstance(text, str):
        return None
    block = _last_answer_block(text)
    if block is not None:
        boxed = _last_boxed(block)
        if boxed is not None:
            return boxed
        # A block whose box is empty ("\boxed{}") gets no text fallback: its raw text would be "\boxed{}".
        # Step 3 then finds that same empty box last and gives None, unless a box follows the block.
        if not _boxed_contents(block) and block.strip():
            return block.strip()
    return _last_boxed(text)


def format_ok(text: str) -> bool:
    """Whether ``text`` follows the paper's output format (App. B.3).

    Exactly one ``<think>…</think>`` followed by exactly one ``<answer>…</answer>`` that contains a non-empty
    ``\\boxed{...}``; only whitespace may appear before, between and after the two blocks. Tags are case-sensitive,
    as the system prompt spells them.
    """
    if not isinstance(text, str):
        return False
    if any(text.count(tag) != 1 for tag in _FORMAT_TAGS):
        return False
    match = _FORMAT_RE.fullmatch(text)
    return match is not None and _last_boxed(match.group(1)) is not None


def completion_to_text(completion: Any) -> str:
    """The text of one TRL completion: a string, or chat-style ``[{"role": "assistant", "content": ...}]``.

    For a message list the last assistant message is used (with tool calls TRL may append several messages; the
    final answer is in the last one); if no message has a role, the last message. ``content`` may be a string or
    a list of parts (``{"type": "text", "text": ...}``), whose text parts are concatenated.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_to_text(completion.get("content", ""))
    if isinstance(completion, Sequence):
        messages = [m for m in completion if isinstance(m, Mapping)]
        if not messages:
            return ""
        assistant = [m for m in messages if m.get("role") == "assistant"]
        return _content_to_text((assistant or messages)[-1].get("content", ""))
    raise TypeError(f"completion must be a string or a list of message dicts, got {type(completion).__name__}")


def _content_to_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
            parts.append(part["text"])
    return "".join(parts)


# --------------------------------------------------------------------------------------------------------------
# Text normalisation shared by the graders
# --------------------------------------------------------------------------------------------------------------

# \text{B}, \textbf{B}, \mathrm{B}, \mbox{B} -> B: models often wrap a boxed word or letter this way.
_LATEX_WRAPPER_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_TRAILING_PUNCT = ".,;:!?。，；：！？"


def _unwrap_latex(text: str) -> str:
    """Remove text-style LaTeX wrappers and inline-math dollars, which carry no meaning for grading."""
    previous = None
    while previous != text:  # nested wrappers: \textbf{\text{B}}
        previous = text
        text = _LATEX_WRAPPER_RE.sub(r"\1", text)
    return text.replace("$", "")


def _normalize_text(text: Any) -> str:
    """Casefold, unwrap LaTeX text wrappers, collapse whitespace, strip, drop trailing punctuation."""
    text = _unwrap_latex(str(text)).casefold()
    text = " ".join(text.split())
    return text.rstrip(_TRAILING_PUNCT + " ").strip()


def exact_match_score(pred: Any, answer: Any) -> float:
    """1.0 if ``pred`` equals ``answer`` after normalisation, else 0.0.

    Normalisation (paper B.3: "exact match after case-folding and whitespace stripping", extended): casefold,
    unwrap ``\\text{}``-style LaTeX and ``$``, collapse runs of whitespace, strip, strip trailing ``.,;:!?``.
    An empty prediction never matches.
    """
    if pred is None or answer is None:
        return 0.0
    norm_pred = _normalize_text(pred)
    return 1.0 if norm_pred and norm_pred == _normalize_text(answer) else 0.0


# --------------------------------------------------------------------------------------------------------------
# Multiple choice
# --------------------------------------------------------------------------------------------------------------

# A whole string that names one option letter:
#   "B", "b", "B.", "B:", "B) text", "B. text", "(B)", "(B) text", "[B]", "Option B", "The answer is (B)."
# A bare letter followed by a space and text ("A cat") is NOT a letter: that is an article, not an option.
_LETTER_PREFIX = r"(?:(?:the\s+)?(?:correct\s+|final\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:：]?\s*)?"
_LETTER_RE = re.compile(
    r"^\s*" + _LETTER_PREFIX + r"(?:[(\[]\s*([A-Z])\s*[)\]].*|([A-Z])(?:[.:：)\]].*)?)\s*$",
    re.IGNORECASE | re.DOTALL,
)
# A labelled option string: "A. cat", "(B) dog", "C: mouse", "D) bird".
_OPTION_LABEL_RE = re.compile(r"^\s*[(\[]?\s*([A-Z])\s*[.:：)\]]\s*(.*)$", re.IGNORECASE | re.DOTALL)


def _letter_of(text: str) -> str | None:
    """The upper-case option letter ``text`` names (see ``_LETTER_RE``), or None."""
    match = _LETTER_RE.match(_unwrap_latex(text))
    if match is None:
        return None
    return (match.group(1) or match.group(2)).upper()


def _option_texts(options: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``{letter: normalised option text}``.

    Options are all labelled ("A. cat", "(B) dog") or all bare ("cat", "dog"); bare ones are lettered A, B, C, …
    in order. Labels count only if every option has one and they are distinct, so a bare option that happens to
    start like a label ("A. Lincoln" among bare names) cannot relabel the list unless they all do.
    """
    if not options:
        return {}
    if isinstance(options, Mapping):
        return {str(k).strip().upper(): _normalize_text(v) for k, v in options.items()}
    labelled = [_OPTION_LABEL_RE.match(str(option)) for option in options]
    letters = [m.group(1).upper() for m in labelled if m is not None]
    if len(letters) == len(options) and len(set(letters)) == len(letters):
        return {m.group(1).upper(): _normalize_text(m.group(2)) for m in labelled}
    return {chr(ord("A") + i): _normalize_text(option) for i, option in enumerate(options)}


def _resolve_letter(text: str, option_texts: dict[str, str]) -> str | None:
    """The option letter ``text`` refers to: an explicit letter first, else an option whose text it equals."""
    letter = _letter_of(text)
    if letter is not None:
        return letter
    norm = _normalize_text(text)
    if not norm:
        return None
    matches = [letter for letter, option in option_texts.items() if option == norm]
    return matches[0] if len(matches) == 1 else None  # two identical option texts: ambiguous, no match


def mcq_score(pred: Any, answer: Any, options: Sequence[str] | Mapping[str, str] | None = None) -> float:
    """1.0 if ``pred`` picks the same option as ``answer``, else 0.0 (paper B.3: exact option letter).

    ``pred`` may name the letter ("B", "(B)", "B.", "B) text", "Option B", case-insensitive) or, when ``options``
    is given (``["A. cat", ...]``, ``["cat", ...]`` or ``{"A": "cat"}``), give an option's full text. An explicit
    letter wins over any text after it ("B) cat" picks B even if cat is option A). If ``answer`` names no letter
    and matches no option text, the grade falls back to :func:`exact_match_score`.
    """
    if pred is None or answer is None:
        return 0.0
    option_texts = _option_texts(options)
    gt_letter = _resolve_letter(str(answer), option_texts)
    if gt_letter is None:
        return exact_match_score(pred, answer)
    return 1.0 if _resolve_letter(str(pred), option_texts) == gt_letter else 0.0


# --------------------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------------------

# Thousands separators must be well-formed ("1,234,567"); "1,5" is two numbers, not a European decimal.
_NUMBER = r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_EXPR = rf"(?P<num>{_NUMBER})(?:\s*/\s*(?P<den>{_NUMBER}))?(?:\s*(?P<pct>%))?"
_NUMBER_FULL_RE = re.compile(rf"^\s*{_NUMBER_EXPR}\s*$")
# In free text a number must not be glued to a preceding digit or letter ("x2" is not the number 2).
_NUMBER_SEARCH_RE = re.compile(rf"(?<![\w.]){_NUMBER_EXPR}")
_LATEX_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")


def _to_float(text: str) -> float:
    return float(text.replace(",", ""))


def _number_values(text: Any) -> set[float] | None:
    """The value(s) a numeric answer may mean, or None when it holds no single number.

    Accepts "1,234.5", "-3", "−3" (unicode minus), "3/4", "\\frac{3}{4}", "1e-3", "50%" and "50\\%". A string with
    one number among words ("12 apples", "x = 12") gives that number; two or more numbers give None.

    A percentage is ambiguous (is the reference written in percent units or as a fraction?), so "50%" yields both
    readings {50.0, 0.5}: it matches an answer of 50 or 0.5, while a bare "50" still does not match 0.5.
    """
    if text is None:
        return None
    text = _unwrap_latex(str(text)).replace("\u2212", "-").replace("\\%", "%").replace("\\!", "").replace("\\,", "")
    text = _LATEX_FRAC_RE.sub(r"\1/\2", text)
    match = _NUMBER_FULL_RE.match(text)
    if match is None:
        found = list(_NUMBER_SEARCH_RE.finditer(text))
        if len(found) != 1:
            return None
        match = found[0]
    value = _to_float(match.group("num"))
    if match.group("den") is not None:
        denominator = _to_float(match.group("den"))
        if denominator == 0:
            return None
        value /= denominator
    if not math.isfinite(value):
        return None
    return {value, value / 100.0} if match.group("pct") else {value}


def numeric_score(pred: Any, answer: Any, tol: float = 1e-2) -> float:
    """1.0 if ``|pred - answer| <= tol`` (absolute, paper B.3: 1e-2), else 0.0.

    Numbers are parsed by ``_number_values`` (commas, fractions, negatives, percentages with both readings). A
    difference of exactly ``tol`` counts as within: a relative 1e-9 slack absorbs float error
    (``1.01 - 1.0 == 0.010000000000000009``). If either side holds no single number, falls back to
    :func:`exact_match_score` (e.g. both "N/A").
    """
    if pred is None or answer is None:
        return 0.0
    pred_values, answer_values = _number_values(pred), _number_values(answer)
    if pred_values is None or answer_values is None:
        return exact_match_score(pred, answer)
    for p in pred_values:
        for a in answer_values:
            if abs(p - a) <= tol + _FLOAT_SLACK * max(1.0, abs(p), abs(a)):
                return 1.0
    return 0.0


# --------------------------------------------------------------------------------------------------------------
# Free form
# --------------------------------------------------------------------------------------------------------------

@functools.cache
def _rouge_l_scorer():
    """The shared ROUGE-L scorer, built on first use.

    Imported lazily: rouge-score ships in the ``train`` extra, and the other graders must work without it.
    use_stemmer=True follows the authors' code and Video-R1 (the paper does not say). rouge_score's tokenizer
    lower-cases and keeps only [a-z0-9] tokens, so text in non-Latin scripts scores 0.
    """
    try:
        from rouge_score import rouge_scorer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("rouge_l_score needs rouge-score: pip install 'resadapt-hf[train]'") from err
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_score(pred: Any, answer: Any) -> float:
    """ROUGE-L F-measure of ``pred`` against ``answer`` in [0, 1] (rouge_score's implementation)."""
    if pred is None or answer is None:
        return 0.0
    return float(_rouge_l_scorer().score(str(answer), str(pred))["rougeL"].fmeasure)  # score(target, prediction)


# --------------------------------------------------------------------------------------------------------------
# Temporal grounding
# --------------------------------------------------------------------------------------------------------------

# Segment endpoints are non-negative: no sign, so the "-" in "12.5-20" is a range dash. "mm:ss" and "hh:mm:ss"
# timestamps are read as seconds. No thousands commas: in "[1,234]" the comma separates two endpoints.
_SEG_NUM = r"(\d+(?::\d{1,2}){1,2}(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_SEG_UNIT = r"(?:\s*(?:s|secs?|seconds?)\b)?"
_SEG_SEP = r"\s*(?:,|-|–|—|~|\bto\b|\band\b|\buntil\b|\btill\b)\s*"
_PAIR_RE = re.compile(_SEG_NUM + _SEG_UNIT + _SEG_SEP + _SEG_NUM + _SEG_UNIT, re.IGNORECASE)
# Keyed forms: {"start": 3, "end": 7}, "start_time: 3.0, end_time: 7.0", "starts at 3s and ends at 7s".
_KEY = r"[\"']?\s*(?:[:=]|\bat\b)?\s*"
_KEYED_RE = re.compile(
    r"\bstart(?:s|_time|\s+time)?" + _KEY + _SEG_NUM + r"[^\d]*?\bend(?:s|_time|\s+time)?" + _KEY + _SEG_NUM,
    re.IGNORECASE | re.DOTALL,
)


def _seconds(token: str) -> float:
    """A segment endpoint in seconds: "12.5" -> 12.5, "1:05" -> 65.0, "01:02:03.5" -> 3723.5."""
    value = 0.0
    for field in token.split(":"):
        value = value * 60.0 + float(field)
    return value


def _segment_matches(text: str) -> list[re.Match]:
    """Regex matches of segments in ``text``: keyed start/end forms if any, else number pairs."""
    keyed = list(_KEYED_RE.finditer(text))
    return keyed if keyed else list(_PAIR_RE.finditer(text))


def parse_segments(text: Any) -> list[tuple[float, float]]:
    """Temporal segments ``[(start, end), ...]`` in seconds parsed from free text.

    Accepts "[12.5, 20]", "(3, 7)", "12.5-20 seconds", "from 3s to 7s", "between 3 and 7", "00:05-00:10",
    '{"start": 3, "end": 7}' and several segments ("[[1,2],[5,8]]", "1-2 and 5-8"). Each pair is sorted so
    start <= end. Text without a pair of numbers gives [].
    """
    if not isinstance(text, str):
        return []
    segments = []
    for match in _segment_matches(text):
        a, b = _seconds(match.group(1)), _seconds(match.group(2))
        if math.isfinite(a) and math.isfinite(b):
            segments.append((min(a, b), max(a, b)))
    return segments


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _as_segments(segments: Any) -> list[tuple[float, float]]:
    """Ground-truth segments from a string, one ``(start, end)`` pair, or a list of pairs (lists, tuples or
    numpy arrays, as dataset columns arrive); anything unreadable is dropped."""
    if segments is None:
        return []
    if isinstance(segments, str):
        return parse_segments(segments)
    if hasattr(segments, "tolist"):  # numpy arrays from datasets' numpy formatting
        segments = segments.tolist()
    if not isinstance(segments, Sequence):
        return []
    if len(segments) == 2 and all(_is_number(x) for x in segments):
        a, b = float(segments[0]), float(segments[1])
        return [(min(a, b), max(a, b))]
    pairs = []
    for item in segments:
        pairs.extend(_as_segments(item) if not _is_number(item) else [])
    return pairs


def tiou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal IoU of two segments ``(start, end)``: overlap length / union length, in [0, 1].

    Endpoints are sorted first. Two zero-length segments (union 0) give 0.0.
    """
    a0, a1 = sorted((float(a[0]), float(a[1])))
    b0, b1 = sorted((float(b[0]), float(b[1])))
    intersection = max(0.0, min(a1, b1) - max(a0, b0))
    union = (a1 - a0) + (b1 - b0) - intersection
    return intersection / union if union > 0 else 0.0


def grounding_score(pred_text: Any, gt_segments: Any) -> float:
    """Max tIoU over all (predicted, ground-truth) segment pairs (paper B.3); 0.0 if either side has none.

    ``pred_text`` is parsed with :func:`parse_segments` (a list of pairs is accepted too); ``gt_segments`` may be
    a pair, a list of pairs or a string. Note the max over predictions means listing many segments can only
    raise the score; the paper defines it this way and so does this function.
    """
    predicted = parse_segments(pred_text) if isinstance(pred_text, str) else _as_segments(pred_text)
    truth = _as_segments(gt_segments)
    if not predicted or not truth:
        return 0.0
    return max(tiou(p, g) for p in predicted for g in truth)


# --------------------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------------------


def _check_problem_type(problem_type: Any) -> str:
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type must be one of {PROBLEM_TYPES}, got {problem_type!r}")
    return problem_type


def _without_reasoning(text: str) -> str:
    """``text`` with its ``<think>…</think>`` block removed."""
    return _THINK_BLOCK_RE.sub(" ", text)


def _predicted_segment_text(text: str, pred: str | None) -> str:
    """Where to read predicted segments: the extracted answer, else the ``<answer>`` block, else the completion
    without its ``<think>`` block.

    The last fallback leaves out the reasoning on purpose: the reward is a max over every predicted segment,
    so intervals merely considered while thinking would otherwise be rewarded.
    """
    for candidate in (pred, _last_answer_block(text)):
        if candidate and parse_segments(candidate):
            return candidate
    return _without_reasoning(text)


# What may sit between a grounded-QA answer and its segment: punctuation, brackets and lead-in words
# ("B, from 3s to 7s", "yes (between 3 and 7)", "B; segment: [3, 7]").
_SEGMENT_LEAD_IN_RE = re.compile(
    r"(?:[\s,;:(\[{]|\b(?:from|between|at|in|during|segment|interval|time|timestamps?)\b)*$", re.IGNORECASE
)


def _qa_part(pred: str) -> str:
    """The QA answer in a grounded-QA prediction that may also hold a segment.

    Accepted layouts: "B <> [3, 7]" (the authors' separator), "B [3, 7]", "B, from 3s to 7s", "[3, 7] B".
    """
    if "<>" in pred:
        return pred.split("<>", 1)[0].strip()
    matches = _segment_matches(pred)
    if not matches:
        return pred.strip()
    before = _SEGMENT_LEAD_IN_RE.sub("", pred[: matches[0].start()])
    if before.strip():
        return before.strip()
    return pred[matches[-1].end() :].lstrip(" \t\n,;:)]}").strip()


def task_reward(
    completion_text: str,
    answer: Any,
    problem_type: ProblemType,
    options: Sequence[str] | Mapping[str, str] | None = None,
    segments: Any = None,
) -> float:
    """The task reward ``R^task`` of one completion (paper App. B.3). Format is not graded here.

    Args:
        completion_text: the model's full output.
        answer: the reference answer (letter or option text, number, text); for ``temporal_grounding`` it may
            hold the segments instead of ``segments``.
        problem_type: one of :data:`PROBLEM_TYPES`:

            * ``"multiple_choice"``: :func:`mcq_score`, {0, 1};
            * ``"numerical"``: :func:`numeric_score` with tolerance 1e-2, {0, 1};
            * ``"exact"``: :func:`exact_match_score`, {0, 1};
            * ``"free_form"``: :func:`rouge_l_score`, [0, 1]; the whole completion is graded when no answer
              can be extracted;
            * ``"temporal_grounding"``: :func:`grounding_score` against ``segments`` (or ``answer``), [0, 1];
            * ``"grounded_qa"``: QA score (:func:`mcq_score` if ``options`` else :func:`exact_match_score`)
              plus tIoU against ``segments``, [0, 2].

        options: the MCQ options, for ``multiple_choice`` and ``grounded_qa``.
        segments: ground-truth segments, required for ``grounded_qa``.

    Grounding predictions are read from the extracted answer, else the ``<answer>`` block, else the completion
    outside ``<think>`` (see ``_predicted_segment_text``).

    Raises:
        ValueError: unknown ``problem_type``, or ``grounded_qa`` without ``segments``.
    """
    _check_problem_type(problem_type)
    text = completion_to_text(completion_text)
    pred = extract_answer(text)
    if problem_type == "multiple_choice":
        return mcq_score(pred, answer, options)
    if problem_type == "numerical":
        return numeric_score(pred, answer)
    if problem_type == "exact":
        return exact_match_score(pred, answer)
    if problem_type == "free_form":
        return rouge_l_score(pred if pred is not None else text.strip(), answer)
    if problem_type == "temporal_grounding":
        truth = segments if segments is not None else answer
        return grounding_score(_predicted_segment_text(text, pred), truth)
    # grounded_qa
    if segments is None:
        raise ValueError("segments is required for problem_type='grounded_qa'")
    qa_pred = _qa_part(pred) if pred is not None else None
    qa = mcq_score(qa_pred, answer, options) if options else exact_match_score(qa_pred, answer)
    return qa + grounding_score(_predicted_segment_text(text, pred), segments)


def is_correct(task_score: float, problem_type: ProblemType, threshold: float = CORRECTNESS_THRESHOLD) -> bool:
    """CAPO's correctness bit ``u`` from a :func:`task_reward` score (arXiv 2603.28610, App. B.3).

    * ``multiple_choice``, ``numerical``, ``exact``: binary graders, correct iff the score is 1 (``threshold``
      is ignored).
    * ``free_form`` (ROUGE-L), ``temporal_grounding`` (tIoU): correct iff ``score > threshold`` (0.35).
    * ``grounded_qa``: correct iff the QA part is correct AND the tIoU part ``> threshold``, tested as
      ``score > 1 + threshold``. That test is exact because the QA part is binary: with a wrong answer the score
      is at most 1. Why both: u means "the rollout got it right", and a grounded answer is right only if both the
      answer and the grounding are; thresholding the [0, 2] sum at 0.35 (the authors' code) would count a right
      answer with no grounding, or a wrong answer with tIoU 0.36, as correct.
    """
    _check_problem_type(problem_type)
    if problem_type == "grounded_qa":
        return task_score > 1.0 + threshold
    if problem_type in _CONTINUOUS_TYPES:
        return task_score > threshold
    return task_score >= 1.0 - _FLOAT_SLACK


# --------------------------------------------------------------------------------------------------------------
# TRL reward functions
# --------------------------------------------------------------------------------------------------------------


def _column(name: str, values: Any, n: int) -> list:
    """A per-sample dataset column as a list of length ``n``; a missing column (None) is all None."""
    if values is None:
        return [None] * n
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a list with one entry per completion, got {type(values).__name__}")
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but there are {n} completions")
    return list(values)


def format_reward(prompts: Any, completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """TRL reward: 1.0 per completion that passes :func:`format_ok`, else 0.0.

    Unweighted on purpose: pass ``FORMAT_WEIGHT`` (0.2) as its entry in ``GRPOConfig.reward_weights``. The paper
    penalises malformed output with weight 0.2; {0, 0.2} and {-0.2, 0} give the same GRPO advantages.
    """
    return [1.0 if format_ok(completion_to_text(c)) else 0.0 for c in completions]


def accuracy_reward(
    prompts: Any,
    completions: Sequence[Any],
    answer: Sequence[Any],
    problem_type: Sequence[str],
    options: Sequence[Any] | None = None,
    segments: Sequence[Any] | None = None,
    **kwargs: Any,
) -> list[float]:
    """TRL reward: :func:`task_reward` per completion.

    ``answer``, ``problem_type``, ``options`` and ``segments`` are dataset columns, lists aligned with
    ``completions`` (TRL repeats each row once per generation). ``options``/``segments`` may be absent (None) or
    hold None for rows that do not need them. Extra columns and TRL's own keywords are ignored.

    Raises:
        ValueError: a column whose length differs from ``completions``, or a bad ``problem_type`` value.
    """
    n = len(completions)
    answers = _column("answer", answer, n)
    types = _column("problem_type", problem_type, n)
    options_col = _column("options", options, n)
    segments_col = _column("segments", segments, n)
    return [
        task_reward(completion_to_text(c), a, t, options=o if o is not None and len(o) else None, segments=s)
        for c, a, t, o, s in zip(completions, answers, types, options_col, segments_col)
    ]
