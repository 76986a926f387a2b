"""Fine-tuning objectives of W-BERT: KECO heads and three contrastive losses, one forward pass.

Objectives (``TrainConfig.objectives``):

* ``keco``: cross-entropy of the KECO major and mid heads (needs occupation codes);
* ``title``: a posting's title against the rest of its text (duties, qualifications), InfoNCE
  with in-batch negatives, symmetric;
* ``dropout``: two dropout views of the same posting (SimCSE), InfoNCE, symmetric;
* ``supcon``: supervised contrastive loss (Khosla et al. 2020) over the batch, positives are the
  postings with the same 6-digit occupation code (and the posting's own second view).

Every embedding is the mean-pooled last hidden state, exactly what :class:`encoding.encoder.Encoder`
returns. All rows of a step (full text, its second view, body, title) go through the model in one
forward call: DistributedDataParallel expects one forward per backward.
"""

from __future__ import annotations

import torch
from torch import nn

OBJECTIVES: tuple[str, ...] = ("keco", "title", "dropout", "supcon")
SELF_SUPERVISED: tuple[str, ...] = ("title", "dropout")
NEEDS_LABELS: tuple[str, ...] = ("keco", "supcon")


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of aligned rows ``a[i] <-> b[i]`` (in-batch negatives); rows unnormalised."""
    a = nn.functional.normalize(a.float(), dim=-1)
    b = nn.functional.normalize(b.float(), dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    ce = nn.functional.cross_entropy
    return (ce(logits, target) + ce(logits.T, target)) / 2


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss ("L_out"): rows with equal ``labels`` are positives.

    For each anchor ``i`` with at least one positive, ``-mean_p log softmax_{a != i}(z_i.z_a/t)[p]``;
    the mean over those anchors (zero, keeping the graph, when no anchor has a positive).
    """
    z = nn.functional.normalize(z.float(), dim=-1)
    n = len(z)
    sims = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sims = sims.masked_fill(self_mask, float("-inf"))
    log_prob = sims - torch.logsumexp(sims, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has])
    return per_anchor.mean()


def supcon_labels(fine: torch.Tensor, views: int) -> torch.Tensor:
    """SupCon labels of ``views`` stacked copies of a batch: the fine code, or a per-posting id.

    A posting without a code (-1) gets a label of its own (``-2 - i``), so only its other view
    is its positive.
    """
    idx = torch.arange(len(fine), device=fine.device)
    own = torch.where(fine >= 0, fine, -2 - idx)
    return own.repeat(views)


def _pad_to(ids: torch.Tensor, attn: torch.Tensor, width: int, pad_id: int):
    extra = width - ids.shape[1]
    if extra <= 0:
        return ids[:, :width], attn[:, :width]
    return (nn.functional.pad(ids, (0, extra), value=pad_id), nn.functional.pad(attn, (0, extra)))


def objective_losses(model, b: dict, objectives: tuple[str, ...], temperature: float,
                     pad_id: int, device) -> dict[str, torch.Tensor]:
    """Each active objective's loss on batch ``b`` (see :func:`training.phase._batch`)."""
    ids, attn = b["input_ids"], b["attention_mask"]
    n = len(ids)
    parts = [(ids, attn)]
    if "dropout" in objectives or "supcon" in objectives:
        parts.append((ids, attn))  # the second dropout view
    views = len(parts)
    if "title" in objectives:
        parts += [(b["body_ids"], b["body_mask"]), (b["title_ids"], b["title_mask"])]
    width = max(p[0].shape[1] for p in parts)
    padded = [_pad_to(i, m, width, pad_id) for i, m in parts]
    all_ids = torch.cat([p[0] for p in padded]).to(device)
    all_attn = torch.cat([p[1] for p in padded]).to(device)
    out = model(all_ids, all_attn)
    pooled = out["pooled"]
    losses: dict[str, torch.Tensor] = {}
    if "keco" in objectives:
        ce = nn.functional.cross_entropy
        losses["keco"] = (ce(out["major_logits"][:n].float(), b["major"].to(device))
                          + ce(out["mid_logits"][:n].float(), b["mid"].to(device)))
    else:  # heads unused: a zero that keeps DDP's every-parameter-has-a-gradient contract
        losses["heads_unused"] = (out["major_logits"].sum() + out["mid_logits"].sum()) * 0.0
    if "dropout" in objectives:
        losses["dropout"] = info_nce(pooled[:n], pooled[n : 2 * n], temperature)
    if "supcon" in objectives:
        labels = supcon_labels(b["fine"].to(device), views)
        losses["supcon"] = supcon_loss(pooled[: views * n], labels, temperature)
    if "title" in objectives:
        body = pooled[views * n : (views + 1) * n]
        title = pooled[(views + 1) * n :]
        losses["title"] = info_nce(title, body, temperature)
    return losses


@torch.no_grad()
def title_retrieval_accuracy(model, title_ids, title_mask, body_ids, body_mask, device,
                             batch_size: int = 256) -> float:
    """Share of postings whose own body is the nearest body to their title (acc@1, label-free)."""
    def embed(ids, mask):
        rows = []
        for s in range(0, len(ids), batch_size):
            out = model(ids[s : s + batch_size].to(device), mask[s : s + batch_size].to(device))
            rows.append(nn.functional.normalize(out["pooled"].float(), dim=-1).cpu())
        return torch.cat(rows)

    t, d = embed(title_ids, title_mask), embed(body_ids, body_mask)
    hit = (t @ d.T).argmax(1) == torch.arange(len(t))
    return float(hit.float().mean())
