"""The trainers: supervised fine-tuning (feedback, edit) and a Bradley-Terry select model.

Both run on transformers' ``Trainer``, so checkpoints, ``--resume``, the progress bar, mixed
precision and many machines (``accelerate launch``, or ``torchrun``) are transformers' and
accelerate's, not ours.

- Feedback and edit: the loss is on the assistant turn only; the prompt's labels are masked.
- Select: a causal LM whose reward is ``logprob(Yes) - logprob(No)`` at the first answer
  token after :data:`~langgraph_feedit.train.data.PRINCIPLE_PROMPT`; the loss is
  ``-log sigmoid(r(chosen) - r(rejected))``. Any chat endpoint that returns top logprobs
  serves the trained model, and the ``principle`` judge reads exactly this margin.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langgraph_feedit.errors import UserError
from langgraph_feedit.prompts import TemplateSet, load_templates
from langgraph_feedit.train.data import (
    DataCounts,
    PairExample,
    SFTExample,
    load_examples,
    select_messages,
)
from langgraph_feedit.train.settings import TrainSettings

__all__ = [
    "TrainResult",
    "encode_pair",
    "encode_sft",
    "load_base",
    "prompt_text",
    "select_margins",
    "train",
    "yes_no_ids",
]

_RECORD = "run.json"


class TrainResult(dict[str, Any]):
    """The run record (also written to ``OUTPUT/run.json``)."""


def prompt_text(tokenizer: Any, messages: Sequence[dict[str, Any]]) -> str:
    """The exact text a chat server renders for ``messages`` before the reply."""
    return str(
        tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    )


def encode_sft(tokenizer: Any, ex: SFTExample, max_length: int) -> dict[str, list[int]] | None:
    """Token ids and labels (the prompt masked with -100); ``None`` when the prompt leaves
    no room for the target."""
    prompt = prompt_text(tokenizer, ex.messages)
    full = str(
        tokenizer.apply_chat_template(
            [*ex.messages, {"role": "assistant", "content": ex.target}], tokenize=False
        )
    )
    if not full.startswith(prompt):  # pragma: no cover - a template that rewrites history
        raise UserError("the chat template renders the prompt differently with a reply after it")
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    if len(p_ids) + min(len(c_ids), 8) > max_length:
        return None
    ids = (p_ids + c_ids)[:max_length]
    labels = ([-100] * len(p_ids) + c_ids)[:max_length]
    return {"input_ids": ids, "labels": labels}


def yes_no_ids(tokenizer: Any) -> tuple[int, int]:
    """The first token of ``Yes`` and of ``No``, as a chat reply begins."""
    yes = tokenizer("Yes", add_special_tokens=False)["input_ids"]
    no = tokenizer("No", add_special_tokens=False)["input_ids"]
    return int(yes[0]), int(no[0])


def encode_pair(
    tokenizer: Any,
    ex: PairExample,
    principle: str,
    max_length: int,
    templates: TemplateSet | None = None,
) -> dict[str, list[int]]:
    """The chosen and rejected prompts (each ending where the Yes/No answer starts)."""

    def ids(response: str) -> list[int]:
        msgs = select_messages(ex.conversation, response, principle, templates)
        text = prompt_text(tokenizer, msgs)
        out: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
        return out[-max_length:]  # the question and the response's end matter most

    return {"chosen_ids": ids(ex.chosen), "rejected_ids": ids(ex.rejected)}


def _pad(rows: Sequence[Sequence[int]], value: int) -> Any:
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows])


def sft_collate(pad_id: int) -> Any:
    def collate(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        ids = _pad([b["input_ids"] for b in batch], pad_id)
        mask = _pad([[1] * len(b["input_ids"]) for b in batch], 0)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": _pad([b["labels"] for b in batch], -100),
        }

    return collate


def pair_collate(pad_id: int) -> Any:
    def collate(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        rows = [b["chosen_ids"] for b in batch] + [b["rejected_ids"] for b in batch]
        return {
            "input_ids": _pad(rows, pad_id),
            "attention_mask": _pad([[1] * len(r) for r in rows], 0),
        }

    return collate


def select_margins(model: Any, input_ids: Any, attention_mask: Any, yes: int, no: int) -> Any:
    """``logprob(Yes) - logprob(No)`` at each row's last prompt token (rows padded right)."""
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    last = attention_mask.sum(dim=1) - 1
    at = logits[torch.arange(logits.shape[0]), last].float()
    logp = torch.log_softmax(at, dim=-1)
    return logp[:, yes] - logp[:, no]


def load_base(settings: TrainSettings) -> tuple[Path, Path | None]:
    """The Hugging Face folder to train from and the GGUF it came from (``None`` when the
    base is a folder that was not made from one)."""
    from langgraph_feedit.train.gguf_io import base_gguf_of, prepare_base

    base = settings.base_model
    if base is None:
        from langgraph_feedit.embedded import default_model_path

        base = default_model_path()
    if base.is_file():
        return prepare_base(base, settings.cache_dir), base
    if not base.is_dir():
        raise UserError(f"base_model {base}: no such file or folder")
    return base, base_gguf_of(base)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _loss_png(history: list[dict[str, Any]], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    pts = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def train(settings: TrainSettings) -> TrainResult:
    """Train one model as ``settings`` say; returns (and writes) the run record.

    Raises:
        UserError: bad data (file and line named), a missing base model, or no example left.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    started = time.time()
    templates = load_templates(settings.template)
    counts = DataCounts()
    examples = load_examples(
        settings.task,
        settings.data,
        templates,
        source=settings.source,
        min_gain=settings.min_gain,
        counts=counts,
    )
    # Mixed sources (HelpSteer3 rows and a batch's traces) are interleaved, so a run cut
    # short by max_examples or max_steps still sees each.
    random.Random(settings.seed).shuffle(examples)
    if settings.max_examples is not None:
        examples = examples[: settings.max_examples]
    base_dir, base_gguf = load_base(settings)
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    yes, no = yes_no_ids(tok)
    rows: list[dict[str, list[int]]] = []
    too_long = 0
    for ex in examples:
        if settings.task == "select":
            rows.append(encode_pair(tok, ex, settings.principle, settings.max_length, templates))
        else:
            enc = encode_sft(tok, ex, settings.max_length)
            if enc is None:
                too_long += 1
            else:
                rows.append(enc)
    if too_long:
        counts.dropped[f"prompt over max_length {settings.max_length}"] = too_long
    if not rows:
        raise UserError(f"no {settings.task} example left to train on (see the counts: {counts})")
    tokens = sum(len(v) for r in rows for k, v in r.items() if k != "labels")

    model: Any = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    if settings.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=settings.lora_r,
                lora_alpha=settings.lora_alpha,
                target_modules=[
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                ],
                task_type="CAUSAL_LM",
            ),
        )
    ckpt_dir = settings.output / "checkpoints"
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_steps,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        report_to=[],
        disable_tqdm=not settings.progress,
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )

    class _Rows(torch.utils.data.Dataset[dict[str, list[int]]]):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict[str, list[int]]:
            return rows[i]

    if settings.task == "select":

        class _BTTrainer(Trainer):
            def compute_loss(
                self,
                model: Any,
                inputs: dict[str, Any],
                return_outputs: bool = False,
                num_items_in_batch: Any = None,
            ) -> Any:
                margins = select_margins(
                    model, inputs["input_ids"], inputs["attention_mask"], yes, no
                )
                half = margins.shape[0] // 2
                loss = -torch.nn.functional.logsigmoid(margins[:half] - margins[half:]).mean()
                return (loss, {"margins": margins}) if return_outputs else loss

        trainer: Any = _BTTrainer(
            model=model, args=args, train_dataset=_Rows(), data_collator=pair_collate(pad_id)
        )
    else:
        trainer = Trainer(
            model=model, args=args, train_dataset=_Rows(), data_collator=sft_collate(pad_id)
        )
    resume_from = None
    if settings.resume:
        if ckpt_dir.is_dir():
            resume_from = get_last_checkpoint(str(ckpt_dir))  # type: ignore[no-untyped-call]
        if resume_from is None:
            raise UserError(f"--resume: no checkpoint in {ckpt_dir}")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    out = trainer.train(resume_from_checkpoint=resume_from)
    train_s = time.time() - t0
    history = [h for h in trainer.state.log_history if "loss" in h]
    steps_run = trainer.state.global_step - (
        int(Path(resume_from).name.split("-")[-1]) if resume_from else 0
    )
    seen_tokens = (
        tokens * (steps_run * settings.batch_size * settings.grad_accum) / max(1, len(rows))
    )

    if not trainer.is_world_process_zero():
        # Under accelerate or torchrun every process trains; one writes the results.
        return TrainResult(task=settings.task, rank=trainer.args.process_index)
    final = trainer.model
    if hasattr(final, "merge_and_unload"):
        final = final.merge_and_unload()
    model_dir = settings.output / "model"
    final.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    record = TrainResult(
        task=settings.task,
        settings=settings.model_dump(mode="json"),
        base=str(base_gguf or base_dir),
        data={
            "rows": counts.rows,
            "examples": counts.examples,
            "trained_on": len(rows),
            "dropped": counts.dropped,
            "tokens": tokens,
        },
        figures={
            "steps": trainer.state.global_step,
            "resumed_from": resume_from,
            "first_loss": history[0]["loss"] if history else None,
            "final_loss": history[-1]["loss"] if history else None,
            "train_loss": out.training_loss,
            "train_s": round(train_s, 3),
            "tokens_per_s": round(seen_tokens / train_s, 1) if train_s > 0 else None,
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "peak_gpu_mb": (
                round(torch.cuda.max_memory_allocated() / 2**20, 1)
                if torch.cuda.is_available()
                else None
            ),
        },
        losses=[{"step": h["step"], "loss": h["loss"]} for h in history],
        model=str(model_dir),
    )
    (model_dir / "feedit-train.json").write_text(
        json.dumps({"gguf": str(base_gguf) if base_gguf else None, "task": settings.task}), "utf-8"
    )
    if _loss_png(history, settings.output / "loss.png", f"feedit train {settings.task}"):
        record["loss_png"] = str(settings.output / "loss.png")
    if settings.export_gguf and base_gguf is not None:
        from langgraph_feedit.train.gguf_io import export_gguf

        gguf_path = export_gguf(final, base_gguf, settings.output / "model.gguf")
        record["gguf"] = str(gguf_path)
    record["wall_s"] = round(time.time() - started, 3)
    if history and not all(math.isfinite(h["loss"]) for h in history):
        record["warning"] = "the loss was not finite at some step"
    (settings.output / _RECORD).write_text(json.dumps(record, indent=2), "utf-8")
    return record
