"""Task balancing (loss_weighting) and keeping the sentence embedding (keep_embedding), on a tiny random encoder.

Learned loss weights are saved and resumed bit for bit, move during training and are logged per epoch; the
distillation starts at 0 and keeps the embedding nearer the starting encoder's than training without it; a run of
two processes (DDP) gives the one-process result; bad values are clear errors.
"""
import json
import math
import subprocess
import sys

import pytest
import torch
from helpers import TOY_ROWS, crash_after_saves, quiet_config, save_tiny_encoder, tiny_multitask

from batching import prepare_features
from checkpoints import CheckpointError
from distil_targets import sentence_embeddings
from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig


def config(tmp_path, **kw):
    return quiet_config(tmp_path / "run", **{"lr": 1e-3, **kw})


def strip(history):
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in history]


def dropout_free(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def test_learned_weights_and_distillation_targets_resume_exactly(tmp_path):
    """A run stopped after a mid-epoch checkpoint and resumed (from a model with other weights, so the distillation
    targets must come from the checkpoint, not from the resumed model) ends bit for bit where an uninterrupted run
    ends: the log-variances, the history and every weight."""
    settings = dict(epochs=3, loss_weighting="uncertainty", keep_embedding=1.0, task_weights={"ner": 3.0})
    full = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS, config(tmp_path / "full", **settings))
    full_history = full.train()

    cfg = config(tmp_path / "cut", save_every_steps=2, **settings)
    cut = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS, cfg)
    crash_after_saves(cut, 3)  # saves: mid-epoch 1, end of epoch 1, mid-epoch 2 (then the crash)
    with pytest.raises(KeyboardInterrupt):
        cut.train()
    last = tmp_path / "cut" / "run" / "checkpoints" / "last"
    saved = torch.load(last / "training_state.pt", weights_only=True)["loss_weighting"]
    assert set(saved) == {"log_vars.topic", "log_vars.ner"}
    assert all(torch.equal(saved[f"log_vars.{t}"], s.detach()) for t, s in cut.loss_weighting.log_vars.items())

    resumed = MultiTaskTrainer(tiny_multitask(seed=7), TOY_ROWS, TOY_ROWS,
                               config(tmp_path / "cut", save_every_steps=2, resume=True, **settings))
    history = resumed.train()
    assert strip(history) == strip(full_history)  # includes log_vars, loss_weights and the distillation loss
    for task, s in full.loss_weighting.log_vars.items():
        assert torch.equal(resumed.loss_weighting.log_vars[task].detach(), s.detach()), task
    for name, p in resumed.model.named_parameters():
        assert torch.equal(p.detach(), dict(full.model.named_parameters())[name].detach()), name


def test_uncertainty_weights_move_are_logged_and_stay_out_of_the_saved_model(tmp_path):
    trainer = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, TOY_ROWS,
                               config(tmp_path, epochs=3, lr=3e-2, loss_weighting="uncertainty", task_weights={"ner": 3.0},
                                      warmup_ratio=0))
    trainer.train()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    start = {"topic": 0.0, "ner": -math.log(3.0)}  # started at the fixed weights 1 and 3
    for r in lines:
        assert set(r["log_vars"]) == set(r["loss_weights"]) == {"topic", "ner"}
        for task in ("topic", "ner"):
            assert r["loss_weights"][task] == pytest.approx(math.exp(-r["log_vars"][task]))
    for task in ("topic", "ner"):
        moves = [start[task]] + [r["log_vars"][task] for r in lines]
        assert all(abs(b - a) > 1e-3 for a, b in zip(moves, moves[1:])), (task, moves)
    # the Kendall optimum is s_t = log L_t: NER's loss here is well above 1, so its weight falls from 3
    assert lines[-1]["loss_weights"]["ner"] < 3.0
    shown = trainer.format_record(lines[-1]).split("| weights ")[1].split(" |")[0].split()
    assert dict(zip(shown[0::2], map(float, shown[1::2]))) == pytest.approx(lines[-1]["loss_weights"], abs=5e-4)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "run" / "best_model" / "heads.safetensors")
    assert saved and not [k for k in saved if "log_var" in k]


def test_a_frozen_task_gets_no_learned_weight(tmp_path):
    trainer = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None,
                               config(tmp_path, loss_weighting="uncertainty", freeze_tasks=("ner",)))
    history = trainer.train()
    assert set(history[-1]["log_vars"]) == {"topic"}


def test_distillation_starts_at_zero_and_keeps_the_embedding(tmp_path):
    """No dropout and one step per epoch: the first step sees the untouched encoder, so its distillation loss is 0;
    after training, the embeddings are nearer the starting encoder's with the distillation than without."""
    rows = TOY_ROWS
    features = prepare_features(rows, tiny_multitask())

    def embeddings(model):
        return sentence_embeddings(model, features, range(len(rows["label"])))

    start = embeddings(dropout_free(tiny_multitask()))  # every model below starts from these weights (seed 0)
    cosines = {}
    for keep in (0.0, 5.0):
        model = dropout_free(tiny_multitask())
        trainer = MultiTaskTrainer(model, rows, None, config(tmp_path / str(keep), epochs=6, lr=1e-2,
                                                             batch_size=len(rows["label"]), keep_embedding=keep,
                                                             warmup_ratio=0))
        history = trainer.train()
        if keep:
            assert history[0]["train_distill_loss"] < 1e-6  # step 0: the model is the teacher
            assert history[1]["train_distill_loss"] > 1e-4  # then the tasks pull it away, and it is measured
            from safetensors.torch import load_file

            teacher = load_file(tmp_path / str(keep) / "run" / "checkpoints" / "teacher" / "embeddings.safetensors")
            assert torch.equal(teacher["embeddings"], start)  # the targets: the starting encoder's embeddings
        else:
            assert "train_distill_loss" not in history[0]
        cosines[keep] = float(torch.nn.functional.cosine_similarity(embeddings(model), start, dim=-1).mean())
    assert cosines[5.0] > cosines[0.0] + 0.01, cosines


def test_resume_refuses_another_weighting_or_distillation(tmp_path):
    MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, config(tmp_path)).train()
    for change in ({"loss_weighting": "uncertainty"}, {"keep_embedding": 1.0}):
        with pytest.raises(CheckpointError, match=f"{next(iter(change))} differ"):
            MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, config(tmp_path, resume=True, **change)).train()


def test_missing_distillation_targets_on_resume_are_a_clear_error(tmp_path):
    import shutil

    MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, config(tmp_path, keep_embedding=1.0)).train()
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "teacher")
    with pytest.raises(CheckpointError, match="distillation targets.*delete"):
        MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, config(tmp_path, keep_embedding=1.0, resume=True)).train()


@pytest.mark.parametrize("settings, message", [
    ({"loss_weighting": "kendall"}, "loss_weighting must be one of fixed, uncertainty"),
    ({"keep_embedding": -1.0}, "keep_embedding must be a number >= 0"),
    ({"keep_embedding": float("nan")}, "keep_embedding must be a number >= 0"),
])
def test_bad_train_config_values_are_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


@pytest.mark.parametrize("args, message", [
    (["--loss-weighting", "gradnorm"], "--loss-weighting must be one of fixed, uncertainty"),
    (["--keep-embedding", "-0.5"], "--keep-embedding must be >= 0"),
    (["--keep-embedding", "inf"], "--keep-embedding must be >= 0"),
])
def test_bad_flags_are_clear_errors(capsys, args, message):
    import main

    with pytest.raises(SystemExit) as exit_info:
        main.parse_args(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_give_the_one_process_result(tmp_path_factory, ag_news_dir, reference):
    """DDP on CPU: the learned weights and the distillation are all-reduced like the rest (dropout-free encoder)."""
    from main_runs import env
    from test_distributed import LOSS_RTOL, fresh_dir, main_command

    model_dir = save_tiny_encoder(tmp_path_factory.mktemp("bert") / "bert", dropout=0.0, pooler=True)
    rtol = max(LOSS_RTOL, 1e-5)  # learned weights on the tests' data: 4.1e-6 relative measured (2026-12-04, Xeon)
    histories = {}
    for processes in (1, 2):
        cwd = fresh_dir(tmp_path_factory, f"balance{processes}", reference)
        proc = subprocess.run(main_command(model_dir, ag_news_dir, processes)
                              + ["--loss-weighting", "uncertainty", "--keep-embedding", "1", "--epochs", "2"],
                              cwd=cwd, capture_output=True, text=True, env=dict(env(), OMP_NUM_THREADS="1"),
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        histories[processes] = json.loads((cwd / "out" / "results.json").read_text())["history"]
    for one, two in zip(histories[1], histories[2]):
        for task in ("topic", "ner"):
            assert two["train_loss"][task] == pytest.approx(one["train_loss"][task], rel=rtol), task
        assert two["train_distill_loss"] == pytest.approx(one["train_distill_loss"], rel=rtol)
        for task in ("topic", "ner"):
            assert two["log_vars"][task] == pytest.approx(one["log_vars"][task], abs=1e-6), task
        assert two["log_vars"]["ner"] != pytest.approx(-math.log(3.0), abs=1e-4)  # it moved
        assert two["val"] == one["val"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
