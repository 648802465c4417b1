"""Task layers (task_layers = K): each task's private copy of the encoder's top K layers. The copies start as the
shared layers (same outputs as the shared model), predict runs the shared lower layers once and the shared top only
for the sentence embedding, training moves each task's own copy, and the layers survive save / load / export."""
import copy
import json

import numpy as np
import pytest
import torch
from helpers import TOY_ROWS, flag_error, quiet_config, tiny_encoder_and_tokenizer, tiny_multitask

from multi_task_sentence_transformer import TASK_LAYERS_NAME, MultiTaskSentenceTransformer
from sentence_transformer import ModelLoadError, SentenceTransformer
from trainer_sentence_transformer import MultiTaskTrainer

TEXTS = ["Apple buys Google in Paris today.", "Hello", "Barack Obama visits Berlin and meets Angela Merkel there."]


def with_task_layers(model, k):
    """model's encoder and heads (copied) with task_layers=k: its tasks' copies of the top k layers start equal."""
    out = MultiTaskSentenceTransformer(copy.deepcopy(model.encoder), tasks=list(model.tasks.values()), task_layers=k)
    out.heads.load_state_dict(model.heads.state_dict())
    return out.eval()


def batch(model, texts=TEXTS):
    b = model.tokenizer(texts, padding=True, return_tensors="pt")
    assert not b["attention_mask"].all()  # padded rows: the mask must reach the private layers
    return b


@pytest.mark.parametrize("k", [1, 2])
def test_copies_start_as_the_shared_model(k):
    shared = tiny_multitask().eval()  # 2 layers: k=2 copies them all
    split = with_task_layers(shared, k)
    b = batch(shared)
    with torch.no_grad():
        want, got = shared(b["input_ids"], b["attention_mask"]), split(b["input_ids"], b["attention_mask"])
    assert set(got) == set(want)
    for name in want:
        assert torch.allclose(want[name], got[name], atol=1e-6), name
    assert split.predict(TEXTS, precision="fp32") == shared.predict(TEXTS, precision="fp32")
    # the copies are the tasks' own: changing one task's layers changes that task's output only
    with torch.no_grad():
        for p in split.branches["topic"].parameters():
            p.add_(0.5)
        moved = split(b["input_ids"], b["attention_mask"])
    assert not torch.allclose(moved["topic"], want["topic"], atol=1e-3)
    assert torch.allclose(moved["ner"], want["ner"], atol=1e-6)
    assert torch.allclose(moved["sentence_embedding"], want["sentence_embedding"], atol=1e-6)


def test_run_layers_is_the_encoders_forward_for_roberta_too():
    from transformers import RobertaConfig, RobertaModel

    _, tokenizer = tiny_encoder_and_tokenizer()
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, attention_probs_dropout_prob=0.0, pad_token_id=tokenizer.pad_token_id)
    st = SentenceTransformer(encoder=RobertaModel(config, add_pooling_layer=False), tokenizer=tokenizer).eval()
    b = batch(st)
    with torch.no_grad():
        want = st(b["input_ids"], b["attention_mask"])["token_embeddings"]
        got, _ = st.run_layers(b["input_ids"], b["attention_mask"])
    assert torch.allclose(want, got, atol=1e-6)
    model = with_task_layers(MultiTaskSentenceTransformer(st), 1)
    assert len(model.predict(TEXTS, precision="fp32")) == len(TEXTS)


def test_families_that_cannot_split_are_refused():
    from transformers import DistilBertConfig, DistilBertModel

    _, tokenizer = tiny_encoder_and_tokenizer()
    encoder = DistilBertModel(DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=2,
                                               hidden_dim=64, attention_dropout=0.0))
    st = SentenceTransformer(encoder=encoder, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="task_layers.*bert, roberta.*'distilbert'"):
        MultiTaskSentenceTransformer(st, task_layers=1)
    for bad in (-1, 3, 1.5, True):
        with pytest.raises(ValueError, match="task_layers"):
            tiny_multitask(task_layers=bad)


def calls(modules):
    """{module: number of forward calls} counters, hooked on each module."""
    counts = {m: 0 for m in modules}

    def hook(module, args, output):
        counts[module] += 1

    for m in modules:
        m.register_forward_hook(hook)
    return counts


def test_predict_runs_the_shared_lower_layers_once_and_the_shared_top_only_for_embeddings():
    model = with_task_layers(tiny_multitask(), 1)
    _, (low, top) = model.encoder.embeddings_and_layers()
    counts = calls([low, top, model.branches["topic"][0], model.branches["ner"][0]])
    model.predict(TEXTS, batch_size=8, precision="fp32")  # one batch, both tasks
    assert list(counts.values()) == [1, 0, 1, 1]
    model.predict(TEXTS, batch_size=8, precision="fp32", tasks=["ner"])
    assert list(counts.values()) == [2, 0, 1, 2]
    emb = model.encode(TEXTS, precision="fp32")
    assert list(counts.values()) == [3, 1, 1, 2]
    # encode() is the shared encoder's, whatever the tasks' layers hold
    with torch.no_grad():
        for p in model.branches["topic"].parameters():
            p.mul_(0)
    assert np.allclose(model.encode(TEXTS, precision="fp32"), emb, atol=1e-6)


@pytest.mark.parametrize("keep", [0.0, 3.0])
def test_training_moves_each_tasks_own_layers(tmp_path, keep):
    model = with_task_layers(tiny_multitask(), 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = quiet_config(tmp_path / "run", lr=1e-2, warmup_ratio=0, keep_embedding=keep, freeze_tasks=("topic",),
                          select_on="ner")
    trainer = MultiTaskTrainer(model, TOY_ROWS, None, config)
    trainable = {n for n, _ in trainer.trainable}  # what gets no gradient is frozen (DDP needs every part used)
    assert not any(n.startswith(("branches.topic.", "heads.topic.")) for n in trainable)
    assert any(n.startswith("encoder.encoder.encoder.layer.1.") for n in trainable) == (keep > 0)
    trainer.train()
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert any(n.startswith("branches.ner.") for n in moved)
    assert not any(n.startswith(("branches.topic.", "heads.topic.")) for n in moved)  # a frozen task: its layers too
    assert any(n.startswith("encoder.encoder.encoder.layer.0.") for n in moved)  # the shared lower layer
    # the shared top feeds only the sentence embedding: it moves only where the embedding has a loss (keep > 0)
    assert any(n.startswith("encoder.encoder.encoder.layer.1.") for n in moved) == (keep > 0)


def test_a_frozen_encoder_is_refused_with_the_fix(tmp_path):
    model = with_task_layers(tiny_multitask(), 1)
    with pytest.raises(ValueError, match="freeze_layers"):
        MultiTaskTrainer(model, TOY_ROWS, None, quiet_config(tmp_path, freeze_encoder=True))
    with pytest.raises(ValueError, match="cached encoder outputs"):
        model(token_embeddings=torch.zeros(1, 3, 32), attention_mask=torch.ones(1, 3, dtype=torch.long))


def test_save_load_export_and_students_keep_what_the_layers_hold(tmp_path):
    from distillation import make_student

    model = with_task_layers(tiny_multitask(), 1)
    with torch.no_grad():
        for p in model.branches["ner"].parameters():
            p.add_(0.3 * torch.randn_like(p))
    want = model.predict(TEXTS, precision="fp32")
    path = tmp_path / "model"
    model.save_pretrained(path)
    config = json.loads((path / "multitask_config.json").read_text())
    assert config["task_layers"] == 1
    loaded = MultiTaskSentenceTransformer.from_pretrained(path)
    assert loaded.task_layers == 1 and loaded.predict(TEXTS, precision="fp32") == want
    assert "task layers" in (path / "README.md").read_text()

    fast = MultiTaskSentenceTransformer.from_pretrained(model.export_fast(tmp_path / "fast", quantize="fp32"))
    b = batch(model)
    got = fast.fast.run(b["input_ids"], b["attention_mask"], torch.zeros_like(b["input_ids"]))
    with torch.no_grad():
        ref = model(b["input_ids"], b["attention_mask"])
    for name in ("topic", "ner", "sentence_embedding"):
        assert np.abs(got[name] - ref[name].numpy()).max() < 1e-4, name

    student = make_student(loaded, 1)  # a student's tasks read its own (shared) encoder
    assert student.task_layers == 0 and not list(student.branches.parameters())
    assert len(student.predict(TEXTS, precision="fp32")) == len(TEXTS)

    (path / TASK_LAYERS_NAME).unlink()
    with pytest.raises(ModelLoadError, match=f"task_layers=1.*no {TASK_LAYERS_NAME}"):
        MultiTaskSentenceTransformer.from_pretrained(path)


def test_models_saved_before_task_layers_still_load(tmp_path):
    model = tiny_multitask()
    path = tmp_path / "model"
    model.save_pretrained(path)
    config = json.loads((path / "multitask_config.json").read_text())
    del config["task_layers"]
    (path / "multitask_config.json").write_text(json.dumps(config))
    loaded = MultiTaskSentenceTransformer.from_pretrained(path)
    assert loaded.task_layers == 0 and loaded.predict(TEXTS, precision="fp32") == model.predict(TEXTS, precision="fp32")


@pytest.mark.parametrize("args, message", [
    (["--task-layers", "-1"], "--task-layers must be >= 0"),
    (["--task-layers", "7"], "--task-layers 7: the encoder has 6 layers; pick 1..6"),
    (["--task-layers", "1", "--freeze-encoder"], "--freeze-layers N instead"),
])
def test_bad_task_layers_flags(args, message, tmp_path, monkeypatch, capsys):
    assert message in flag_error(args, tmp_path, monkeypatch, capsys)


@pytest.mark.slow
def test_main_trains_task_layers_and_the_saved_model_serves(tmp_path, tiny_model_dir, ag_news_dir):
    """A user's run: main.py --task-layers 1, then the saved model predicts (main.py --predict, and from Python, also
    through the fast path) and its card and results say what it is."""
    import subprocess

    from main_runs import command, env

    proc = subprocess.run(command(tiny_model_dir, ag_news_dir) + ["--task-layers", "1"], cwd=tmp_path, env=env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["flags"]["task_layers"] == 1
    model_dir = tmp_path / "out" / "model"
    assert "own copy of the encoder's top 1 layer" in (model_dir / "README.md").read_text()
    model = MultiTaskSentenceTransformer.from_pretrained(model_dir)
    assert model.task_layers == 1 and set(model.branches) == {"topic", "ner"}
    text = "Apple opens a store in Paris."
    proc = subprocess.run([*command(tiny_model_dir, ag_news_dir)[:2], "--output-dir", "out", "--predict", text],
                          cwd=tmp_path, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    label = model.predict(text, precision="fp32")["topic"]["label"]
    assert label in proc.stdout
    fast = MultiTaskSentenceTransformer.from_pretrained(model.export_fast(tmp_path / "fast"))
    assert fast.predict(text)["topic"]["label"] == label


def distilbert_dir(path):
    """A tiny DistilBERT encoder saved as a local model folder: a family whose layers cannot run one by one."""
    from transformers import DistilBertConfig, DistilBertModel

    _, tokenizer = tiny_encoder_and_tokenizer()
    DistilBertModel(DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
                    ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_the_default_task_layers_step_aside_where_they_cannot_apply(tmp_path, monkeypatch, capsys):
    """main.py's TASK_LAYERS (not given as --task-layers) applies to a new model; a student, a frozen encoder,
    --compare-freezing or an encoder that cannot be split get none, with a line saying why, instead of an error for a
    flag the user never set. Given explicitly, the same runs are refused."""
    import main

    teacher = tmp_path / "teacher"
    tiny_multitask().save_pretrained(teacher)
    encoder = distilbert_dir(tmp_path / "distilbert")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main.TASK_LAYERS > 0
    for args in ([], ["--tasks", "topic", "--task-weights", "topic=1"]):
        m = main.parse_args(args).model
        assert (m.task_layers, m.task_layers_given, m.task_layers_note) == (main.TASK_LAYERS, False, "")
    for args, why in ((["--distil-from", str(teacher), "--student-layers", "1"], "--distil-from"), (["--freeze-encoder"], "--freeze-encoder"),
                      (["--compare-freezing"], "--compare-freezing"), (["--model-name", encoder], "'distilbert'")):
        m = main.parse_args(args).model
        assert m.task_layers == 0 and why in m.task_layers_note and "does not apply" in m.task_layers_note, args
        assert "--task-layers" in flag_error(args + ["--task-layers", "1"], work, monkeypatch, capsys)
    assert main.parse_args(["--task-layers", "2"]).model.task_layers == 2


def test_a_hub_encoder_that_cannot_split_trains_without_the_default_task_layers(tmp_path, monkeypatch):
    """The recipe reads a Hub encoder's config (from the cache, or the Hub) before any work, as it reads a local
    one: TASK_LAYERS steps aside there with one line, --task-layers given is refused naming the fix. The model
    applies the same rule (task_layers_problem) when it is built."""
    import transformers

    import main
    import recipe as recipe_module

    local = distilbert_dir(tmp_path / "distilbert")
    monkeypatch.setattr(recipe_module, "resolve_model_path", lambda name: name)  # a Hub id: no local folder
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained",
                        lambda name, **kwargs: transformers.DistilBertConfig.from_pretrained(local))
    recipe = main.parse_args(["--model-name", "some-org/distilbert"])
    assert recipe.model.task_layers == 0 and "TASK_LAYERS = 1 does not apply" in recipe.model.task_layers_note
    with pytest.raises(SystemExit):
        main.parse_args(["--model-name", "some-org/distilbert", "--task-layers", "1"])
