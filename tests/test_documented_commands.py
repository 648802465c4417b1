"""Every command shown in README.md, docs/*.md and main.py's docstring runs as written.

Each `python main.py ...` (also under torchrun / accelerate launch) is parsed by main.py's own argument checks, in a
folder where the data root is the tests' own (synthetic_data.py) and the files a reader brings (my.csv, texts.txt, ...) exist, and where
the model folders that other documented commands write (outputs/<run>/model) exist as small saved models. A command
with a placeholder (RUN, DIR, ...) has its flags checked against main.py's options. Training commands that write to
the same --output-dir must have the same settings (else one would be refused as a resume of the other). `bench/`
commands name a script that exists and options it defines. The user documentation holds no paths of a developer's
machine, no development data paths and no issue numbers.
"""
import os
import re
import shlex
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Files a reader of the docs brings along; made in the sandbox (name -> content, from the data root's folder).
USER_FILES = {
    "my.csv": lambda root: "".join((root / "bbc_sport_politics" / "bbc-text.csv").read_text(encoding="utf-8")
                                   .splitlines(keepends=True)[:40]),
    "news.csv": lambda root: "text\nApple opens a store in Paris.\n",
    "texts.txt": lambda root: "Apple opens a store in Paris.\n",
    "texts_all.txt": lambda root: "Apple opens a store in Paris.\nChelsea beat Arsenal.\n",  # bench/conll_texts.py's
    "part1.jsonl": lambda root: '{"body": "Apple opens a store in Paris.", "topic": "tech"}\n',
    "part2.jsonl": lambda root: '{"body": "Chelsea beat Arsenal.", "topic": "sport"}\n',
}
PLACEHOLDER = re.compile(r"(^|[/=])([A-Z][A-Z_0-9]*)$|\.\.\.")
LAUNCHERS = ("python main.py", "torchrun", "accelerate launch", "python -m torch.distributed.run")
# What user documentation must not hold: paths of one machine, the development data folder, issue references.
FORBIDDEN = {
    "an absolute path of a developer's machine": re.compile(r"(?<![\w.])/(work|root|home|tmp|Users)/"),
    "the development data folder (name the data root's folders instead: ag_news, conll2003/valid.txt)":
        re.compile(r"\.\./shared"),
    "an issue number (a reader cannot see the tracker)": re.compile(r"\b[Ii]ssues?\s+#?\d+|\(#\d+\)"),
}


def documented_commands():
    """(file, command) for every command line in fenced / indented code blocks and inline code spans."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        indented = re.findall(r"(?m)^(?: {4}.*\n?)+", re.sub(r"```.*?```", "", text, flags=re.S))
        lines = []
        for block in blocks + indented:
            lines += re.sub(r"\\\n\s*", " ", block).splitlines()  # continued lines joined
        spans = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        lines += [" ".join(span.split()) for span in spans]
        for line in lines:
            line = line.strip()
            if line.startswith(LAUNCHERS) or line.startswith("python bench/"):
                found.append((path.name, line.split(" #")[0].strip()))
    doc = (ROOT / "main.py").read_text().split('"""')[1]
    for line in re.sub(r"\\\n\s*", " ", doc).splitlines():
        line = line.strip()
        if line.startswith(LAUNCHERS):
            found.append(("main.py", line.split(" #")[0].strip()))
    return found


def main_argv(command):
    """The arguments main.py gets from a documented command line (launcher and its own options stripped)."""
    words = shlex.split(command)
    return words[words.index("main.py") + 1:] if "main.py" in words else None


def is_template(argv):
    return any(PLACEHOLDER.search(word) for word in argv)


def test_the_docs_hold_commands():
    commands = documented_commands()
    main_commands = [c for _, c in commands if main_argv(c) is not None]
    assert len(main_commands) >= 20 and any(c == "python main.py" for c in main_commands)  # the README's run


def test_user_documentation_names_no_developer_paths_or_issue_numbers():
    problems = []
    for path in DOCS:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    problems.append(f"{path.relative_to(ROOT)}:{lineno}: {what}: {line.strip()[:120]}")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, data_root_dir):
    """A working folder as a reader has it: the data root, the reader's files, and the saved models that documented
    commands write (a small 6-layer model with AG News's classes and the default tags)."""
    from helpers import tiny_encoder_and_tokenizer

    from multi_task_sentence_transformer import MultiTaskSentenceTransformer
    from sentence_transformer import SentenceTransformer

    folder = tmp_path_factory.mktemp("reader")
    for name, content in USER_FILES.items():
        (folder / name).write_text(content(data_root_dir), encoding="utf-8")
    written = set()
    for _, command in documented_commands():
        argv = main_argv(command)
        if argv is None or is_template(argv):
            continue
        for flag in ("--output-dir", "--export-fast"):
            if flag in argv:
                written.add(argv[argv.index(flag) + 1])
        if not any(f in argv for f in ("--output-dir", "--export-fast", "--model-dir", "--predict", "--predict-file",
                                       "--eval-conll")):
            written.add("outputs/default")
    encoder, tokenizer = tiny_encoder_and_tokenizer(layers=6)
    model = MultiTaskSentenceTransformer(SentenceTransformer(encoder=encoder, tokenizer=tokenizer, max_length=64),
                                         label_names=["World", "Sports", "Business", "Sci/Tech"])
    for out in written:
        model.save_pretrained(folder / out / "model")
        if "fast" in Path(out).name:  # --export-fast's folder is itself a saved model
            model.save_pretrained(folder / out)
    return folder


def _parse(argv, folder, monkeypatch, capsys, data_root):
    import main

    monkeypatch.chdir(folder)
    monkeypatch.setenv("MTST_DATA_ROOT", str(data_root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        return main.parse_args(argv), None
    except SystemExit as stop:
        printed = capsys.readouterr()
        return None, None if stop.code == 0 and "--help" in argv else printed.err.strip() or f"exit {stop.code}"


def test_every_documented_main_command_passes_main_s_checks(sandbox, monkeypatch, capsys, data_root_dir):
    import main

    problems, runs = [], {}
    known = {option for action in main.build_parser()._actions for option in action.option_strings}
    for where, command in documented_commands():
        argv = main_argv(command)
        if argv is None:
            continue
        unknown = [w.split("=")[0] for w in argv if w.startswith("--") and w.split("=")[0] not in known]
        if unknown:
            problems.append(f"{where}: `{command}`: unknown option(s) {', '.join(unknown)}")
            continue
        if is_template(argv):
            continue
        args, error = _parse(argv, sandbox, monkeypatch, capsys, data_root_dir)
        if error:
            problems.append(f"{where}: `{command}`: {error}")
        if args is None:  # refused, or --help
            continue
        chosen = list(args.modes)
        if not chosen or chosen == ["--compare-freezing"]:  # it trains into --output-dir
            settings = {k: v for k, v in args.flags.items() if k not in ("model_dir", "output", "chunk_size")}
            runs.setdefault((os.path.normpath(args.training.output_dir), tuple(chosen)), {}).setdefault(
                repr(sorted(settings.items())), []).append(f"{where}: `{command}`")
    for (out, _mode), variants in runs.items():
        if len(variants) > 1:
            listed = "\n    ".join(commands[0] for commands in variants.values())
            problems.append(f"{len(variants)} documented runs with different settings write {out} (the later one "
                            f"would be refused as a resume); give each its own --output-dir:\n    {listed}")
    assert not problems, "\n".join(problems)


def test_documented_bench_commands_name_existing_scripts_and_options():
    import main

    main_options = {option for action in main.build_parser()._actions for option in action.option_strings}
    problems = []
    for where, command in documented_commands():
        words = shlex.split(command)
        if len(words) < 2 or words[0] != "python" or not words[1].startswith("bench/"):
            continue
        script = ROOT / words[1]
        if not script.is_file():
            problems.append(f"{where}: `{command}`: no script {words[1]}")
            continue
        source = script.read_text(encoding="utf-8")
        known = main_options if "flags.parse_args(" in source else set()  # a script that takes main.py's flags
        unknown = [w for w in words[2:] if w.startswith("--") and f'"{w.split("=")[0]}"' not in source
                   and w.split("=")[0] not in known]
        if unknown:
            problems.append(f"{where}: `{command}`: {words[1]} has no option {', '.join(unknown)}")
    assert not problems, "\n".join(problems)


def cost_rows(text):
    """(machine, wall time) of each row of the first table whose header names `python main.py`'s wall time."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and "`python main.py` wall time" in line)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((cells[0], cells[1]))
    return rows


def test_the_readme_s_cost_of_the_main_job_is_the_one_measured_in_results_md():
    """The README promises what `python main.py` costs: its table and the run command's comment must be the times
    docs/results.md measured for today's default (a re-measured run is changed in both, or this fails)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    measured = cost_rows(results.split("## What the default run costs", 1)[1])
    assert cost_rows(readme) == measured and len(measured) >= 3
    minutes = [float(m.group(1)) for _, t in measured for m in [re.match(r"([\d.]+) min$", t)] if m]
    assert len(minutes) >= 2, measured  # the CPU rows (each CPU kind measured) are measured, not estimated
    comment = re.search(r"^python main\.py +# .*?(\d+) to (\d+) min on 2 CPU cores", readme, re.M)
    assert comment and [int(comment.group(1)), int(comment.group(2))] == [round(min(minutes)), round(max(minutes))], \
        comment
