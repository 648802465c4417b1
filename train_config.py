"""TrainConfig: every setting of a training run in one dataclass, checked once when it is made (problems()).
Its defaults are main.py's flags (tests/test_defaults.py holds them equal), so TrainConfig() trains the default run.

    config = TrainConfig(epochs=3, batch_size=32, task_weights={"topic": 1, "ner": 3}, output_dir="outputs/run")

main.py's recipe builds one from the flags and reports problems() under the flags' names; the trainer
(trainer_sentence_transformer.MultiTaskTrainer) reads it and never changes it. Nothing here loads a model or data.
"""
import math
from dataclasses import MISSING, asdict, dataclass, field, fields

from batching import SAMPLINGS
from errors import InputError
from precision import MIXED_PRECISIONS

LOSS_WEIGHTINGS = ("fixed", "uncertainty")
DISTIL_SCHEDULES = ("constant", "anneal")
REPORT_TO = ("none", "tensorboard")  # experiment trackers (accelerate's); metrics.jsonl and the plots are always written


@dataclass
class TrainConfig:
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-4                 # encoder learning rate
    head_lr: float = 1e-3            # heads' learning rate (None = lr)
    weight_decay: float = 0.01       # not applied to biases and LayerNorm weights
    warmup_ratio: float = 0.06       # linear warm-up over this fraction of steps, then linear decay to 0
    max_grad_norm: float = 1.0       # gradient clipping (0 = off)
    task_weights: dict = field(default_factory=lambda: {"ner": 5.0})  # {task: loss weight}; others 1 (0 freezes)
    sampling: str = "proportional"   # which rows an epoch sees: proportional | temperature | round-robin (by row group)
    sampling_temperature: float = 2.0  # T of "temperature": group g's share of an epoch ~ n_g^(1/T)
    select_on: str = "mean"          # model selection on validation: mean of the trained tasks' main scores, or a task
    loss_weighting: str = "fixed"    # fixed (task_weights) | uncertainty (learned, started at task_weights)
    keep_embedding: float = 3.0      # weight of the distillation towards the starting encoder's sentence embeddings
    distil_weight: float = 0.5       # with a teacher: weight a of its softened topic / tag distributions (tasks: 1 - a)
    distil_temperature: float = 2.0  # softening temperature T of those distributions
    distil_schedule: str = "constant"  # constant a | anneal: a falls linearly from distil_weight to 0 over training
    freeze_encoder: bool = False     # the whole encoder (embeddings + all layers)
    freeze_layers: int = 0           # the encoder's embeddings plus its lowest N layers
    freeze_tasks: tuple = ()         # task names whose heads stay as they are (no loss, no gradient)
    feature_cache: bool = True       # with a frozen encoder, compute its outputs once and train heads on the cache
    mixed_precision: str = "auto"    # fp32 ("no": the same) | bf16 | fp16 (CUDA only) | auto (bf16 where fast)
    seed: int = 42
    output_dir: str = "outputs/run"
    save_every_steps: int = 0        # also checkpoint mid-epoch every N steps (0 = off) ...
    save_every_minutes: float = 5.0  # ... or every N minutes, whichever comes first (0 = off); epoch ends always
    log_every_steps: int = 20        # host sync for losses / non-finite check every N steps (and before saves)
    resume: bool = True              # continue from <output_dir>/checkpoints/last when it exists
    eval_only: bool = False
    eval_batch_size: int = 64
    bucket_batches: int = 50         # length grouping: sort within buckets of this many batches, then shuffle
    show_progress: bool = True
    plots: bool = True
    report_to: str = "none"          # none | tensorboard (accelerate's tracker, event files in <output_dir>/tensorboard)

    def __post_init__(self):
        problems = self.problems(asdict(self))
        if problems:
            raise InputError("TrainConfig: " + "; ".join(f"{name} {message}" for name, message in problems) + ".")

    @staticmethod
    def problems(settings):
        """[(field, what is wrong)] for TrainConfig settings (a dict of fields; missing ones take their defaults):
        the one place these values are checked. main.py reports them under the flags' names (--batch-size ...)."""
        defaults = {f.name: f.default_factory() if f.default is MISSING else f.default for f in fields(TrainConfig)}
        c = {**defaults, **settings}

        def number(x):
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        def integer(x):
            return isinstance(x, int) and not isinstance(x, bool)

        checks = [
            ("epochs", integer(c["epochs"]) and c["epochs"] >= (0 if c["eval_only"] else 1),
             "must be an integer >= 1 (0 only with eval_only=True)"),
            ("batch_size", integer(c["batch_size"]) and c["batch_size"] >= 1, "must be >= 1"),
            ("lr", number(c["lr"]) and c["lr"] > 0, "must be > 0"),
            ("head_lr", c["head_lr"] is None or number(c["head_lr"]) and c["head_lr"] > 0, "must be > 0"),
            ("warmup_ratio", number(c["warmup_ratio"]) and 0 <= c["warmup_ratio"] < 1, "must be in [0, 1)"),
            ("task_weights", c["task_weights"] is None or isinstance(c["task_weights"], dict) and all(
                isinstance(k, str) and number(w) and w >= 0 for k, w in c["task_weights"].items()),
             "must map task names to numbers >= 0 (e.g. {'topic': 1, 'ner': 3})"),
            ("freeze_tasks", isinstance(c["freeze_tasks"], (tuple, list)) and all(
                isinstance(k, str) for k in c["freeze_tasks"]), "must be a list of task names"),
            ("sampling", c["sampling"] in SAMPLINGS, f"must be one of {', '.join(SAMPLINGS)}, got {c['sampling']!r}"),
            ("sampling_temperature", number(c["sampling_temperature"]) and c["sampling_temperature"] > 0,
             "must be > 0"),
            ("select_on", isinstance(c["select_on"], str) and c["select_on"] != "", "must be 'mean' or a task name"),
            ("loss_weighting", c["loss_weighting"] in LOSS_WEIGHTINGS,
             f"must be one of {', '.join(LOSS_WEIGHTINGS)}, got {c['loss_weighting']!r}"),
            ("keep_embedding", number(c["keep_embedding"]) and c["keep_embedding"] >= 0,
             f"must be a number >= 0 (0 = off), got {c['keep_embedding']!r}"),
            ("distil_weight", number(c["distil_weight"]) and 0 <= c["distil_weight"] <= 1,
             f"must be in [0, 1] (0 = task losses only), got {c['distil_weight']!r}"),
            ("distil_temperature", number(c["distil_temperature"]) and c["distil_temperature"] > 0,
             f"must be > 0, got {c['distil_temperature']!r}"),
            ("distil_schedule", c["distil_schedule"] in DISTIL_SCHEDULES,
             f"must be one of {', '.join(DISTIL_SCHEDULES)}, got {c['distil_schedule']!r}"),
            ("freeze_layers", integer(c["freeze_layers"]) and c["freeze_layers"] >= 0, "must be >= 0"),
            ("mixed_precision", c["mixed_precision"] in MIXED_PRECISIONS,
             f"must be one of {', '.join(MIXED_PRECISIONS)}, got {c['mixed_precision']!r}"),
            ("save_every_steps", number(c["save_every_steps"]) and c["save_every_steps"] >= 0, "must be >= 0"),
            ("save_every_minutes", number(c["save_every_minutes"]) and c["save_every_minutes"] >= 0, "must be >= 0"),
            ("log_every_steps", integer(c["log_every_steps"]) and c["log_every_steps"] >= 1, "must be >= 1"),
            ("report_to", c["report_to"] in REPORT_TO,
             f"must be one of {', '.join(REPORT_TO)}, got {c['report_to']!r}"),
        ]
        return [(name, message) for name, ok, message in checks if not ok]




def task_weight(config, name):
    return (config.task_weights or {}).get(name, 1.0)

