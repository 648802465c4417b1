"""Inference precision, the exported ONNX Runtime path (export_fast) and main.py --predict-file / --export-fast."""
import json
import os

import numpy as np
import pytest
import torch
from helpers import tiny_multitask

import batch_prediction
import main
import multi_task_sentence_transformer
import precision
import serving
import texts_and_tables
from multi_task_sentence_transformer import MultiTaskSentenceTransformer
from precision import cpu_has_fast_bf16, resolve_precision
from sentence_transformer import ModelLoadError

TEXTS = ["Apple opens a store in Paris, France.", "", "Barack Obama visits Berlin &amp; Oil hit  #36;50 a barrel",
         "word " * 400, "naïve café in 東京 😀"]


# ----------------------------------------------------------------------------------------------------------- precision
def test_precision_is_validated():
    model = tiny_multitask()
    for bad in ("fp8", "int8", None, "FP32"):
        with pytest.raises(ValueError, match="precision must be one of"):
            resolve_precision(bad, "cpu")
        with pytest.raises(ValueError, match="precision must be one of"):
            model.predict("a text", precision=bad)
        with pytest.raises(ValueError, match="precision must be one of"):
            model.encoder.encode("a text", precision=bad)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        model.predict("a text", precision="fp16")
    for call in (lambda: model.predict("a text", precision="fast"), lambda: model.encode([], precision="fast"),
                 lambda: model.predict_tags([], precision="fast")):
        with pytest.raises(ValueError, match="export_fast"):  # no fast model loaded: the message names the fix
            call()


@pytest.mark.parametrize("kind, fast", [("Xeon-AMX", True), ("EPYC-bf16", True), ("Xeon-bf16", False),
                                        ("Xeon", False), ("EPYC", False)])
def test_cpu_bf16_detection_keeps_bf16_where_it_was_measured_faster(tmp_path, monkeypatch, kind, fast):
    """bf16 only on the CPU kinds where it measured faster than fp32 (precision.FAST_BF16): AMX tiles, or an EPYC
    with avx512_bf16; an Intel Xeon with avx512_bf16 but no AMX ran it at 0.6x fp32."""
    from run_info import CPU_FLAGS

    monkeypatch.delenv(precision.CPU_BF16_ENV, raising=False)  # the flags alone decide
    vendor, flags = CPU_FLAGS[kind]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"vendor_id\t: {vendor}\nflags\t\t: fpu avx2 avx512f {' '.join(flags)}\n")
    assert cpu_has_fast_bf16(str(cpuinfo)) == fast
    assert not cpu_has_fast_bf16(str(tmp_path / "missing"))  # unreadable: assume no bf16


@pytest.mark.parametrize("forced", ["1", "0"])
def test_cpu_bf16_detection_can_be_forced(monkeypatch, tmp_path, forced):
    """MTST_CPU_BF16 makes `auto` resolve either way on any machine (how the suite covers both kinds of CPU)."""
    flags = tmp_path / "cpuinfo"
    flags.write_text("flags\t\t: fpu avx2 avx512_bf16\n" if forced == "0" else "flags\t\t: fpu avx2\n")
    monkeypatch.setenv(precision.CPU_BF16_ENV, forced)
    assert cpu_has_fast_bf16(str(flags)) == (forced == "1")
    assert resolve_precision("auto", "cpu") == ("bf16" if forced == "1" else "fp32")


def test_a_bad_cpu_bf16_override_names_the_values(monkeypatch):
    monkeypatch.setenv(precision.CPU_BF16_ENV, "maybe")
    with pytest.raises(ValueError, match="set it to 1 .* or 0"):
        cpu_has_fast_bf16()


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_auto_precision_follows_the_cpu(monkeypatch, fast_bf16):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast_bf16)
    expected = "bf16" if fast_bf16 else "fp32"
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("auto", "cpu", fast_available=True) == "fast"
    model = tiny_multitask()
    # auto really runs in the resolved precision: bf16 autocast changes the numbers, fp32 reproduces them exactly
    for auto, explicit in ((model.encoder.encode(TEXTS, precision="auto"), model.encoder.encode(TEXTS, precision=expected)),
                           (model.encode(TEXTS), model.encode(TEXTS, precision=expected))):
        assert np.array_equal(auto, explicit)
    fp32 = model.encode(TEXTS, precision="fp32")
    assert np.array_equal(model.encode(TEXTS), fp32) != fast_bf16
    scores = [p["topic"]["score"] for p in model.predict(TEXTS)]
    assert (scores == [p["topic"]["score"] for p in model.predict(TEXTS, precision="fp32")]) != fast_bf16


def test_this_machine_resolves_auto_from_its_own_kind(monkeypatch):
    from run_info import cpu_kind

    monkeypatch.delenv(precision.CPU_BF16_ENV, raising=False)
    expected = "bf16" if cpu_kind() in ("Xeon-AMX", "EPYC-bf16") else "fp32"
    assert resolve_precision("auto", "cpu") == expected


# ----------------------------------------------------------------------------------------------------------- export_fast
@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """A tiny random multi-task model and its fp32 (unquantised) export, loaded back."""
    model = tiny_multitask(seed=3)
    torch.nn.init.normal_(model.heads["ner"].shape_embedding.weight, std=0.5)  # make the word shapes matter
    path = tmp_path_factory.mktemp("fast") / "tiny_fast"
    model.export_fast(path, quantize="fp32")
    return model, MultiTaskSentenceTransformer.from_pretrained(path), path


def test_export_fast_round_trip_matches_torch(tiny_pair):
    model, fast, path = tiny_pair
    assert fast.fast is not None and fast.fast.config["outputs"] == ["topic", "ner", "sentence_embedding"]
    assert serving.output_names(fast) == fast.fast.config["outputs"]
    assert (path / "fast" / "model.onnx").is_file() and (path / "heads.safetensors").is_file()
    assert fast.fast.session.get_session_options().intra_op_num_threads == torch.get_num_threads()
    ref, got = model.predict(TEXTS, precision="fp32"), fast.predict(TEXTS)
    assert [p["topic"]["label"] for p in got] == [p["topic"]["label"] for p in ref]
    assert [p["ner"] for p in got] == [p["ner"] for p in ref]
    assert np.allclose([p["topic"]["score"] for p in got], [p["topic"]["score"] for p in ref], atol=1e-5)
    assert np.abs(fast.encode(TEXTS) - model.encode(TEXTS, precision="fp32")).max() < 1e-4
    words = [["NASA", "sends", "Schwarzenegger", "to", "Mars"], [], ["x"] * 300]
    assert fast.predict_tags(words) == model.predict_tags(words, precision="fp32")
    single = model.predict("single text", precision="fp32")["topic"]
    assert fast.predict("single text")["topic"] == pytest.approx(single, abs=1e-5)
    assert fast.encode("single text").shape == (32,) and fast.encode([]).shape == (0, 32)


def test_export_fuses_the_transformer_ops_and_keeps_the_outputs(tiny_pair, tmp_path):
    """ONNX Runtime's transformer optimizer fused every layer's attention and layer norms (the tiny model: 2 layers)
    and the fused graph computes what the unfused one does; a model loaded from a fast folder exports again."""
    model, fast, _ = tiny_pair
    fusions = fast.fast.config["fusions"]
    assert fusions["Attention"] == 2 and fusions["SkipLayerNormalization"] == 4, fusions
    assert fusions["EmbedLayerNormalization"] == 1, fusions
    plain = MultiTaskSentenceTransformer.from_pretrained(model.export_fast(tmp_path / "plain", fuse=False))
    assert plain.fast.config["fusions"] is None
    ids, mask, shapes = (torch.randint(1000, 20000, (3, 11)), torch.ones(3, 11, dtype=torch.long),
                         torch.randint(0, 5, (3, 11)))
    mask[1, 6:] = 0
    fused_out, plain_out = fast.fast.run(ids, mask, shapes), plain.fast.run(ids, mask, shapes)
    for name in fused_out:
        assert np.abs(fused_out[name] - plain_out[name]).max() < 1e-4, name
    again = MultiTaskSentenceTransformer.from_pretrained(fast.export_fast(tmp_path / "again", quantize="int8"))
    # int8: each layer's fused attention, its attention output and its two feed-forward MatMuls
    assert again.fast.config["int8_matmuls"] == 8 and again.fast.config["fusions"]["Attention"] == 2


def test_fast_model_runs_through_onnx_runtime(tiny_pair, monkeypatch):
    _, fast, _ = tiny_pair
    calls = []
    run = fast.fast.run
    monkeypatch.setattr(fast.fast, "run", lambda *a, **k: calls.append(1) or run(*a, **k))
    fast.predict(TEXTS)
    assert calls  # auto picks ONNX Runtime ...
    calls.clear()
    fast.predict(TEXTS, precision="fp32")
    assert not calls  # ... and an explicit precision the torch weights, which the folder also holds


def test_export_fast_is_atomic(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("export failed")

    monkeypatch.setattr(multi_task_sentence_transformer, "export_onnx", broken)
    with pytest.raises(RuntimeError, match="export failed"):
        tiny_multitask().export_fast(tmp_path / "fast")
    assert os.listdir(tmp_path) == []  # no half-written folder, no temp left


def test_broken_fast_folder_is_a_clear_error(tmp_path):
    path = tiny_multitask().export_fast(tmp_path / "fast", quantize="fp32")
    with open(os.path.join(path, "fast", "model.onnx"), "wb") as f:
        f.write(b"not an onnx graph")
    with pytest.raises(ModelLoadError, match="re-export it"):
        MultiTaskSentenceTransformer.from_pretrained(path)


@pytest.fixture(scope="module")
def minilm_pair(tmp_path_factory, packaged_model_path):
    """The packaged MiniLM with seeded heads and its default export."""
    torch.manual_seed(0)
    model = MultiTaskSentenceTransformer(packaged_model_path, max_length=128, task_layers=0)
    path = tmp_path_factory.mktemp("minilm_fast") / "fast"
    model.export_fast(path)
    return model, MultiTaskSentenceTransformer.from_pretrained(path)


@pytest.mark.slow
def test_default_export_keeps_minilm_parity_on_ag_news(minilm_pair, ag_news_dir):
    from datasets import load_dataset

    model, fast = minilm_pair
    texts = list(load_dataset(ag_news_dir, split="test")["text"][:96])
    assert fast.fast.config["quantize"] == "fp32"  # no held-out texts given: nothing to measure int8 on
    assert fast.fast.config["fusions"]["Attention"] == 6  # every layer's attention is one fused op
    ref, got = model.predict(texts, precision="fp32"), fast.predict(texts)
    cosine = (model.encode(texts, normalize=True, precision="fp32") * fast.encode(texts, normalize=True)).sum(1)
    assert cosine.min() >= 0.99999
    assert np.abs(np.array([p["topic"]["score"] for p in ref]) - [p["topic"]["score"] for p in got]).max() < 1e-4
    assert [p["topic"]["label"] for p in got] == [p["topic"]["label"] for p in ref]
    assert [p["ner"] for p in got] == [p["ner"] for p in ref]


# ----------------------------------------------------------------------------------------------------------- predict-file
def write_inputs(tmp_path):
    txt = tmp_path / "in.txt"
    txt.write_bytes("Apple opens a store in Paris.\n\nOil prices rose \xff on Friday.\n".encode() + b"bad \xff byte\n"
                    + b"last line, no newline")
    csv = tmp_path / "in.csv"
    csv.write_text('id,text\n1,"Apple opens a store, in Paris."\n2,\n3,"two\nlines"\n4\n')
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "Apple opens a store in Paris."}\n{"text": "unterminated\n\n{"body": "x"}\n'
                     '{"text": 5}\n["a"]\n{"text": "NASA on Mars \\ud800"}\n{"text": "fine"}\n')
    return txt, csv, jsonl


def read_records(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_predict_file_txt_csv_jsonl(tmp_path):
    model = tiny_multitask()
    txt, csv, jsonl = write_inputs(tmp_path)
    out = tmp_path / "out.jsonl"
    batch_prediction.predict_file(model, str(txt), str(out), chunk_size=2, show_progress=False)
    rows = read_records(out)
    assert [r["row"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[1] == {"row": 2, "error": "empty text"} and "UTF-8" in rows[3]["error"]
    assert rows[2]["topic"]["label"] in model.label_names  # a valid non-ASCII char (\xff as text) is fine
    expected = model.predict("Apple opens a store in Paris.")
    assert {k: rows[0][k] for k in expected} == expected and rows[4]["topic"]["label"] in model.label_names

    batch_prediction.predict_file(model, str(csv), str(out), chunk_size=2, show_progress=False)
    rows = read_records(out)
    assert [r["row"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["topic"]["label"] in model.label_names and rows[1]["error"] == "empty text"
    assert rows[2]["topic"]["label"] in model.label_names and "no 'text' column" in rows[3]["error"]

    batch_prediction.predict_file(model, str(jsonl), str(out), chunk_size=3, show_progress=False)
    rows = read_records(out)
    assert [r["row"] for r in rows] == list(range(1, 9))
    assert set(rows[0]) == set(rows[7]) == {"row", "topic", "ner"}
    assert "not valid JSON" in rows[1]["error"] and rows[2]["error"] == "empty text"
    assert "'text' key" in rows[3]["error"] and "int, not a string" in rows[4]["error"]
    assert "'text' key" in rows[5]["error"] and "surrogate" in rows[6]["error"]


def test_predict_file_streams_in_chunks(tmp_path, monkeypatch):
    model = tiny_multitask()
    path = tmp_path / "many.txt"
    path.write_text("".join(f"Text number {i} from Paris.\n" for i in range(23)))
    sizes, reads = [], []
    predict, read_texts = model.predict, texts_and_tables.read_texts

    def spy_read(*args):
        for item in read_texts(*args):
            reads.append(item[0])
            yield item

    def spy_predict(texts, **kwargs):
        sizes.append((len(texts), len(reads)))
        return predict(texts, **kwargs)

    monkeypatch.setattr(model, "predict", spy_predict)
    monkeypatch.setattr(batch_prediction, "read_texts", spy_read)
    counts = batch_prediction.predict_file(model, str(path), str(tmp_path / "out.jsonl"), chunk_size=5, show_progress=False)
    assert counts == {"rows": 23, "errors": 0} and len(read_records(tmp_path / "out.jsonl")) == 23
    assert [n for n, _ in sizes] == [5, 5, 5, 5, 3]
    assert [r for _, r in sizes] == [5, 10, 15, 20, 23]  # each chunk predicted before the next is read


def test_the_prediction_modes_run_in_the_precision_flag(tmp_path, monkeypatch, capsys):
    """--mixed-precision reaches --predict and --predict-file: `no` gives predict(precision='fp32')'s outputs
    exactly, bf16 gives bf16's (their topic scores differ), whatever `auto` is on this CPU."""
    import main

    model = tiny_multitask()
    model.save_pretrained(tmp_path / "model")
    model = MultiTaskSentenceTransformer.from_pretrained(tmp_path / "model")
    texts = [f"Text number {i} about Apple in Paris." for i in range(70)]  # several batches: the bf16 way matters
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    monkeypatch.chdir(tmp_path)
    scores = {}
    for flag, asked in (("no", "fp32"), ("bf16", "bf16")):
        main.main(["--model-dir", "model", "--predict-file", "in.txt", "--output", f"{flag}.jsonl",
                   "--mixed-precision", flag])
        got = [r["topic"]["score"] for r in read_records(tmp_path / f"{flag}.jsonl")]
        assert got == [p["topic"]["score"] for p in model.predict(texts, precision=asked)]
        scores[flag] = got
        main.main(["--model-dir", "model", "--predict", texts[0], "--mixed-precision", flag])
        shown = f"{model.predict(texts[0], precision=asked)['topic']['score']:.2f}"
        assert f"({shown})" in capsys.readouterr().out
    assert scores["no"] != scores["bf16"]


def test_predict_file_isolates_a_failing_row(tmp_path, monkeypatch):
    model = tiny_multitask()
    path = tmp_path / "in.txt"
    path.write_text("good one\nPOISON\ngood two\n")
    predict = model.predict

    def fragile(texts, **kwargs):
        if "POISON" in (texts if isinstance(texts, list) else [texts]):
            raise RuntimeError("cannot handle this one")
        return predict(texts, **kwargs)

    monkeypatch.setattr(model, "predict", fragile)
    batch_prediction.predict_file(model, str(path), str(tmp_path / "out.jsonl"), show_progress=False)
    rows = read_records(tmp_path / "out.jsonl")
    assert set(rows[0]) == set(rows[2]) == {"row", "topic", "ner"}
    assert rows[1] == {"row": 2, "error": "prediction failed: RuntimeError: cannot handle this one"}


def test_predict_file_leaves_nothing_half_written(tmp_path, monkeypatch):
    model = tiny_multitask()
    path = tmp_path / "in.txt"
    path.write_text("one\ntwo\nthree\nfour\n")
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    calls = []
    predict = model.predict

    def killed(texts, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # not a per-row problem: the whole run stops
        return predict(texts, **kwargs)

    monkeypatch.setattr(model, "predict", killed)
    with pytest.raises(KeyboardInterrupt):
        batch_prediction.predict_file(model, str(path), str(out), chunk_size=2, show_progress=False)
    assert out.read_text() == "previous results\n"  # the old output is untouched, no torn new one
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "out.jsonl"]  # and no temp file left


def test_csv_without_the_text_column_names_the_flag(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,body\n1,hello\n")
    with pytest.raises(ValueError, match="--text-column"):
        batch_prediction.predict_file(tiny_multitask(), str(path), str(tmp_path / "out.jsonl"), show_progress=False)
    assert not (tmp_path / "out.jsonl").exists()


def test_main_flags_export_fast_and_predict_file(tmp_path, capsys):
    model_dir = tiny_multitask().save_pretrained(tmp_path / "model")
    _, _, jsonl = write_inputs(tmp_path)
    fast_dir, out = tmp_path / "fast", tmp_path / "preds.jsonl"
    assert main.main(["--model-dir", model_dir, "--export-fast", str(fast_dir)]) == 0
    assert (fast_dir / "fast" / "model.onnx").is_file()
    assert main.main(["--model-dir", str(fast_dir), "--predict-file", str(jsonl), "--output", str(out),
                      "--chunk-size", "2"]) == 0
    rows = read_records(out)
    assert len(rows) == 8 and sum("error" in r for r in rows) == 6
    assert "8 rows" in capsys.readouterr().out
    for bad, message in ((["--predict-file", str(tmp_path / "nope.txt")], "no file at"),
                         (["--predict-file", str(tmp_path / "model" / "heads.safetensors")], "reads .txt, .csv"),
                         (["--predict-file", str(jsonl), "--chunk-size", "0"], "--chunk-size must be >= 1")):
        with pytest.raises(SystemExit):
            main.main(["--model-dir", model_dir, *bad])
        assert message in capsys.readouterr().err


def test_export_keeps_the_fastest_candidate_that_keeps_every_task(tmp_path, monkeypatch):
    """quantize='auto' with held-out texts: every candidate built and measured (agreement per task, embedding cosine,
    speed), the fastest that keeps them all kept as model.onnx, the others removed; none keeps: fp32."""
    model = tiny_multitask(seed=3, task_layers=1).eval()  # the shared top layer is calibrated too (encode's)
    texts = [f"{a} met {b} in {c} on Monday." for a in ("Anna", "IBM", "the UN") for b in ("Bob", "Apple")
             for c in ("Paris", "Rome", "Oslo", "Lima")]
    config = model.export_fast(tmp_path / "a", texts)
    with open(os.path.join(config, "fast", "fast_config.json")) as f:
        config = json.load(f)
    report = config["candidates"]
    assert set(report) == set(serving.CANDIDATES) and config["measured_on"] == len(texts) - len(texts) // 3
    kept = [n for n, c in report.items() if c["keeps"]]
    assert "fp32" in kept and config["quantize"] == max(kept, key=lambda n: report[n]["texts_per_second"])
    assert all(("texts_per_second" in report[n]) == (n in kept) for n in report)  # only those that keep are timed
    assert all(set(c["tasks"]) == {"topic", "ner"} and "mean" in c["embedding_cosine"] for c in report.values())
    assert sorted(os.listdir(tmp_path / "a" / "fast")).count("model.onnx") == 1
    assert not [f for f in os.listdir(tmp_path / "a" / "fast") if f.startswith("model.") and f != "model.onnx"]
    assert "## Fast CPU serving" in (tmp_path / "a" / "README.md").read_text()
    monkeypatch.setattr(type(model.tasks["ner"]), "agreement", lambda self, r, c: ("entity F1", 0.5, False))
    folder = model.export_fast(tmp_path / "b", texts)
    with open(os.path.join(folder, "fast", "fast_config.json")) as f:
        assert json.load(f)["quantize"] == "fp32"  # no int8 candidate kept the entities
