"""The Hugging Face model card (README.md) written into every saved multi-task model folder.

    write_model_card(model_dir, model, results=None, conll=None)

YAML metadata (library, base model, datasets, task tags and, once measured, the metrics of results.json: test
accuracy and macro-F1, NER F1 against the silver labels, STS-B Spearman, CoNLL F1 from --eval-conll) and sections:
what the model does, how it was trained (the flags), how to load and use it, the silver-label caveat, limitations.
Written with huggingface_hub's ModelCard / ModelCardData; from_pretrained never reads it.
"""
import json
import os
import re

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from atomic_io import write_text_atomic
from sentence_transformer import packaged_model_path
from tasks import Task

CARD_NAME = "README.md"
PACKAGED_BASE = "sentence-transformers/all-MiniLM-L6-v2"
HUB_DATASETS = {"ag_news": "fancyzhx/ag_news", "fancyzhx/ag_news": "fancyzhx/ag_news"}
CONLL_HUB_ID = "eriktks/conll2003"
STS_HUB_ID = "sentence-transformers/stsb"
# main.py options that are not training settings (modes and their arguments)
NOT_TRAINING_FLAGS = ("compare_freezing", "eval_conll", "predict", "export_fast", "predict_file", "model_dir",
                      "output", "chunk_size")


def _base_model(flags, model=None):
    """The encoder's Hub id: the run's --model-name, else the name the encoder was built from; None for a folder."""
    name = (flags or {}).get("model_name") or getattr(getattr(model, "encoder", None), "model_name_or_path", None)
    if name is None or name in ("all-MiniLM-L6-v2", PACKAGED_BASE):
        return PACKAGED_BASE if name is not None or not flags else None
    name = str(name)
    try:
        if os.path.realpath(name) == os.path.realpath(packaged_model_path()):
            return PACKAGED_BASE
    except Exception:  # the packaged model not installed: then it is not that one
        pass
    return None if os.path.isdir(name) or os.path.isabs(name) else name  # a local folder has no Hub id


ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[^\s@:=,`|]+")


def public(value, flags=None):
    """value with every absolute path of the training machine replaced by a name a reader can find: under the run's
    data root, the path inside it (conll2003/valid.txt); under the working folder, the relative path
    (outputs/default/model); else the file or folder name. Lists are mapped; other values kept."""
    if isinstance(value, (list, tuple)):
        return [public(v, flags) for v in value]
    if not isinstance(value, str):
        return value
    root = (flags or {}).get("data_root")

    def name(match):
        path = os.path.normpath(match.group(0))
        for base in filter(None, (root if isinstance(root, str) else None, os.getcwd())):
            base = os.path.normpath(base)
            if path.startswith(base + os.sep):
                return os.path.relpath(path, base)
        return os.path.basename(path) or path

    return ABSOLUTE_PATH.sub(name, value)


def _dataset(flags):
    """(Hub id or None, a readable name) of the training data."""
    if not flags:
        return None, "data not recorded here"
    source = flags.get("dataset") or "ag_news"
    sources = source if isinstance(source, list) else [source]
    names = [os.path.basename(os.path.normpath(str(s))) for s in sources]
    hub = HUB_DATASETS.get(str(sources[0])) or ("fancyzhx/ag_news" if names == ["ag_news"] else None)
    return hub, ", ".join(names)


def card_metrics(results=None, conll=None, tasks=None):
    """The card's metrics as (task_type, task_name, dataset_type, dataset_name, split, metric_type, name, value)."""
    rows = []
    if results:
        test, flags = results.get("test") or {}, results.get("flags") or {}
        hub, name = _dataset(flags)
        data_type = hub or name
        trained = results.get("trained_tasks") or {}
        for task, m in (test.get("tasks") or {}).items():  # one entry per task the run trained and scored
            if not m or not trained.get(task, True):
                continue
            for row in _task_rows(task, m, data_type, name, results, tasks):
                rows.append(row)
        if results.get("sts_spearman") is not None:
            rows.append(("sentence-similarity", "Sentence embedding (encode)", STS_HUB_ID, "STS Benchmark",
                         "validation", "spearmanr", "Spearman x100 of cosine similarity", results["sts_spearman"]))
    if conll:
        rows.append(("token-classification", "NER (human labels)", CONLL_HUB_ID, "CoNLL-2003", "validation", "f1",
                     "Entity micro-F1, spaCy types mapped to CoNLL's", conll["model"]["f1"]))
    return rows


def _task_rows(task, m, data_type, name, results, tasks=None):
    """The card's metric rows of one task's test metrics, as the task gives them (Task.card_rows): the model's task
    (tasks: {name: Task}), else the one the run's results saved."""
    source = public((results.get("task_sources") or {}).get(task), results.get("flags"))
    data_type, name = (source, os.path.basename(source)) if source else (data_type, name)
    found = (tasks or {}).get(task)
    if found is None:
        config = next((c for c in results.get("tasks") or [] if c.get("name") == task), None)
        if config is None:
            return []
        found = Task.from_config(config)
    return [(pipeline, title, data_type, name, "test", metric, label, value)
            for pipeline, title, metric, label, value in found.card_rows(m)]


def describe_tasks(model):
    """One line per task: its kind and what it predicts."""
    return "\n".join(f"- **{t.name}** ({t.kind}): {t.describe()}" for t in model.tasks.values())


def _sts_note(results):
    """A line under the results when the run could not measure STS-B (no file under the data root, no Hub)."""
    source = (results or {}).get("sts_source") or ""
    if (results or {}).get("sts_spearman") is None and source.startswith("not measured"):
        return f"\nSTS Benchmark dev (is the encoder still a good sentence embedder?): {source}.\n"
    return ""


def fast_section(fast):
    """The card's section on the fast/ folder (an export_fast folder's fast_config.json), or ""."""
    if not fast:
        return ""
    lines = [f"\n## Fast CPU serving (`fast/`)\n\n`fast/` holds an ONNX Runtime graph ({fast['quantize']}) and "
             "`fast_model.py`, which serves it with onnxruntime, tokenizers and numpy alone (`import fast_model; "
             "fast_model.load(folder).predict(texts)`, with `fast/` on `sys.path`)."]
    if fast.get("candidates"):
        lines.append(f" It is the fastest of the candidates below that keeps every task's answers against the fp32 "
                     f"model on {fast['measured_on']} held-out texts (texts/s: of those that keep them, when several do):\n\n| candidate | kept | texts/s | agreement with "
                     "fp32 |\n|---|---|---|---|")
        for name, c in fast["candidates"].items():
            agree = "; ".join(f"{t} {v['measure']} {v['value']:.4f}" for t, v in c["tasks"].items())
            lines.append(f"\n| {name} | {'yes' if c['keeps'] else 'no'} | {c.get('texts_per_second', '—')} | {agree}; "
                         f"embedding cosine {c['embedding_cosine']['mean']:.4f} |")
    return "".join(lines) + "\n"


def build_model_card(model, results=None, conll=None, fast=None):
    """A huggingface_hub.ModelCard for the model (and its run's results.json / conll_eval.json, and an export's
    fast_config.json, when given)."""
    flags = (results or {}).get("flags") or {}
    _, data_name = _dataset(flags)
    rows = card_metrics(results, conll, model.tasks)
    data = _card_data(model, flags, rows, conll)
    trained = model.trained_tasks
    untrained = [t for t in model.tasks if trained is not None and not trained.get(t, True)]
    metric_lines = "\n".join(f"| {tn} | {dn} ({sp}) | {mn} | {float(v):.4f} |" for _, tn, _, dn, sp, _, mn, v in rows)
    flag_lines = "\n".join(f"| `--{k.replace('_', '-')}` | `{public(v, flags)}` |" for k, v in sorted(flags.items())
                           if k not in NOT_TRAINING_FLAGS and v not in (None, [], "") and k != "data_root")
    text = f"""---
{data.to_yaml()}
---

# Multi-task sentence transformer

One {_base_model(flags, model) or 'BERT-family'} encoder with {len(model.tasks)} task head{"s" if len(model.tasks) > 1 else ""}:

{describe_tasks(model)}

{_reads(model)}
{"" if not untrained else f'''
**Untrained head{"s" if len(untrained) > 1 else ""}: {", ".join(untrained)}.** This model was trained without that
task's loss, so `predict` gives no answer for it (label None / no entities) and says so once.
'''}{_added_note(results)}
## Results

{"| task | data | metric | value |" + chr(10) + "|---|---|---|---|" + chr(10) + metric_lines if rows else
 "Not measured yet (a model saved outside main.py's training run)."}
{_sts_note(results)}
## Use

`MODEL` is this folder, or its Hub repo id. The folder carries its own code (`modeling_multitask.py` and the modules
it imports), so it loads without the project that trained it:

```python
from transformers import AutoModel                        # transformers, torch
model = AutoModel.from_pretrained("MODEL", trust_remote_code=True)
model.predict("Apple opens a store in Paris.")           # {{task name: its output, ...}}

from sentence_transformers import SentenceTransformer    # the shared encoder and its pooling
SentenceTransformer("MODEL").encode(["A sentence.", "Another one."])

import spacy                                              # the spaCy package built from this folder (below)
nlp = spacy.load("en_multitask")                          # doc.cats, doc.ents, ... of nlp(text)
```

The spaCy package is built by the project that trained the model: `python main.py --export-spacy OUT --model-dir
MODEL`, then `pip install` of the wheel it writes. The encoder alone is a Hugging Face model in `encoder/`.
{_as_given(model)}
{fast_section(fast)}## Training

{f"Trained with `python main.py` on {data_name}" if flags else "Saved outside a main.py run: no training record"}{
" plus gold CoNLL NER rows" if flags.get("ner_data") else ""}.{_distilled((results or {}).get("teacher"), flags)}{_task_teachers(results)} The flags of the run:

{"| flag | value |" + chr(10) + "|---|---|" + chr(10) + flag_lines if flag_lines else "Not recorded."}
{CARD_END.format(max_length=model.encoder.max_length)}"""
    return ModelCard(text)


CARD_END = """
## Silver labels

The NER labels of the training texts are *silver* labels: spaCy's `en_core_web_sm` tagged them, and the model learns
to agree with it. "Entity micro-F1 vs spaCy silver labels" measures that agreement, not accuracy against human labels;
the CoNLL-2003 row (when present) compares with human labels, spaCy's OntoNotes types mapped onto CoNLL's.

## Limitations

- English news text; other domains and languages are untested. The uncased encoder cannot see capitalisation.
- Topic labels are those of the training data only.
- NER inherits the teacher's errors (e.g. on Title-Case headlines); rare types (PRODUCT, WORK_OF_ART) are weak.
- Long texts: topic and embedding read the first {max_length} wordpieces; NER tags every word in
  overlapping windows.
"""


def _card_data(model, flags, rows, conll):
    """The card's YAML metadata (huggingface_hub.ModelCardData) with its metric rows as eval results."""
    hub, _ = _dataset(flags)
    datasets = [d for d in (hub, CONLL_HUB_ID if conll or flags.get("ner_data") else None) if d]
    pipelines = [t.hub_pipeline for t in model.tasks.values()]
    return ModelCardData(
        language="en", library_name="transformers", base_model=_base_model(flags, model), datasets=datasets or None,
        pipeline_tag=pipelines[0],
        tags=["custom_code", "sentence-transformers", "spacy", "multi-task", "feature-extraction",
              *sorted(set(pipelines))],
        model_name="multi-task sentence transformer",
        # dataset_config = the task's title: the Hub groups a card's results by task type, dataset and config, so
        # two classification tasks on one dataset stay two entries
        eval_results=[EvalResult(task_type=t, task_name=tn, dataset_type=dt, dataset_name=dn, dataset_split=sp,
                                 dataset_config=tn, metric_type=mt, metric_name=mn, metric_value=round(float(v), 6))
                      for t, tn, dt, dn, sp, mt, mn, v in rows] or None)


def _reads(model):
    """What the heads read: the shared encoder's outputs, or (task_layers) each task's own top layers."""
    enc = model.encoder
    start = f"The encoder is a sentence transformer ({enc.pooling} pooling, {enc.max_length} wordpieces): its sentence " \
            "embedding is what `encode()` returns"
    if not getattr(model, "task_layers", 0):
        return (f"{start} and what the sentence heads read; tagging heads read its token embeddings. `predict` runs "
                "the encoder once per text for every head.")
    k = model.task_layers
    return (f"{start}. Each task has its own copy of the encoder's top {k} layer{'s' if k > 1 else ''} (task layers): "
            f"`predict` runs the shared lower layers once per text, then each task's own top layers and its head "
            f"(sentence heads read their layers' pooled output, tagging heads their token outputs).")


def _as_given(model):
    """The one place the loaders differ: the model's own encode()/predict() read spaCy's words (of the cleaned text),
    sentence-transformers the text as BERT's tokenizer splits it."""
    cleaned = ("undo AG News escapes (`\" #39;s\"` -> `\"'s\"`, `\"AT amp;T\"` -> `\"AT&T\"`) and "
               if getattr(model, "clean", False) else "")
    return (f"`predict` and `encode` first {cleaned}split the text into spaCy's words, as training did; "
            "sentence-transformers embeds the text as given, as BERT's tokenizer splits it: the two agree closely on "
            "clean text, less where the splits differ (`\"won't\"`, `\"3m\"`).\n")


def _added_note(results):
    """Where tasks were added to a trained model (--from-model): each old task's test score before and after."""
    added = (results or {}).get("from_model")
    if not added:
        return ""
    lines = [f"| {t} | {v['metric']} | {v['before']:.4f} | {v['after']:.4f} | {v['after'] - v['before']:+.4f} |"
             for t, v in added["old_tasks"].items() if v.get("before") is not None and v.get("after") is not None]
    return (f"\nAdded to the trained model in `{public(added['path'], results.get('flags'))}`: {', '.join(added['new_tasks'])}. That model's "
            "tasks were distilled from it meanwhile; their test scores before and after:\n\n"
            "| task | metric | before | after | change |\n|---|---|---|---|---|\n" + "\n".join(lines) + "\n")


def _distilled(teacher, flags=None):
    """The sentence saying which teacher a student was distilled from (results.json's `teacher`), or ""."""
    if not teacher:
        return ""
    scores = teacher.get("results") or {}
    said = f" (its test accuracy {scores['accuracy']:.4f})" if scores.get("accuracy") is not None else ""
    return (f" A {teacher['student_layers']}-layer student distilled from the {teacher['layers']}-layer model in "
            f"`{public(teacher['path'], flags)}`{said}: it started as that model's layers "
            f"{', '.join(map(str, teacher['kept_layers']))} and heads, and learned from its outputs.")


def _task_teachers(results):
    """The sentence naming each task's teacher (results.json's `teachers`, --teachers), or ""."""
    teachers = (results or {}).get("teachers")
    if not teachers:
        return ""
    flags = (results or {}).get("flags") or {}
    schedule = ", its weight annealed to 0 over training" if flags.get("distil_schedule") == "anneal" else ""
    parts = []
    for name, t in teachers.items():
        score = next((f" ({k} {t[k]:.4f})" for k in ("accuracy", "f1", "micro_f1") if t.get(k) is not None), "")
        parts.append(f"{name} from `{public(t['path'], flags)}`{score}")
    return f" Each task also learned its teacher's outputs{schedule}: {'; '.join(parts)}."


def write_model_card(model_dir, model, results=None, conll=None):
    """Write (or rewrite) model_dir/README.md atomically (with the fast export's measurements where model_dir has a
    fast/ folder); returns its path."""
    fast_config = os.path.join(os.fspath(model_dir), "fast", "fast_config.json")
    fast = None
    if os.path.isfile(fast_config):
        with open(fast_config) as f:
            fast = json.load(f)
    path = os.path.join(os.fspath(model_dir), CARD_NAME)
    write_text_atomic(path, str(build_model_card(model, results, conll, fast)))
    return path
