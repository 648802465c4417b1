"""Distillation (distillation.py, the trainer's teacher targets, main.py --distil-from): students made from a teacher's
layers, the teacher's outputs as stored targets, the soft loss, and bad inputs refused before any work."""
import json
import signal
import subprocess

import pytest
import torch
from helpers import TOY_ROWS, flag_error, quiet_config, tiny_multitask
from main_runs import command, comparable, env


def test_students_keep_the_first_and_the_top_layer_and_spread_the_rest():
    from distillation import student_layer_indices

    assert student_layer_indices(6, 3) == [0, 3, 5]
    assert student_layer_indices(6, 2) == [0, 5]
    assert student_layer_indices(6, 4) == [0, 2, 3, 5]
    assert student_layer_indices(6, 1) == [5]
    assert student_layer_indices(6, 6) == list(range(6))
    assert student_layer_indices(12, 6) == [0, 2, 4, 7, 9, 11]
    for bad in (0, 7):
        with pytest.raises(ValueError, match="between 1 and 6"):
            student_layer_indices(6, bad)


def test_a_student_is_the_teacher_with_fewer_layers_and_saves_like_any_model(tmp_path):
    from distillation import make_student
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    teacher = tiny_multitask(seed=3).eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = make_student(teacher, 1)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # teacher untouched
    assert len(teacher.encoder.embeddings_and_layers()[1]) == 2
    (layer,) = student.encoder.embeddings_and_layers()[1]
    top = teacher.encoder.embeddings_and_layers()[1][1]
    assert layer is not top and all(torch.equal(a, b) for a, b in zip(layer.parameters(), top.parameters()))
    assert list(student.tasks) == list(teacher.tasks) == ["topic", "ner"]
    for name in teacher.tasks:
        assert all(torch.equal(a, b) for a, b in zip(student.heads[name].parameters(),
                                                     teacher.heads[name].parameters()))
    assert student.tokenizer is not None and student.encoder.pooling == teacher.encoder.pooling
    texts = ["Apple opens a store in Paris.", "Stocks fell on Wall Street."]
    student.save_pretrained(tmp_path / "student")
    loaded = MultiTaskSentenceTransformer.from_pretrained(tmp_path / "student")
    assert loaded.encoder.encoder.config.num_hidden_layers == 1
    assert loaded.predict(texts) == student.eval().predict(texts)
    assert torch.allclose(torch.as_tensor(loaded.encode(texts)), torch.as_tensor(student.encode(texts)), atol=1e-6)
    assert not torch.allclose(torch.as_tensor(student.encode(texts)), torch.as_tensor(teacher.encode(texts)))


def test_the_targets_are_the_teachers_outputs_row_by_row(tmp_path):
    from batching import collate
    from distillation import make_student
    from trainer_sentence_transformer import MultiTaskTrainer

    teacher = tiny_multitask(seed=5).eval()
    trainer = MultiTaskTrainer(make_student(teacher, 1), TOY_ROWS, None,
                               quiet_config(tmp_path, distil_weight=0.5, keep_embedding=1.0), teacher=teacher)
    state = {"teacher": None}
    targets = trainer._distillation_targets(trainer.model, state)
    n = len(TOY_ROWS["label"])
    assert targets["embeddings"].shape == (n, teacher.encoder.hidden_size)
    assert targets["topic"].shape == (n, len(teacher.label_names))
    n_words = sum(len(t) for t in TOY_ROWS["ner_tags"])  # every word of the toy rows is tagged (and one wordpiece+)
    assert targets["ner.offsets"].tolist()[-1] == targets["ner"].shape[0] == sum(trainer.counts["ner"]) == n_words
    assert targets["ner"].shape[1] == len(teacher.tags)
    for i in (0, 4, n - 1):  # one row alone through the teacher gives the same numbers
        batch = collate(trainer.train_features, [i], trainer.pad_id, tasks=trainer.model.tasks)
        with torch.no_grad():
            out = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          shape_ids=batch["shape_ids"], positions={"ner": (batch["ner.rows"], batch["ner.cols"])})
        lo, hi = targets["ner.offsets"][i], targets["ner.offsets"][i + 1]
        assert hi - lo == len(TOY_ROWS["ner_tags"][i])
        assert torch.allclose(targets["ner"][lo:hi], out["ner"], atol=1e-5)
        assert torch.allclose(targets["topic"][i], out["topic"][0], atol=1e-5)
        assert torch.allclose(targets["embeddings"][i], out["sentence_embedding"][0], atol=1e-5)
    # stored beside the checkpoint and read back on resume, checked by fingerprint
    assert trainer._distillation_targets(trainer.model, state)["ner"].equal(targets["ner"])


def test_distillation_pulls_the_student_towards_the_teacher(tmp_path):
    """With only the soft loss (weight 1, no embedding term), a student of random heads learns the teacher's
    distributions: its KL to the teacher falls."""
    from batching import collate
    from distillation import make_student
    from trainer_sentence_transformer import MultiTaskTrainer

    teacher = tiny_multitask(seed=7).eval()
    student = make_student(teacher, 1)
    torch.manual_seed(0)
    for p in list(student.heads["topic"].parameters()) + list(student.heads["ner"].parameters()):
        torch.nn.init.normal_(p, std=0.5)

    def kl(model):
        tasks = trainer.model.tasks
        batch = collate(trainer.train_features, list(range(len(TOY_ROWS["label"]))), trainer.pad_id, tasks=tasks)
        args = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    shape_ids=batch["shape_ids"], positions={"ner": (batch["ner.rows"], batch["ner.cols"])})
        with torch.no_grad():
            s, t = model.eval()(**args), teacher(**args)
        return (tasks["topic"].soft_loss(s["topic"], t["topic"], 1.0).item(),
                tasks["ner"].soft_loss(s["ner"], t["ner"], 1.0).item())

    trainer = MultiTaskTrainer(student, TOY_ROWS, None, quiet_config(tmp_path, epochs=8, lr=1e-3, distil_weight=1.0,
                                                                     distil_temperature=1.0), teacher=teacher)
    before = kl(student)
    history = trainer.train()
    after = kl(student)
    assert after[0] < 0.5 * before[0] and after[1] < 0.5 * before[1], (before, after)
    assert history[-1]["train_soft_loss"] < history[0]["train_soft_loss"]


def test_distil_weight_without_a_teacher_or_out_of_range_is_refused(tmp_path):
    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    with pytest.raises(ValueError, match="needs a teacher"):
        MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, quiet_config(tmp_path, distil_weight=0.5))
    for bad, message in (({"distil_weight": 1.5}, "distil_weight must be in"),
                         ({"distil_temperature": 0.0}, "distil_temperature must be > 0")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**bad)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A saved (random, tiny) multi-task model with AG News' classes and the default tags: a teacher to refuse with."""
    path = tmp_path_factory.mktemp("teacher") / "model"
    tiny_multitask(seed=1).save_pretrained(path)
    return path


def test_bad_distillation_inputs_are_refused_before_any_work(tmp_path, monkeypatch, capsys, teacher_dir, ag_news_dir):
    from conftest import SHARED_DATA

    data = ["--dataset", ag_news_dir, "--student-layers", "1"]  # the tiny teacher has 2 layers
    not_a_model = tmp_path.parent / "not_a_model"
    not_a_model.mkdir(exist_ok=True)
    cases = [
        (["--distil-from", str(not_a_model)], "is not a saved multi-task model"),
        (["--distil-from", str(teacher_dir), "--student-layers", "0"], "between 1 and the teacher's 2 layers"),
        (["--distil-from", str(teacher_dir), "--student-layers", "3"], "between 1 and the teacher's 2 layers"),
        (["--distil-from", str(teacher_dir), "--ner-types", "conll"], "use the teacher's --ner-types"),
        (["--distil-from", str(teacher_dir), "--dataset", str(SHARED_DATA / "bbc_sport_politics" / "bbc-text.csv"),
          "--label-column", "category"], "the data's classes are ['Politics', 'Sports']"),
        (["--distil-from", str(teacher_dir), "--schedule", "joint, then NER"], "drop --schedule"),
        (["--distil-weight", "2"], "--distil-weight must be in [0, 1]"),
        (["--distil-temperature", "0"], "--distil-temperature must be > 0"),
    ]
    for args, message in cases:
        work = tmp_path / str(len(list(tmp_path.iterdir())))
        work.mkdir()
        assert message in flag_error(data + args, work, monkeypatch, capsys), args


@pytest.fixture(scope="module")
def distil_run(tmp_path_factory, tiny_model_dir, ag_news_dir):
    """main.py's tiny run trains a teacher (2 layers), then --distil-from it into a 1-layer student."""
    cwd = tmp_path_factory.mktemp("distil")
    for extra in ([], ["--distil-from", "out/model", "--student-layers", "1", "--output-dir", "student"]):
        proc = subprocess.run(command(tiny_model_dir, ag_news_dir) + extra, cwd=cwd, env=env(), capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd


@pytest.mark.slow
def test_main_distils_a_student_that_works_like_any_saved_model(distil_run, tmp_path):
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    results = json.loads((distil_run / "student" / "results.json").read_text())
    teacher = results["teacher"]
    assert teacher["layers"] == 2 and teacher["student_layers"] == 1 and teacher["kept_layers"] == [2]
    assert teacher["path"] == str(distil_run / "out" / "model")
    assert teacher["results"]["accuracy"] == json.loads((distil_run / "out" / "results.json").read_text())[
        "test"]["accuracy"]
    assert "train_soft_loss" in results["history"][0] and "train_distill_loss" in results["history"][0]
    card = (distil_run / "student" / "model" / "README.md").read_text()
    assert "1-layer student distilled from the 2-layer model" in card and "layers 2 and heads" in card
    student = MultiTaskSentenceTransformer.from_pretrained(distil_run / "student" / "model")
    assert student.encoder.encoder.config.num_hidden_layers == 1
    texts = ["Apple opens a store in Paris.", "Manchester United beat Chelsea."]
    predictions = student.predict(texts)
    assert all(p["topic"]["label"] in student.label_names for p in predictions) and student.encode(texts).shape == (2, student.encoder.hidden_size)
    fast = MultiTaskSentenceTransformer.from_pretrained(student.export_fast(tmp_path / "fast"))
    assert [p["topic"]["label"] for p in fast.predict(texts, precision="fast")] == [
        p["topic"]["label"] for p in predictions]
    from sentence_transformers import SentenceTransformer

    exported = SentenceTransformer(str(student.export_sentence_transformers(tmp_path / "st")), device="cpu")
    assert torch.allclose(torch.as_tensor(exported.encode(texts)), torch.as_tensor(student.encode(texts)), atol=1e-4)


@pytest.mark.slow
def test_a_killed_distillation_resumes_to_the_same_student(distil_run, tmp_path, tiny_model_dir, ag_news_dir):
    import shutil

    shutil.copytree(distil_run / "out", tmp_path / "out")  # the teacher
    shutil.copytree(distil_run / ".cache", tmp_path / ".cache")
    cmd = command(tiny_model_dir, ag_news_dir) + ["--distil-from", "out/model", "--student-layers", "1",
                                                  "--output-dir", "student"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=dict(env(), MTST_KILL_AT="train:5"), capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    targets = tmp_path / "student" / "checkpoints" / "teacher" / "embeddings.safetensors"
    assert targets.exists()
    proc = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0 and "resumed from" in proc.stdout, proc.stderr[-3000:]
    ours = json.loads((tmp_path / "student" / "results.json").read_text())
    theirs = json.loads((distil_run / "student" / "results.json").read_text())
    assert comparable(ours) == comparable(theirs)
    # another teacher for the same output folder: refused, not mixed
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "out" / "model", other)
    from safetensors.torch import load_file, save_file

    heads = load_file(other / "heads.safetensors")
    save_file({k: v + 0.01 for k, v in heads.items()}, other / "heads.safetensors")
    proc = subprocess.run(cmd[:-6] + ["--distil-from", str(other), "--student-layers", "1", "--output-dir",
                                      "student"], cwd=tmp_path, env=env(), capture_output=True, text=True)
    assert proc.returncode == 1 and "teacher differ" in proc.stderr, proc.stderr[-3000:]
