"""--schedule "joint, then NER" end to end on the tests' data root and real spaCy with a tiny random encoder: stage 1 trains
both tasks, stage 2 trains NER on from stage 1's best model with the topic head frozen, the total is EPOCHS, the
results say so, a run killed in stage 2 resumes to the uninterrupted result, and bad values are refused up front."""
import json
import signal
import subprocess

import pytest
import torch
from helpers import flag_error
from main_runs import command, comparable, env

SCHEDULE = ["--schedule", "joint, then NER", "--stage2-epochs", "1"]  # with main_runs' --epochs 2: 1 + 1


def parts(path):
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    model = MultiTaskSentenceTransformer.from_pretrained(path)
    modules = {"topic": model.heads["topic"], "ner": model.heads["ner"], "encoder": model.encoder}
    return {part: {n: p.detach().clone() for n, p in module.named_parameters()} for part, module in modules.items()}


def same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


@pytest.fixture(scope="module")
def schedule_run(tmp_path_factory, tiny_model_dir, ag_news_dir):
    cwd = tmp_path_factory.mktemp("schedule")
    proc = subprocess.run(command(tiny_model_dir, ag_news_dir) + SCHEDULE, cwd=cwd, env=env(), capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd


@pytest.mark.slow
def test_stage_two_trains_ner_on_with_the_topic_head_frozen(schedule_run):
    out = schedule_run / "out"
    results = json.loads((out / "results.json").read_text())
    stages = results["schedule"]["stages"]
    assert results["schedule"]["name"] == "joint, then NER" and results["flags"]["schedule"] == "joint, then NER"
    assert [s["epochs"] for s in stages] == [1, 1]  # EPOCHS 2 in all: the budget of a joint run
    assert stages[0]["train_seconds"] > 0
    assert len(stages[0]["history"]) == 1 and len(results["history"]) == 1
    assert not (out / "stage1" / "results.json").exists()  # stage 1 never looked at the test split
    stage1, stage2 = parts(out / "stage1" / "best_model"), parts(out / "model")
    assert same(stage1["topic"], stage2["topic"])  # frozen through stage 2
    assert not same(stage1["ner"], stage2["ner"])
    assert not same(stage1["encoder"], stage2["encoder"])
    assert results["trained_tasks"] == {"topic": True, "ner": True}  # the topic head was trained, in stage 1


@pytest.mark.slow
def test_a_schedule_killed_in_stage_two_resumes_to_the_same_result(tmp_path, tiny_model_dir, ag_news_dir,
                                                                   schedule_run):
    stage1_steps = json.loads((schedule_run / "out" / "stage1" / "stage.json").read_text())["history"][0]["global_step"]
    cmd = command(tiny_model_dir, ag_news_dir) + SCHEDULE
    proc = subprocess.run(cmd, cwd=tmp_path, env=dict(env(), MTST_KILL_AT=f"train:{stage1_steps + 3}"),
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert (tmp_path / "out" / "stage1" / "stage.json").exists() and not (tmp_path / "out" / "results.json").exists()
    proc = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout
    ours = json.loads((tmp_path / "out" / "results.json").read_text())
    theirs = json.loads((schedule_run / "out" / "results.json").read_text())
    assert comparable(ours) == comparable(theirs)


@pytest.mark.parametrize("args, message", [
    (["--schedule", "ner first"], "--schedule must be one of 'joint' | 'joint, then NER'"),
    (["--schedule", "joint, then NER", "--epochs", "2", "--stage2-epochs", "2"],
     "--stage2-epochs must be between 1 and --epochs - 1 (1)"),
    (["--schedule", "joint, then NER", "--task-weights", "ner=0"], "needs the ner task and another one trained"),
    (["--schedule", "joint, then NER", "--task-weights", "topic=0"], "needs the ner task and another one trained"),
    (["--schedule", "joint, then NER", "--freeze", "ner"], "needs the ner task and another one trained"),
    (["--schedule", "joint, then NER", "--freeze", "topic"], "needs the ner task and another one trained"),
    (["--schedule", "joint, then NER", "--tasks", "topic"], "needs the ner task and another one trained"),
    (["--schedule", "joint, then NER", "--freeze-encoder"], "use --schedule joint"),
])
def test_bad_schedules_are_refused_before_any_work(tmp_path, monkeypatch, capsys, args, message):
    assert message in flag_error(args, tmp_path, monkeypatch, capsys)
