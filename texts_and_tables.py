"""Reading texts and tables from files: one table (FORMATS) from a file's ending to its reader.

    for row, text, error in read_texts("texts.csv", "text"): ...   # streaming: --predict-file, --distil-texts, shards
    table = read_table(Path("my.csv"))                              # a datasets.Dataset: --dataset, --tasks sources
    format_problem("x.xlsx", "--predict-file", TEXT_FORMATS)        # the one message for an ending nobody reads

Texts are read from every format (.txt: a text a line; the others: the text column of each record); tables (rows
with labels in columns) from every format but .txt. Nothing is read at import time; `datasets` loads on the first
table (hf_datasets).
"""
import csv
import json
import os
from typing import Callable, NamedTuple

import pyarrow.parquet as pq

from errors import InputError


class Format(NamedTuple):
    name: str                # how messages name it
    read_texts: Callable     # (path, text_column, extra_columns, out) -> yields out(row, text, error, values)
    builder: tuple = None    # datasets.load_dataset's builder and options for a table; None: texts only


def hf_datasets():
    """The datasets library, imported on first use: it is heavy (about a second, with pyarrow and pandas), and the
    data modules stay light to import. Every module reaches it through here."""
    import datasets  # datasets: heavy, loaded on first use

    return datasets


def is_null(value):
    """An empty cell: None, or NaN (pandas' empty CSV field)."""
    return value is None or (isinstance(value, float) and value != value)


def is_unreadable(text):
    """True for text holding lone surrogates: bytes that were not UTF-8 (read with errors='surrogateescape') or a
    JSON "\\ud800"-style escape; neither can be written back as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _open(path, newline=None):
    return open(path, encoding="utf-8", errors="surrogateescape", newline=newline)


def _txt_texts(path, text_column, extra_columns, out):
    with _open(path) as f:
        for row, line in enumerate(f, 1):
            yield out(row, line.rstrip("\r\n"), None)


def _delimited_texts(path, text_column, extra_columns, out, delimiter=","):
    """Rows of a CSV (TSV) file with a header; a row the csv module cannot parse is that row's error."""
    with _open(path, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if not header or text_column not in header:
            raise InputError(f"{path}: no column {text_column!r} in the header {header}; pass --text-column with one "
                             "of its columns.")
        column, row = header.index(text_column), 0
        while True:
            row += 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield out(row, None, f"unreadable row: {e}")
                continue
            values = dict(zip(header, fields))
            if column >= len(fields):
                yield out(row, None, f"row has {len(fields)} fields, no {text_column!r} column", values)
            else:
                yield out(row, fields[column], None, values)


def _tsv_texts(path, text_column, extra_columns, out):
    return _delimited_texts(path, text_column, extra_columns, out, delimiter="\t")


def _record(row, record, text_column, out):
    """out() of one JSON record: its text, or why it has none."""
    values = record if isinstance(record, dict) else None
    if not isinstance(record, dict) or text_column not in record:
        return out(row, None, f"not a JSON object with a {text_column!r} key (use --text-column)", values)
    if not isinstance(record[text_column], str):
        return out(row, None, f"{text_column!r} is {type(record[text_column]).__name__}, not a string", values)
    return out(row, record[text_column], None, values)


def _jsonl_texts(path, text_column, extra_columns, out):
    with _open(path) as f:
        for row, line in enumerate(f, 1):
            if not line.strip():
                yield out(row, "", None)
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                yield out(row, None, f"not valid JSON: {e}")
                continue
            yield _record(row, record, text_column, out)


def _json_texts(path, text_column, extra_columns, out):
    """A .json file: one JSON array of records (read whole), or JSON lines (as `datasets` also reads them)."""
    with _open(path) as f:
        content = f.read()
    try:
        records = json.loads(content)
    except ValueError:
        yield from _jsonl_texts(path, text_column, extra_columns, out)
        return
    if not isinstance(records, list):
        raise InputError(f"{path}: a .json file of texts holds a list of records ([{{\"{text_column}\": ...}}, ...]) "
                         "or one record a line (JSON lines)")
    for row, record in enumerate(records, 1):
        yield _record(row, record, text_column, out)


def _parquet_texts(path, text_column, extra_columns, out, batch_rows=1000):
    """A parquet file's record batches, streaming; a null or non-string text is a row's error."""
    try:
        file = pq.ParquetFile(path)
    except Exception as e:  # pyarrow's ArrowInvalid & co share no useful base class
        raise InputError(f"{path}: not a readable parquet file ({str(e).splitlines()[0]})") from e
    names = file.schema_arrow.names
    if text_column not in names:
        raise InputError(f"{path}: no column {text_column!r} in the parquet file's columns {names}; pass "
                         "--text-column with one of its columns.")
    columns = [text_column] + [c for c in extra_columns if c in names and c != text_column]
    row = 0
    for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
        data = batch.to_pydict()
        for i, text in enumerate(data[text_column]):
            row += 1
            values = {c: data[c][i] for c in columns}
            if text is None:
                yield out(row, None, f"{text_column!r} is null", values)
            elif not isinstance(text, str):
                yield out(row, None, f"{text_column!r} is {type(text).__name__}, not a string", values)
            else:
                yield out(row, text, None, values)


# The formats, by file ending. A new format is one line here (and its text reader above).
FORMATS = {
    ".txt": Format("text (a text a line)", _txt_texts),
    ".csv": Format("CSV", _delimited_texts, ("csv", {})),
    ".tsv": Format("TSV", _tsv_texts, ("csv", {"sep": "\t"})),
    ".json": Format("JSON", _json_texts, ("json", {})),
    ".jsonl": Format("JSON lines", _jsonl_texts, ("json", {})),
    ".parquet": Format("parquet", _parquet_texts, ("parquet", {})),
}
TEXT_FORMATS = tuple(FORMATS)                                            # what read_texts reads
TABLE_FORMATS = tuple(e for e, f in FORMATS.items() if f.builder)        # what read_table reads


def ending(path):
    """A path's file ending, lower case ('.csv'; '' for none)."""
    return os.path.splitext(os.fspath(path))[1].lower()


def format_problem(path, what, endings):
    """The message for a file whose ending `what` (a flag, or 'a data file') does not read; None when it does."""
    if ending(path) in endings:
        return None
    texts_only = ending(path) in FORMATS and ending(path) not in TABLE_FORMATS
    why = " holds texts only, no label column" if texts_only else f" ends in {ending(path) or '(nothing)'!r}"
    return (f"{what}: {path}{why}; {what} reads {', '.join(endings)} (rename or convert the file)")


def read_texts(path, text_column="text", extra_columns=None):
    """Yield (row, text, error) for each input record of a file of any TEXT_FORMATS, streaming: row counts input
    records from 1 (a line of .txt / .jsonl, a data row of .csv / .tsv / .parquet, a record of a .json array); error
    is None or says why the row has no text. extra_columns (names): yield (row, text, error, {name: value}) instead, a
    column a record lacks as None (.txt has none; [] gives the empty dict)."""
    problem = format_problem(path, "reading texts", TEXT_FORMATS)
    if problem:
        raise InputError(problem)
    extras = extra_columns is not None
    extra_columns = list(extra_columns or ())

    def out(row, text, error, values=None):
        return (row, text, error, {c: (values or {}).get(c) for c in extra_columns}) if extras else \
            (row, text, error)

    yield from FORMATS[ending(path)].read_texts(path, text_column, extra_columns, out)


def read_table(path):
    """One data file of TABLE_FORMATS as a datasets.Dataset; InputError naming the file when it is empty, unreadable
    or not a table."""
    problem = format_problem(path, "a data file", TABLE_FORMATS)
    if problem:
        raise InputError(problem)
    fmt = FORMATS[ending(path)]
    if os.path.getsize(path) == 0:
        raise InputError(f"data file {str(path)!r} is empty (0 bytes); give a {fmt.name} file with a header/keys "
                         "and at least one row per class")
    builder, options = fmt.builder
    try:
        table = hf_datasets().load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as e:  # noqa: BLE001  parser errors of pandas / pyarrow, "corresponds to no data", ...
        cause = e.__cause__ or e
        raise InputError(f"cannot read rows from data file {str(path)!r} as {fmt.name} ({type(cause).__name__}: "
                         f"{str(cause)[:200]}); is it valid {fmt.name} with at least one row?") from e
    if table.num_rows == 0:
        raise InputError(f"data file {str(path)!r} has no rows (a header only?); add rows")
    return table
