"""The model as a spaCy pipeline component: every classification and multi-label task in doc.cats (a score per
label), the first tagging task in doc.ents (the others in doc.spans[task]), a regression task in doc._.<task>.

    pip install outputs/spacy/en_multitask-1.0.0-py3-none-any.whl   # main.py --export-spacy OUT builds it
    nlp = spacy.load("en_multitask")
    doc = nlp("Apple opens a store in Paris.")
    doc.cats, doc.ents
    nlp = spacy.load("en_core_web_sm", exclude=["ner"])
    nlp.add_pipe("multitask_sentence_transformer", source=spacy.load("en_multitask"))   # after its tagger and parser

The component holds a saved model folder (its to_disk / from_disk write and read one) and loads it the way
transformers does (AutoModel with trust_remote_code: the folder carries its code), so the package needs spaCy, torch
and transformers, not this repository. nlp.pipe runs its texts through the model as predict() does (length-sorted
batches). Labels two tasks share are namespaced in doc.cats as "task:label". Entities whose characters do not fall on
spaCy's token boundaries are expanded to the tokens they touch; one that would overlap another is left out, with a
warning.
"""
import warnings

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import filter_spans, minibatch

FACTORY = "multitask_sentence_transformer"


@Language.factory(FACTORY, default_config={"precision": "auto", "batch_size": 32, "sort_buffer": 256})
def make_component(nlp, name, precision: str, batch_size: int, sort_buffer: int):  # spaCy checks the types
    return MultiTaskComponent(name, precision=precision, batch_size=batch_size, sort_buffer=sort_buffer)


def load_model(folder):
    """The MultiTaskSentenceTransformer of a saved folder, with the code the folder carries."""
    from transformers import AutoModel  # loads the folder's own code (its config.json's auto_map)

    return AutoModel.from_pretrained(str(folder), trust_remote_code=True).multitask


class MultiTaskComponent:
    """Sets every task's answer on each Doc (MultiTaskSentenceTransformer.annotate)."""

    def __init__(self, name=FACTORY, model=None, precision="auto", batch_size=32, sort_buffer=256):
        self.name, self.precision, self.batch_size, self.sort_buffer = name, precision, batch_size, sort_buffer
        self.model = model
        self.dropped = 0  # entities left out because they overlapped another after alignment

    def __call__(self, doc):
        return next(iter(self.pipe([doc])))

    def pipe(self, docs, batch_size=None):
        """Docs in chunks of at least sort_buffer (nlp.pipe's batch_size where larger), each run as predict() runs
        its texts: sorted by length into forward batches of batch_size, so short texts are not padded to long ones.
        Measured (docs/benchmarks.md): chunks of 32 in the given order ran at 0.66x predict's texts/s."""
        for batch in minibatch(docs, size=max(batch_size or 0, self.sort_buffer, 1)):
            if self.model is None:
                raise ValueError(f"the {self.name} component has no model: spacy.load its package, or give one "
                                 "(component.model = MultiTaskSentenceTransformer.from_pretrained(dir)).")
            annotations = self.model.annotate([doc.text for doc in batch], batch_size=self.batch_size,
                                              precision=self.precision)
            for doc, annotation in zip(batch, annotations):
                self.set_annotations(doc, annotation)
                yield doc

    def shared_labels(self):
        """The labels more than one task has (namespaced in doc.cats), worked out once per model."""
        if getattr(self, "_shared_for", None) is not self.model:
            labels = [label for task in self.model.tasks.values() for label in task.labels]
            self._shared, self._shared_for = {label for label in labels if labels.count(label) > 1}, self.model
        return self._shared

    def set_annotations(self, doc, annotation):
        shared = self.shared_labels()
        first_spans = True
        for name, (where, value) in annotation.items():
            if where == "cats":
                doc.cats.update({f"{name}:{k}" if k in shared else k: v for k, v in value.items()})
            elif where == "spans":
                spans = self._spans(doc, value)
                if first_spans:
                    doc.ents = spans
                    first_spans = False
                else:
                    doc.spans[name] = spans
            else:
                if not Doc.has_extension(name):
                    Doc.set_extension(name, default=None)
                doc._.set(name, value)

    def _spans(self, doc, entities):
        """spaCy Spans of (start, end, type) character spans, each expanded to the tokens it touches."""
        spans = [doc.char_span(s, e, label=t, alignment_mode="expand") for s, e, t in entities]
        spans = [s for s in spans if s is not None]
        kept = filter_spans(spans)
        if len(kept) < len(entities):
            self.dropped += len(entities) - len(kept)
            warnings.warn(f"{self.name}: {len(entities) - len(kept)} entit{'y' if len(entities) - len(kept) == 1 else 'ies'} "
                          f"of {doc.text[:40]!r}... overlapped another once aligned to spaCy's tokens and were left out "
                          f"({self.dropped} so far).", UserWarning, stacklevel=2)
        return sorted(kept, key=lambda s: s.start)

    def to_disk(self, path, exclude=tuple()):
        self.model.save_pretrained(path)

    def from_disk(self, path, exclude=tuple()):
        self.model = load_model(path)
        return self
