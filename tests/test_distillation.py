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
    state = {"targets_fingerprint": None}
    targets = trainer.distillation_targets(trainer.model, state)
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
    assert trainer.distillation_targets(trainer.model, state)["ner"].equal(targets["ner"])


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


def test_distil_weight_applies_with_a_teacher_only_and_out_of_range_is_refused(tmp_path):
    """DISTIL_WEIGHT is a default of every run (TrainConfig's too): without a teacher there is nothing to distil."""
    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    trainer = MultiTaskTrainer(tiny_multitask(), TOY_ROWS, None, quiet_config(tmp_path, distil_weight=0.5))
    assert trainer.soft_tasks == [] and trainer.teachers == {}
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


def test_bad_distillation_inputs_are_refused_before_any_work(tmp_path, monkeypatch, capsys, teacher_dir, ag_news_dir,
                                                             bbc_csv):
    data = ["--dataset", ag_news_dir, "--student-layers", "1"]  # the tiny teacher has 2 layers
    not_a_model = tmp_path.parent / "not_a_model"
    not_a_model.mkdir(exist_ok=True)
    cases = [
        (["--distil-from", str(not_a_model)], "is not a saved multi-task model"),
        (["--distil-from", str(teacher_dir), "--student-layers", "0"], "between 1 and the teacher's 2 layers"),
        (["--distil-from", str(teacher_dir), "--student-layers", "3"], "between 1 and the teacher's 2 layers"),
        (["--distil-from", str(teacher_dir), "--ner-types", "conll"], "use the teacher's --ner-types"),
        (["--distil-from", str(teacher_dir), "--dataset", bbc_csv,
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

    exported = SentenceTransformer(str(student.save_pretrained(tmp_path / "st")), device="cpu")
    # the export runs in fp32; `auto` would be bf16 on a CPU with bf16 instructions (1e-4 apart here, by chance)
    ours = student.encode(texts, precision="fp32")
    assert torch.allclose(torch.as_tensor(exported.encode(texts)), torch.as_tensor(ours), atol=1e-4)


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


# --------------------------------------------------------------------------- teachers per task, annealing
def test_each_task_learns_from_its_own_teacher(tmp_path):
    """teacher={task: model}: each task's targets are its own teacher's outputs; the embedding targets stay the
    starting encoder's (no teacher's)."""
    from batching import collate
    from distil_targets import sentence_embeddings
    from trainer_sentence_transformer import MultiTaskTrainer

    topic_teacher, ner_teacher, model = tiny_multitask(seed=5).eval(), tiny_multitask(seed=9).eval(), tiny_multitask(3)
    trainer = MultiTaskTrainer(model, TOY_ROWS, None, quiet_config(tmp_path, distil_weight=0.5, keep_embedding=1.0),
                               teacher={"topic": topic_teacher, "ner": ner_teacher})
    assert trainer.soft_tasks == ["topic", "ner"]
    targets = trainer.distillation_targets(trainer.model, {"targets_fingerprint": None})
    n = len(TOY_ROWS["label"])
    start = sentence_embeddings(model, trainer.train_features, range(n), 64, torch.device("cpu"), "no")
    assert torch.allclose(targets["embeddings"], start, atol=1e-5)
    for i in (0, n - 1):
        batch = collate(trainer.train_features, [i], trainer.pad_id, tasks=model.tasks)
        args = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], shape_ids=batch["shape_ids"],
                    positions={"ner": (batch["ner.rows"], batch["ner.cols"])})
        with torch.no_grad():
            by_topic, by_ner = topic_teacher(**args), ner_teacher(**args)
        lo, hi = targets["ner.offsets"][i], targets["ner.offsets"][i + 1]
        assert torch.allclose(targets["topic"][i], by_topic["topic"][0], atol=1e-5)
        assert torch.allclose(targets["ner"][lo:hi], by_ner["ner"], atol=1e-5)
        assert not torch.allclose(targets["topic"][i], by_ner["topic"][0], atol=1e-3)
        assert not torch.allclose(targets["ner"][lo:hi], by_topic["ner"], atol=1e-3)
    # one teacher for one task only: the other task learns from its labels alone
    only = MultiTaskTrainer(tiny_multitask(3), TOY_ROWS, None, quiet_config(tmp_path / "only", distil_weight=0.5),
                            teacher={"ner": ner_teacher})
    assert only.soft_tasks == ["ner"] and "topic" not in only.distillation_targets(only.model, {"targets_fingerprint": None})


def test_annealing_moves_the_loss_from_the_teacher_to_the_labels(tmp_path):
    """distil_schedule="anneal": the teachers' weight falls linearly from distil_weight to 0 over the run's steps, and
    the step's loss is (1 - a) * task losses + a * soft loss with that a."""
    from batching import positions
    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig, distil_weight_at, training_loss

    config = TrainConfig(distil_weight=1.0, distil_schedule="anneal")
    assert [distil_weight_at(config, s, 4) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert distil_weight_at(TrainConfig(distil_weight=0.5), 3, 4) == 0.5  # constant
    teacher = tiny_multitask(seed=5).eval()
    trainer = MultiTaskTrainer(tiny_multitask(3), TOY_ROWS, None,
                               quiet_config(tmp_path, epochs=2, distil_weight=1.0, distil_schedule="anneal"),
                               teacher={"topic": teacher, "ner": teacher})
    history = trainer.train()
    assert [r["distil_weight"] for r in history] == [0.5, 0.0]  # after epoch 1 of 2, after the last step
    targets = trainer.distillation_targets(trainer.model, {"targets_fingerprint": None})
    rows = list(range(len(TOY_ROWS["label"])))
    batch = trainer._batch(rows, None, targets)
    out = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        shape_ids=batch["shape_ids"], positions=positions(batch, trainer.train_tasks))
    counts = trainer.batch_counts(rows)
    loss = {a: training_loss(out, batch, trainer.train_tasks, counts, trainer.config, 1.0, soft_tasks=["topic", "ner"],
                             distil_weight=a) for a in (0.0, 0.25, 1.0)}
    task_loss = sum(loss[0.0][1].values())
    soft = loss[1.0][2]
    assert torch.allclose(loss[0.0][0], task_loss) and torch.allclose(loss[1.0][0], soft)
    assert torch.allclose(loss[0.25][0], 0.75 * task_loss + 0.25 * soft)


def test_unlabelled_rows_learn_only_the_teachers_outputs(tmp_path):
    """Rows without labels (--distil-texts) add no task loss but carry the teachers' targets: the topic distribution
    and a tag distribution for every word; on labelled rows the soft words are the labelled ones, in the same order."""
    from trainer_sentence_transformer import MultiTaskTrainer

    unlabelled = [["Intel", "opens", "a", "plant", "in", "Ohio"], ["Rain", "again"]]
    rows = {"words": TOY_ROWS["words"] + unlabelled, "ner_tags": TOY_ROWS["ner_tags"] + [None, None],
            "label": TOY_ROWS["label"] + [-1, -1]}
    teacher = tiny_multitask(seed=5).eval()
    trainer = MultiTaskTrainer(tiny_multitask(3), rows, None, quiet_config(tmp_path, distil_weight=0.5),
                               teacher={"topic": teacher, "ner": teacher})
    n = len(TOY_ROWS["words"])
    assert trainer.counts["ner"][n:] == [0, 0] and trainer.counts["topic"][n:] == [0, 0]
    targets = trainer.distillation_targets(trainer.model, {"targets_fingerprint": None})
    offsets = targets["ner.offsets"].tolist()
    assert [offsets[i + 1] - offsets[i] for i in (n, n + 1)] == [6, 2]  # every word of the unlabelled rows
    assert offsets[n] == sum(trainer.counts["ner"])  # and on labelled rows exactly their labelled words
    batch = trainer._batch([0, n, n + 1], None, targets)
    assert batch["ner"].tolist()[:5] != [-100] * 5 and batch["ner"].tolist()[5:] == [-100] * 8  # no tags there
    assert batch["teacher.ner"].shape == (13, len(teacher.tags)) and batch["topic"].tolist() == [3, -1, -1]
    counts = trainer.batch_counts([0, n, n + 1])
    assert counts["ner"] == 5 and counts["soft.ner"] == 13 and counts["topic"] == 1 and counts["soft.topic"] == 3
    assert trainer.train()[-1]["train_soft_loss"] > 0


def test_distil_texts_are_read_as_unlabelled_rows(tmp_path):
    from task_data import load_distil_texts

    (tmp_path / "a.txt").write_text("Apple opens a store in Paris.\n\n  \nRain again\n")
    (tmp_path / "b.csv").write_text('id,body\n1,"Oil, gas and coal"\n')
    (tmp_path / "c.jsonl").write_text('{"body": "fine"}\n[1, 2]\n')
    rows = load_distil_texts([tmp_path / "a.txt", tmp_path / "b.csv"], text_column="body", group=3)
    assert rows["words"] == [["Apple", "opens", "a", "store", "in", "Paris", "."], ["Rain", "again"],
                             ["Oil", ",", "gas", "and", "coal"]]
    assert rows["group"] == [3, 3, 3]
    with pytest.raises(ValueError, match=r"c.jsonl, row 2: not a JSON object with a 'body' key"):
        load_distil_texts([tmp_path / "c.jsonl"], text_column="body")
    with pytest.raises(ValueError, match="no column 'text' in the header"):
        load_distil_texts([tmp_path / "b.csv"])
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="no text in the file"):
        load_distil_texts([tmp_path / "empty.txt"])


def test_bad_teachers_are_refused(tmp_path):
    from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig

    teacher = tiny_multitask(seed=5)
    with pytest.raises(ValueError, match="task 'sentiment', which the model does not have"):
        MultiTaskTrainer(tiny_multitask(3), TOY_ROWS, None, quiet_config(tmp_path, distil_weight=0.5),
                         teacher={"sentiment": teacher})
    other_tags = tiny_multitask(seed=5, tags=["O", "B-X", "I-X"])
    with pytest.raises(ValueError, match="teacher of task 'ner' has no task 'ner' with the same kind and labels"):
        MultiTaskTrainer(tiny_multitask(3), TOY_ROWS, None, quiet_config(tmp_path, distil_weight=0.5),
                         teacher={"ner": other_tags})
    with pytest.raises(ValueError, match="distil_schedule must be one of constant, anneal"):
        TrainConfig(distil_schedule="cosine")


def test_bad_teachers_flags_are_refused_before_any_work(tmp_path, monkeypatch, capsys, teacher_dir, ag_news_dir):
    from tasks import ClassificationTask

    topic_only = tmp_path.parent / "topic_only_teacher"
    if not topic_only.exists():
        names = tiny_multitask().label_names
        tiny_multitask(seed=1, tasks=[ClassificationTask("topic", names, column="label")]).save_pretrained(topic_only)
    not_a_model = tmp_path.parent / "not_a_model"
    not_a_model.mkdir(exist_ok=True)
    cases = [
        (["--teachers", str(teacher_dir)], "is not NAME=DIR"),
        (["--teachers", f"ner={teacher_dir}", f"ner={teacher_dir}"], "task 'ner' is given two teachers"),
        (["--teachers", f"sentiment={teacher_dir}"], "the run has no task 'sentiment'"),
        (["--teachers", f"ner={not_a_model}"], "not a saved model folder"),
        (["--teachers", f"ner={topic_only}"], "that model has no tagging task 'ner' (it has: topic (classification))"),
        (["--teachers", f"ner={teacher_dir}", "--ner-types", "conll"], "use the teacher's --ner-types"),
        (["--teachers", f"ner={teacher_dir}", "--distil-from", str(teacher_dir)], "drop one of them"),
        (["--teachers", f"ner={teacher_dir}", "--schedule", "joint, then NER"], "--teachers trains jointly"),
        (["--teachers", f"ner={teacher_dir}", "--distil-schedule", "cosine"], "--distil-schedule must be one of"),
        (["--teachers", f"ner={teacher_dir}", "--distil-weight", "1.5"], "--distil-weight must be in [0, 1]"),
        (["--distil-texts", str(teacher_dir / "heads.safetensors")], "--distil-texts adds rows without labels"),
        (["--teachers", f"ner={teacher_dir}", "--distil-texts", "nothere.txt"], "--distil-texts: no file at"),
        (["--teachers", f"ner={teacher_dir}", "--distil-texts", str(teacher_dir / "heads.safetensors")],
         "reads .txt, .csv, .tsv, .json, .jsonl, .parquet"),
    ]
    for args, message in cases:
        work = tmp_path / str(len(list(tmp_path.iterdir())))
        work.mkdir()
        assert message in flag_error(["--dataset", ag_news_dir, "--student-layers", "1"] + args, work, monkeypatch,
                                     capsys), args


@pytest.mark.slow
def test_main_trains_with_a_teacher_per_task_annealed(distil_run, tiny_model_dir, ag_news_dir):
    """main.py --teachers: a fresh model of the teacher's size learns ner from one saved model and topic from
    another, the teachers' weight annealed to 0; results.json records the teachers and the weight per epoch."""
    (distil_run / "texts.txt").write_text("Intel opens a plant in Ohio.\nRain again in London.\n")
    proc = subprocess.run(command(tiny_model_dir, ag_news_dir) + [
        "--teachers", "topic=student/model", "ner=out/model", "--distil-weight", "1", "--distil-schedule", "anneal",
        "--distil-texts", "texts.txt", "--output-dir", "bam"], cwd=distil_run, env=env(), capture_output=True,
        text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teachers: topic from student/model, ner from out/model; distil weight 1.0 (anneal)" in proc.stdout
    results = json.loads((distil_run / "bam" / "results.json").read_text())
    teachers = results["teachers"]
    out = json.loads((distil_run / "out" / "results.json").read_text())
    assert teachers["ner"]["path"] == str(distil_run / "out" / "model")
    assert teachers["ner"]["f1"] == out["test"]["tasks"]["ner"]["f1"]
    assert teachers["topic"]["path"] == str(distil_run / "student" / "model")
    assert [r["distil_weight"] for r in results["history"]] == [0.5, 0.0]
    assert all(r["train_soft_loss"] > 0 for r in results["history"])
    assert results["flags"]["distil_schedule"] == "anneal"
    assert "--distil-texts: 2 unlabelled training rows" in proc.stdout
    assert results["rows"]["train"] == out["rows"]["train"] + 2
    assert len(encoder_layers(distil_run / "bam" / "model")) == 2  # the fresh model's size
    card = (distil_run / "bam" / "model" / "README.md").read_text()
    assert "Each task also learned its teacher's outputs, its weight annealed to 0 over training: topic from" in card
    assert f"ner from `out/model` (f1 {teachers['ner']['f1']:.4f})" in card  # the working folder's path, no machine's
    assert str(distil_run) not in card


def encoder_layers(path):
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    return MultiTaskSentenceTransformer.from_pretrained(path).encoder.embeddings_and_layers()[1]


def test_every_kind_is_stored_as_units_and_older_targets_still_resume(tmp_path):
    """A sentence task's targets are one unit per row with offsets like a tagging task's words; targets stored before
    sentence tasks had offsets ([N, C] alone, fingerprinted as they were) load with one unit per row."""
    from safetensors.torch import save_file

    from checkpoints import targets_fingerprint
    from distil_targets import TARGETS_FILE, batch_targets, load_targets
    from trainer_sentence_transformer import MultiTaskTrainer

    teacher = tiny_multitask(seed=5).eval()
    trainer = MultiTaskTrainer(tiny_multitask(3), TOY_ROWS, None, quiet_config(tmp_path, distil_weight=0.5),
                               teacher={"topic": teacher, "ner": teacher})
    targets = trainer.distillation_targets(trainer.model, {"targets_fingerprint": None})
    n = len(TOY_ROWS["label"])
    assert targets["topic.offsets"].tolist() == list(range(n + 1))
    old = {k: v for k, v in targets.items() if k != "topic.offsets"}
    (tmp_path / "old").mkdir()
    save_file(old, str(tmp_path / "old" / TARGETS_FILE))
    loaded = load_targets(str(tmp_path / "old"), targets_fingerprint(old), str(tmp_path))
    rows = [2, 0]
    assert batch_targets(loaded, rows, ["topic", "ner"], False)["teacher.topic"].equal(targets["topic"][rows])
    assert batch_targets(loaded, rows, ["ner"], False)["teacher.ner"].equal(
        batch_targets(targets, rows, ["ner"], False)["teacher.ner"])


def test_a_student_without_distil_texts_reads_the_data_roots_conll_sentences(teacher_dir, data_root_dir, ag_news_dir,
                                                                            monkeypatch, capsys):
    """--distil-from alone: the student learns its teacher's outputs on the data root's CoNLL-2003 train sentences
    as well (experiment.STUDENT_TEXTS, words only), in a group of their own without labels; --distil-texts replaces
    them; a data root without the file: the labelled rows alone."""
    import experiment
    import main
    from conll import sentence_texts

    recipe = main.parse_args(["--distil-from", str(teacher_dir), "--student-layers", "1", "--dataset", ag_news_dir,
                              "--data-root", str(data_root_dir)])
    train, val, test, tasks = experiment.load_data(recipe)
    expected = sentence_texts(data_root_dir / "conll2003" / "train.txt", experiment.STUDENT_TEXTS[1])
    extra = [i for i, g in enumerate(train["group"]) if g == 1]
    assert len(extra) == len(expected) > 0 and all(train["label"][i] == -1 for i in extra)
    assert "sentences of conll2003/train.txt" in capsys.readouterr().out
    monkeypatch.setattr(experiment, "STUDENT_TEXTS", ("conll2003/missing.txt", 5000))
    alone, *_ = experiment.load_data(recipe)
    assert alone.num_rows == train.num_rows - len(expected)  # the labelled rows alone
