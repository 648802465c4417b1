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
    for tag, value in (("train/topic_loss", lambda r: r["train_loss"]["topic"]),
                       ("train/ner_loss", lambda r: r["train_loss"]["ner"]), ("lr", lambda r: r["lr"]),
                       ("val/topic/accuracy", lambda r: r["val"]["tasks"]["topic"]["accuracy"]),
                       ("val/ner/f1", lambda r: r["val"]["tasks"]["ner"]["f1"]),
                       ("val/selection_score", lambda r: r["selection_score"])):
        assert [s for s, _ in scalars[tag]] == [1, 2], tag
        assert [v for _, v in scalars[tag]] == pytest.approx([value(r) for r in history], rel=1e-6), tag


def test_no_tracker_by_default(tmp_path):
    from trainer_sentence_transformer import TRACKER_DIR, MultiTaskTrainer

    MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, quiet_config(tmp_path)).train()
    assert not (tmp_path / TRACKER_DIR).exists()
    with pytest.raises(ValueError, match="report_to must be one of none, tensorboard"):
        quiet_config(tmp_path, report_to="wandb")
