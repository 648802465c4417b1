"""Run by tests/test_distributed.py under torch.distributed.run (argv[1]: output folder): the loss turns NaN on process 1 only (its first step);
every process must stop with TrainingDiverged instead of waiting for process 1 in the next all-reduce."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import TOY_ROWS, tiny_multitask  # noqa: E402

from trainer_sentence_transformer import MultiTaskTrainer, TrainConfig, TrainingDiverged  # noqa: E402

rank = int(os.environ["RANK"])
model = tiny_multitask()
if rank == 1:
    forward = model.forward

    def nan_on_process_1(*args, **kwargs):
        out = forward(*args, **kwargs)
        if "ner" in out:  # the training forward (not the embedding targets computed before it)
            out["ner"] = out["ner"] * float("nan")
        return out

    model.forward = nan_on_process_1
config = TrainConfig(epochs=2, batch_size=8, output_dir=sys.argv[1], show_progress=False, plots=False,
                     resume=False, mixed_precision="no", log_every_steps=1)
try:
    MultiTaskTrainer(model, TOY_ROWS, None, config).train()
except TrainingDiverged as e:
    print(f"process {rank} stopped: {e}", flush=True)
    sys.exit(3)
print(f"process {rank} finished", flush=True)
