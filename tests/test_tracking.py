"""--report-to tensorboard: per-epoch losses, validation metrics and learning rate land in TensorBoard event files."""
import pytest
from helpers import TOY_ROWS, quiet_config, tiny_multitask


def read_scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_event_files_hold_each_epoch(tmp_path):
    from trainer_sentence_transformer import TRACKER_DIR, MultiTaskTrainer

    config = quiet_config(tmp_path, epochs=2, report_to="tensorboard")
    history = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS, config).train()
    scalars = read_scalars(tmp_path / TRACKER_DIR)
    for tag, key in (("train/cls_loss", "train_cls_loss"), ("train/ner_loss", "train_ner_loss"), ("lr", "lr")):
        assert [s for s, _ in scalars[tag]] == [1, 2]
        assert [v for _, v in scalars[tag]] == pytest.approx([r[key] for r in history], rel=1e-6)
    assert [v for _, v in scalars["val/accuracy"]] == pytest.approx([r["val"]["accuracy"] for r in history])
    assert [v for _, v in scalars["val/ner_f1"]] == pytest.approx([r["val"]["ner"]["f1"] for r in history])


def test_no_tracker_by_default(tmp_path):
    from trainer_sentence_transformer import TRACKER_DIR, MultiTaskTrainer

    MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, quiet_config(tmp_path)).train()
    assert not (tmp_path / TRACKER_DIR).exists()
    with pytest.raises(ValueError, match="report_to must be one of none, tensorboard"):
        quiet_config(tmp_path, report_to="wandb")
