"""Hub model card of a ResAdapt processor repo (installed as ``resadapt_hf.hub_card``): :func:`render_card`."""

from .card import (
    BASE_TAGS,
    NOT_EVALUATED,
    PER_TASK_HEADER,
    RESULTS_HEADER,
    ROUNDING_NOTE,
    TRAINING_FIELD_NAMES,
    check_eval_results,
    choose_pipeline_tag,
    find_placeholders,
    is_hub_id,
    render_card,
    training_summary,
)

__all__ = [
    "BASE_TAGS",
    "NOT_EVALUATED",
    "PER_TASK_HEADER",
    "RESULTS_HEADER",
    "ROUNDING_NOTE",
    "TRAINING_FIELD_NAMES",
    "check_eval_results",
    "choose_pipeline_tag",
    "find_placeholders",
    "is_hub_id",
    "render_card",
    "training_summary",
]
