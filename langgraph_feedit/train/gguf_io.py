"""GGUF in and out: a trainable copy of a GGUF base, and a trained model back to GGUF.

transformers loads a GGUF checkpoint dequantized, but flags the model as quantized (it cannot
be trained or saved as such), and turning the GGUF tokenizer into a fast tokenizer takes tens
of seconds. :func:`prepare_base` does both once and keeps a plain Hugging Face folder
(safetensors, config, tokenizer) in a cache, keyed by the GGUF file's size and mtime.

:func:`export_gguf` writes a trained model as a new GGUF for llama.cpp: every metadata key of
the base GGUF (tokenizer, chat template, hyper-parameters) is copied, and each tensor is
written in F16 (F32 for 1-D ones, as llama.cpp's converter does) under its original name.
transformers un-permutes llama's q and k projections when it loads a GGUF (llama.cpp's layout
interleaves the rotary halves); the export permutes them back.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from langgraph_feedit.errors import UserError

__all__ = ["base_gguf_of", "export_gguf", "prepare_base"]

_BASE_MARK = "feedit-base.json"


def _gguf_key(path: Path) -> str:
    st = path.stat()
    raw = f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    root = os.environ.get("FEEDIT_TRAIN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "feedit", "base"
    )
    return Path(root)


def prepare_base(gguf_path: Path, cache_dir: Path | None = None) -> Path:
    """A plain Hugging Face folder of the GGUF model ``gguf_path``, made once per file.

    Raises:
        UserError: the file is missing or not a GGUF transformers can load.
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise UserError(f"base model {gguf_path}: no such file")
    out = (cache_dir or default_cache_dir()) / f"{gguf_path.stem}-{_gguf_key(gguf_path)}"
    if (out / _BASE_MARK).is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
    except (ValueError, OSError, KeyError) as exc:
        raise UserError(f"base model {gguf_path}: transformers cannot load it: {exc}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # A fresh model of the same config, holding the dequantized weights, is an ordinary
    # (trainable, saveable) model.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / _BASE_MARK).write_text(json.dumps({"gguf": str(gguf_path.resolve())}), "utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def base_gguf_of(model_dir: Path) -> Path | None:
    """The GGUF a prepared base (or a model trained from one) came from, if recorded."""
    for name in (_BASE_MARK, "feedit-train.json"):
        mark = Path(model_dir) / name
        if mark.is_file():
            found = json.loads(mark.read_text("utf-8")).get("gguf")
            return Path(found) if found else None
    return None


def _permute(w: Any, n_head: int, n_head_kv: int) -> Any:
    """llama.cpp's q/k layout (convert_hf_to_gguf ``LlamaModel.permute``)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def export_gguf(model: Any, base_gguf: Path, out: Path) -> Path:
    """Write ``model`` (a transformers llama-family causal LM; a peft model is merged first)
    as a GGUF with the metadata of ``base_gguf``.

    Raises:
        UserError: the base GGUF's architecture is not one this exporter knows, or a tensor of
            the base has no counterpart in the model.
    """
    import gguf
    import numpy as np

    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    reader = gguf.GGUFReader(str(base_gguf))
    arch_field = reader.fields["general.architecture"]
    arch = str(arch_field.contents())
    if arch != "llama":
        raise UserError(f"GGUF export knows llama-family models only; {base_gguf} is {arch!r}")
    cfg = model.config
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    by_gguf: dict[str, Any] = {}
    for name, tensor in model.state_dict().items():
        gname = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if gname is not None:
            by_gguf[gname] = tensor
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key == "general.file_type":
            writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
    for rt in reader.tensors:
        tensor = by_gguf.get(rt.name)
        if tensor is None:
            raise UserError(f"the model has no tensor for {rt.name!r} of {base_gguf}")
        data = tensor.detach().float().cpu().numpy()
        if rt.name.endswith("attn_q.weight"):
            data = _permute(data, n_head, n_head)
        elif rt.name.endswith("attn_k.weight"):
            data = _permute(data, n_head, n_kv)
        data = data.astype(np.float32 if data.ndim == 1 else np.float16)
        writer.add_tensor(rt.name, np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return out
