"""Task conditioning from a local text model (PAD conditions its DiT on CLIP text features of the
instruction; architecture.md §PAD). The run's task texts are encoded once, when a run starts; the
features are a buffer of the policy, saved in its checkpoints, so acting needs neither the text model nor
`transformers`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from visuomotor.errors import InvalidInputError


def encode_texts(path: str, texts: list[str]) -> Tensor:
    """(len(texts), D) float features of `texts` from the Hugging Face model directory at `path`: CLIP's
    projected text features when the model has `get_text_features` (a CLIPModel), else its pooled output,
    else the mean of its last hidden states over the real tokens."""
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as error:
        raise InvalidInputError(
            "text_encoder needs the transformers package: pip install 'visuomotor[text]' "
            "(or uv pip install transformers)"
        ) from error
    local = Path(path).expanduser()
    if not (local / "config.json").is_file():
        raise InvalidInputError(
            f"text_encoder {path!r} has no config.json: it must be a local Hugging Face model directory "
            f"with its tokenizer (e.g. a copy of openai/clip-vit-base-patch32)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(local, local_files_only=True)
        model = AutoModel.from_pretrained(local, local_files_only=True, use_safetensors=True).eval()
    except (OSError, ValueError, KeyError) as error:
        raise InvalidInputError(
            f"text_encoder {path!r}: cannot load a tokenizer and a safetensors model from it: {error}"
        ) from error
    tokens = tokenizer(texts, padding=True, return_tensors="pt")
    inputs = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    with torch.no_grad():
        out = model.get_text_features(**inputs) if hasattr(model, "get_text_features") else model(**inputs)
    if isinstance(out, Tensor):  # transformers before 5 returned the features themselves
        return out.float()
    if getattr(out, "pooler_output", None) is not None:
        return out.pooler_output.float()
    mask = inputs["attention_mask"][..., None].float()
    return ((out.last_hidden_state * mask).sum(1) / mask.sum(1)).float()
