"""Small builders and harnesses shared by tests: a tiny random BERT with the packaged (real) tokenizer, saved or
not, a trainer that crashes after its n-th checkpoint, toy rows."""
import torch


def tiny_encoder_and_tokenizer(seed=0, hidden=32, layers=2, dropout=0.1, pooler=False):
    """A random BERT (attention dropout 0, the models' default; hidden dropout `dropout`, BERT's default 0.1) and the
    packaged tokenizer. pooler=True builds BERT's pooling layer too: the heads never use it, but it draws from the
    seeded generator, so a model built with it has other weights than one built without."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    import sentence_transformer

    tokenizer = AutoTokenizer.from_pretrained(sentence_transformer.packaged_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=512,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    return BertModel(config, add_pooling_layer=pooler), tokenizer


def save_tiny_encoder(path, **kwargs):
    """tiny_encoder_and_tokenizer(**kwargs) saved as a local model folder (for main.py's --model-name); returns path."""
    encoder, tokenizer = tiny_encoder_and_tokenizer(**kwargs)
    encoder.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_sentence_transformer(pooling="mean", max_length=64, seed=0):
    from sentence_transformer import SentenceTransformer

    encoder, tokenizer = tiny_encoder_and_tokenizer(seed)
    return SentenceTransformer(pooling=pooling, max_length=max_length, encoder=encoder, tokenizer=tokenizer)


def zero_piece_words(tokenizer, words):
    """The words (sorted, distinct) that tokenizer turns into zero wordpieces."""
    words = sorted(set(words))
    if not words:
        return []
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    return [w for w, i in zip(words, ids) if not i]


def quiet_config(output_dir, **kwargs):
    """A TrainConfig for tests: one epoch of batch 8, fp32, no progress bars, plots, checkpoints or resume, and the
    plain loop (equal task weights, one learning rate, no embedding or teacher distillation) unless asked."""
    from trainer_sentence_transformer import TrainConfig

    settings = dict(epochs=1, batch_size=8, output_dir=str(output_dir), show_progress=False, plots=False,
                    save_every_steps=0, resume=False, mixed_precision="no", task_weights=None, head_lr=None,
                    keep_embedding=0.0, distil_weight=0.0)
    return TrainConfig(**{**settings, **kwargs})


def crash_after_saves(trainer, n):
    """Make trainer._save_checkpoint raise KeyboardInterrupt (a kill) right after its n-th checkpoint is written,
    counting every save, mid-epoch and end of epoch alike. Returns the trainer."""
    original, calls = trainer._save_checkpoint, {"n": 0}

    def save_then_crash(*args):
        original(*args)
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt

    trainer._save_checkpoint = save_then_crash
    return trainer


def flag_error(args, cwd, monkeypatch, capsys):
    """main.parse_args(args) in-process from cwd (relative paths resolve there), which must refuse them as main.py's
    command line does (argparse's exit status 2) and write nothing there; returns what it printed to stderr."""
    import pytest

    import main

    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as exit_info:
        main.parse_args(args)
    assert exit_info.value.code == 2
    assert not list(cwd.iterdir())  # no output folder, no .cache
    return capsys.readouterr().err


def tiny_multitask(seed=0, tags=None, **kwargs):
    """The default pair on a tiny random encoder; every head reads the shared encoder unless task_layers= is given."""
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    return MultiTaskSentenceTransformer(tiny_sentence_transformer(seed=seed), tags=tags,
                                        **{"task_layers": 0, **kwargs})


def tag_capitalised_words(model, kind="ORG"):
    """Set the NER head so that every run of capitalised words (Title or UPPER shape) is one `kind` entity and all
    else is O: a known, deterministic tagger (a random head often predicts no entity at all, which lets offset checks
    pass vacuously). Returns the model."""
    from text_prep import WORD_SHAPES

    task = model.first_task("tagging")
    head, tags = model.heads[task.name], task.labels
    dim = head.shape_embedding.embedding_dim
    conv = isinstance(head.hidden, torch.nn.Conv1d)  # with a context layer the hidden layer is a convolution
    n_in = head.hidden.in_channels if conv else head.hidden.in_features
    n = n_in - (2 * head.window + 1) * dim  # the token embedding comes first, then the shapes
    capital = [WORD_SHAPES.index("Title"), WORD_SHAPES.index("UPPER")]
    with torch.no_grad():
        head.shape_embedding.weight.copy_(torch.eye(len(WORD_SHAPES), dim))  # shape s -> unit vector s
        for module in (head.hidden, head.linear):
            module.weight.zero_()
            module.bias.zero_()
        for unit, k in ((0, head.window), (1, head.window - 1)):  # unit 0: this word capitalised; 1: the one before
            columns = [n + k * dim + s for s in capital]
            if conv:  # only the centre tap: the word's own features (which hold its neighbours' shapes)
                head.hidden.weight[unit, columns, head.context] = 1.0
            else:
                head.hidden.weight[unit, columns] = 1.0
        o, b, i = tags.index("O"), tags.index(f"B-{kind}"), tags.index(f"I-{kind}")
        head.linear.bias[o] = 0.5  # gelu(1) = 0.84: B wins when only this word is capitalised, I when both are
        head.linear.weight[b, 0], head.linear.weight[b, 1] = 2.0, -2.0
        head.linear.weight[i, 0], head.linear.bias[i] = 2.0, -0.9
    return model


# A handful of labelled rows in the dataset's format (words, ner_tags, label), enough to overfit.
TOY_ROWS = {
    "words": [["Apple", "buys", "Google", "in", "Paris"], ["Hello", "world"],
              ["Barack", "Obama", "visits", "Berlin", "today"], ["Stocks", "fell", "on", "Wall", "Street"],
              ["The", "Red", "Sox", "win", "the", "World", "Series"], ["Microsoft", "releases", "Windows"]] * 4,
    "ner_tags": [["B-ORG", "O", "B-ORG", "O", "B-GPE"], ["O", "O"],
                 ["B-PERSON", "I-PERSON", "O", "B-GPE", "O"], ["O", "O", "O", "B-LOC", "I-LOC"],
                 ["O", "B-ORG", "I-ORG", "O", "O", "B-EVENT", "I-EVENT"], ["B-ORG", "O", "B-PRODUCT"]] * 4,
    "label": [3, 1, 0, 2, 1, 3] * 4,
}


def dead_pid():
    """The pid of a process that has already exited (to fake a writer killed mid-write)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
