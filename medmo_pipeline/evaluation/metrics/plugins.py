"""Model- or API-based report metrics. None is installed by default and none reaches the network
on its own: each checks what it needs first and raises :class:`MetricUnavailable` naming it.

How to enable each:
- ``ratescore``: ``pip install RaTEScore``; put local copies of the models
  Angelakeke/RaTE-NER-Deberta and FremyCompany/BioLORD-2023-C on disk and point
  ``MEDMO_RATESCORE_NER_MODEL`` and ``MEDMO_RATESCORE_EVAL_MODEL`` at them (or pass the paths).
- ``sembscore``: download the CheXbert checkpoint (chexbert.pth, Smit et al. 2020) and a local
  ``bert-base-uncased`` directory; set ``MEDMO_CHEXBERT_CHECKPOINT`` and ``MEDMO_BERT_BASE_DIR``.
- ``llm_judge``: ``pip install openai`` and set ``OPENAI_API_KEY`` (or the variable named by
  ``api_key_env``); ``base_url`` selects any OpenAI-compatible server.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medmo_pipeline.evaluation.metrics.result import MetricResult, summarize


class MetricUnavailable(RuntimeError):
    """A metric needs a package, model file or credential that is not available here."""


def _require_module(name: str, install_hint: str):
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise MetricUnavailable(f"Python package '{name}' is not installed ({install_hint})") from error


def _require_path(given: str | os.PathLike | None, env_var: str, what: str) -> Path:
    location = given or os.environ.get(env_var)
    if not location:
        raise MetricUnavailable(f"{what} not configured: pass its path or set {env_var}")
    if not Path(location).exists():
        raise MetricUnavailable(f"{what} not found at {location} (from argument or {env_var})")
    return Path(location)


def ratescore(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    ner_model: str | os.PathLike | None = None,
    eval_model: str | os.PathLike | None = None,
) -> MetricResult:
    """RaTEScore (Zhao et al. 2024, "RaTEScore: A Metric for Radiology Report Generation").

    Delegates to the official ``RaTEScore`` package with locally stored models only.

    >>> ratescore(["no effusion"], ["no effusion"], ner_model="/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    MetricUnavailable: ...
    """
    package = _require_module("RaTEScore", "pip install RaTEScore")
    ner = _require_path(ner_model, "MEDMO_RATESCORE_NER_MODEL", "RaTEScore NER model (RaTE-NER-Deberta)")
    embedder = _require_path(
        eval_model, "MEDMO_RATESCORE_EVAL_MODEL", "RaTEScore eval model (BioLORD-2023-C)"
    )
    scorer = package.RaTEScore(bert_model=str(ner), eval_model=str(embedder))
    return summarize("ratescore", scorer.compute_score(list(predictions), list(references)))


def sembscore(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    checkpoint: str | os.PathLike | None = None,
    bert_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
) -> MetricResult:
    """SembScore (Yu et al. 2023, CXR-Report-Metric): cosine similarity of the CheXbert [CLS]
    embeddings of prediction and reference, per sample.

    ``checkpoint`` is CheXbert's ``chexbert.pth`` (a DataParallel state dict whose encoder keys
    start with ``module.bert.``); ``bert_dir`` holds the ``bert-base-uncased`` config and tokenizer.

    >>> sembscore(["no effusion"], ["no effusion"], checkpoint="/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    MetricUnavailable: ...
    """
    weights = _require_path(checkpoint, "MEDMO_CHEXBERT_CHECKPOINT", "CheXbert checkpoint (chexbert.pth)")
    base = _require_path(bert_dir, "MEDMO_BERT_BASE_DIR", "bert-base-uncased directory")
    torch = _require_module("torch", "install torch")
    transformers = _require_module("transformers", "pip install transformers")

    # weights_only: tensors and containers only; a checkpoint that carries code is refused, not run.
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state = state.get("model_state_dict", state)
    encoder_state = {
        k.removeprefix("module.").removeprefix("bert."): v for k, v in state.items() if ".bert." in f".{k}"
    }
    model = transformers.BertModel(transformers.BertConfig.from_pretrained(base), add_pooling_layer=False)
    missing = model.load_state_dict(encoder_state, strict=False).missing_keys
    if missing:
        raise MetricUnavailable(f"CheXbert checkpoint {weights} lacks encoder weights, e.g. {missing[:3]}")
    tokenizer = transformers.BertTokenizer.from_pretrained(base)
    model.eval()

    def embed(texts: Sequence[str]) -> np.ndarray:
        chunks = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                # CheXbert's own preprocessing: collapse whitespace, truncate to BERT's 512 tokens.
                batch = [" ".join(str(t).split()) for t in texts[start : start + batch_size]]
                encoded = tokenizer(batch, padding=True, truncation=True, max_length=512, return_tensors="pt")
                chunks.append(model(**encoded).last_hidden_state[:, 0, :].float().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, model.config.hidden_size))

    pred, ref = embed(predictions), embed(references)
    norms = np.linalg.norm(pred, axis=1) * np.linalg.norm(ref, axis=1)
    cosine = np.divide((pred * ref).sum(axis=1), norms, out=np.zeros(len(pred)), where=norms > 0)
    return summarize("sembscore", cosine)


_JUDGE_PROMPT = (
    "You grade answers to medical questions. Reply with 1 if the candidate answer means the same as "
    "the reference answer, otherwise 0. Reply with the digit only.\n"
    "Question: {question}\nReference answer: {reference}\nCandidate answer: {prediction}"
)


def llm_judge(
    predictions: Sequence[str],
    references: Sequence[str],
    questions: Sequence[str] | None = None,
    *,
    model: str = "gpt-4o-mini",
    api_key_env: str = "OPENAI_API_KEY",
    base_url: str | None = None,
    client=None,
) -> MetricResult:
    """Judge accuracy: an LLM (OpenAI chat-completions API) grades each answer 1 or 0 against
    the reference; a reply without a 0/1 digit is wrong and counted in ``unparseable``.

    ``client`` may be any object with ``chat.completions.create`` (an ``openai.OpenAI``); without
    one, it is built from the ``openai`` package and the key in ``api_key_env``.

    >>> llm_judge(["yes"], ["yes"], api_key_env="MEDMO_UNSET_KEY")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    MetricUnavailable: LLM judge needs an API key: environment variable MEDMO_UNSET_KEY is not set
    """
    if client is None:
        if not os.environ.get(api_key_env):
            raise MetricUnavailable(
                f"LLM judge needs an API key: environment variable {api_key_env} is not set"
            )
        openai = _require_module("openai", "pip install openai")
        client = openai.OpenAI(api_key=os.environ[api_key_env], base_url=base_url)
    questions = questions if questions is not None else [""] * len(predictions)
    scores, unparseable = [], 0
    for prediction, reference, question in zip(predictions, references, questions, strict=True):
        prompt = _JUDGE_PROMPT.format(question=question, reference=reference, prediction=prediction or "")
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], temperature=0
        )
        verdict = re.search(r"[01]", reply.choices[0].message.content or "")
        unparseable += verdict is None
        scores.append(float(verdict is not None and verdict.group() == "1"))
    return summarize("llm_judge", scores, unparseable=unparseable)
