"""Task/format rewards (resadapt_hf.rewards): every expected value below is worked out by hand in a comment."""

import pytest
from rouge_score import rouge_scorer

from resadapt_hf.rewards import (
    FORMAT_WEIGHT,
    PROBLEM_TYPES,
    SYSTEM_PROMPT,
    accuracy_reward,
    completion_to_text,
    exact_match_score,
    extract_answer,
    format_ok,
    format_reward,
    grounding_score,
    is_correct,
    mcq_score,
    numeric_score,
    parse_segments,
    rouge_l_score,
    task_reward,
    tiou,
)


def wrap(answer_body, think="reasoning"):
    """A well-formed completion whose <answer> block holds ``answer_body``."""
    return f"<think>{think}</think><answer>{answer_body}</answer>"


# ---------------------------------------------------------------------------------------------------------- MCQ

OPTIONS_LABELLED = ["A. cat", "B. dog", "C. bird"]
OPTIONS_BARE = ["cat", "dog", "bird"]


@pytest.mark.parametrize(
    "pred, answer, options, expected",
    [
        ("B", "B", None, 1.0),
        ("b", "B", None, 1.0),  # case-insensitive
        ("(B)", "B", None, 1.0),
        ("B.", "B", None, 1.0),
        ("B) dog", "B", None, 1.0),
        ("B. dog", "B", None, 1.0),
        ("Option B", "B", None, 1.0),
        ("option (b)", "B", None, 1.0),
        ("The answer is (B).", "B", None, 1.0),
        ("\\text{B}", "B", None, 1.0),  # LaTeX wrapper inside a box
        ("B", "(B)", None, 1.0),  # the reference may be written with brackets too
        ("C", "B", None, 0.0),
        ("(A)", "B", None, 0.0),
        ("Bird", "B", None, 0.0),  # a word starting with B is not the letter B
        ("dog", "B", OPTIONS_LABELLED, 1.0),  # option text -> B
        ("Dog.", "B", OPTIONS_LABELLED, 1.0),
        ("dog", "B", OPTIONS_BARE, 1.0),  # bare options are lettered A, B, C
        ("cat", "B", OPTIONS_BARE, 0.0),  # cat is A
        ("B. dog", "B", OPTIONS_BARE, 1.0),
        ("B) cat", "B", OPTIONS_BARE, 1.0),  # explicit letter wins over the text after it
        ("dog", "B", None, 0.0),  # without options text cannot be mapped to a letter
        ("B", "dog", OPTIONS_BARE, 1.0),  # reference given as option text
        ("dog", "dog", {"A": "cat", "B": "dog"}, 1.0),
        ("", "B", None, 0.0),
        (None, "B", None, 0.0),
    ],
)
def test_mcq_score(pred, answer, options, expected):
    assert mcq_score(pred, answer, options) == expected


# ------------------------------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    "pred, answer, expected",
    [
        ("3", "3", 1.0),
        ("3.0", "3", 1.0),
        ("1.01", "1", 1.0),  # |diff| = 0.01 exactly (0.010000000000000009 in floats): within tol
        ("0.99", "1", 1.0),
        ("1.011", "1", 0.0),  # |diff| = 0.011 > 0.01
        ("0.989", "1", 0.0),
        ("1,234.5", "1234.5", 1.0),  # thousands separator
        ("1,234,567", "1234567", 1.0),
        ("3/4", "0.75", 1.0),
        ("\\frac{3}{4}", "0.75", 1.0),
        ("-2.5", "-2.5", 1.0),
        ("\u22122.5", "-2.5", 1.0),  # unicode minus
        ("-2.5", "2.5", 0.0),
        ("-3/4", "-0.75", 1.0),
        ("50%", "50", 1.0),  # percent: both readings {50, 0.5}
        ("50%", "0.5", 1.0),
        ("50\\%", "0.5", 1.0),
        ("0.5", "50%", 1.0),
        ("50", "0.5", 0.0),  # no % sign: only the face value
        ("12 apples", "12", 1.0),  # a single number among words
        ("3 or 4", "3", 0.0),  # two numbers: no single answer -> exact match "3 or 4" vs "3" fails
        ("1/0", "1", 0.0),  # division by zero is not a number
        ("abc", "3", 0.0),
        ("n/a", "N/A", 1.0),  # both non-numeric: exact-match fallback
        (None, "3", 0.0),
    ],
)
def test_numeric_score(pred, answer, expected):
    assert numeric_score(pred, answer) == expected


def test_numeric_score_custom_tolerance():
    assert numeric_score("10.4", "10", tol=0.5) == 1.0  # 0.4 <= 0.5
    assert numeric_score("10.6", "10", tol=0.5) == 0.0  # 0.6 > 0.5


# -------------------------------------------------------------------------------------------------- exact match


@pytest.mark.parametrize(
    "pred, answer, expected",
    [
        ("Paris", "paris", 1.0),
        ("  Paris.  ", "Paris", 1.0),  # strip + trailing punctuation
        ("New   York\n City", "new york city", 1.0),  # collapsed whitespace
        ("STRASSE", "straße", 1.0),  # casefold, not lower: "ß".casefold() == "ss"
        ("yes!", "Yes", 1.0),
        ("Paris, France", "Paris", 0.0),
        ("f(x)", "f(x", 0.0),  # a closing bracket is not trailing punctuation
        ("", "", 0.0),  # an empty prediction never matches
        (None, "x", 0.0),
    ],
)
def test_exact_match_score(pred, answer, expected):
    assert exact_match_score(pred, answer) == expected


# ------------------------------------------------------------------------------------------------------ ROUGE-L


def test_rouge_l_identical_and_disjoint():
    assert rouge_l_score("a man is riding a horse", "a man is riding a horse") == 1.0
    assert rouge_l_score("blue sky", "green grass") == 0.0
    assert rouge_l_score("", "green grass") == 0.0


def test_rouge_l_partial_matches_hand_value_and_library():
    pred, ref = "the cat was sitting on a mat", "the cat sat on the mat"
    # LCS tokens: the, cat, on, mat = 4; P = 4/7 (pred has 7 tokens), R = 4/6; F = 2PR/(P+R) = 8/13.
    assert rouge_l_score(pred, ref) == pytest.approx(8 / 13)
    library = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, pred)["rougeL"].fmeasure
    assert rouge_l_score(pred, ref) == pytest.approx(library)


def test_rouge_l_uses_stemming():
    # Porter stems: cats -> cat, running/runs -> run, so every token matches.
    assert rouge_l_score("cats running", "cat runs") == 1.0


# ---------------------------------------------------------------------------------------------------- segments


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[12.5, 20]", [(12.5, 20.0)]),
        ("12.5-20 seconds", [(12.5, 20.0)]),
        ("from 3s to 7s", [(3.0, 7.0)]),
        ("between 3 and 7 seconds", [(3.0, 7.0)]),
        ("(20, 12.5)", [(12.5, 20.0)]),  # reversed pair is sorted
        ("[[1,2],[5,8]]", [(1.0, 2.0), (5.0, 8.0)]),
        ("1-2 and 5-8", [(1.0, 2.0), (5.0, 8.0)]),
        ("00:05-01:10", [(5.0, 70.0)]),  # mm:ss -> seconds
        ("01:00:00 to 01:00:30", [(3600.0, 3630.0)]),
        ('{"start": 3, "end": 7}', [(3.0, 7.0)]),
        ("start_time: 3.5, end_time: 9", [(3.5, 9.0)]),
        ("it starts at 2s and ends at 4s", [(2.0, 4.0)]),
        ("[1,234]", [(1.0, 234.0)]),  # a comma in a segment separates endpoints
        ("at 3.5 seconds", []),  # one number is not a segment
        ("no idea", []),
        ("", []),
        (None, []),
    ],
)
def test_parse_segments(text, expected):
    assert parse_segments(text) == expected


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((0, 10), (0, 10), 1.0),
        ((0, 10), (5, 15), 5 / 15),  # overlap 5, union 10 + 10 - 5 = 15
        ((0, 4), (2, 6), 2 / 6),
        ((0, 2), (3, 5), 0.0),  # disjoint
        ((0, 2), (2, 4), 0.0),  # touching
        ((10, 0), (0, 5), 0.5),  # endpoints sorted: overlap 5, union 10
        ((3, 3), (3, 3), 0.0),  # zero-length union
    ],
)
def test_tiou(a, b, expected):
    assert tiou(a, b) == pytest.approx(expected)


@pytest.mark.parametrize(
    "pred_text, gt, expected",
    [
        ("[0, 10]", [5, 15], 5 / 15),  # single gt pair given flat
        ("[0, 10]", "[5, 15]", 5 / 15),  # gt given as a string
        # pairs: (0,4)-(2,6) = 2/6, (0,4)-(12,18) = 0, (10,20)-(2,6) = 0, (10,20)-(12,18) = 6/10 -> max 0.6
        ("[[0, 4], [10, 20]]", [[2, 6], [12, 18]], 0.6),
        ("[[0, 4], [10, 20]]", ((2, 6), (12, 18)), 0.6),
        ("from 0 to 4", [[2, 6], [12, 18]], 2 / 6),
        ("I cannot tell", [[2, 6]], 0.0),  # bad parse -> 0
        ("[30, 40]", [[2, 6]], 0.0),
        ("[2, 6]", None, 0.0),
        ("[2, 6]", [], 0.0),
    ],
)
def test_grounding_score(pred_text, gt, expected):
    assert grounding_score(pred_text, gt) == pytest.approx(expected)


def test_grounding_score_accepts_numpy_ground_truth():
    np = pytest.importorskip("numpy")
    assert grounding_score("[0, 4]", np.array([[2.0, 6.0]])) == pytest.approx(2 / 6)


# ------------------------------------------------------------------------------------------- format / extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>step by step</think><answer>\\boxed{B}</answer>", True),
        ("  <think>a</think>\n\n<answer>The answer is \\boxed{B}.</answer>\n", True),  # whitespace is fine
        ("<think>a</think><answer>\\boxed{\\frac{1}{2}}</answer>", True),  # nested braces
        ("<answer>\\boxed{B}</answer>", False),  # missing think
        ("<think>a</think>", False),  # missing answer
        ("<think>a</think><answer>\\boxed{B}</answer><answer>\\boxed{C}</answer>", False),  # two answers
        ("<think>a</think><think>b</think><answer>\\boxed{B}</answer>", False),  # two thinks
        ("<think>a</think><answer>B</answer>", False),  # no boxed
        ("<think>a</think><answer>\\boxed{}</answer>", False),  # empty box
        ("<think>a</think><answer>\\boxed{B</answer>", False),  # unbalanced box
        ("<think>a</think>\\boxed{B}<answer>B</answer>", False),  # box outside the answer
        ("Sure! <think>a</think><answer>\\boxed{B}</answer>", False),  # text before
        ("<think>a</think><answer>\\boxed{B}</answer> Hope this helps.", False),  # text after
        ("<think>a</think> so <answer>\\boxed{B}</answer>", False),  # text between
        ("<answer>\\boxed{B}</answer><think>a</think>", False),  # wrong order
        ("<think>a</think></think><answer>\\boxed{B}</answer>", False),  # stray closing tag
        ("", False),
    ],
)
def test_format_ok(text, expected):
    assert format_ok(text) is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (wrap("\\boxed{B}"), "B"),
        (wrap("The answer is \\boxed{ 42 }."), "42"),  # stripped
        (wrap("\\boxed{\\frac{1}{\\sqrt{2}}}"), "\\frac{1}{\\sqrt{2}}"),  # nested braces
        (wrap("\\boxed{\\{1, 2\\}}"), "\\{1, 2\\}"),  # escaped braces are literal
        (wrap("\\boxed{A} then \\boxed{C}"), "C"),  # last box in the answer
        (wrap("\\boxed{\\boxed{D}}"), "D"),  # a doubly boxed answer is unwrapped
        (wrap("\\boxed{B}", think="maybe \\boxed{A}"), "B"),  # the answer's box beats the reasoning's
        (wrap("  Paris  "), "Paris"),  # no box: answer text
        # an empty final box is no answer; the box in the reasoning does not stand in for it
        ("<think>\\boxed{A}</think><answer>\\boxed{}</answer>", None),
        ("<think>so \\boxed{7}</think>", "7"),  # no answer block: last box anywhere
        ("<think>x</think><answer>\\boxed{E}", "E"),  # truncated (unclosed) answer block
        ("\\boxed{x} and \\boxed{y", "x"),  # an unclosed trailing box is skipped
        ("<think>x</think><answer>a</answer><answer>b</answer>", "b"),  # last answer block
        ("<think>no answer here</think>", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


# ------------------------------------------------------------------------------------------------ task_reward


@pytest.mark.parametrize(
    "completion, answer, problem_type, options, segments, expected",
    [
        (wrap("\\boxed{(B)}"), "B", "multiple_choice", None, None, 1.0),
        (wrap("\\boxed{dog}"), "B", "multiple_choice", OPTIONS_BARE, None, 1.0),
        (wrap("\\boxed{A}"), "B", "multiple_choice", None, None, 0.0),
        ("<think>no answer</think>", "B", "multiple_choice", None, None, 0.0),  # nothing extracted -> 0
        (wrap("\\boxed{1,234.5}"), "1234.5", "numerical", None, None, 1.0),
        (wrap("\\boxed{3.02}"), "3", "numerical", None, None, 0.0),  # 0.02 > 0.01
        (wrap("\\boxed{Paris.}"), "paris", "exact", None, None, 1.0),
        (wrap("\\boxed{the cat sat on the mat}"), "the cat sat on the mat", "free_form", None, None, 1.0),
        # no answer tags: the whole completion is graded; "a red car" vs "red car": LCS 2, P 2/3, R 1 -> F 0.8
        ("a red car", "red car", "free_form", None, None, 0.8),
        (wrap("\\boxed{[0, 10]}"), None, "temporal_grounding", None, [[5, 15]], 5 / 15),
        (wrap("\\boxed{[0, 10]}"), [[5, 15]], "temporal_grounding", None, None, 5 / 15),  # gt in `answer`
        (wrap("The event spans 0-10 s."), None, "temporal_grounding", None, [5, 15], 5 / 15),  # answer text
        ("It happens from 0s to 10s.", None, "temporal_grounding", None, [5, 15], 5 / 15),  # whole text
        # the reasoning's interval [5, 15] is not graded: only the answer's [30, 40] counts -> 0
        (wrap("\\boxed{[30, 40]}", think="maybe [5, 15]?"), None, "temporal_grounding", None, [5, 15], 0.0),
        ("<think>maybe [5, 15]</think>", None, "temporal_grounding", None, [5, 15], 0.0),
        (wrap("\\boxed{no idea}"), None, "temporal_grounding", None, [5, 15], 0.0),
        # grounded QA = QA (0/1) + tIoU; [0, 10] vs [5, 15] = 1/3
        (wrap("\\boxed{B} [0, 10]"), "B", "grounded_qa", OPTIONS_LABELLED, [5, 15], 1 + 5 / 15),
        (wrap("\\boxed{B, [0, 10]}"), "B", "grounded_qa", OPTIONS_LABELLED, [5, 15], 1 + 5 / 15),
        (wrap("\\boxed{B <> [5, 15]}"), "B", "grounded_qa", OPTIONS_LABELLED, [5, 15], 2.0),
        (wrap("\\boxed{[0, 10] B}"), "B", "grounded_qa", OPTIONS_LABELLED, [5, 15], 1 + 5 / 15),
        (wrap("\\boxed{B, from 0s to 10s}"), "B", "grounded_qa", OPTIONS_LABELLED, [5, 15], 1 + 5 / 15),
        (wrap("\\boxed{B; segment: [0, 10]}"), "B", "grounded_qa", OPTIONS_LABELLED, [5, 15], 1 + 5 / 15),
        (wrap("\\boxed{C} [0, 10]"), "B", "grounded_qa", OPTIONS_LABELLED, [5, 15], 5 / 15),
        (wrap("\\boxed{yes} from 5 to 15"), "Yes", "grounded_qa", None, [[5, 15]], 2.0),  # exact-match QA
        (wrap("\\boxed{B}"), "B", "grounded_qa", OPTIONS_LABELLED, [5, 15], 1.0),  # no segment: tIoU 0
    ],
)
def test_task_reward(completion, answer, problem_type, options, segments, expected):
    assert task_reward(completion, answer, problem_type, options=options, segments=segments) == pytest.approx(
        expected
    )


def test_task_reward_rejects_unknown_problem_type():
    with pytest.raises(ValueError, match="problem_type") as info:
        task_reward(wrap("\\boxed{B}"), "B", "multiple choice")  # the authors' spelling is not accepted
    for accepted in PROBLEM_TYPES:
        assert accepted in str(info.value)


def test_grounded_qa_needs_segments():
    with pytest.raises(ValueError, match="segments"):
        task_reward(wrap("\\boxed{B}"), "B", "grounded_qa")


# ------------------------------------------------------------------------------------------------- is_correct


@pytest.mark.parametrize(
    "score, problem_type, expected",
    [
        (1.0, "multiple_choice", True),
        (0.0, "multiple_choice", False),
        (1.0 - 1e-12, "numerical", True),  # float noise on a binary score
        (0.99, "exact", False),
        (0.36, "free_form", True),
        (0.35, "free_form", False),  # strictly greater than 0.35
        (0.35, "temporal_grounding", False),
        (0.351, "temporal_grounding", True),
        (1.36, "grounded_qa", True),  # QA right (1) + tIoU 0.36
        (1.35, "grounded_qa", False),  # QA right, tIoU exactly 0.35
        (1.0, "grounded_qa", False),  # QA right, no grounding (or QA wrong with tIoU 1)
        (0.9, "grounded_qa", False),  # QA wrong, tIoU 0.9
    ],
)
def test_is_correct(score, problem_type, expected):
    assert is_correct(score, problem_type) is expected


def test_is_correct_custom_threshold_and_unknown_type():
    assert is_correct(0.45, "free_form", threshold=0.5) is False
    assert is_correct(1.55, "grounded_qa", threshold=0.5) is True
    with pytest.raises(ValueError, match="problem_type"):
        is_correct(1.0, "iou")


# ----------------------------------------------------------------------------------------------- TRL convention


def test_completion_to_text_forms():
    assert completion_to_text("plain") == "plain"
    assert completion_to_text([{"role": "assistant", "content": "chat"}]) == "chat"
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert completion_to_text(parts) == "ab"
    multi = [
        {"role": "assistant", "content": "call tool"},
        {"role": "tool", "content": "result"},
        {"role": "assistant", "content": "final"},
    ]
    assert completion_to_text(multi) == "final"  # the last assistant message


def test_trl_rewards_with_string_completions():
    completions = [wrap("\\boxed{B}"), "B", wrap("\\boxed{12}"), wrap("\\boxed{[0, 10]}")]
    columns = dict(
        answer=["B", "B", "12", None],
        problem_type=["multiple_choice", "multiple_choice", "numerical", "temporal_grounding"],
        options=[OPTIONS_LABELLED, OPTIONS_LABELLED, None, None],
        segments=[None, None, None, [[5, 15]]],
    )
    # keyword call, with the extra keywords TRL passes (completion_ids, trainer_state, ...) and an unused column
    extra = dict(completion_ids=[[1]] * 4, trainer_state=None, video=["v.mp4"] * 4)
    prompts = ["q"] * 4
    # "B" alone has no <answer> and no box -> nothing extracted -> 0
    assert accuracy_reward(prompts=prompts, completions=completions, **columns, **extra) == pytest.approx(
        [1.0, 0.0, 1.0, 5 / 15]
    )
    assert format_reward(prompts=prompts, completions=completions, **columns, **extra) == [1.0, 0.0, 1.0, 1.0]


def test_trl_rewards_with_chat_completions():
    completions = [
        [{"role": "assistant", "content": wrap("\\boxed{dog}")}],
        [{"role": "assistant", "content": "<answer>\\boxed{cat}</answer>"}],
    ]
    kwargs = dict(answer=["B", "B"], problem_type=["multiple_choice"] * 2, options=[OPTIONS_BARE, OPTIONS_BARE])
    prompts = [[{"role": "user", "content": "which?"}]] * 2
    assert accuracy_reward(prompts, completions, **kwargs) == [1.0, 0.0]  # options/segments columns optional
    assert format_reward(prompts, completions) == [1.0, 0.0]  # the second has no <think>


def test_accuracy_reward_checks_columns():
    with pytest.raises(ValueError, match="answer"):
        accuracy_reward(None, ["a", "b"], answer=["x"], problem_type=["exact", "exact"])
    with pytest.raises(ValueError, match="problem_type"):
        accuracy_reward(None, ["a"], answer=["x"], problem_type="exact")  # a column, not a scalar
    with pytest.raises(ValueError, match="problem_type"):
        accuracy_reward(None, ["a"], answer=["x"], problem_type=["bogus"])


def test_constants():
    assert FORMAT_WEIGHT == 0.2
    assert SYSTEM_PROMPT.startswith("You are a helpful assistant. You FIRST think")
    assert "The final answer MUST BE put in \\boxed{} and the \\boxed{} expression" in SYSTEM_PROMPT
    assert SYSTEM_PROMPT.endswith("Do not include any reasoning or explanations outside these tags.")
