"""W-BERT model definitions: BERT sizes, the multi-task KECO classifier, model-dir helpers.

A trained model directory is a standard Hugging Face directory: ``AutoModel.from_pretrained``
loads the BERT encoder (the KECO heads are extra weights it ignores, exactly as with any
``BertForSequenceClassification`` checkpoint), ``AutoTokenizer.from_pretrained`` the tokenizer.
``wbert.json`` next to them records what jobrec needs on top (pre-tokeniser, max length, labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertForMaskedLM, BertModel, BertPreTrainedModel

from core.errors import ModelError
from encoding.encoder import mean_pool

METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class ModelSize:
    """Shape of a from-scratch BERT."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_length: int
    vocab_size: int

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )
        if not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length must be in [8, 512], got {self.max_length}")


# "tiny" is the default on CPU: it trains on 20k postings in well under 15 minutes on two
# cores and encodes several hundred postings per second there; "base" is BERT-base.
# vocab_size is the learnt part, on top of the ~30.6k-entry no-[UNK] alphabet. bench/vocab.py:
# learnt on real and generated corpora the vocabulary stops growing at 4k-8k, and 4k cost
# wanted 2.3 points of match@10 against 12k; 12k and 24k gave the same tokenizers.
MODEL_SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(
        hidden_size=256, num_layers=2, num_heads=4, intermediate_size=512, max_length=64,
        vocab_size=12000,
    ),
    "small": ModelSize(
        hidden_size=384, num_layers=4, num_heads=6, intermediate_size=1536, max_length=128,
        vocab_size=16000,
    ),
    "base": ModelSize(
        hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, max_length=256,
        vocab_size=32000,
    ),
}


def bert_config(size: str | ModelSize, vocab_size: int | None = None) -> BertConfig:
    """A ``BertConfig`` for a from-scratch model of the given size."""
    spec = MODEL_SIZES[size] if isinstance(size, str) else size
    return BertConfig(
        vocab_size=vocab_size or spec.vocab_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=max(spec.max_length, 64),
        type_vocab_size=2,
        pad_token_id=0,
    )


class WBertForKeco(BertPreTrainedModel):
    """BERT + mean pooling + two linear heads: KECO major (13) and mid (112) groups.

    Label lists live in the config (``keco_major_labels``, ``keco_mid_labels``) so a saved
    directory is self-describing. Classifying the mean-pooled vector is deliberate: the
    vector the :class:`encoding.encoder.Encoder` returns is the one the heads were trained on.
    """

    def __init__(self, config: BertConfig):
        super().__init__(config)
        major = getattr(config, "keco_major_labels", None)
        mid = getattr(config, "keco_mid_labels", None)
        if not major or not mid:
            raise ModelError("WBertForKeco needs keco_major_labels and keco_mid_labels in its config")
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.major_head = nn.Linear(config.hidden_size, len(major))
        self.mid_head = nn.Linear(config.hidden_size, len(mid))
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        major_labels: torch.Tensor | None = None,
        mid_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        z = self.dropout(pooled)
        out = {"pooled": pooled, "major_logits": self.major_head(z), "mid_logits": self.mid_head(z)}
        if major_labels is not None and mid_labels is not None:
            ce = nn.functional.cross_entropy
            out["loss"] = ce(out["major_logits"], major_labels) + ce(out["mid_logits"], mid_labels)
        return out


class WBertForMlm(BertForMaskedLM):
    """``BertForMaskedLM`` whose loss projects only the masked positions onto the vocabulary.

    Scoring every position wastes ~85% of the output layer's work; the saved weights are
    plain ``BertForMaskedLM`` weights.
    """

    def forward(  # type: ignore[override]
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        sel = labels != -100
        logits = self.cls(hidden[sel])
        if logits.shape[0] == 0:  # nothing masked in this batch: a zero that keeps the graph
            return {"loss": hidden.sum() * 0.0}
        return {"loss": nn.functional.cross_entropy(logits.float(), labels[sel])}
