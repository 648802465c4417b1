"""Small builders shared by tests: a tiny random BERT with the packaged (real) tokenizer."""
import torch


def tiny_encoder_and_tokenizer(seed=0, hidden=32, layers=2):
    from transformers import AutoTokenizer, BertConfig, BertModel

    import sentence_transformer

    tokenizer = AutoTokenizer.from_pretrained(sentence_transformer.packaged_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=512,
                        attention_probs_dropout_prob=0.0)  # the models' default attention dropout
    torch.manual_seed(seed)
    return BertModel(config, add_pooling_layer=False), tokenizer


def tiny_sentence_transformer(pooling="mean", max_length=64, seed=0):
    from sentence_transformer import SentenceTransformer

    encoder, tokenizer = tiny_encoder_and_tokenizer(seed)
    return SentenceTransformer(pooling=pooling, max_length=max_length, encoder=encoder, tokenizer=tokenizer)


def tiny_multitask(seed=0, tags=None, **kwargs):
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    return MultiTaskSentenceTransformer(tiny_sentence_transformer(seed=seed), tags=tags, **kwargs)


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
