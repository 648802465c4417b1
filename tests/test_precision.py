"""Precision: any number of trainers in one process, each training in the precision it asked for, in any order, on
any CPU (the bf16 detection is patched both ways), and inference after training in the precision it asks for."""
import pytest
import torch
from helpers import TOY_ROWS, quiet_config, tiny_multitask

import precision


class AutocastProbe:
    """Records, on every forward of the model's topic head, whether autocast was on and the dtype its Linear gave."""

    def __init__(self, model):
        self.seen = []
        linear = model.heads["topic"][1]
        linear.register_forward_hook(lambda _m, _args, out: self.seen.append(
            (torch.is_autocast_enabled("cpu"), out.dtype)))

    def dtypes(self):
        return {dtype for _, dtype in self.seen}

    def clear(self):
        self.seen.clear()


EXPECTED_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16}


@pytest.mark.parametrize("cpu_bf16", [True, False], ids=["cpu-with-bf16", "cpu-without-bf16"])
def test_four_trainers_in_one_process_each_train_in_their_own_precision(monkeypatch, tmp_path, cpu_bf16):
    from trainer_sentence_transformer import MultiTaskTrainer

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: cpu_bf16)
    auto = "bf16" if cpu_bf16 else "fp32"
    for k, asked in enumerate(("auto", "no", "bf16", "auto")):
        model = tiny_multitask(seed=k)
        probe = AutocastProbe(model)
        trainer = MultiTaskTrainer(model, TOY_ROWS, None, quiet_config(tmp_path / str(k), mixed_precision=asked))
        expected = auto if asked == "auto" else {"no": "fp32"}.get(asked, asked)  # "no" is fp32's other name
        assert trainer.precision == expected
        trainer.train()
        train_dtypes = {dtype for on, dtype in probe.seen}
        assert train_dtypes == {EXPECTED_DTYPE[expected]}, (asked, train_dtypes)
        assert all(on == (expected == "bf16") for on, _ in probe.seen)
        # evaluation after training also runs in the trainer's precision
        probe.clear()
        trainer.evaluate(TOY_ROWS)
        assert probe.dtypes() == {EXPECTED_DTYPE[expected]}
        # ... and inference afterwards in the precision the call asks for, whatever training used
        probe.clear()
        model.predict(["Apple opens a store in Paris."], precision="fp32")
        assert probe.seen and probe.seen[-1] == (False, torch.float32)
        probe.clear()
        model.predict(["Apple opens a store in Paris."], precision="bf16")
        assert probe.seen[-1] == (True, torch.bfloat16)


def test_bf16_calls_of_many_batches_run_on_weights_cast_for_the_call(tmp_path, monkeypatch):
    """On a CPU with AMX, predict / encode in bf16 of more than CAST_ONCE_BATCHES batches run the model as a bf16
    copy of it would (every weight in bf16, no autocast), on weights cast for that call: the model stays fp32, and a
    model trained further in place (a fused optimizer leaves tensor versions alone) or given other weights is served
    its current ones. A call of fewer batches runs under autocast."""
    import copy

    from trainer_sentence_transformer import MultiTaskTrainer

    monkeypatch.setenv(precision.CPU_AMX_ENV, "1")  # as on a CPU with AMX, whatever this one has

    texts = ["Apple opens a store in Paris.", "Manchester United beat Chelsea 2-1.", "Oil prices rose.",
             "The United Nations met in New York."]
    model = tiny_multitask()
    many = len(texts) // (precision.CAST_ONCE_BATCHES + 1)  # a batch size that makes more batches than that

    def bf16(net, batch_size):
        asked = "bf16" if net is model else "fp32"  # the bf16 copy runs on its own (bf16) weights, no autocast
        return (net.encode(texts, precision=asked, convert_to="tensor", batch_size=batch_size),
                [p["topic"]["score"] for p in net.predict(texts, precision=asked, batch_size=batch_size)])

    def as_a_bf16_copy(batch_size=many):
        want = bf16(copy.deepcopy(model).to(torch.bfloat16), batch_size)
        got = bf16(model, batch_size)
        return torch.equal(got[0], want[0]) and got[1] == want[1]

    assert as_a_bf16_copy()
    assert not as_a_bf16_copy(batch_size=len(texts))  # one batch: autocast, not the bf16 copy
    probe = AutocastProbe(model)
    model.predict(texts, precision="bf16", batch_size=many)
    assert probe.seen and set(probe.seen) == {(False, torch.bfloat16)}
    probe.clear()
    model.predict(texts, precision="bf16")
    assert set(probe.seen) == {(True, torch.bfloat16)}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the model itself is left in fp32
    MultiTaskTrainer(model, TOY_ROWS, None, quiet_config(tmp_path, mixed_precision="no")).train()  # in place
    assert as_a_bf16_copy()
    model.load_state_dict(tiny_multitask(seed=3).state_dict())
    assert as_a_bf16_copy()


@pytest.mark.parametrize("amx", ["1", "0"])
def test_how_bf16_runs_follows_the_cpu_s_amx(monkeypatch, amx):
    """bf16 inference of many batches: weights cast once on a CPU with AMX (where it measured faster), autocast on one
    without (AVX512-BF16 alone, where autocast measured faster); MTST_CPU_AMX forces either kind on any machine."""
    monkeypatch.setenv(precision.CPU_AMX_ENV, amx)
    model = tiny_multitask()
    texts = ["Apple opens a store in Paris.", "Oil prices rose.", "The United Nations met in New York."]
    assert precision.casts_bf16_weights("cpu") == (amx == "1") and not precision.casts_bf16_weights("meta")
    with torch.no_grad():
        assert bool(precision.inference_weights(model, "bf16", len(texts), 1)) == (amx == "1")
    probe = AutocastProbe(model)
    model.predict(texts, precision="bf16", batch_size=1)
    assert set(probe.seen) == ({(False, torch.bfloat16)} if amx == "1" else {(True, torch.bfloat16)})
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_cpu_amx_detection_reads_cpuinfo_flags_and_a_bad_override_names_the_values(tmp_path, monkeypatch):
    monkeypatch.delenv(precision.CPU_AMX_ENV, raising=False)
    amx, avx512_bf16 = tmp_path / "a", tmp_path / "b"
    amx.write_text("flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    avx512_bf16.write_text("vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")  # EPYC-bf16
    assert precision.cpu_has_amx(str(amx)) and not precision.cpu_has_amx(str(avx512_bf16))
    assert precision.cpu_has_fast_bf16(str(avx512_bf16)) and not precision.cpu_has_amx(str(tmp_path / "missing"))
    monkeypatch.setenv(precision.CPU_AMX_ENV, "sometimes")
    with pytest.raises(ValueError, match="MTST_CPU_AMX='sometimes': set it to 1 .* or 0"):
        precision.cpu_has_amx()


def test_a_trainer_after_inference_in_another_precision(monkeypatch, tmp_path):
    from trainer_sentence_transformer import MultiTaskTrainer

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    model = tiny_multitask()
    model.encode(["A text."], precision="bf16")
    model.predict(["A text."])  # auto = bf16 here
    probe = AutocastProbe(model)
    MultiTaskTrainer(model, TOY_ROWS, None, quiet_config(tmp_path, mixed_precision="no")).train()
    assert probe.dtypes() == {torch.float32}


def test_an_accelerator_made_elsewhere_in_bf16_does_not_impose_its_precision(tmp_path):
    """A user's own Accelerator(mixed_precision='bf16') earlier in the process: a trainer asking for 'no' still
    trains in fp32 (accelerate's state cannot change, so the trainer must not rely on it)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from trainer_sentence_transformer import MultiTaskTrainer

    AcceleratorState._reset_state()  # a fresh process as far as accelerate is concerned
    try:
        Accelerator(mixed_precision="bf16", cpu=True)
        model = tiny_multitask()
        probe = AutocastProbe(model)
        trainer = MultiTaskTrainer(model, TOY_ROWS, None, quiet_config(tmp_path, mixed_precision="no"))
        trainer.train()
        assert probe.dtypes() == {torch.float32}
        assert not any(on for on, _ in probe.seen)
    finally:
        AcceleratorState._reset_state()


def test_fp16_on_the_cpu_is_refused_with_the_alternatives():
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid on a CUDA machine")
    with pytest.raises(ValueError, match="'bf16' or 'fp32'"):
        precision.resolve_mixed_precision("fp16")
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        precision.resolve_mixed_precision("fast")  # an inference-only precision
    assert precision.resolve_mixed_precision("fp32") == precision.resolve_mixed_precision("no") == "fp32"  # one name


def test_autocast_off_inside_an_enclosing_autocast():
    """fp32 means fp32 even when the caller sits inside a bf16 autocast."""
    linear = torch.nn.Linear(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with precision.autocast("fp32", "cpu"):
            assert linear(torch.ones(1, 4)).dtype == torch.float32
        with precision.autocast("bf16", "cpu"):
            assert linear(torch.ones(1, 4)).dtype == torch.bfloat16
