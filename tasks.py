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
  regression      a number per text: squared error on the standardised value (the training rows' mean and spread,
                  saved); Spearman (main), Pearson, MSE. Row value: a number, None = no value. predict: {'score'}.

What a row holds for each task lives in its `column` (the default pair keeps the dataset's `label` and `ner_tags`).
Reading a source's values is asked of the kind with the data side's accessors (task_data.TableColumn, TaskSource),
so this module imports no data code and a model folder can carry it; without torch it still decodes (fast_model.py).
Nothing here loads a model or data.
"""
import math
import numbers

import numpy as np

from errors import InputError, ProjectError
from metrics import classification_metrics, f1_scores, fmt, ner_metrics, spearman
from ner_tags import bio_spans, build_tag_list

try:  # torch builds, trains and runs the heads; reading a task's outputs (decode) needs none of it (fast_model.py)
    import torch
    from torch import nn

    from tagging_head import TaggingHead
except ModuleNotFoundError as e:
    if e.name != "torch":
        raise
    torch = nn = TaggingHead = None

IGNORE_INDEX = -100
AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]  # the default topic task's classes (AG News's order)
RESERVED_NAMES = ("sentence_embedding", "input_ids", "attention_mask", "shape_ids")  # model inputs / outputs
TAGGING_WINDOW = 4   # word shapes of +-N neighbouring tokens reach the tagging head
TAGGING_CONTEXT = 1  # the tagging head's hidden layer reads +-N neighbouring tokens (0 = the token alone)
THRESHOLDS = [round(0.05 * k, 2) for k in range(1, 20)]  # a multi-label task's threshold is chosen among these
MULTILABEL_SEPARATOR = "|"
# What a faster copy of a model (an int8 export) must keep of each kind's answers against the fp32 model (agreement):
SAME_LABELS = 0.995   # classification / multi-label: the share of texts given the same label(s)
SAME_ENTITIES = 0.98  # tagging: entity F1 against the fp32 entities
SAME_NUMBER = 0.05    # regression: mean absolute difference, in training standard deviations  # a multi-label CSV field joins its labels with this ('sport|politics')


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

    def summary(self):
        """'name (kind, N labels)': how messages name a task."""
        return f"{self.name} ({self.kind}, {len(self.labels)} labels)"

    def describe(self):
        """What the task predicts, for the model card's task list."""
        more = ", ..." if len(self.labels) > 12 else ""
        return f"{len(self.labels)} {self.label_word}: {', '.join(self.labels[:12])}{more}"

    label_word = "classes"

    # ----------------------------------------------------------------- reading a data source
    # How its source is read (task_data.READERS): "table" = a column of a data table (CSV, JSON, parquet, the Hub
    # layout; several tasks may read one table), "tagged" = words with a tag each (a CoNLL file, or parquet with
    # words and ner_tags: one task per file, no column).
    reader = "table"
    default_column = "label"
    stratifies = False   # a source's splits are stratified by this task's values

    @classmethod
    def from_column(cls, name, column):
        """(task, {split: per row its value}) from one column of a data table: `column` (task_data.TableColumn)
        gives its name, where it is read, values() ({split: cells, an empty cell None}) and class_names_and_ids()."""
        raise NotImplementedError

    @classmethod
    def check_column(cls, spec, column):
        """Refuse an @COLUMN this kind cannot read (InputError naming the fix)."""

    @classmethod
    def source_problems(cls, source):
        """[message] for a source this kind cannot read, found before any work (reading its rows is allowed):
        `source` (task_data.TaskSource) says whether it exists, and what it lacks with missing(). A name that is
        neither a file nor a folder may be a Hub id for most kinds."""
        return source.missing(hub_id=True)

    def fit(self, values):
        """Settle what the training rows' values decide (their scale, say) once the source is split; most kinds
        have nothing to settle."""

    # ----------------------------------------------------------------- data
    def has_label(self, value):
        return value is not None and value != self.missing

    def check_values(self, values):
        """Raise InputError naming the fix for the first row value this task cannot train on."""
        raise NotImplementedError

    def read_values(self, column, words):
        """The rows' values of this task (column, read from its data), as training takes them: checked, numpy
        integers made ints."""
        column = [int(y) if isinstance(y, numbers.Integral) and not isinstance(y, bool) else y for y in column]
        self.check_values(column)
        return column

    def token_targets(self, features, values):
        """Per row the wordpiece-aligned targets a token-level task trains on; None for a sentence task."""
        return None

    def label_counts(self, features):
        """Per row, how many things the task is scored on there (rows: 1 or 0; words for tagging)."""
        return [int(self.has_label(v)) for v in features["values"][self.name]]

    def soft_units(self, features, row):
        """How many distributions a teacher gives this task on a row (one per row; per word for tagging)."""
        return 1

    def collate(self, features, indices, every_word=False):
        """This task's part of a padded batch of the given rows: its targets under its name."""
        return {self.name: self.targets([features["values"][self.name][i] for i in indices])}

    def batch_positions(self, batch):
        """forward()'s positions for this task in a collated batch (None: a sentence task reads the pooled row)."""
        return None

    # ----------------------------------------------------------------- inference
    reads_words = False   # its output is per word, so a row longer than one window is run in several windows
    hub_pipeline = "text-classification"  # the Hugging Face Hub's pipeline tag of what it does (the model card)
    onnx_axes = {0: "batch"}
    untrained_note = "no label (label and score are None)"

    def run_head(self, head, token_embeddings, sentence, shape_ids, positions, attention_mask):
        """The head's logits: a sentence task reads the pooled embedding."""
        return head(sentence)

    def row_output(self, logits, row, positions):
        """One row's logits out of a batch's (the batch runner): [n_labels] for a sentence task."""
        return logits[row]

    def row_prediction(self, logits, word_index=(), n_words=0):
        """A row's decision from its logits (row_output; a tensor on the CPU or a numpy array): the probabilities of
        a sentence task, as a numpy array."""
        return self.probabilities(logits)

    def tune(self, gold, predictions):
        """Settle what validation chooses (a multi-label threshold); nothing for most kinds."""

    def decode(self, prediction, trained=True, text=None, spans=None):
        """predict()'s output from row_prediction (spans: the text's words and offsets, for per-word tasks)."""
        raise NotImplementedError

    def describe_output(self, output):
        """One prediction (predict()'s output for this task) as a short phrase."""
        raise NotImplementedError

    def agreement(self, reference, candidate):
        """How far a faster copy of the model (an int8 export) keeps this task's answers: (measure, value, whether
        it keeps them), from predict()'s outputs of the reference (fp32) and the candidate on the same texts."""
        raise NotImplementedError

    def annotation(self, decision, output):
        """Where this task's answer goes on an annotated document (spaCy's Doc: spacy_component.py), in plain terms:
        ("cats", {label: score}), ("spans", [(start, end, type)] with character offsets) or ("value", number).
        decision: row_prediction's; output: decode's."""
        raise NotImplementedError

    def format_metrics(self, m, rows):
        """The printed line(s) of this task's test metrics."""
        raise NotImplementedError

    def card_rows(self, m):
        """The model card's metric rows: (pipeline tag, title, metric type, metric name, value)."""
        raise NotImplementedError

    def output_type(self):
        """The type of predict()'s output for this task, in plain terms (corpus prediction writes it as a column):
        a type name ('string', 'float64', 'int64'), {field: type} for a record, [type] for a list of them."""
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
        return softmax(logits)

    def decode(self, probs, trained=True, text=None, spans=None):
        """predict()'s output: {'label', 'score'} (both None for a head training never taught)."""
        if not trained:
            return {"label": None, "score": None}
        best = int(probs.argmax())
        return {"label": self.labels[best], "score": float(probs[best])}

    def metrics(self, gold, probs):
        """Accuracy (main), macro-F1 and the confusion matrix of the rows' class ids against probs' argmax."""
        return classification_metrics(gold, [int(p.argmax()) for p in probs], len(self.labels))

    stratifies = True

    @classmethod
    def from_column(cls, name, column):
        names, ids = column.class_names_and_ids()
        return cls(name, names, column=name), {split: [y for values in per_part for y in values]
                                               for split, per_part in ids.items()}

    @classmethod
    def source_problems(cls, source):
        if not source.exists:
            return source.missing(hub_id=True)
        try:
            source.class_names()  # reads the rows: a missing column, unusable labels
        except ProjectError as e:
            return [str(e)]
        return []

    def describe_output(self, output):
        return f"{output['label']} ({output['score']:.2f})" if output["label"] is not None else \
            "no label (head untrained)"

    def agreement(self, reference, candidate):
        """The share of texts given the same label: at least SAME_LABELS."""
        same = float(np.mean([r["label"] == c["label"] for r, c in zip(reference, candidate)])) if reference else 1.0
        return "same label", same, same >= SAME_LABELS

    def annotation(self, decision, output):
        """A score per class (its probability); none from an untrained head."""
        return "cats", {} if output["label"] is None else {n: float(p) for n, p in zip(self.labels, decision)}

    def format_metrics(self, m, rows):
        return [f"accuracy {fmt(m['accuracy'])}  macro-F1 {fmt(m['macro_f1'])}  ({rows} rows)"]

    def card_rows(self, m):
        title = "Topic classification" if self.name == "topic" else f"{self.name} (classification)"
        return [(self.hub_pipeline, title, "accuracy", "Test accuracy", m["accuracy"]),
                (self.hub_pipeline, title, "f1", "Test macro-F1", m["macro_f1"])]

    def output_type(self):
        return {"label": "string", "score": "float64"}


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
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float32)))

    label_word = "labels"
    untrained_note = "no labels (labels [], scores None)"

    @classmethod
    def from_column(cls, name, column):
        values = [(split, v) for split, cells in column.values().items() for v in cells]
        names, rows = multilabel_values(column.where, column.name, [v for _, v in values])
        by_split = {split: [] for split, _ in values}
        for (split, _), r in zip(values, rows):
            by_split[split].append(r)
        return cls(name, names, column=name), by_split

    def tune(self, gold, predictions):
        self.tune_threshold(gold, predictions)

    def describe_output(self, output):
        return ", ".join(output["labels"]) or "no label over the threshold"

    def agreement(self, reference, candidate):
        """The share of texts given the same set of labels: at least SAME_LABELS."""
        same = float(np.mean([r["labels"] == c["labels"] for r, c in zip(reference, candidate)])) if reference else 1.0
        return "same labels", same, same >= SAME_LABELS

    def annotation(self, decision, output):
        """A score per label (its probability, independent of the others); none from an untrained head."""
        return "cats", dict(output["scores"] or {})

    def format_metrics(self, m, rows):
        return [f"micro-F1 {fmt(m['micro_f1'])}  macro-F1 {fmt(m['macro_f1'])}  threshold {m['threshold']}  "
                f"({rows} rows)"]

    def card_rows(self, m):
        title = f"{self.name} (multi-label classification)"
        return [(self.hub_pipeline, title, "f1", "Test micro-F1", m["micro_f1"]),
                (self.hub_pipeline, title, "f1", "Test macro-F1", m["macro_f1"])]

    def output_type(self):
        return {"labels": ["string"], "scores": {n: "float64" for n in self.labels}}

    def decode(self, probs, trained=True, text=None, spans=None):
        """predict()'s output: {'labels': [names over the threshold], 'scores': {name: probability}}."""
        if not trained:
            return {"labels": [], "scores": None}
        return {"labels": [n for n, p in zip(self.labels, probs.tolist()) if p >= self.threshold],
                "scores": {n: float(p) for n, p in zip(self.labels, probs.tolist())}}

    def metrics(self, gold, probs, threshold=None):
        """Micro-F1 (main), macro-F1 and the threshold used."""
        threshold = self.threshold if threshold is None else threshold
        y = np.zeros((len(gold), len(self.labels)), dtype=bool)
        for i, g in enumerate(gold):
            y[i, list(g)] = True
        pred = np.stack([np.asarray(p) for p in probs]) >= threshold if len(probs) else np.zeros_like(y)
        micro, macro = f1_scores(y, pred)
        return {"micro_f1": micro, "macro_f1": macro, "threshold": threshold}

    def tune_threshold(self, gold, probs):
        """Set the threshold with the best validation micro-F1 (ties: the one nearest 0.5); returns it."""
        scored = [(self.metrics(gold, probs, t)["micro_f1"], -abs(t - 0.5), t) for t in THRESHOLDS]
        self.threshold = max(scored)[2]
        return self.threshold


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

    def describe(self):
        return f"BIO tags for {', '.join(self.entity_types)}"

    # ----------------------------------------------------------------- data: one tag per word
    reader = "tagged"  # a CoNLL file, or parquet with words and ner_tags
    default_column = None

    @classmethod
    def check_column(cls, spec, column):
        if column:
            raise InputError(f"--tasks {spec}: a {cls.kind} task reads a CoNLL file's last column; drop '@{column}'")

    @classmethod
    def source_problems(cls, source):
        return source.missing(hub_id=False)

    def read_values(self, column, words):
        self.check_values(column, words)
        return column

    def token_targets(self, features, values):
        """Per row: the tag id on each word's first wordpiece, IGNORE_INDEX elsewhere and on every piece of a row
        without tags (which then adds no loss and is not scored)."""
        tag_to_id = {t: i for i, t in enumerate(self.labels)}
        aligned = []
        for ids, positions, index, tags in zip(features["input_ids"], features["positions"], features["word_index"],
                                               values):
            row = [IGNORE_INDEX] * len(ids)
            if tags is not None:
                for t, w in zip(positions, index):
                    row[t] = tag_to_id[tags[w]]
            aligned.append(row)
        return aligned

    def label_counts(self, features):
        return [sum(t != IGNORE_INDEX for t in x) for x in features["token_labels"][self.name]]

    def soft_units(self, features, row):
        return len(features["positions"][row])

    def collate(self, features, indices, every_word=False):
        """The labelled first wordpieces as `name.rows` / `name.cols` and their tags under the name, found on the host
        (a boolean mask applied on the GPU would make the host wait for its count every step). every_word: every
        word's first wordpiece instead (a teacher has a distribution there), its tag IGNORE_INDEX where the row has
        none; on a row with tags these are the same words in the same order."""
        name = self.name
        padded = [features["token_labels"][name][i] for i in indices]
        width = max((len(x) for x in padded), default=0)
        labels = torch.tensor([x + [IGNORE_INDEX] * (width - len(x)) for x in padded], dtype=torch.long)
        if every_word:
            rows = torch.tensor([j for j, i in enumerate(indices) for _ in features["positions"][i]],
                                dtype=torch.long)
            cols = torch.tensor([p for i in indices for p in features["positions"][i]], dtype=torch.long)
        else:
            rows, cols = (labels != IGNORE_INDEX).nonzero(as_tuple=True)
        return {f"{name}.rows": rows, f"{name}.cols": cols, name: labels[rows, cols]}

    def batch_positions(self, batch):
        return batch[f"{self.name}.rows"], batch[f"{self.name}.cols"]

    # ----------------------------------------------------------------- head, loss, inference
    reads_words = True
    hub_pipeline = "token-classification"
    onnx_axes = {0: "batch", 1: "tokens"}
    untrained_note = "no entities (every tag is 'O')"

    def make_head(self, hidden):
        return TaggingHead(hidden, len(self.labels), self.dropout, window=self.window, context=self.context)

    def run_head(self, head, token_embeddings, sentence, shape_ids, positions, attention_mask):
        return head(token_embeddings, shape_ids, (positions or {}).get(self.name), attention_mask)

    def row_output(self, logits, row, positions):
        """The logits at the row's words' first wordpieces in this window: [its words, n_tags]."""
        return logits[row, positions]

    def row_prediction(self, logits, word_index=(), n_words=0):
        """One tag per word of the row: the argmax at each word given (word_index), 'O' for the others (truncated
        words, words with no wordpiece)."""
        tags = ["O"] * n_words
        for w, t in zip(word_index, np.asarray(logits).argmax(-1).tolist()):
            tags[w] = self.labels[t]
        return tags

    def loss(self, logits, targets):
        return nn.functional.cross_entropy(logits, targets, reduction="sum", ignore_index=IGNORE_INDEX)

    def probabilities(self, logits):
        return softmax(logits)

    def decode(self, word_tags, trained=True, text=None, spans=None):
        """predict()'s output: [{'text', 'type', 'start', 'end'}] with offsets into the text as given; spans: the
        text's (raw_starts, raw_ends, words, word_starts) (MultiTaskSentenceTransformer._prepare)."""
        if not trained:
            return []
        raw_starts, raw_ends, words, starts = spans
        entities = []
        for kind, first, end in bio_spans(word_tags):
            s, e = starts[first], starts[end - 1] + len(words[end - 1])
            start, stop = raw_starts[s], raw_ends[e - 1]
            entities.append({"text": text[start:stop], "type": kind, "start": start, "end": stop})
        return entities

    def metrics(self, gold, pred):
        """Entity micro P / R / F1 (main: f1) and per type (seqeval, on words)."""
        return ner_metrics(gold, pred)

    def describe_output(self, output):
        return ", ".join(f"{e['text']} [{e['type']}]" for e in output) or "no entities"

    def agreement(self, reference, candidate):
        """Entity F1 of the candidate's entities against the reference's (the same span and type): at least
        SAME_ENTITIES."""
        def spans(outputs):
            return {(i, e["start"], e["end"], e["type"]) for i, entities in enumerate(outputs) for e in entities}

        ref, got = spans(reference), spans(candidate)
        f1 = 2 * len(ref & got) / (len(ref) + len(got)) if ref or got else 1.0
        return "entity F1", f1, f1 >= SAME_ENTITIES

    def annotation(self, decision, output):
        return "spans", [(e["start"], e["end"], e["type"]) for e in output]

    def format_metrics(self, m, rows):
        lines = [f"entity P/R/F1 {m['precision']:.4f} / {m['recall']:.4f} / {m['f1']:.4f}  ({rows} rows)"]
        for kind, per in sorted(m["per_type"].items()):
            lines.append(f"{kind:<12s} P {per['precision']:.3f}  R {per['recall']:.3f}  F1 {per['f1']:.3f}  "
                         f"({per['support']})")
        return lines

    def card_rows(self, m):
        if self.name == "ner":
            return [(self.hub_pipeline, "NER (spaCy silver labels)", "f1",
                     "Entity micro-F1 vs spaCy silver labels", m["f1"])]
        return [(self.hub_pipeline, f"{self.name} (tagging)", "f1", "Entity micro-F1", m["f1"])]

    def output_type(self):
        return [{"text": "string", "type": "string", "start": "int64", "end": "int64"}]


class RegressionTask(Task):
    """A number per text from the pooled sentence embedding (dropout + linear). The head predicts the value
    standardised by the training rows' mean and spread (saved with the model), so its loss sits on the scale of the
    other tasks' whatever the column's units; predict() gives the value back in those units."""
    kind = "regression"
    missing = None
    main_metric = "spearman"

    def __init__(self, name, labels=("score",), column=None, dropout=0.1, mean=0.0, std=1.0):
        super().__init__(name, labels, column, dropout)
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise InputError(f"task {name!r}: mean {mean!r} and std {std!r} must be finite numbers, std > 0.")
        self.mean, self.std = float(mean), float(std)

    def config(self):
        return {**super().config(), "mean": self.mean, "std": self.std}

    def describe(self):
        return f"a number per text (mean {self.mean:.3g}, std {self.std:.3g} on its training rows)"

    @classmethod
    def from_column(cls, name, column):
        by_split = {split: [_number(column.where, column.name, v) for v in cells]
                    for split, cells in column.values().items()}
        return cls(name, column=name), by_split

    def fit(self, values):
        """The mean and spread of the training rows' values: the head predicts values standardised by them."""
        train = [v for v in values if self.has_label(v)]
        if len(train) < 2:
            raise InputError(f"task {self.name!r}: {len(train)} training row(s) hold a number; a regression task "
                             "needs numbers in at least 2 rows")
        self.mean = sum(train) / len(train)
        self.std = math.sqrt(sum((v - self.mean) ** 2 for v in train) / len(train)) or 1.0

    def has_label(self, value):
        return value is not None

    def check_values(self, values):
        for i, y in enumerate(values):
            if y is not None and not (isinstance(y, numbers.Real) and not isinstance(y, bool) and math.isfinite(y)):
                raise InputError(f"task {self.name!r} (regression), row {i}: {y!r} is not a finite number; column "
                                 f"{self.column!r} must hold a number per row (or None: no value).")

    def read_values(self, column, words):
        column = [None if y is None or (isinstance(y, float) and math.isnan(y)) else float(y) if isinstance(y, numbers.Real) and not isinstance(y, bool) else y
                  for y in column]
        self.check_values(column)
        return column

    def make_head(self, hidden):
        return nn.Sequential(nn.Dropout(self.dropout), nn.Linear(hidden, 1))

    def targets(self, values):
        """[B] standardised values, NaN on a row without one (masked in the loss)."""
        return torch.tensor([math.nan if v is None else (v - self.mean) / self.std for v in values],
                            dtype=torch.float32)

    def loss(self, logits, targets):
        """Summed squared error (standardised units) over the rows with a value."""
        labelled = ~torch.isnan(targets)
        return ((logits[:, 0][labelled] - targets[labelled]) ** 2).sum()

    def soft_loss(self, logits, teacher_logits, temperature):
        """Summed squared distance to the teacher's (standardised) number; a number has no temperature."""
        return ((logits - teacher_logits) ** 2).sum()

    def probabilities(self, logits):
        """The value in the column's units (a row's [1] logits give a 0-d array; a batch's [B, 1] give [B])."""
        return np.asarray(logits, dtype=np.float32)[..., 0] * np.float32(self.std) + np.float32(self.mean)

    def decode(self, value, trained=True, text=None, spans=None):
        """predict()'s output: {'score': the number} (None for a head training never taught)."""
        return {"score": float(value) if trained else None}

    def metrics(self, gold, pred):
        """Spearman (main) and Pearson correlation, and the mean squared error, in the column's units; a constant
        prediction correlates 0."""
        y, p = np.asarray(gold, dtype=float), np.asarray([float(v) for v in pred], dtype=float)
        pearson = float(np.corrcoef(y, p)[0, 1]) if len(y) > 1 and y.std() > 0 and p.std() > 0 else 0.0
        rank = spearman(y.tolist(), p.tolist()) if len(y) > 1 else 0.0
        return {"spearman": 0.0 if math.isnan(rank) else rank, "pearson": pearson,
                "mse": float(((y - p) ** 2).mean()) if len(y) else 0.0}

    def describe_output(self, output):
        return "no value (head untrained)" if output["score"] is None else f"{output['score']:.3f}"

    def agreement(self, reference, candidate):
        """The mean absolute difference of the numbers, in the training rows' standard deviations: at most
        SAME_NUMBER."""
        gap = float(np.mean([abs(r["score"] - c["score"]) for r, c in zip(reference, candidate)
                             if r["score"] is not None])) / self.std if reference else 0.0
        return "mean |difference| / std", gap, gap <= SAME_NUMBER

    def annotation(self, decision, output):
        return "value", output["score"]

    def format_metrics(self, m, rows):
        return [f"Spearman {fmt(m['spearman'])}  Pearson {fmt(m['pearson'])}  MSE {m['mse']:.4g}  ({rows} rows)"]

    def card_rows(self, m):
        title = f"{self.name} (regression)"
        return [(self.hub_pipeline, title, "spearmanr", "Test Spearman", m["spearman"]),
                (self.hub_pipeline, title, "pearsonr", "Test Pearson", m["pearson"])]

    def output_type(self):
        return {"score": "float64"}


def _number(where, column, value):
    """A table cell as a float (None when empty); InputError naming the row's value otherwise."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: column {column!r} holds {value!r}, not a number; a regression column holds a "
                         "number per row (empty: no value)") from None
    if not math.isfinite(number):
        raise InputError(f"{where}: column {column!r} holds {value!r}; give finite numbers (empty: no value)")
    return number


def multilabel_values(where, column, values):
    """(label names, per row a list of ids or None) from lists or '|'-joined strings."""
    rows = []
    for row, v in enumerate(values):
        if v is None:
            rows.append(None)
        elif isinstance(v, str):
            rows.append([x.strip() for x in v.split(MULTILABEL_SEPARATOR) if x.strip()])
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v):
            rows.append([str(x) for x in v])
        else:
            raise InputError(f"{where}, row {row}: column {column!r} holds {v!r}, not a list of labels; a multilabel "
                             f"column holds a list (JSON) or names joined by '{MULTILABEL_SEPARATOR}' (CSV)")
    names = sorted({x for r in rows if r is not None for x in r})
    if len(names) < 2:
        raise InputError(f"{where}: column {column!r} names {len(names)} label(s); a multilabel task needs at least 2")
    ids = {n: i for i, n in enumerate(names)}
    return names, [None if r is None else sorted({ids[x] for x in r}) for r in rows]


def first_of(tasks, kind):
    """The first task of a kind ('classification', 'tagging', ...) among tasks (a list or {name: task}), or None."""
    return next((t for t in (tasks.values() if isinstance(tasks, dict) else tasks) if t.kind == kind), None)


def softmax(logits):
    """Softmax over the last axis of logits (a CPU tensor or an array), as a float32 numpy array."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


KINDS = {cls.kind: cls for cls in (ClassificationTask, MultiLabelTask, TaggingTask, RegressionTask)}


def default_tasks(label_names=None, tags=None):
    """The default pair: AG News topic ('topic', column 'label') and spaCy silver NER ('ner', column 'ner_tags')."""
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
