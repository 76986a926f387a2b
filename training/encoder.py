"""The posting encoder every part of jobrec uses: text -> L2-normalised float32 vector.

``Encoder.load(model_dir)`` reads a trained W-BERT directory (standard Hugging Face files plus
``wbert.json``); ``encode(texts)`` mean-pools the last hidden state over the attention mask.
:class:`EmbeddingCache` (SQLite) stores vectors under ``sha256(model_id + text)`` so a daily
refresh only encodes new or changed postings (:func:`encode_postings`).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import InvalidInputError, ModelError

# --------------------------------------------------------------------------- posting text

# Worknet descriptions are sectioned ("■ 주요업무", "<복리후생>", "[자격요건]"). Sections about
# the job are kept; pay, hours, benefits, procedure and notices are the same for every
# occupation and would pull neighbours towards "same benefits" instead of "same job".
_HEADER = re.compile(
    r"^[○■□●◆◇▶<\[【(]?\s*(담당\s*업무|주요\s*업무|직무\s*내용|업무\s*내용|모집\s*분야|자격\s*요건|"
    r"지원\s*자격|우대\s*사항|근무\s*조건|복리\s*후생|근무\s*환경|전형\s*방법|채용\s*절차|접수\s*방법|"
    r"제출\s*서류|기타\s*사항|기타|회사\s*소개|기업\s*소개|유의\s*사항)\s*[>\]】)]?\s*:?$"
)
_KEEP_SECTIONS = re.compile(r"담당|주요|직무|업무|모집|자격|우대")
_BULLET = re.compile(r"^[\s\-*ㆍ·•○■□●◆◇▶▷►✔✓>]+")
_DROP_LINE = re.compile(
    r"^※|^\[[^\]]*안내\]|^(학력|경력|근무\s*시간|근무\s*요일|근무\s*형태|급여|임금|연봉|시급|"
    r"고용\s*형태|근무\s*지역|근무지)\s*[:：]|채용\s*절차|이력서|자기\s*소개서|개별\s*연락|입사\s*지원|"
    r"부정\s*수급|실업\s*급여|구직\s*급여|조기\s*마감|\[전화번호\]|\[이메일\]|\[URL\]"
)
# A benefits list outside its section ("중식 제공, 경조사비 지원, 유니폼 지급"); two hits are
# required because a single one can be a duty (경리: "급여 계산 및 4대보험 신고").
_BENEFIT = re.compile(
    r"4대\s*보험|퇴직금|중식|석식|경조사|유니폼|통근\s*버스|기숙사|주차|상여금|명절|연차|휴가|식대|"
    r"복지|건강\s*검진|자기\s*계발비|야근\s*수당"
)
_TITLE_TAGS = re.compile(r"\[[^\]]{0,20}\]|\([^)]{0,20}\)|<[^>]{0,20}>")
_WS = re.compile(r"\s+")
MAX_TEXT_CHARS = 600


def posting_text(row: Mapping) -> str:
    """The text W-BERT sees for a posting: title, job sections of the description, certificates.

    Title tags such as ``[성북]`` or ``(경력무관)`` are dropped, as are the description's pay,
    hours, benefits, procedure and notice sections and lines (same for every occupation); the
    result is capped at ``MAX_TEXT_CHARS`` characters, title first.
    """
    title = _WS.sub(" ", _TITLE_TAGS.sub(" ", str(row.get("title") or ""))).strip()
    parts = [title] if title else []
    seen = {title}
    keep = True  # text before the first header is the job summary
    for raw in str(row.get("description") or "").splitlines():
        ln = _WS.sub(" ", raw).strip()
        if not ln:
            continue
        head = _HEADER.match(ln)
        if head:
            keep = bool(_KEEP_SECTIONS.search(head.group(1)))
            continue
        ln = _BULLET.sub("", ln).strip()
        if not keep or len(ln) < 2 or ln in seen or _DROP_LINE.search(ln):
            continue
        if len(_BENEFIT.findall(ln)) >= 2:
            continue
        seen.add(ln)
        parts.append(ln)
    for extra in ("certificates", "major"):
        v = row.get(extra)
        if v:
            v = _WS.sub(" ", str(v)).strip()
            if v and v not in seen:
                parts.append(v)
    return " . ".join(parts)[:MAX_TEXT_CHARS]


# --------------------------------------------------------------------------- encoder


@dataclass(frozen=True)
class EncoderConfig:
    """How to run the encoder.

    ``quantize``: dynamic int8 quantisation of the linear layers (CPU only); ``None`` picks the
    default for the device (see the benchmark in ``bench/encode.py``).
    ``max_length``: ``None`` uses the length the model was trained with.
    ``pretokenize``: ``None`` follows the model directory's ``wbert.json``.
    """

    max_length: int | None = None
    batch_size: int = 64
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    quantize: bool | None = None
    num_threads: int | None = None
    gpu_dtype: str = "bf16"  # "bf16" | "fp16" | "fp32" autocast on GPU
    pretokenize: bool | None = None

    def __post_init__(self) -> None:
        if self.max_length is not None and not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length must be in [8, 512], got {self.max_length}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.gpu_dtype not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"gpu_dtype must be bf16, fp16 or fp32, got {self.gpu_dtype!r}")


# Default CPU choice, from bench/encode.py: see DEFAULT_CPU_QUANTIZE's use in Encoder.load.
DEFAULT_CPU_QUANTIZE = False

_MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "wbert.json")


def _model_hash(model_dir: Path) -> str:
    h = hashlib.sha256()
    for name in _MODEL_FILES:
        p = model_dir / name
        if p.exists():
            h.update(name.encode())
            with p.open("rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


class Encoder:
    """Batched W-BERT encoder; build it with :meth:`load`."""

    def __init__(self, model, tokenizer, *, model_id: str, dim: int, max_length: int,
                 config: EncoderConfig, device, pretokenize: bool, quantized: bool) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.dim = dim
        self.max_length = max_length
        self.config = config
        self.device = device
        self.pretokenize = pretokenize
        self.quantized = quantized
        self.texts_encoded = 0  # how many inputs went through the model (cache tests, stats)

    @classmethod
    def load(cls, model_dir: str | Path, config: EncoderConfig | None = None) -> Encoder:
        """Load a trained model directory (``AutoModel`` + ``AutoTokenizer``)."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        from training.model import quiet_transformers, read_meta

        quiet_transformers()
        cfg = config or EncoderConfig()
        d = Path(model_dir)
        if not (d / "config.json").exists():
            raise ModelError(f"{d} is not a model directory (no config.json); run `jobrec train`")
        meta = read_meta(d)
        if cfg.device == "auto":
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            device = torch.device(cfg.device)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(d))
            model = AutoModel.from_pretrained(str(d))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load model from {d}: {exc}") from exc
        model.eval()
        quantize = cfg.quantize if cfg.quantize is not None else DEFAULT_CPU_QUANTIZE
        quantize = quantize and device.type == "cpu"
        if quantize:
            import warnings

            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():  # eager dynamic quantisation is deprecated, still works
                warnings.simplefilter("ignore")
                model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        model.to(device)
        max_length = cfg.max_length or int(meta.get("max_length") or model.config.max_position_embeddings)
        max_length = min(max_length, int(model.config.max_position_embeddings))
        pretok = cfg.pretokenize if cfg.pretokenize is not None else meta.get("pretokenizer") == "kiwi"
        # The id covers what changes the vectors: weights, tokenizer, length, quantisation.
        variant = f"|max_length={max_length}|int8={quantize}|pretok={pretok}|pool=mean"
        model_id = hashlib.sha256((_model_hash(d) + variant).encode()).hexdigest()[:24]
        return cls(
            model, tokenizer, model_id=model_id, dim=int(model.config.hidden_size),
            max_length=max_length, config=cfg, device=device, pretokenize=pretok,
            quantized=quantize,
        )

    def prepare(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (after Kiwi pre-tokenisation when the model expects it)."""
        from training.tokenizer import pretokenize_batch

        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts:
            return []
        if self.pretokenize:
            texts = pretokenize_batch(texts)
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=False)
        return enc["input_ids"]

    def encode_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Vectors for already tokenised inputs (length-sorted batches, original order kept)."""
        import torch

        from training.model import mean_pool

        n = len(ids)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        self.texts_encoded += n
        order = np.argsort([len(x) for x in ids], kind="stable")
        pad = self.tokenizer.pad_token_id or 0
        bs = self.config.batch_size
        use_amp = self.device.type == "cuda" and self.config.gpu_dtype != "fp32"
        amp_dtype = torch.bfloat16 if self.config.gpu_dtype == "bf16" else torch.float16
        with torch.inference_mode():
            for s in range(0, n, bs):
                idx = order[s : s + bs]
                width = max(len(ids[i]) for i in idx)
                batch = np.full((len(idx), width), pad, dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.int64)
                for r, i in enumerate(idx):
                    batch[r, : len(ids[i])] = ids[i]
                    mask[r, : len(ids[i])] = 1
                bt = torch.from_numpy(batch).to(self.device, non_blocking=True)
                mt = torch.from_numpy(mask).to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=amp_dtype, enabled=use_amp):
                    hidden = self.model(input_ids=bt, attention_mask=mt).last_hidden_state
                pooled = mean_pool(hidden.float(), mt)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.cpu().numpy()
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, shape ``(len(texts), dim)``, in input order."""
        return self.encode_ids(self.prepare(texts))


# --------------------------------------------------------------------------- cache


class EmbeddingCache:
    """Vectors keyed by ``sha256(model_id + "\\x00" + text)`` in a SQLite file.

    Safe to share between threads of one process; ``hits``/``misses`` count lookups.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, model_id TEXT NOT NULL,"
            " dim INTEGER NOT NULL, vec BLOB NOT NULL)"
        )
        self._db.commit()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model_id: str, text: str) -> str:
        return hashlib.sha256(f"{model_id}\x00{text}".encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are absent from the result)."""
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for s in range(0, len(uniq), 500):
                chunk = uniq[s : s + 500]
                marks = ",".join("?" * len(chunk))
                q = f"SELECT key, dim, vec FROM emb WHERE key IN ({marks})"
                for k, dim, blob in self._db.execute(q, chunk):
                    found[k] = np.frombuffer(blob, dtype=np.float32, count=dim).copy()
            self.hits += sum(1 for k in keys if k in found)
            self.misses += sum(1 for k in keys if k not in found)
        return found

    def put_many(self, model_id: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [
            (k, model_id, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for k, v in items
        ]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?)", rows)
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM emb").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def encode_postings(df, encoder: Encoder, cache: EmbeddingCache | None = None) -> np.ndarray:
    """Vectors for the postings of ``df`` (rows in ``df`` order); only cache misses are encoded.

    ``df`` is a polars frame (or anything with ``iter_rows(named=True)``) with at least
    ``title`` and ``description``. Identical texts are encoded once.
    """
    if not hasattr(df, "iter_rows"):
        raise InvalidInputError("encode_postings needs a polars DataFrame of postings")
    if "title" not in df.columns:
        raise InvalidInputError("postings lack column 'title'", field="title")
    texts = [posting_text(r) for r in df.iter_rows(named=True)]
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    if not texts:
        return out
    keys = [EmbeddingCache.key(encoder.model_id, t) for t in texts]
    cached = cache.get_many(keys) if cache is not None else {}
    todo = list(dict.fromkeys(k for k in keys if k not in cached))
    if todo:
        text_of = dict(zip(keys, texts, strict=True))
        vecs = encoder.encode([text_of[k] for k in todo])
        fresh = dict(zip(todo, vecs, strict=True))
        if cache is not None:
            cache.put_many(encoder.model_id, fresh.items())
        cached = {**cached, **fresh}
    for i, k in enumerate(keys):
        out[i] = cached[k]
    return out
