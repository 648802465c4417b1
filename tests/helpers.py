"""Small builders shared by tests: a tiny random BERT with the packaged (real) tokenizer."""
import torch


def tiny_encoder_and_tokenizer(seed=0, hidden=32, layers=2):
    from transformers import AutoTokenizer, BertConfig, BertModel

    import sentence_transformer

    tokenizer = AutoTokenizer.from_pretrained(sentence_transformer.packaged_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=512)
    torch.manual_seed(seed)
    return BertModel(config), tokenizer


def tiny_sentence_transformer(pooling="mean", max_length=64, seed=0):
    from sentence_transformer import SentenceTransformer

    encoder, tokenizer = tiny_encoder_and_tokenizer(seed)
    return SentenceTransformer(pooling=pooling, max_length=max_length, encoder=encoder, tokenizer=tokenizer)
