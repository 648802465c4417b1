"""The Hugging Face model card written with every saved model: metadata and metrics equal results.json."""
import json

import pytest
from helpers import tiny_multitask


def card_values(path):
    """{(dataset name, metric type): value} from a card's model-index, parsed by huggingface_hub."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    return card, {(r.dataset_name, r.metric_type, r.task_type): r.metric_value for r in card.data.eval_results or []}


NER = {"f1": 0.674, "precision": 0.6, "recall": 0.7}
RESULTS = {"test": {"tasks": {"topic": {"accuracy": 0.9092, "macro_f1": 0.9081}, "ner": NER},
                    "accuracy": 0.9092, "macro_f1": 0.9081, "ner": NER},
           "sts_spearman": 86.12, "trained_tasks": {"topic": True, "ner": True},
           "flags": {"model_name": "all-MiniLM-L6-v2", "dataset": "data/ag_news", "epochs": 4,
                     "task_weights": "ner=3", "predict": None}}


def test_card_metrics_equal_the_results(tmp_path):
    from model_card import write_model_card

    model = tiny_multitask()
    conll = {"model": {"f1": 0.621}, "spacy": {"f1": 0.582}}
    path = write_model_card(tmp_path, model, RESULTS, conll)
    card, values = card_values(path)
    assert values == {("ag_news", "accuracy", "text-classification"): 0.9092,
                      ("ag_news", "f1", "text-classification"): 0.9081,
                      ("ag_news", "f1", "token-classification"): 0.674,
                      ("STS Benchmark", "spearmanr", "sentence-similarity"): 86.12,
                      ("CoNLL-2003", "f1", "token-classification"): 0.621}
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.datasets == ["fancyzhx/ag_news", "eriktks/conll2003"]
    assert "`--task-weights` | `ner=3`" in card.text and "silver" in card.text.lower() and "## Limitations" in card.text


def test_the_card_names_data_and_models_without_the_training_machine_s_paths(tmp_path, monkeypatch):
    """A card is published with the model: absolute paths of the machine it was trained on become names a reader can
    find (a path inside the data root, the working folder's relative path, else a file name)."""
    from model_card import write_model_card

    root, cwd = "/srv/alice/data", str(tmp_path)
    monkeypatch.chdir(tmp_path)  # the run's working folder
    source = f"{root}/bbc_sport_politics/bbc-text.csv"
    flags = {**RESULTS["flags"], "data_root": root, "dataset": f"{root}/ag_news",
             "ner_data": [f"{root}/conll2003/train.txt"],
             "tasks": ["topic", "ner", f"bbc=classification:{source}@category"], "model_name": "/opt/models/minilm",
             "teachers": [f"topic={cwd}/outputs/topic/model"]}
    results = {**RESULTS, "flags": flags, "task_sources": {"topic": f"{root}/ag_news"},
               "teachers": {"topic": {"path": f"{cwd}/outputs/topic/model", "accuracy": 0.9}}}
    path = write_model_card(tmp_path / "m", tiny_multitask(), results)
    text = open(path).read()
    for machine_path in ("/srv/", "/opt/", cwd):
        assert machine_path not in text
    assert "`--dataset` | `ag_news`" in text and "bbc=classification:bbc_sport_politics/bbc-text.csv@category" in text
    assert "conll2003/train.txt" in text and "topic from `outputs/topic/model`" in text and "minilm" in text
    assert "--data-root" not in text


def test_untrained_head_is_stated_and_its_metrics_left_out(tmp_path):
    from model_card import write_model_card

    model = tiny_multitask()
    model.trained_tasks = {"topic": True, "ner": False}
    results = {**RESULTS, "trained_tasks": model.trained_tasks}
    card, values = card_values(write_model_card(tmp_path, model, results))
    assert "Untrained head: ner" in card.text
    assert not any(task == "token-classification" for _, _, task in values)


def test_every_saved_model_has_a_card_that_loading_ignores(tmp_path):
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    model = tiny_multitask()
    model.save_pretrained(tmp_path / "m")
    card, values = card_values(tmp_path / "m" / "README.md")
    assert values == {} and "Not measured yet" in card.text
    (tmp_path / "m" / "README.md").write_text("not a card at all ---")
    MultiTaskSentenceTransformer.from_pretrained(tmp_path / "m")  # the card is never read


@pytest.mark.slow
def test_main_run_writes_a_card_matching_results_json(reference):
    results = json.loads((reference / "out" / "results.json").read_text())
    card, values = card_values(reference / "out" / "model" / "README.md")
    test = results["test"]
    assert values[("ag_news", "accuracy", "text-classification")] == pytest.approx(test["accuracy"], abs=1e-6)
    assert values[("ag_news", "f1", "text-classification")] == pytest.approx(test["macro_f1"], abs=1e-6)
    assert values[("ag_news", "f1", "token-classification")] == pytest.approx(test["ner"]["f1"], abs=1e-6)
    assert values[("STS Benchmark", "spearmanr", "sentence-similarity")] == pytest.approx(results["sts_spearman"],
                                                                                         abs=1e-6)
    assert f"`--epochs` | `{results['flags']['epochs']}`" in card.text
