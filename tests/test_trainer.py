import json

import numpy as np
import pytest
import torch
from helpers import TOY_ROWS, crash_after_saves, quiet_config, tiny_multitask

from batching import length_grouped_batches, prepare_features
from checkpoints import CheckpointError
from ner_tags import build_tag_list
from trainer_sentence_transformer import MultiTaskTrainer, TrainingDiverged, evaluate

TAGS = build_tag_list()


def config(tmp_path, **kw):
    return quiet_config(tmp_path / "run", **{"lr": 1e-3, **kw})


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_both_losses_fall_when_overfitting(tmp_path):
    model = tiny_multitask()
    trainer = MultiTaskTrainer(model, TOY_ROWS, TOY_ROWS, config(tmp_path, epochs=25, lr=3e-3, warmup_ratio=0))
    history = trainer.train()
    first, last = history[0], history[-1]
    assert last["train_loss"]["topic"] < 0.5 * first["train_loss"]["topic"]
    assert last["train_loss"]["ner"] < 0.5 * first["train_loss"]["ner"]
    assert last["val"]["accuracy"] == 1.0 and last["val"]["ner"]["f1"] > 0.9


@pytest.mark.parametrize("freeze, frozen_prefixes", [
    ({"freeze_encoder": True}, ["encoder."]),
    ({"freeze_tasks": ("topic",)}, ["heads.topic."]),
    ({"freeze_tasks": ("ner",)}, ["heads.ner."]),
    ({"freeze_layers": 1}, ["encoder.encoder.embeddings.",
                            "encoder.encoder.encoder.layer.0."]),
    ({"freeze_encoder": True, "freeze_tasks": ("ner",)}, ["encoder.", "heads.ner."]),
    ({"task_weights": {"topic": 0}}, ["heads.topic."]),  # a loss weight of 0 freezes its head
    ({"task_weights": {"ner": 0}}, ["heads.ner."]),
])
def test_freezing_leaves_exactly_the_frozen_parts_unchanged(tmp_path, freeze, frozen_prefixes):
    model = tiny_multitask()
    before = snapshot(model)
    trainer = MultiTaskTrainer(model, TOY_ROWS, None, config(tmp_path, warmup_ratio=0, **freeze))
    trainer.train()
    in_optimizer = {n for n, _ in trainer.trainable}
    for name, p in model.named_parameters():
        frozen = name.startswith(tuple(frozen_prefixes)) or ".pooler." in name  # the unused BERT pooler never trains
        changed = not torch.equal(before[name], p.detach())
        assert changed != frozen, name
        assert (name in in_optimizer) != frozen, name
        if frozen:
            assert p.grad is None, name


def test_freezing_everything_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="Nothing to train"):
        MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None,
                         config(tmp_path, freeze_encoder=True, freeze_tasks=("topic", "ner")))
    model = tiny_multitask()
    with torch.no_grad():  # a topic head that always says label 3
        model.heads["topic"][1].weight.zero_()
        model.heads["topic"][1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, 10.0]))
    trainer = MultiTaskTrainer(model, TOY_ROWS, None,
                               config(tmp_path, freeze_encoder=True, freeze_tasks=("topic", "ner"), eval_only=True))
    metrics = trainer.evaluate(TOY_ROWS)  # eval_only: evaluating works where training is refused
    with pytest.raises(ValueError, match="evaluate"):
        trainer.train()
    counts = [TOY_ROWS["label"].count(y) for y in range(4)]
    assert metrics["accuracy"] == counts[3] / len(TOY_ROWS["label"])
    assert metrics["confusion_matrix"] == [[0, 0, 0, n] for n in counts]


def test_feature_cache_gives_the_same_head_updates(tmp_path):
    results = []
    for use_cache in (True, False):
        model = tiny_multitask(seed=1)
        trainer = MultiTaskTrainer(model, TOY_ROWS, TOY_ROWS,
                                   config(tmp_path / str(use_cache), epochs=2, freeze_encoder=True,
                                          feature_cache=use_cache))
        history = trainer.train()
        results.append((snapshot(model), history))
    (cached, h1), (live, h2) = results
    for name in cached:
        assert torch.allclose(cached[name], live[name], atol=1e-5), name
    assert h1[-1]["val"]["accuracy"] == h2[-1]["val"]["accuracy"]


def test_same_seed_same_metrics(tmp_path):
    runs = []
    for k in range(2):
        trainer = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS, config(tmp_path / str(k), epochs=2))
        runs.append(trainer.train())
    strip = lambda h: [{k: v for k, v in r.items() if k != "train_seconds"} for r in h]
    assert strip(runs[0]) == strip(runs[1])


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    """In-process: a run that stops after a mid-epoch checkpoint, resumed, ends where an uninterrupted run ends."""
    full = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS, config(tmp_path / "full", epochs=3))
    full_history = full.train()
    full_weights = snapshot(full.model)

    cfg = config(tmp_path / "cut", epochs=3, save_every_steps=2)
    cut = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS, cfg)
    crash_after_saves(cut, 3)  # saves: mid-epoch 1, end of epoch 1, mid-epoch 2 (then the crash)
    with pytest.raises(KeyboardInterrupt):
        cut.train()
    saved = json.loads((tmp_path / "cut" / "run" / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert (saved["epoch"], saved["step_in_epoch"]) == (1, 1)  # really stopped mid-epoch
    resumed = MultiTaskTrainer(tiny_multitask(seed=7), TOY_ROWS, TOY_ROWS, config(tmp_path / "cut", epochs=3,
                                                                                  save_every_steps=2, resume=True))
    history = resumed.train()
    strip = lambda h: [{k: v for k, v in r.items() if k != "train_seconds"} for r in h]
    assert strip(history) == strip(full_history)
    for name, p in resumed.model.named_parameters():
        assert torch.equal(p.detach(), full_weights[name]), name


def test_resume_refuses_other_training_settings_only(tmp_path):
    from checkpoints import CheckpointError

    MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS, config(tmp_path)).train()
    for change in ({"lr": 2e-3}, {"bucket_batches": 7}, {"feature_cache": False}):  # not listed: must match
        with pytest.raises(CheckpointError, match=f"{next(iter(change))} differ"):
            MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS, config(tmp_path, resume=True, **change)).train()
    resumed = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS,
                               config(tmp_path, resume=True, save_every_steps=5, eval_batch_size=3, plots=True))
    assert len(resumed.train()) == 1  # the finished run is picked up, not trained again


def test_outputs_written(tmp_path):
    cfg = config(tmp_path, epochs=2, plots=True)
    MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS, cfg).train()
    run = tmp_path / "run"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]
    assert (run / "training_curves.png").stat().st_size > 1000
    assert (run / "best_model" / "heads.safetensors").exists()
    assert (run / "checkpoints" / "last" / "trainer_state.json").exists()
    assert not [p for p in run.rglob(".*tmp*")]


def test_nan_loss_stops_with_a_message(tmp_path):
    model = tiny_multitask()
    with torch.no_grad():
        model.heads["topic"][1].weight.fill_(float("nan"))
    trainer = MultiTaskTrainer(model, TOY_ROWS, None, config(tmp_path))
    with pytest.raises(TrainingDiverged, match="learning rate"):
        trainer.train()


def test_length_grouping_is_deterministic_and_complete():
    lengths = list(np.random.default_rng(0).integers(5, 100, size=500))
    a = length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert a == length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert a != length_grouped_batches(lengths, 32, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(500))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in a)
    random_batches = [list(range(j, min(j + 32, 500))) for j in range(0, 500, 32)]
    padded_random = sum(len(b) * max(lengths[i] for i in b) for b in random_batches)
    assert padded < 0.75 * padded_random


def test_bad_rows_are_clear_errors():
    model = tiny_multitask()
    with pytest.raises(ValueError, match="task 'ner', row 0: 2 words but 1 tags"):
        prepare_features({"words": [["a", "b"]], "ner_tags": [["O"]], "label": [0]}, model)
    with pytest.raises(ValueError, match="task 'topic', row 0: label 7 is outside 0..3 .*column 'label'"):
        prepare_features({"words": [["a"]], "ner_tags": [["O"]], "label": [7]}, model)
    with pytest.raises(ValueError, match=r"task 'ner': tags \['B-FOO'\] are not in its tag list"):
        prepare_features({"words": [["a"]], "ner_tags": [["B-FOO"]], "label": [0]}, model)


def test_evaluate_scores_words_not_padding(monkeypatch):
    """Padding predicts an entity on every padded position; only the words' tags may reach the score."""
    model = tiny_multitask()
    rows = {"words": [["Paris"], ["b"] * 40], "ner_tags": [["B-GPE"], ["O"] * 40], "label": [0, 1]}
    paris = model.tokenizer.convert_tokens_to_ids("paris")
    forward, padded = model.forward, []

    def tagging_forward(input_ids=None, attention_mask=None, **kwargs):
        out = forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        tags = torch.full(input_ids.shape, model.tags.index("O"))
        tags[input_ids == paris] = model.tags.index("B-GPE")
        tags[attention_mask == 0] = model.tags.index("B-ORG")
        padded.append(int((attention_mask == 0).sum()))
        out["ner"] = 10.0 * torch.nn.functional.one_hot(tags, len(model.tags)).float()
        return out

    monkeypatch.setattr(model, "forward", tagging_forward)
    m = evaluate(model, rows)
    assert sum(padded) >= 39  # the one-word row really was padded (to the 40-word row's length)
    assert m["ner"]["per_type"] == {"GPE": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}}
    assert m["ner"]["f1"] == 1.0


def test_a_bad_step_never_reaches_a_checkpoint(tmp_path):
    """NaN from the third step on, checked only every 10 steps: the check before each save stops it at step 3
    (the epoch's end), and the checkpoint of step 2 is the last one written."""
    model = tiny_multitask()
    calls = {"n": 0}
    forward = model.forward

    def nan_from_third_call(*args, **kwargs):
        calls["n"] += 1
        out = forward(*args, **kwargs)
        if calls["n"] >= 3:
            out["topic"] = out["topic"] * float("nan")
        return out

    model.forward = nan_from_third_call
    trainer = MultiTaskTrainer(model, TOY_ROWS, None, config(tmp_path, epochs=2, save_every_steps=2,
                                                             log_every_steps=10))
    with pytest.raises(TrainingDiverged, match="non-finite"):
        trainer.train()
    last = tmp_path / "run" / "checkpoints" / "last"
    assert json.loads((last / "trainer_state.json").read_text())["global_step"] == 2
    from safetensors.torch import load_file

    assert all(torch.isfinite(v).all() for v in load_file(last / "model.safetensors").values())
    assert not (tmp_path / "run" / "best_model").exists()


def test_resume_refuses_other_pooling_dropout_or_precision(tmp_path):

    MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, config(tmp_path)).train()
    again = config(tmp_path, resume=True)
    cls_pooled = tiny_multitask()
    cls_pooled.encoder.pooling = "cls"
    # the topic head's dropout is part of the run's tasks (their kinds, names, labels and dropouts)
    for model, pattern in ((cls_pooled, "pooling differ"),
                           (tiny_multitask(classifier_dropout=0.3), r"tasks differ .*now .*'dropout': 0\.3")):
        with pytest.raises(CheckpointError, match=pattern):
            MultiTaskTrainer(model, TOY_ROWS, None, again).train()
    elsewhere = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, again)
    elsewhere.precision = "bf16"  # what 'auto' resolves to on another machine (one process holds one precision)
    with pytest.raises(CheckpointError, match="precision differ"):
        elsewhere.train()


class _Planted:
    """Unpickling this runs code (touches a file): what a shared checkpoint must not be able to do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import pathlib

        return pathlib.Path.touch, (pathlib.Path(self.path),)


def test_training_state_loads_weights_only(tmp_path):

    MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, config(tmp_path)).train()
    state_file = tmp_path / "run" / "checkpoints" / "last" / "training_state.pt"
    state = torch.load(state_file, weights_only=True)  # RNG, optimizer, scheduler: plain types and tensors
    marker = tmp_path / "code_ran"
    torch.save({**state, "planted": _Planted(str(marker))}, state_file)
    with pytest.raises(CheckpointError, match="does not fit"):
        MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, config(tmp_path, resume=True)).train()
    assert not marker.exists()


def test_resume_rewrites_logs_a_kill_left_short(tmp_path):
    MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS, config(tmp_path, epochs=2)).train()
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")  # killed after the last save, before the logs
    MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS, config(tmp_path, epochs=2, resume=True)).train()
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2]


def test_evaluate_never_iterates_a_dataset(monkeypatch):
    import datasets

    def boom(*args):
        raise AssertionError("evaluate read the whole dataset row by row")

    monkeypatch.setattr(datasets.Dataset, "__contains__", boom, raising=False)  # `x in ds` iterates every row
    rows = datasets.Dataset.from_dict(TOY_ROWS)
    assert evaluate(tiny_multitask(), rows)["confusion_matrix"] is not None


def test_epochs_zero_is_an_error_unless_only_evaluating(tmp_path):
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        config(tmp_path, epochs=0)
    config(tmp_path, epochs=0, eval_only=True)


def test_process_share_splits_each_global_batch():
    from distributed import process_share

    batch = [7, 3, 9, 4, 0, 8]
    shares = [process_share(batch, rank, 2, owned_only=False) for rank in range(2)]
    assert shares == [([7, 9, 0], 1.0), ([3, 4, 8], 1.0)]
    assert [process_share(batch, rank, 2, owned_only=True) for rank in range(2)] == [([4, 0, 8], 1.0),
                                                                                      ([7, 3, 9], 1.0)]
    assert process_share([5], 1, 2, owned_only=False) == ([5], 0.0)  # no row of its own: a stand-in, weight 0
    assert process_share([5], 0, 2, owned_only=True) == ([0], 0.0)
