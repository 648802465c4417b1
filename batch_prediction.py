"""Predicting a file of texts: --predict-file (one JSON line per input record) and the chunks a corpus run predicts.

    predict_file(model, "texts.csv", "preds.jsonl", text_column="text")   # any format read_texts reads
    records = predict_chunk(model, [(row, text, error), ...], batch_size)  # corpus.py's unit of work

The file is read chunk by chunk (texts_and_tables.read_texts: memory stays flat), each chunk predicted, one JSON line
written per input record; a row with no usable text, or whose prediction fails, gets an error record in its place.
"""
import json
import os

from tqdm.auto import tqdm

from texts_and_tables import TEXT_FORMATS, format_problem, is_unreadable, read_texts


def check_predict_file_args(predict_file, chunk_size):
    """Problems with the --predict-file flags (the file, --chunk-size), found before the model loads."""
    problems = []
    if predict_file:
        if not os.path.isfile(predict_file):
            problems.append(f"--predict-file: no file at {predict_file}")
        else:
            problems += filter(None, [format_problem(predict_file, "--predict-file", TEXT_FORMATS)])
    if chunk_size < 1:
        problems.append("--chunk-size must be >= 1")
    return problems


def predict_chunk(model, chunk, batch_size, precision="auto"):
    """Output records for one chunk of (row, text, error): a prediction or a per-row error each, in order."""
    records = []
    for row, text, error, *_ in chunk:  # (corpus.py's chunks carry the row's extra columns after them)
        if error is None and is_unreadable(text):
            error = "not valid UTF-8 (or a lone surrogate escape)"
        elif error is None and not text.strip():
            error = "empty text"
        records.append({"row": row, "error": error} if error else {"row": row, "text": text})
    todo = [r for r in records if "text" in r]
    try:
        preds = model.predict([r["text"] for r in todo], batch_size=batch_size, precision=precision)
    except Exception:  # isolate the row that failed: predict one by one
        preds = []
        for r in todo:
            try:
                preds.append(model.predict(r["text"], precision=precision))
            except Exception as e:
                preds.append({"error": f"prediction failed: {type(e).__name__}: {e}"})
    for r, p in zip(todo, preds):
        del r["text"]
        r.update(p)
    return records


def predict_file(model, path, output, text_column="text", batch_size=32, chunk_size=1000, show_progress=True,
                 precision="auto"):
    """Predict every text of a file (any of TEXT_FORMATS) into `output`, one JSON line per input record
    ({'row', then one key per task as predict() gives it} or {'row', 'error'}), reading and predicting chunk_size rows at a time
    (memory flat), in `precision` (as predict() takes it; main.py's --mixed-precision). Written to a temp name and
    renamed at the end: `output` is whole or absent, never half-written. Returns {'rows': n, 'errors': n}."""
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    tmp = f"{output}.tmp-{os.getpid()}"
    counts = {"rows": 0, "errors": 0}
    try:
        with open(tmp, "w", encoding="utf-8") as out, tqdm(unit="text", desc="predict", disable=not show_progress) as bar:
            chunk = []
            records = read_texts(path, text_column)
            while True:
                item = next(records, None)
                if item is not None:
                    chunk.append(item)
                if chunk and (item is None or len(chunk) == chunk_size):
                    for record in predict_chunk(model, chunk, batch_size, precision):
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                        counts["errors"] += "error" in record
                    counts["rows"] += len(chunk)
                    bar.update(len(chunk))
                    chunk = []
                if item is None:
                    break
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"{counts['rows']} rows -> {output} ({counts['errors']} with an error record)")
    return counts
