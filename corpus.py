"""A corpus, not a file: prediction and spaCy silver labelling over a folder of shards on Ray Data, resumable, each
input row in the output exactly once.

    python main.py --predict-dir corpus/ --output preds/    # per input shard, preds/<shard>.parquet: shard, row, one column per task
    python main.py --label-dir corpus/ --output silver/     # per input shard: words, word_starts, ner_tags (spaCy)
    run_corpus("predict", "corpus/*.parquet", "preds/", model_dir="outputs/default/model")   # the same from Python

Input: a folder (searched recursively) or a glob of shards, each in a format texts_and_tables reads (.parquet,
.csv, .tsv, .json, .jsonl, .txt: the --text-column field, a text a line for .txt). Output: one parquet
file per input shard, named after the shard's path below the input folder ('a/b.csv' -> 'a__b.csv.parquet',
'p.parquet' -> 'p.parquet'); its rows are the shard's rows in order:
    shard   the input shard's name below the input folder      row    the record's number in it, from 1 (read_texts)
    <id>    the --id-column's value, where one is named          error  None, or why the row has no output
  predict: one column per task, predict()'s output (classification struct label/score, multilabel struct
           labels/scores, tagging a list of entities text/type/start/end); null on an error row.
  label:   <text column>, words, word_starts, ner_tags (create_ner_dataset's columns, so --tasks NAME=tagging:DIR and
           --dataset FILES read them), and --label-column where the shard has it; an empty text is kept (zero words).
The unit of work, of retry and of resume is the shard: Ray Data maps the list of shards not yet done over a pool of
actors (map_batches, an ActorPoolStrategy; each actor loads the model or spaCy once), and an actor streams its shard
in --chunk-size rows, writing row groups to a temp file that is renamed to the shard's output when the shard is done
(atomic_io.open_atomic). The output's parquet metadata records the input shard's size and mtime, the row count and
the settings; a shard counts as done only when its output exists and all of that matches, so a re-run skips done
shards and redoes the rest. A killed actor is restarted by Ray and its shard run again from the start (Ray Data's
max_restarts / max_task_retries default to unlimited for actor pools): a row is written once or, if its shard's
output was not renamed yet, not at all, never twice. Each attempt at a shard leaves a mark in
<output>/.corpus-attempts/, from which the run reports what was retried. Split a corpus into at least as many shards
as actors (more balance better); a shard's rows are not spread over actors.

Ray is imported only here, and only when a run starts: importing this module loads neither Ray, nor a model, nor
spaCy. A local Ray is started in-process unless --ray-address / RAY_ADDRESS names a cluster (docs/scaling.md).
"""
import glob
import hashlib
import importlib.util
import json
import os
import resource
import shutil
import time
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
import torch

import fast_model
from atomic_io import kill_point, open_atomic
from batch_prediction import predict_chunk
from create_ner_dataset import label_texts, load_spacy, resolve_spacy_model, spacy_model_version
from errors import InputError, ProjectError
from fast_model import FAST_DIR
from multi_task_sentence_transformer import MultiTaskSentenceTransformer, missing_saved_parts
from texts_and_tables import TEXT_FORMATS, is_unreadable, read_texts

META_KEY = "mtst_corpus"           # the output's parquet key-value metadata: the completeness record
ATTEMPTS_DIR = ".corpus-attempts"  # one mark per attempt at a shard: <output>/.corpus-attempts/<shard output>@<pid>
RAY_INSTALL_HINT = "pip install 'ray[data]==2.60.0'"
ROOT = os.path.dirname(os.path.abspath(__file__))
MODES = ("predict", "label")
COLUMNS = ("shard", "row", "error")  # names a task or an id column may not take (predict); label adds its own
LABEL_COLUMNS = ("words", "word_starts", "ner_tags")


class CorpusError(ProjectError, RuntimeError):
    """A corpus run could not finish (a shard failed for a reason other than one of its rows)."""


class Shard(NamedTuple):
    path: str    # the input file
    name: str    # its path below the input folder (the output's `shard` column)
    output: str  # its output parquet file


# ------------------------------------------------------------------------------------------------------ shards
def list_shards(source, output_dir):
    """The input shards of `source` (a folder, searched recursively, or a glob pattern) in name order, as Shards whose
    output lies in output_dir. InputError when there is none, or two map to one output name."""
    source = os.fspath(source)
    if os.path.isdir(source):
        base = source
        paths = [os.path.join(d, f) for d, _, files in os.walk(source) for f in files]
    else:
        paths = glob.glob(source, recursive=True)
        base = os.path.dirname(source.split("*")[0].split("?")[0].split("[")[0]) or "."
        if len(paths) == 1 and paths[0] == source:
            base = os.path.dirname(source) or "."
    output_dir = os.path.abspath(output_dir)
    paths = [p for p in paths if os.path.isfile(p) and os.path.splitext(p)[1].lower() in TEXT_FORMATS
             and not os.path.basename(p).startswith(".")
             and not os.path.abspath(p).startswith(output_dir + os.sep)]
    if not paths:
        raise InputError(f"no shard in {source} (files ending in {', '.join(TEXT_FORMATS)}); point it at a folder of "
                         "shards or a glob such as 'corpus/*.parquet'")
    shards, seen = [], {}
    for path in sorted(paths):
        name = os.path.relpath(path, base).replace(os.sep, "/")
        out = name.replace("/", "__") + ("" if name.lower().endswith(".parquet") else ".parquet")
        if out in seen:
            raise InputError(f"{seen[out]} and {path} would both write {out}; rename one of them")
        seen[out] = path
        shards.append(Shard(os.path.abspath(path), name, os.path.join(output_dir, out)))
    return shards


def shard_stamp(path):
    """What identifies an input shard's content cheaply: its size and modification time."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def settings_key(settings):
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def read_record(output):
    """(the completeness record in an output shard's metadata, its row count), or None when unreadable."""
    try:
        metadata = pq.read_metadata(output)
        return json.loads(metadata.metadata[META_KEY.encode()]), metadata.num_rows
    except Exception:  # missing, torn (cannot be: renamed whole), foreign: not done
        return None


def is_done(shard, settings):
    """True when the shard's output exists, was written from the shard as it is now (size, mtime), under these
    settings, and holds as many rows as the shard had."""
    found = read_record(shard.output)
    if found is None:
        return False
    record, rows = found
    return (record.get("source") == shard_stamp(shard.path) and record.get("settings") == settings_key(settings)
            and record.get("rows") == rows)


# ------------------------------------------------------------------------------------------------------ checks
def ray_available():
    return importlib.util.find_spec("ray") is not None


def corpus_problems(mode, source, output, model_dir=None, actors=0, threads_per_actor=0, id_column="",
                    text_column="text"):
    """[message] for a --predict-dir / --label-dir run, found before Ray starts and before anything is written."""
    problems = []
    if not ray_available():
        problems.append(f"--{mode}-dir runs on Ray Data, which is not installed: {RAY_INSTALL_HINT}")
    try:
        list_shards(source, output or ".")
    except InputError as e:
        problems.append(f"--{mode}-dir: {e}")
    if output and os.path.exists(output) and not os.path.isdir(output):
        problems.append(f"--output {output} is a file; --{mode}-dir writes a folder of parquet shards there")
    if mode == "predict" and model_dir is not None:
        missing = missing_saved_parts(model_dir)
        if missing:
            problems.append(f"--model-dir: {model_dir} is not a saved model folder (no {', '.join(missing)}); point "
                            "it at <output-dir>/model of a training run or an --export-fast folder")
    if actors < 0:
        problems.append("--actors must be >= 0 (0 = one per --threads-per-actor CPUs)")
    if threads_per_actor < 0:
        problems.append("--threads-per-actor must be >= 0 (0 = 1)")
    reserved = COLUMNS + (LABEL_COLUMNS + (text_column,) if mode == "label" else ())
    if id_column and id_column in reserved:
        problems.append(f"--id-column {id_column!r} is a column the output writes itself; name another")
    if id_column and id_column == text_column:
        problems.append("--id-column and --text-column name the same column; the id is another column")
    return problems


def corpus_mode(recipe, mode):
    """main.py's --predict-dir / --label-dir: run_corpus under the flags (a recipe.Recipe)."""
    s, d = recipe.serving, recipe.data
    run_corpus(mode, getattr(s, f"{mode}_dir"), s.corpus_output(mode), model_dir=s.model_path,
               text_column=s.text_column, id_column=s.id_column, label_column=d.label_column, actors=s.actors,
               threads_per_actor=s.threads_per_actor, chunk_size=s.chunk_size, spacy_model=d.spacy_model,
               dropped_types=d.dropped_types(), ner_types=d.ner_types, ray_address=s.ray_address or None,
               precision=s.mixed_precision)


# ------------------------------------------------------------------------------------------------------ workers
def _arrow_types(shard_path, columns):
    """{column: arrow type} of the extra columns carried: the input's own type for parquet, else string."""
    types = {c: pa.string() for c in columns}
    if shard_path.lower().endswith(".parquet"):
        schema = pq.read_schema(shard_path)
        types.update({c: schema.field(c).type for c in columns if c in schema.names})
    return types


def arrow_type(plain):
    """The pyarrow type of a task's output type in plain terms (Task.output_type): a type name, {field: type} for a
    record, [type] for a list."""
    if isinstance(plain, dict):
        return pa.struct([(name, arrow_type(t)) for name, t in plain.items()])
    if isinstance(plain, list):
        return pa.list_(arrow_type(plain[0]))
    return pa.type_for_alias(plain)


def _chunks(items, size):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _ShardWorker:
    """A Ray Data actor (map_batches) that turns each shard of its batches into its output file; subclasses load their
    model in setup() and turn a chunk of read_texts items into output rows in rows()."""

    def __init__(self, settings, output_dir, threads=1, chunk_size=1000, batch_size=32):
        torch.set_num_threads(max(1, threads))
        self.settings, self.output_dir = settings, output_dir
        self.threads, self.chunk_size, self.batch_size = max(1, threads), chunk_size, batch_size
        self.setup()

    def __call__(self, batch):
        out = {"name": [], "rows": [], "errors": [], "seconds": [], "pid": [], "peak_rss_mib": []}
        for path, name, output in zip(batch["path"], batch["name"], batch["output"]):
            start = time.perf_counter()
            rows, errors = self.write_shard(Shard(str(path), str(name), str(output)))
            out["name"].append(str(name))
            out["rows"].append(rows)
            out["errors"].append(errors)
            out["seconds"].append(time.perf_counter() - start)
            out["pid"].append(os.getpid())
            out["peak_rss_mib"].append(_peak_rss_mib())
        return out

    def extra_columns(self):
        return [c for c in (self.settings.get("id_column"), self.settings.get("label_column")) if c]

    def write_shard(self, shard):
        """Read, process and write one shard (its output renamed into place at the end); (rows, error rows)."""
        mark_attempt(self.output_dir, shard)
        stamp = shard_stamp(shard.path)
        extras = self.extra_columns()
        self.extra_types = _arrow_types(shard.path, extras)
        schema = self.schema(self.extra_types)
        rows = errors = 0
        with open_atomic(shard.output, "wb") as f:
            writer = pq.ParquetWriter(f, schema)
            items = read_texts(shard.path, self.settings["text_column"], extra_columns=extras)
            for chunk in _chunks(items, self.chunk_size):
                records = self.rows(shard.name, chunk)
                writer.write_table(pa.Table.from_pylist(records, schema=schema))
                rows += len(records)
                errors += sum(r["error"] is not None for r in records)
                kill_point("corpus")  # a test hook (MTST_KILL_AT=corpus:N): after each chunk written
            writer.add_key_value_metadata({META_KEY: json.dumps(
                {"source": stamp, "settings": settings_key(self.settings), "rows": rows, "errors": errors,
                 "shard": shard.name})})
            writer.close()
        return rows, errors

    def base_row(self, shard_name, item):
        row, _, error, values = item
        out = {"shard": shard_name, "row": row, "error": error}

        for c, kind in self.extra_types.items():  # a csv / jsonl shard's values as strings (JSON for a list or dict)
            v = values.get(c)
            out[c] = v if v is None or not pa.types.is_string(kind) or isinstance(v, str) else \
                json.dumps(v) if isinstance(v, (dict, list)) else str(v)
        return out


class Predictor(_ShardWorker):
    """predict() of a saved model over shards: an --export-fast folder through fast_model.py (ONNX Runtime, no torch
    model loaded) where the precision is auto or fast, else the PyTorch model."""

    def setup(self):
        folder = self.settings["model_dir"]
        if os.path.isdir(os.path.join(folder, FAST_DIR)) and self.settings["precision"] in ("auto", "fast"):
            self.model = fast_model.load(folder, threads=self.threads)
        else:
            self.model = MultiTaskSentenceTransformer.from_pretrained(folder)

    def schema(self, extra_types):
        fields = [("shard", pa.string()), ("row", pa.int64())] + list(extra_types.items()) + [("error", pa.string())]
        return pa.schema(fields + [(n, arrow_type(t.output_type())) for n, t in self.model.tasks.items()])

    def rows(self, shard_name, chunk):
        records = predict_chunk(self.model, chunk, self.batch_size, self.settings["precision"])
        out = []
        for item, record in zip(chunk, records):
            row = self.base_row(shard_name, item)
            row["error"] = record.get("error")
            row.update({n: record.get(n) for n in self.model.tasks})
            out.append(row)
        return out


class Labeller(_ShardWorker):
    """spaCy's silver NER (create_ner_dataset.label_texts) over shards: words, word starts, BIO tags per row."""

    def setup(self):
        self.nlp = load_spacy(self.settings["spacy_model"])

    def schema(self, extra_types):
        text = self.settings["text_column"]
        return pa.schema([("shard", pa.string()), ("row", pa.int64())] + list(extra_types.items()) +
                         [("error", pa.string()), (text, pa.string()), ("words", pa.list_(pa.string())),
                          ("word_starts", pa.list_(pa.int32())), ("ner_tags", pa.list_(pa.string()))])

    def rows(self, shard_name, chunk):
        out = [self.base_row(shard_name, item) for item in chunk]
        good = []
        for row, (_, text, error, _) in zip(out, chunk):
            if error is None and is_unreadable(text):
                row["error"] = "not valid UTF-8 (or a lone surrogate escape)"
            elif error is None:
                good.append((row, text))
        dropped = self.settings["dropped_types"]
        labelled = label_texts([t for _, t in good], self.nlp, None if dropped is None else tuple(dropped),
                               ner_types=self.settings["ner_types"])
        for (row, text), (words, starts, tags) in zip(good, labelled):
            row.update({self.settings["text_column"]: text, "words": words, "word_starts": starts, "ner_tags": tags})
        return out


WORKERS = {"predict": Predictor, "label": Labeller}


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mark_attempt(output_dir, shard):
    """Leave a mark that this process started on this shard (the driver counts them: more than one is a retry)."""
    folder = os.path.join(output_dir, ATTEMPTS_DIR)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{os.path.basename(shard.output)}@{os.getpid()}"), "w") as f:
        f.write(shard.name)


def attempts(output_dir):
    """{output file name: [pids of the processes that started on it]} from the marks of this run."""
    folder = os.path.join(output_dir, ATTEMPTS_DIR)
    out = {}
    for mark in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        name, _, pid = mark.rpartition("@")
        out.setdefault(name, []).append(int(pid))
    return out


# ------------------------------------------------------------------------------------------------------ the run
def ray_runtime_env():
    """What every Ray worker needs to import this project: its folder on PYTHONPATH (on a cluster: the same path on
    every node), and the offline / tokenizer settings of this process."""
    env = {"PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
           "TOKENIZERS_PARALLELISM": "false"}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MTST_CPU_BF16", "MTST_KILL_AT"):
        if name in os.environ:
            env[name] = os.environ[name]
    return {"env_vars": env}


def start_ray(address=None, num_cpus=None):
    """Connect to the Ray cluster at address (or $RAY_ADDRESS), else start a local Ray in this process; returns
    whether this call started it (the caller then shuts it down)."""
    import ray  # Ray: heavy, only for corpus runs

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {} if address else {"num_cpus": num_cpus or os.cpu_count(), "include_dashboard": False}
    ray.init(address=address, runtime_env=ray_runtime_env(), log_to_driver=True, configure_logging=True,
             logging_level="warning", **kwargs)
    return True


def run_settings(mode, model_dir=None, text_column="text", id_column="", label_column="", precision="auto",
                 spacy_model="en_core_web_sm", dropped_types=None, ner_types="spacy"):
    """What a shard's output depends on besides the shard (recorded in it: another setting redoes the shard)."""
    settings = {"mode": mode, "text_column": text_column, "id_column": id_column or None}
    if mode == "predict":
        model_dir = os.path.abspath(model_dir)
        stamps = {f: shard_stamp(os.path.join(model_dir, f))["mtime_ns"]
                  for f in ("config.json", "heads.safetensors", "fast/model.onnx")
                  if os.path.exists(os.path.join(model_dir, f))}
        settings.update(model_dir=model_dir, model_files=stamps, precision=precision)
    else:
        resolved = resolve_spacy_model(spacy_model)
        settings.update(spacy_model=spacy_model, spacy_model_version=spacy_model_version(resolved),
                        dropped_types=None if dropped_types is None else sorted(dropped_types), ner_types=ner_types,
                        label_column=label_column or None)
    return settings


def run_corpus(mode, source, output, *, model_dir=None, text_column="text", id_column="", label_column="label",
               actors=0, threads_per_actor=0, batch_size=32, chunk_size=1000, precision="auto",
               spacy_model="en_core_web_sm", dropped_types=None, ner_types="spacy", ray_address=None,
               show_progress=True, log=print):
    """Predict (mode 'predict', model_dir) or silver-label (mode 'label') every shard of source into output, one
    parquet file per shard, skipping shards already done. Returns a summary: shards, already_done, rows, errors,
    seconds, retried ({output name: attempts} for shards that took more than one), actors, threads_per_actor,
    per_shard (each shard's rows, seconds, pid and peak RSS of its actor). A local Ray is started (and shut down)
    unless one is running in this process or ray_address / $RAY_ADDRESS names a cluster."""
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    output = os.path.abspath(output)
    shards = list_shards(source, output)
    settings = run_settings(mode, model_dir, text_column, id_column, label_column if mode == "label" else "",
                            precision, spacy_model, dropped_types, ner_types)
    todo = [s for s in shards if not is_done(s, settings)]
    summary = {"shards": len(shards), "already_done": len(shards) - len(todo), "rows": 0, "errors": 0,
               "seconds": 0.0, "retried": {}, "actors": 0, "threads_per_actor": 0, "per_shard": []}
    if not todo:
        log(f"all {len(shards)} shards of {source} are already done in {output}; nothing to do")
        return summary
    if summary["already_done"]:
        log(f"{summary['already_done']} of {len(shards)} shards already done in {output}; doing the other {len(todo)}")
    os.makedirs(output, exist_ok=True)
    shutil.rmtree(os.path.join(output, ATTEMPTS_DIR), ignore_errors=True)
    threads = threads_per_actor or 1
    start = time.perf_counter()
    started = start_ray(ray_address, num_cpus=max(os.cpu_count(), (actors or 1) * threads))
    try:
        import ray  # Ray: heavy, only for corpus runs

        if not actors:
            actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        actors = min(actors, len(todo))
        summary.update(actors=actors, threads_per_actor=threads)
        log(f"{mode}: {len(todo)} shards on {actors} Ray actors x {threads} threads into {output}")
        for result in _map_shards(WORKERS[mode], todo, settings, output, actors, threads, chunk_size, batch_size,
                                  show_progress):
            summary["rows"] += result["rows"]
            summary["errors"] += result["errors"]
            summary["per_shard"].append(result)
    finally:
        if started:
            import ray  # Ray: heavy, only for corpus runs

            ray.shutdown()
    summary["seconds"] = time.perf_counter() - start
    tried = attempts(output)
    summary["retried"] = {name: len(pids) for name, pids in tried.items() if len(pids) > 1}
    unfinished = [s.name for s in todo if not is_done(s, settings)]
    if unfinished:
        raise CorpusError(f"{len(unfinished)} shard(s) have no complete output after the run ({unfinished[0]}, ...); "
                          "run the same command again to finish them")
    shutil.rmtree(os.path.join(output, ATTEMPTS_DIR), ignore_errors=True)
    log(done_line(summary, len(todo), output))
    return summary


def done_line(summary, shards, output):
    """A finished run's closing line: rows, speed and the shards that were retried."""
    retried = summary["retried"]
    return (f"{summary['rows']} rows of {shards} shards -> {output} ({summary['errors']} with an error record) in "
            f"{summary['seconds']:.1f} s, {summary['rows'] / max(summary['seconds'], 1e-9):.0f} rows/s; retried: " +
            (", ".join(f"{name} ({n} attempts: a worker died)" for name, n in sorted(retried.items())) if retried
             else "none"))


def _map_shards(worker, todo, settings, output, actors, threads, chunk_size, batch_size, show_progress):
    """Yield each shard's summary row as Ray Data's actor pool finishes it."""
    import ray  # Ray: heavy, only for corpus runs
    from ray.data import ActorPoolStrategy, DataContext  # Ray: heavy, only for corpus runs

    context = DataContext.get_current()
    context.enable_progress_bars = show_progress
    context.print_on_execution_start = False
    items = [{"path": s.path, "name": s.name, "output": s.output} for s in todo]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    results = dataset.map_batches(
        worker, batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=actors), num_cpus=threads,
        fn_constructor_kwargs=dict(settings=settings, output_dir=output, threads=threads, chunk_size=chunk_size,
                                   batch_size=batch_size))
    for row in results.iter_rows():
        yield {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}

