import json

import numpy as np
import pytest
import torch

from create_ner_dataset import build_tag_list
from helpers import TOY_ROWS, tiny_multitask
from trainer_sentence_transformer import (MultiTaskTrainer, TrainConfig, TrainingDiverged, classification_metrics,
                                          evaluate, length_grouped_batches, ner_metrics, prepare_features)

TAGS = build_tag_list()


def config(tmp_path, **kw):
    settings = dict(epochs=1, batch_size=8, lr=1e-3, output_dir=str(tmp_path / "run"), show_progress=False,
                    plots=False, save_every_steps=0, resume=False, mixed_precision="no")
    settings.update(kw)
    return TrainConfig(**settings)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_both_losses_fall_when_overfitting(tmp_path):
    model = tiny_multitask()
    trainer = MultiTaskTrainer(model, TOY_ROWS, TOY_ROWS, config(tmp_path, epochs=25, lr=3e-3, warmup_ratio=0))
    history = trainer.train()
    first, last = history[0], history[-1]
    assert last["train_cls_loss"] < 0.5 * first["train_cls_loss"]
    assert last["train_ner_loss"] < 0.5 * first["train_ner_loss"]
    assert last["val"]["accuracy"] == 1.0 and last["val"]["ner"]["f1"] > 0.9


@pytest.mark.parametrize("freeze, frozen_prefixes", [
    ({"freeze_encoder": True}, ["encoder."]),
    ({"freeze_classifier": True}, ["classifier."]),
    ({"freeze_ner": True}, ["ner_head."]),
    ({"freeze_layers": 1}, ["encoder.encoder.embeddings.",
                            "encoder.encoder.encoder.layer.0."]),
    ({"freeze_encoder": True, "freeze_ner": True}, ["encoder.", "ner_head."]),
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
                         config(tmp_path, freeze_encoder=True, freeze_classifier=True, freeze_ner=True))
    trainer = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None,
                               config(tmp_path, freeze_encoder=True, freeze_classifier=True, freeze_ner=True,
                                      eval_only=True))
    assert trainer.evaluate(TOY_ROWS)["accuracy"] >= 0


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
    calls = {"n": 0}
    original = cut._save_checkpoint

    def crash_after_second_mid_epoch_save(name, state, *args):
        original(name, state, *args)
        calls["n"] += 1
        if calls["n"] == 3:  # saves: mid-epoch 1, end of epoch 1, mid-epoch 2 (here)
            raise KeyboardInterrupt

    cut._save_checkpoint = crash_after_second_mid_epoch_save
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
        model.classifier[1].weight.fill_(float("nan"))
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
    with pytest.raises(ValueError, match="2 words but 1 ner_tags"):
        prepare_features({"words": [["a", "b"]], "ner_tags": [["O"]], "label": [0]}, model)
    with pytest.raises(ValueError, match="outside 0..3"):
        prepare_features({"words": [["a"]], "ner_tags": [["O"]], "label": [7]}, model)
    with pytest.raises(ValueError, match="not in the model's tag list"):
        prepare_features({"words": [["a"]], "ner_tags": [["B-FOO"]], "label": [0]}, model)


def test_metrics():
    m = classification_metrics([0, 1, 1, 2], [0, 1, 2, 2], 3)
    assert m["accuracy"] == 0.75 and m["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    n = ner_metrics([["B-ORG", "I-ORG", "O", "B-PER"]], [["B-ORG", "I-ORG", "O", "O"]])
    assert n["precision"] == 1.0 and n["recall"] == 0.5 and n["per_type"]["ORG"]["f1"] == 1.0


def test_evaluate_scores_words_not_padding():
    model = tiny_multitask()
    rows = {"words": [["a"], ["b"] * 40], "ner_tags": [["O"], ["O"] * 40], "label": [0, 1]}
    model.ner_head.linear.bias.data[:] = -10
    model.ner_head.linear.bias.data[0] = 10  # always predict O
    m = evaluate(model, rows)
    assert m["ner"]["f1"] == 0.0 and m["ner"]["per_type"] == {}  # no entities, none predicted, padding unscored
