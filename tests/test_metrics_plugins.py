"""Optional model/API metrics: a clear MetricUnavailable naming what is missing, and no network."""

from types import SimpleNamespace

import pytest

from medmo_pipeline.evaluation.metrics import MetricUnavailable, llm_judge, ratescore, sembscore


@pytest.fixture(autouse=True)
def no_plugin_configuration(monkeypatch):
    for name in (
        "MEDMO_RATESCORE_NER_MODEL",
        "MEDMO_RATESCORE_EVAL_MODEL",
        "MEDMO_CHEXBERT_CHECKPOINT",
        "MEDMO_BERT_BASE_DIR",
        "OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


def test_ratescore_names_the_missing_package_or_model():
    with pytest.raises(MetricUnavailable, match="RaTEScore|MEDMO_RATESCORE_NER_MODEL"):
        ratescore(["no effusion"], ["no effusion"])


def test_sembscore_names_the_missing_checkpoint_variable():
    with pytest.raises(MetricUnavailable, match="MEDMO_CHEXBERT_CHECKPOINT"):
        sembscore(["no effusion"], ["no effusion"])


def test_sembscore_names_a_missing_path(tmp_path):
    checkpoint = tmp_path / "chexbert.pth"
    checkpoint.touch()
    with pytest.raises(MetricUnavailable, match="MEDMO_BERT_BASE_DIR"):
        sembscore(["a"], ["a"], checkpoint=checkpoint)
    with pytest.raises(MetricUnavailable, match=str(tmp_path / "bert")):
        sembscore(["a"], ["a"], checkpoint=checkpoint, bert_dir=tmp_path / "bert")


def test_llm_judge_names_the_api_key_variable():
    with pytest.raises(MetricUnavailable, match="OPENAI_API_KEY"):
        llm_judge(["yes"], ["yes"])


class FakeChatClient:
    """Stands in for openai.OpenAI: replies with a fixed verdict per call, records the prompts."""

    def __init__(self, replies):
        self.replies, self.prompts = list(replies), []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, model, messages, temperature):
        self.prompts.append(messages[0]["content"])
        message = SimpleNamespace(content=self.replies.pop(0))
        return SimpleNamespace(choices=[SimpleNamespace(message=message)])


def test_llm_judge_scores_replies_and_counts_unreadable_ones():
    client = FakeChatClient(["1", "0", "I am not sure", " 1."])
    outcome = llm_judge(["a", "b", "c", ""], ["a", "x", "c", "d"], ["q1", "q2", "q3", "q4"], client=client)
    assert (outcome.value, outcome.n, outcome.unparseable) == (0.5, 4, 1)
    assert "Question: q2" in client.prompts[1] and "Reference answer: x" in client.prompts[1]


def test_sembscore_runs_with_a_local_chexbert_style_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "effusion", "heart", "normal", "large"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    config = transformers.BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    config.save_pretrained(tmp_path)
    torch.manual_seed(0)
    encoder = transformers.BertModel(config, add_pooling_layer=False).eval()
    # CheXbert saves a DataParallel model: encoder under module.bert., classifier heads beside it.
    state = {f"module.bert.{k}": v for k, v in encoder.state_dict().items()}
    state["module.linear_heads.0.weight"] = torch.zeros(4, 16)
    torch.save({"model_state_dict": state}, tmp_path / "chexbert.pth")

    outcome = sembscore(
        ["no effusion", "heart normal", "large heart"],
        ["no effusion", "heart normal", "no effusion"],
        checkpoint=tmp_path / "chexbert.pth",
        bert_dir=tmp_path,
    )
    assert outcome.n == 3
    assert outcome.per_sample[:2] == pytest.approx([1.0, 1.0], abs=1e-5)
    # The third pair's cosine must come from the saved weights, not a fresh initialisation.
    tokenizer = transformers.BertTokenizer(str(tmp_path / "vocab.txt"))
    with torch.no_grad():
        cls = [
            encoder(**tokenizer(t, return_tensors="pt")).last_hidden_state[0, 0]
            for t in ("large heart", "no effusion")
        ]
    expected = torch.nn.functional.cosine_similarity(cls[0], cls[1], dim=0).item()
    assert outcome.per_sample[2] == pytest.approx(expected, abs=1e-6)
    assert outcome.per_sample[2] < 1 - 1e-7
