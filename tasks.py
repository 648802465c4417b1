"""Tasks on one encoder: each task is one object that owns its head, its loss, its metric, how it decodes and how it
is saved. The model, the data, the training loop, evaluation and the ONNX export only ever ask tasks these questions,
so a new kind of task is one new class here (registered in KINDS), not edits across the project.

    topic = ClassificationTask("topic", ["World", "Sports", "Business", "Sci/Tech"], column="label")
    ner = TaggingTask("ner", build_tag_list(), column="ner_tags")
    model = MultiTaskSentenceTransformer(tasks=[topic, ner])

Kinds:
  classification  one label per text: cross-entropy on the pooled sentence embedding; accuracy (main) and macro-F1.
                  Row value: a class id, -1 = no label for this task.
  multilabel      any number of labels per text: binary cross-entropy per label; a probability threshold chosen on
                  validation (micro-F1); micro-F1 (main) and macro-F1. Row value: a list of class ids, None = no labels.
  tagging         one BIO tag per word (first wordpiece), read from the token embeddings and the words' shapes
                  (TaggingHead); entity micro-F1 (main, seqeval). Row value: a list of tags, None = no tags.

What a row holds for each task lives in its `column` (the default pair keeps the dataset's `label` and `ner_tags`).
Nothing here loads a model or data.
"""
import numbers

import torch
from torch import nn

from errors import InputError
from text_prep import WORD_SHAPES

IGNORE_INDEX = -100
RESERVED_NAMES = ("sentence_embedding", "input_ids", "attention_mask", "shape_ids")  # model inputs / outputs
TAGGING_WINDOW = 4   # word shapes of +-N neighbouring tokens reach the tagging head
TAGGING_CONTEXT = 1  # the tagging head's hidden layer reads +-N neighbouring tokens (0 = the token alone)
THRESHOLDS = [round(0.05 * k, 2) for k in range(1, 20)]  # a multi-label task's threshold is chosen among these


class Task:
    """What every kind answers. Subclasses set `kind`, `reads` ('sentence': the pooled embedding [B, H]; 'tokens': the
    token embeddings [B, T, H] plus word shapes) and `missing` (the row value that means 'no label for this task')."""
    kind = None
    reads = "sentence"
    missing = None
    main_metric = None

    def __init__(self, name, labels, column=None, dropout=0.1):
        if not isinstance(name, str) or not name.isidentifier() or name in RESERVED_NAMES:
            raise InputError(f"task name {name!r}: use a short identifier (letters, digits, _), not one of "
                             f"{', '.join(RESERVED_NAMES)}.")
        labels = list(labels)
        if not labels or len(set(labels)) != len(labels) or not all(isinstance(x, str) and x for x in labels):
            raise InputError(f"task {name!r}: labels must be distinct non-empty strings, got {labels[:8]!r}.")
        self.name, self.labels, self.column, self.dropout = name, labels, column or name, dropout

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, {len(self.labels)} labels, column={self.column!r})"

    # ----------------------------------------------------------------- saved form
    def config(self):
        """What save_pretrained writes for this task; Task.from_config rebuilds it."""
        return {"kind": self.kind, "name": self.name, "labels": self.labels, "column": self.column,
                "dropout": self.dropout}

    @staticmethod
    def from_config(config):
        kind = config.get("kind")
        if kind not in KINDS:
            raise InputError(f"unknown task kind {kind!r}; kinds: {', '.join(KINDS)}.")
        settings = {k: v for k, v in config.items() if k != "kind"}
        return KINDS[kind](**settings)

    def same_as(self, other):
        """Whether other predicts the same things (kind, name, labels): a teacher for it, a resumable run of it."""
        return (self.kind, self.name, self.labels) == (other.kind, other.name, other.labels)

    # ----------------------------------------------------------------- data
    def has_label(self, value):
        return value is not None and value != self.missing

    def check_values(self, values):
        """Raise InputError naming the fix for the first row value this task cannot train on."""
        raise NotImplementedError

    # ----------------------------------------------------------------- head and loss
    def make_head(self, hidden):
        raise NotImplementedError

    def loss(self, logits, targets):
        """Summed loss over the labelled rows (words) in targets; the loop divides by the global batch's count."""
        raise NotImplementedError

    def soft_loss(self, logits, teacher_logits, temperature):
        """Summed KL(teacher_T || student_T) (Hinton et al. 2015, without the T^2 the loop applies)."""
        return nn.functional.kl_div(nn.functional.log_softmax(logits / temperature, dim=-1),
                                    nn.functional.log_softmax(teacher_logits / temperature, dim=-1),
                                    reduction="sum", log_target=True)


class ClassificationTask(Task):
    """One label per text from the pooled sentence embedding (dropout + linear)."""
    kind = "classification"
    missing = -1
    main_metric = "accuracy"

    def check_values(self, values):
        n = len(self.labels)
        bad = [i for i, y in enumerate(values)
               if not (isinstance(y, numbers.Integral) and not isinstance(y, bool) and -1 <= y < n)]
        if bad:
            raise InputError(f"task {self.name!r}, row {bad[0]}: label {values[bad[0]]!r} is outside 0..{n - 1} (or "
                             f"-1: no label) ({len(bad)} such rows); fix column {self.column!r} or the task's labels.")

    def make_head(self, hidden):
        return nn.Sequential(nn.Dropout(self.dropout), nn.Linear(hidden, len(self.labels)))

    def targets(self, values):
        return torch.tensor([int(v) for v in values], dtype=torch.long)

    def loss(self, logits, targets):
        targets = torch.where(targets == -1, IGNORE_INDEX, targets)
        return nn.functional.cross_entropy(logits, targets, reduction="sum", ignore_index=IGNORE_INDEX)

    def probabilities(self, logits):
        return logits.float().softmax(-1)

    def decode(self, probs, trained=True):
        """predict()'s output: {'label', 'score'} (both None for a head training never taught)."""
        if not trained:
            return {"label": None, "score": None}
        best = int(probs.argmax())
        return {"label": self.labels[best], "score": float(probs[best])}

    def metrics(self, gold, probs):
        """Accuracy (main), macro-F1 and the confusion matrix of the rows' class ids against probs' argmax."""
        from metrics import classification_metrics

        return classification_metrics(gold, [int(p.argmax()) for p in probs], len(self.labels))


class MultiLabelTask(Task):
    """Any number of labels per text: a sigmoid per label on the pooled embedding; the threshold is chosen on
    validation (the one with the best micro-F1) and saved with the model."""
    kind = "multilabel"
    missing = None
    main_metric = "micro_f1"

    def __init__(self, name, labels, column=None, dropout=0.1, threshold=0.5):
        super().__init__(name, labels, column, dropout)
        self.threshold = threshold

    def config(self):
        return {**super().config(), "threshold": self.threshold}

    def check_values(self, values):
        n = len(self.labels)
        for i, y in enumerate(values):
            if y is None:
                continue
            if not isinstance(y, (list, tuple)) or not all(isinstance(k, numbers.Integral) and 0 <= k < n for k in y):
                raise InputError(f"task {self.name!r} (multilabel), row {i}: {y!r} is not a list of label ids in "
                                 f"0..{n - 1}; the column {self.column!r} must hold a list of labels per row (e.g. "
                                 "'sport|politics' in a CSV, or a JSON list), or None for a row without labels.")

    def make_head(self, hidden):
        return nn.Sequential(nn.Dropout(self.dropout), nn.Linear(hidden, len(self.labels)))

    def targets(self, values):
        """[B, L] multi-hot, -1 everywhere on a row without labels (masked in the loss)."""
        out = torch.zeros(len(values), len(self.labels))
        for i, v in enumerate(values):
            if v is None:
                out[i] = -1
            else:
                out[i, list(v)] = 1
        return out

    def loss(self, logits, targets):
        """Per labelled row the mean BCE over its labels, summed over rows."""
        labelled = targets[:, 0] >= 0
        if not labelled.any():
            return logits.sum() * 0
        bce = nn.functional.binary_cross_entropy_with_logits(logits[labelled], targets[labelled], reduction="none")
        return bce.mean(-1).sum()

    def soft_loss(self, logits, teacher_logits, temperature):
        """Summed (over rows) mean binary KL between the teacher's and the student's softened label probabilities."""
        p = torch.sigmoid(teacher_logits / temperature)
        log_q, log_1q = nn.functional.logsigmoid(logits / temperature), nn.functional.logsigmoid(-logits / temperature)
        eps = 1e-7
        kl = p * (torch.log(p + eps) - log_q) + (1 - p) * (torch.log(1 - p + eps) - log_1q)
        return kl.mean(-1).sum()

    def probabilities(self, logits):
        return torch.sigmoid(logits.float())

    def decode(self, probs, trained=True):
        """predict()'s output: {'labels': [names over the threshold], 'scores': {name: probability}}."""
        if not trained:
            return {"labels": [], "scores": None}
        return {"labels": [n for n, p in zip(self.labels, probs.tolist()) if p >= self.threshold],
                "scores": {n: float(p) for n, p in zip(self.labels, probs.tolist())}}

    def metrics(self, gold, probs, threshold=None):
        """Micro-F1 (main), macro-F1 and the threshold used."""
        from sklearn.metrics import f1_score

        threshold = self.threshold if threshold is None else threshold
        y = torch.zeros(len(gold), len(self.labels), dtype=torch.long)
        for i, g in enumerate(gold):
            y[i, list(g)] = 1
        pred = (torch.stack(list(probs)) >= threshold).long() if len(probs) else torch.zeros_like(y)
        return {"micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
                "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)), "threshold": threshold}

    def tune_threshold(self, gold, probs):
        """Set the threshold with the best validation micro-F1 (ties: the one nearest 0.5); returns it."""
        scored = [(self.metrics(gold, probs, t)["micro_f1"], -abs(t - 0.5), t) for t in THRESHOLDS]
        self.threshold = max(scored)[2]
        return self.threshold


class TaggingHead(nn.Module):
    """Per-token tag logits from the token embedding and the word shapes in a window around the token.

    The uncased encoder cannot see capitalisation, which spaCy's teacher leans on (it reads shapes in a window
    of +-4 tokens). Case enters the model here only: the head gets the shapes of the token and its `window`
    neighbours on each side, and a hidden layer lets shape and meaning interact (a linear head could only add a
    per-shape bias). With context > 0 that hidden layer is a convolution over [token embedding; shapes] of the
    token and its `context` neighbours, so a word's tag can also depend on how its neighbours read and are cased.
    """

    def __init__(self, hidden, n_tags, dropout=0.1, shape_dim=16, window=2, context=0):
        super().__init__()
        self.window, self.context = window, context
        self.dropout = nn.Dropout(dropout)
        self.shape_embedding = nn.Embedding(len(WORD_SHAPES), shape_dim)
        features = hidden + (2 * window + 1) * shape_dim
        if context:
            self.hidden = nn.Conv1d(features, hidden, kernel_size=2 * context + 1, padding=context)
        else:
            self.hidden = nn.Linear(features, hidden)
        self.linear = nn.Linear(hidden, n_tags)

    def forward(self, token_embeddings, shape_ids, positions=None, attention_mask=None):
        """Logits [B, T, n_tags]; with positions (a boolean mask [B, T] or (rows, cols)), only those tokens:
        [n_selected, n_tags], row-major. attention_mask [B, T] zeroes padding before the context layer."""
        padded = nn.functional.pad(shape_ids, (self.window, self.window))  # shape 0 ('pad') beyond the ends
        length = shape_ids.shape[1]
        windows = torch.stack([padded[:, k:k + length] for k in range(2 * self.window + 1)], -1)
        if self.context:
            if attention_mask is not None:
                token_embeddings = token_embeddings * attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
            shapes = self.shape_embedding(windows).flatten(-2).to(token_embeddings.dtype)
            features = torch.cat([self.dropout(token_embeddings), shapes], dim=-1)
            hidden = self.hidden(features.transpose(1, 2)).transpose(1, 2)
            if positions is not None:
                hidden = hidden[positions]
            return self.linear(nn.functional.gelu(hidden))
        if positions is not None:
            token_embeddings, windows = token_embeddings[positions], windows[positions]
        shapes = self.shape_embedding(windows).flatten(-2).to(token_embeddings.dtype)
        features = torch.cat([self.dropout(token_embeddings), shapes], dim=-1)
        return self.linear(nn.functional.gelu(self.hidden(features)))


class TaggingTask(Task):
    """One BIO tag per word (its first wordpiece carries it). labels = the tag list, 'O' first. The tags may come from
    gold files or from spaCy (silver): where they come from is the data's business, not the task's."""
    kind = "tagging"
    reads = "tokens"
    missing = None
    main_metric = "f1"

    def __init__(self, name, labels, column=None, dropout=0.1, window=TAGGING_WINDOW, context=TAGGING_CONTEXT):
        super().__init__(name, labels, column, dropout)
        if self.labels[0] != "O" or not all(t == "O" or t[:2] in ("B-", "I-") and t[2:] for t in self.labels):
            raise InputError(f"task {name!r}: tags must be BIO ('O' first, then B-TYPE / I-TYPE), got "
                             f"{self.labels[:6]!r}; build them with ner_tags.build_tag_list() or conll.tags_of().")
        self.window, self.context = window, context

    def config(self):
        return {**super().config(), "window": self.window, "context": self.context}

    @property
    def entity_types(self):
        return sorted({t[2:] for t in self.labels if t != "O"})

    def check_values(self, values, words=None):
        known = set(self.labels)
        for i, tags in enumerate(values):
            if tags is None:
                continue
            if not isinstance(tags, (list, tuple)):
                raise InputError(f"task {self.name!r} (tagging), row {i}: {tags!r} is not a list of tags; column "
                                 f"{self.column!r} must hold one BIO tag per word (or None: no tags).")
            if words is not None and len(tags) != len(words[i]):
                raise InputError(f"task {self.name!r}, row {i}: {len(words[i])} words but {len(tags)} tags; each word "
                                 "needs exactly one tag (or None for a row without tags).")
            unknown = set(tags) - known
            if unknown:
                raise InputError(f"task {self.name!r}: tags {sorted(unknown)[:6]} are not in its tag list; build the "
                                 "task with the data's tags (e.g. conll.tags_of(files), or MultiTaskSentenceTransformer"
                                 "(tags=tags) for the default pair).")

    def make_head(self, hidden):
        return TaggingHead(hidden, len(self.labels), self.dropout, window=self.window, context=self.context)

    def loss(self, logits, targets):
        return nn.functional.cross_entropy(logits, targets, reduction="sum", ignore_index=IGNORE_INDEX)

    def probabilities(self, logits):
        return logits.float().softmax(-1)

    def decode_entities(self, text, word_tags, words, starts, raw_starts, raw_ends):
        """predict()'s output: [{'text', 'type', 'start', 'end'}] with offsets into the text as given."""
        entities = []
        for kind, first, end in bio_to_spans(word_tags):
            s, e = starts[first], starts[end - 1] + len(words[end - 1])
            start, stop = raw_starts[s], raw_ends[e - 1]
            entities.append({"text": text[start:stop], "type": kind, "start": start, "end": stop})
        return entities

    def metrics(self, gold, pred):
        """Entity micro P / R / F1 (main: f1) and per type (seqeval, on words)."""
        from metrics import ner_metrics

        return ner_metrics(gold, pred)


def bio_to_spans(tags):
    """[(type, first_word, end_word_exclusive)] from BIO tags; a stray I- (or an I- of another type) starts a span
    (seqeval's get_entities, whose end is inclusive)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, first, last + 1) for kind, first, last in get_entities(list(tags))]


KINDS = {cls.kind: cls for cls in (ClassificationTask, MultiLabelTask, TaggingTask)}


def default_tasks(label_names=None, tags=None):
    """The default pair: AG News topic ('topic', column 'label') and spaCy silver NER ('ner', column 'ner_tags')."""
    from data_sources import AG_NEWS_LABELS
    from ner_tags import build_tag_list

    return [ClassificationTask("topic", label_names if label_names is not None else AG_NEWS_LABELS, column="label"),
            TaggingTask("ner", tags if tags is not None else build_tag_list(), column="ner_tags")]


def check_tasks(tasks):
    """The tasks as a list, refused (InputError naming the fix) when empty, not Tasks, or two share a name / column."""
    tasks = list(tasks)
    if not tasks:
        raise InputError("a model needs at least one task (e.g. tasks.default_tasks()).")
    for t in tasks:
        if not isinstance(t, Task):
            raise InputError(f"{t!r} is not a task; build tasks with ClassificationTask / MultiLabelTask / "
                             "TaggingTask (tasks.py).")
    for attribute in ("name", "column"):
        seen = [getattr(t, attribute) for t in tasks]
        dupes = sorted({x for x in seen if seen.count(x) > 1})
        if dupes:
            raise InputError(f"two tasks share the {attribute} {dupes[0]!r}; give each task its own {attribute}.")
    return tasks
