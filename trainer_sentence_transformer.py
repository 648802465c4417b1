"""The training loop of the multi-task model: one readable loop, every step visible.

    trainer = MultiTaskTrainer(model, train_rows, val_rows, TrainConfig(epochs=3, output_dir="outputs/run"))
    history = trainer.train()            # evaluates on val every epoch, keeps best and last checkpoints
    metrics = trainer.evaluate(test_rows)

Rows are datasets (or lists of dicts) with `words`, `ner_tags` (BIO strings) and `label`, as made by
create_ner_dataset.create_dataset. The loop runs through `accelerate`, so the same code trains on CPU,
one GPU, or several (`accelerate launch main.py`, DDP), with optional bf16/fp16 autocast.

Loss = w_cls * CE(topic) + w_ner * CE(NER tags on first wordpieces). Freezing rules:
  - a frozen part gets no gradient and is not in the optimizer;
  - a frozen head's task contributes no loss, so the shared encoder is not pulled by a head that cannot learn;
  - a frozen encoder runs in eval mode (no dropout) and, with `feature_cache`, is run once: its token
    embeddings are cached and every epoch trains only the heads on the cache;
  - freezing everything is an error ("nothing to train") unless `eval_only` is set.
"""
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from multi_task_sentence_transformer import IGNORE_INDEX, tokenize_words
from atomic_io import atomic_write_dir, recover_interrupted_writes, save_figure, write_text_atomic
from sentence_transformer import cpu_has_fast_bf16, length_sorted_batches, pad_ids

MIXED_PRECISIONS = ("no", "bf16", "fp16", "auto")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class CheckpointError(RuntimeError):
    """A checkpoint directory is incomplete or does not fit the model being trained."""


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-4                 # encoder learning rate
    head_lr: float = None            # heads' learning rate (None = lr)
    weight_decay: float = 0.01       # not applied to biases and LayerNorm weights
    warmup_ratio: float = 0.06       # linear warm-up over this fraction of steps, then linear decay to 0
    max_grad_norm: float = 1.0       # gradient clipping (0 = off)
    w_cls: float = 1.0               # loss weight of topic classification
    w_ner: float = 1.0               # loss weight of NER
    freeze_encoder: bool = False     # the whole encoder (embeddings + all layers)
    freeze_layers: int = 0           # the encoder's embeddings plus its lowest N layers
    freeze_classifier: bool = False
    freeze_ner: bool = False
    attention_dropout: float = 0.0   # dropout on attention probabilities (None = the encoder's own, 0.1 for BERT/MiniLM);
                                     # 0 lets SDPA skip its slow masked-dropout path: ~19% faster steps on CPU
    feature_cache: bool = True       # with a frozen encoder, compute its outputs once and train heads on the cache
    mixed_precision: str = "no"      # no | bf16 | fp16 (CUDA only) | auto (bf16 where the hardware runs it fast)
    seed: int = 42
    output_dir: str = "outputs/run"
    save_every_steps: int = 100      # also checkpoint mid-epoch every N steps (0 = only at epoch ends)
    resume: bool = True              # continue from <output_dir>/checkpoints/last when it exists
    eval_only: bool = False
    eval_batch_size: int = 64
    bucket_batches: int = 50         # length grouping: sort within buckets of this many batches, then shuffle
    show_progress: bool = True
    plots: bool = True

    def __post_init__(self):
        checks = [
            (isinstance(self.epochs, int) and self.epochs >= 0, "epochs must be an integer >= 0"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size must be an integer >= 1"),
            (self.lr > 0 and (self.head_lr is None or self.head_lr > 0), "lr and head_lr must be > 0"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.attention_dropout is None or 0 <= self.attention_dropout < 1, "attention_dropout must be in [0, 1)"),
            (self.w_cls >= 0 and self.w_ner >= 0, "loss weights must be >= 0"),
            (isinstance(self.freeze_layers, int) and self.freeze_layers >= 0, "freeze_layers must be an integer >= 0"),
            (self.mixed_precision in MIXED_PRECISIONS, f"mixed_precision must be one of {', '.join(MIXED_PRECISIONS)}"),
            (self.save_every_steps >= 0, "save_every_steps must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}.")


def resolve_mixed_precision(mode):
    """'auto' → bf16 on a CUDA GPU that supports it or a CPU with bf16 instructions, else 'no'."""
    if mode == "fp16" and not torch.cuda.is_available():
        raise ValueError("mixed_precision='fp16' needs a CUDA GPU; on CPU use 'bf16' or 'no'.")
    if mode != "auto":
        return mode
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "no"


def set_attention_dropout(encoder, p):
    """Set the attention-probability dropout of a BERT-style Hugging Face encoder (and its config) to p."""
    encoder.config.attention_probs_dropout_prob = p
    for name, module in encoder.named_modules():
        if name.endswith("attention.self") and isinstance(getattr(module, "dropout", None), nn.Dropout):
            module.dropout.p = p


# --------------------------------------------------------------------------- data
def prepare_features(rows, model, batch_size=1000):
    """Tokenise once: input_ids, word-aligned ner_labels (first wordpiece only), label, gold word tags."""
    tag_to_id = {t: i for i, t in enumerate(model.tags)}
    words, tags, labels = list(rows["words"]), list(rows["ner_tags"]), list(rows["label"])
    for i, (w, t) in enumerate(zip(words, tags)):
        if len(w) != len(t):
            raise ValueError(f"row {i}: {len(w)} words but {len(t)} ner_tags; each word needs exactly one tag.")
    unknown = {t for row in tags for t in row} - set(tag_to_id)
    if unknown:
        raise ValueError(f"tags {sorted(unknown)} are not in the model's tag list; build the model with the "
                         "dataset's tags (MultiTaskSentenceTransformer(tags=tags)).")
    n_labels = len(model.label_names)
    bad = [i for i, y in enumerate(labels) if not (isinstance(y, (int, np.integer)) and 0 <= y < n_labels)]
    if bad:
        raise ValueError(f"row {bad[0]}: label {labels[bad[0]]!r} is outside 0..{n_labels - 1} "
                         f"({len(bad)} such rows); fix the labels or the model's label_names.")
    features = {"input_ids": [], "shape_ids": [], "ner_labels": [], "word_index": [], "label": labels, "ner_tags": tags}
    for start in range(0, len(words), batch_size):
        enc = tokenize_words(model.tokenizer, words[start:start + batch_size], model.encoder.max_length,
                             [[tag_to_id[t] for t in row] for row in tags[start:start + batch_size]])
        features["input_ids"] += enc["input_ids"]
        features["shape_ids"] += enc["shape_ids"]
        features["ner_labels"] += enc["labels"]
        features["word_index"] += enc["word_index"]
    return features


def length_grouped_batches(lengths, batch_size, seed, epoch, bucket_batches=50):
    """Batches of similar length: shuffle (seed, epoch), sort within buckets, shuffle the batch order.

    Deterministic for a given (seed, epoch), so a resumed run can skip exactly the batches already done.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start:start + bucket].tolist(), key=lambda i: -lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(features, indices, pad_id, cache=None):
    """A padded batch of the given rows; with a feature cache, token embeddings replace input_ids."""
    input_ids, mask = pad_ids([features["input_ids"][i] for i in indices], pad_id)
    ner, _ = pad_ids([features["ner_labels"][i] for i in indices], IGNORE_INDEX)
    shapes, _ = pad_ids([features["shape_ids"][i] for i in indices])
    batch = {"attention_mask": mask, "ner_labels": ner, "shape_ids": shapes,
             "labels": torch.tensor([features["label"][i] for i in indices])}
    if cache is None:
        batch["input_ids"] = input_ids
    else:
        emb = torch.zeros(len(indices), mask.shape[1], cache[indices[0]].shape[-1])
        for row, i in enumerate(indices):
            emb[row, :len(cache[i])] = cache[i]
        batch["token_embeddings"] = emb
    return batch


# --------------------------------------------------------------------------- metrics
def classification_metrics(y_true, y_pred, n_labels):
    cm = np.zeros((n_labels, n_labels), dtype=int)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    tp = np.diag(cm).astype(float)
    precision = np.divide(tp, cm.sum(0), out=np.zeros(n_labels), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros(n_labels), where=cm.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n_labels), where=precision + recall > 0)
    return {"accuracy": float(tp.sum() / max(cm.sum(), 1)), "macro_f1": float(f1.mean()),
            "confusion_matrix": cm.tolist()}


def ner_metrics(gold, pred):
    """Entity-level P/R/F1 per type and micro (seqeval, conlleval rules), on words; padding is never scored."""
    from seqeval.metrics import classification_report

    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {k: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"],
                    "support": int(v["support"])}
                for k, v in report.items() if not k.endswith("avg")}
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    return {"precision": float(micro["precision"]), "recall": float(micro["recall"]),
            "f1": float(micro["f1-score"]), "per_type": per_type}


# --------------------------------------------------------------------------- checkpoints
def _rng_state():
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# Settings a resumed run must share with the checkpoint it continues (others, like show_progress, may change).
RESUME_MUST_MATCH = ("epochs", "batch_size", "lr", "head_lr", "weight_decay", "warmup_ratio", "max_grad_norm", "w_cls",
                     "w_ner", "freeze_encoder", "freeze_layers", "freeze_classifier", "freeze_ner", "attention_dropout",
                     "mixed_precision", "seed", "bucket_batches")


class MultiTaskTrainer:
    """Trains a MultiTaskSentenceTransformer on rows with words / ner_tags / label. See the module docstring."""

    def __init__(self, model, train_rows, val_rows=None, config=None):
        from accelerate import Accelerator

        self.config = config = config or TrainConfig()
        self.precision = resolve_mixed_precision(config.mixed_precision)
        self.accelerator = Accelerator(mixed_precision=self.precision)
        self.model = model
        if config.attention_dropout is not None:
            set_attention_dropout(model.encoder.encoder, config.attention_dropout)
        self.trainable = self._apply_freezing()
        self.train_cls = not config.freeze_classifier and config.w_cls > 0
        self.train_ner = not config.freeze_ner and config.w_ner > 0
        self.train_features = prepare_features(train_rows, model) if train_rows is not None else None
        self.val_features = prepare_features(val_rows, model) if val_rows is not None else None
        self.train_lengths = [len(x) for x in self.train_features["input_ids"]] if train_rows is not None else None
        self.pad_id = model.tokenizer.pad_token_id or 0
        self.checkpoint_dir = os.path.join(config.output_dir, "checkpoints")
        self.history = []

    def _data_fingerprint(self):
        import hashlib

        f = self.train_features
        payload = json.dumps([f["input_ids"], f["ner_labels"], [int(y) for y in f["label"]]]).encode()
        return hashlib.sha1(payload).hexdigest()

    # ----------------------------------------------------------------- freezing
    def _apply_freezing(self):
        """Set requires_grad per the config; return the trainable parameters."""
        c, m = self.config, self.model
        for name, p in m.named_parameters():
            p.requires_grad_(".pooler." not in name)  # BERT's pooler feeds nothing here: the heads pool themselves
        frozen = []
        if c.freeze_encoder:
            frozen += [m.encoder, m.input_shape_embedding]
        elif c.freeze_layers:
            bert = m.encoder.encoder
            layers = bert.encoder.layer
            if c.freeze_layers > len(layers):
                raise ValueError(f"freeze_layers={c.freeze_layers} but the encoder has {len(layers)} layers; "
                                 f"use freeze_encoder=True to freeze all of it.")
            frozen += [bert.embeddings, m.input_shape_embedding, *layers[:c.freeze_layers]]
        if c.freeze_classifier:
            frozen.append(m.classifier)
        if c.freeze_ner:
            frozen.append(m.ner_head)
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)
        trainable = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
        heads_train = (not c.freeze_classifier and c.w_cls > 0) or (not c.freeze_ner and c.w_ner > 0)
        if (not trainable or not heads_train) and not c.eval_only:
            raise ValueError("Nothing to train: every part is frozen (or every trainable task has loss weight 0). "
                             "Unfreeze a part, or set eval_only=True to only evaluate.")
        return trainable

    def _optimizer(self):
        c = self.config
        groups = {}
        for name, p in self.trainable:
            head = name.startswith(("classifier.", "ner_head.", "input_shape_embedding."))  # new parts: head_lr
            decay = p.ndim > 1 and "LayerNorm" not in name and "layer_norm" not in name
            lr = (c.head_lr or c.lr) if head else c.lr
            groups.setdefault((lr, decay), []).append(p)
        # fused AdamW: one kernel over all parameters (measured here: optimizer step 0.15 s -> 0.016 s for MiniLM)
        return torch.optim.AdamW(
            [{"params": ps, "lr": lr, "weight_decay": c.weight_decay if decay else 0.0}
             for (lr, decay), ps in groups.items()], fused=True)

    # ----------------------------------------------------------------- feature cache
    @torch.inference_mode()
    def _encode_cache(self, features, desc):
        """Token embeddings of the frozen encoder for every row (unpadded, fp32, on CPU)."""
        from tqdm.auto import tqdm

        model = self.accelerator.unwrap_model(self.model)
        model.encoder.eval()
        ids = features["input_ids"]
        cache = [None] * len(ids)
        bs = self.config.eval_batch_size
        for batch, input_ids, mask in tqdm(length_sorted_batches(ids, bs, self.pad_id), total=-(-len(ids) // bs),
                                           desc=desc, disable=not self._show_progress()):
            with self.accelerator.autocast():
                shapes, _ = pad_ids([features["shape_ids"][i] for i in batch])
                out = model.encode_tokens(input_ids.to(self.accelerator.device), mask.to(self.accelerator.device),
                                          shapes.to(self.accelerator.device))
            tokens = out["token_embeddings"].float().cpu()
            for row, i in enumerate(batch):
                cache[i] = tokens[row, :len(ids[i])].clone()
        return cache

    def _show_progress(self):
        return self.config.show_progress and self.accelerator.is_main_process

    # ----------------------------------------------------------------- the loop
    def train(self):
        """Train for config.epochs, evaluating on the validation rows after every epoch; returns the history."""
        c, acc = self.config, self.accelerator
        if c.eval_only:
            raise ValueError("eval_only=True: call evaluate() instead of train().")
        from tqdm.auto import tqdm

        seed_everything(c.seed)
        model = self.model
        optimizer = self._optimizer()
        batches_per_epoch = len(length_grouped_batches(self.train_lengths, c.batch_size, c.seed, 0,
                                                       c.bucket_batches)) // acc.num_processes
        total_steps = max(1, batches_per_epoch * c.epochs)
        warmup = int(c.warmup_ratio * total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
        model, optimizer = acc.prepare(model, optimizer)
        state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_score": -math.inf, "best_epoch": None,
                 "data": self._data_fingerprint(), "loss_sums": {"cls": 0.0, "ner": 0.0, "n": 0}}
        if acc.is_main_process:  # folders of a write killed half-way (checkpoint, best_model): tidy or restore
            for folder in (self.checkpoint_dir, c.output_dir):
                recover_interrupted_writes(folder)
        acc.wait_for_everyone()
        if c.resume and os.path.isdir(os.path.join(self.checkpoint_dir, "last")):
            state = self._load_checkpoint(os.path.join(self.checkpoint_dir, "last"), optimizer, scheduler)
            acc.print(f"resumed from {self.checkpoint_dir}/last at epoch {state['epoch'] + 1}, "
                      f"step {state['step_in_epoch']} of {batches_per_epoch}")
        cache = val_cache = None
        encoder_frozen = c.freeze_encoder
        first_epoch, first_start = state["epoch"], time.perf_counter()
        if encoder_frozen and c.feature_cache and state["epoch"] < c.epochs:
            cache = self._encode_cache(self.train_features, "caching encoder outputs")
            val_cache = self._encode_cache(self.val_features, "caching val outputs") if self.val_features else None

        ce = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        for epoch in range(state["epoch"], c.epochs):
            # the first epoch's time includes building the feature cache, if any
            epoch_start = first_start if epoch == first_epoch else time.perf_counter()
            model.train()
            if encoder_frozen:
                acc.unwrap_model(model).encoder.eval()  # frozen: no dropout, so cached and live features agree
            batches = length_grouped_batches(self.train_lengths, c.batch_size, c.seed, epoch,
                                             c.bucket_batches)
            batches = batches[acc.process_index::acc.num_processes][:batches_per_epoch]
            if state["step_in_epoch"] == 0:
                state["loss_sums"] = {"cls": 0.0, "ner": 0.0, "n": 0}
            sums = state["loss_sums"]  # part of the checkpoint, so a resumed epoch reports the same mean losses
            bar = tqdm(total=batches_per_epoch, initial=state["step_in_epoch"], desc=f"epoch {epoch + 1}/{c.epochs}",
                       disable=not self._show_progress())
            for step in range(state["step_in_epoch"], batches_per_epoch):
                batch = collate(self.train_features, batches[step], self.pad_id, cache)
                batch = {k: v.to(acc.device) for k, v in batch.items()}
                labelled = batch["ner_labels"] != IGNORE_INDEX  # first wordpieces: the NER head runs on these only
                out = model(input_ids=batch.get("input_ids"), attention_mask=batch["attention_mask"],
                            token_embeddings=batch.get("token_embeddings"), shape_ids=batch["shape_ids"],
                            ner_positions=labelled)
                cls_loss = ce(out["cls_logits"].float(), batch["labels"])
                # mean over labelled words; a batch without words (all texts empty) adds 0, not NaN
                ner_logits = out["ner_logits"].float()
                ner_loss = ce(ner_logits, batch["ner_labels"][labelled]) if len(ner_logits) else ner_logits.sum()
                loss = (c.w_cls * cls_loss if self.train_cls else 0) + (c.w_ner * ner_loss if self.train_ner else 0)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss.item()} at epoch {epoch + 1}, step {step}; the last good checkpoint is "
                        f"in {self.checkpoint_dir}. Lower the learning rate or use mixed_precision='no'.")
                optimizer.zero_grad(set_to_none=True)
                acc.backward(loss)
                if c.max_grad_norm:
                    acc.clip_grad_norm_([p for _, p in self.trainable], c.max_grad_norm)
                optimizer.step()
                scheduler.step()
                sums["cls"] += cls_loss.item()
                sums["ner"] += ner_loss.item()
                sums["n"] += 1
                state["global_step"] += 1
                state["step_in_epoch"] = step + 1
                bar.update(1)
                bar.set_postfix(cls=f"{sums['cls'] / sums['n']:.3f}", ner=f"{sums['ner'] / sums['n']:.3f}")
                if c.save_every_steps and state["global_step"] % c.save_every_steps == 0 \
                        and state["step_in_epoch"] < batches_per_epoch:
                    self._save_checkpoint("last", state, optimizer, scheduler)
            bar.close()

            record = {"epoch": epoch + 1, "global_step": state["global_step"],
                      "train_cls_loss": sums["cls"] / max(1, sums["n"]),
                      "train_ner_loss": sums["ner"] / max(1, sums["n"]),
                      "train_seconds": time.perf_counter() - epoch_start,
                      "lr": scheduler.get_last_lr()[0]}
            if self.val_features is not None:
                record["val"] = self.evaluate_features(self.val_features, val_cache)
                score = self.selection_score(record["val"])
                record["selection_score"] = score
                if score > state["best_score"]:
                    state["best_score"], state["best_epoch"] = score, epoch + 1
                    if acc.is_main_process:
                        acc.unwrap_model(model).save_pretrained(os.path.join(c.output_dir, "best_model"))
            self.history.append(record)
            state["epoch"], state["step_in_epoch"] = epoch + 1, 0
            self._save_checkpoint("last", state, optimizer, scheduler)
            self._write_logs()
            acc.print(self.format_record(record))
        self.state = state
        if self.val_features is None and acc.is_main_process:
            acc.unwrap_model(model).save_pretrained(os.path.join(c.output_dir, "best_model"))
        return self.history

    def selection_score(self, metrics):
        """Model selection on validation: mean of the trained tasks' scores (accuracy, NER micro-F1)."""
        scores = ([metrics["accuracy"]] if self.train_cls else []) + ([metrics["ner"]["f1"]] if self.train_ner else [])
        return float(np.mean(scores)) if scores else metrics["accuracy"]

    @staticmethod
    def format_record(r):
        text = f"epoch {r['epoch']}: loss cls {r['train_cls_loss']:.4f} ner {r['train_ner_loss']:.4f} " \
               f"({r['train_seconds']:.0f}s)"
        if "val" in r:
            text += f" | val acc {r['val']['accuracy']:.4f} macro-F1 {r['val']['macro_f1']:.4f} " \
                    f"NER F1 {r['val']['ner']['f1']:.4f}"
        return text

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, rows):
        """Metrics of the model being trained on rows (see evaluate())."""
        return self.evaluate_features(prepare_features(rows, self.model))

    def evaluate_features(self, features, cache=None):
        return evaluate(self.accelerator.unwrap_model(self.model), features, self.config.eval_batch_size,
                        self.precision, cache)

    # ----------------------------------------------------------------- checkpoints and logs
    def _save_checkpoint(self, name, state, optimizer, scheduler):
        """model + optimizer + scheduler + RNG + position, written to a temp dir and renamed into place."""
        acc = self.accelerator
        if not acc.is_main_process:
            acc.wait_for_everyone()
            return
        model = acc.unwrap_model(self.model)

        def write(directory):
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      os.path.join(directory, "model.safetensors"))
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "rng": _rng_state()}, os.path.join(directory, "training_state.pt"))
            with open(os.path.join(directory, "trainer_state.json"), "w") as f:
                json.dump({**state, "history": self.history, "config": asdict(self.config)}, f)

        atomic_write_dir(os.path.join(self.checkpoint_dir, name), write)
        acc.wait_for_everyone()

    def _load_checkpoint(self, path, optimizer, scheduler):
        from safetensors.torch import load_file

        needed = ("model.safetensors", "training_state.pt", "trainer_state.json")
        missing = [n for n in needed if not os.path.isfile(os.path.join(path, n))]
        if missing:
            raise CheckpointError(f"checkpoint '{path}' is incomplete (missing {', '.join(missing)}); delete it to "
                                  "start afresh, or set resume=False.")
        try:
            with open(os.path.join(path, "trainer_state.json")) as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint '{path}' is unreadable ({e}); delete {self.checkpoint_dir} (or use "
                                  "another output_dir) to start afresh.") from e
        if saved.get("data") != self._data_fingerprint():
            raise CheckpointError(
                f"{self.checkpoint_dir} holds a run on other training data; use another output_dir, delete the "
                "checkpoints, or set resume=False.")
        current = asdict(self.config)
        changed = sorted(k for k in RESUME_MUST_MATCH if saved.get("config", {}).get(k) != current[k])
        if changed:
            raise CheckpointError(
                f"{self.checkpoint_dir} holds a run with other settings ({', '.join(changed)} differ); resuming it "
                "would mix two runs. Use another output_dir, delete the checkpoints, or set resume=False.")
        try:
            model = self.accelerator.unwrap_model(self.model)
            model.load_state_dict(load_file(os.path.join(path, "model.safetensors")))
            extra = torch.load(os.path.join(path, "training_state.pt"), weights_only=False)
            optimizer.load_state_dict(extra["optimizer"])
            scheduler.load_state_dict(extra["scheduler"])
        except Exception as e:  # torn or foreign files: safetensors, pickle and shape errors alike
            raise CheckpointError(
                f"checkpoint '{path}' does not fit this model or run ({str(e).splitlines()[0][:200]}); "
                f"delete {self.checkpoint_dir} (or use another output_dir) to start afresh.") from e
        _set_rng_state(extra["rng"])
        self.history = saved.pop("history")
        saved.pop("config", None)
        return saved

    def _write_logs(self):
        """metrics.jsonl (one line per epoch, rewritten whole so a resumed run has no duplicates) and plots."""
        if not self.accelerator.is_main_process:
            return
        os.makedirs(self.config.output_dir, exist_ok=True)
        path = os.path.join(self.config.output_dir, "metrics.jsonl")
        write_text_atomic(path, "".join(json.dumps(record) + "\n" for record in self.history))
        if self.config.plots:
            plot_history(self.history, os.path.join(self.config.output_dir, "training_curves.png"))


@torch.inference_mode()
def evaluate(model, rows, batch_size=64, precision="no", cache=None):
    """Accuracy, macro-F1, confusion matrix and NER entity P/R/F1 (word level, seqeval) of model on rows.

    rows: a dataset / dict with words, ner_tags and label, or the output of prepare_features().
    """
    features = rows if "input_ids" in rows and "ner_labels" in rows else prepare_features(rows, model)
    was_training = model.training
    model.eval()
    device = model.device
    pad_id = model.tokenizer.pad_token_id or 0
    ids = features["input_ids"]
    preds, word_preds = [0] * len(ids), [None] * len(ids)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    for idx, _, _ in length_sorted_batches(ids, batch_size):
        batch = {k: v.to(device) for k, v in collate(features, idx, pad_id, cache).items()}
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(input_ids=batch.get("input_ids"), attention_mask=batch["attention_mask"],
                        token_embeddings=batch.get("token_embeddings"), shape_ids=batch["shape_ids"])
        cls = out["cls_logits"].argmax(-1).cpu()
        tag_ids = out["ner_logits"].argmax(-1).cpu()
        first = (batch["ner_labels"] != IGNORE_INDEX).cpu()
        for row, i in enumerate(idx):
            preds[i] = int(cls[row])
            tags = ["O"] * len(features["ner_tags"][i])  # truncated words and words with no wordpiece stay 'O'
            for w, t in zip(features["word_index"][i], tag_ids[row][first[row]].tolist()):
                tags[w] = model.tags[t]
            word_preds[i] = tags
    model.train(was_training)
    metrics = classification_metrics(features["label"], preds, len(model.label_names))
    metrics["ner"] = ner_metrics([list(t) for t in features["ner_tags"]], word_preds)
    return metrics


def plot_history(history, path):
    """Training losses and validation metrics per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["train_cls_loss"] for r in history], "o-", label="topic loss")
    left.plot(epochs, [r["train_ner_loss"] for r in history], "o-", label="NER loss")
    left.set(xlabel="epoch", ylabel="training loss", title="Training losses")
    left.legend()
    if any("val" in r for r in history):
        val = [r for r in history if "val" in r]
        e = [r["epoch"] for r in val]
        right.plot(e, [r["val"]["accuracy"] for r in val], "o-", label="topic accuracy")
        right.plot(e, [r["val"]["macro_f1"] for r in val], "o-", label="topic macro-F1")
        right.plot(e, [r["val"]["ner"]["f1"] for r in val], "o-", label="NER micro-F1")
        right.set(xlabel="epoch", ylabel="score", title="Validation")
        right.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_confusion(matrix, labels, path, title="Confusion matrix"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title=title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    fig.tight_layout()
    save_figure(fig, path)
