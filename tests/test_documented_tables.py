"""The docs' tables and lists held to the code, as test_documented_commands holds their commands: design.md's flag
table to main.py's parser (every flag, its default), its modes table to main.py's MODES, every list of task kinds
in the docs and in --help to tasks.KINDS, and every CPU kind the docs name to run_info.CPU_KINDS."""
import re
from pathlib import Path

import pytest

import main
from run_info import CPU_KINDS
from tasks import KINDS

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DESIGN = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def section(text, heading):
    """The lines of a markdown section (### heading) up to the next heading."""
    start = text.index(f"### {heading}\n")
    end = text.find("\n#", start + 1)
    return text[start:end if end > 0 else None]


def table_rows(text):
    """[(first cell, second cell, ...)] of the markdown table rows in text, header and rule left out."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]
    return [r for r in rows[2:] if not set(r[0]) <= set("-: ")]


def documented_default(cell):
    """A flag table's default cell as a value: `ner=5` -> 'ner=5' (backticked: as written), 4 -> 4.0, none (bare)
    -> [] (no value), off / on -> False / True."""
    cell = cell.strip()
    if cell.startswith("`"):
        return cell.strip("`")
    if cell == "none":
        return []
    if cell in ("off", "on"):
        return cell == "on"
    try:
        return float(cell)
    except ValueError:
        return cell


def parser_default(value):
    """The parser's default as documented_default reads the table: numbers as floats, lists joined, '' as none."""
    if isinstance(value, bool):
        return value
    if value == "":
        return []
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return " ".join(value) if value else []
    return value


def test_the_flag_table_holds_every_flag_with_its_default():
    parser = main.build_parser()
    defaults = {a.option_strings[0]: a.default for a in parser._actions if a.option_strings}
    documented = {}
    for row in table_rows(section(DESIGN, "Flags")):
        flags = re.findall(r"`(--[a-z0-9-]+)", row[0])
        values = [documented_default(v) for v in re.split(r",\s*(?![^`]*`[^`]*$)", row[1])] if len(flags) > 1 else \
            [documented_default(row[1])]
        for i, flag in enumerate(flags):
            documented[flag] = values[i] if i < len(values) else values[-1]
    flag_options = ["--" + name.lower().replace("_", "-") for name in main.FLAG_NAMES]
    missing = [f for f in flag_options if f not in documented]
    assert not missing, f"flags of main.py missing from design.md's flag table: {missing}"
    wrong = {f: (v, parser_default(defaults[f])) for f, v in documented.items()
             if f in defaults and v != parser_default(defaults[f])}
    assert not wrong, f"design.md's flag table says other defaults than the parser (table, parser): {wrong}"
    unknown = [f for f in documented if f not in defaults]
    assert not unknown, f"design.md's flag table names flags main.py does not have: {unknown}"


def test_the_modes_table_holds_every_mode_and_the_mode_options_are_named():
    modes = section(DESIGN, "Modes")
    documented = {re.match(r"`(--[a-z0-9-]+)", row[0]).group(1) for row in table_rows(modes)}
    assert documented == {option for option, _, _ in main.MODES}, \
        f"design.md's modes table vs main.MODES: {sorted(documented ^ {o for o, _, _ in main.MODES})}"
    parser = main.build_parser()
    flags = {"--" + n.lower().replace("_", "-") for n in main.FLAG_NAMES} | documented | {"--help"}
    options = {a.option_strings[0] for a in parser._actions if a.option_strings} - flags
    unnamed = [o for o in sorted(options) if f"`{o}" not in modes]
    assert not unnamed, f"mode options design.md's Modes section does not name: {unnamed}"


def kind_problems(text, where):
    """Lines naming task kinds that do not name them all (or count them wrong)."""
    problems = []
    names = "|".join(KINDS)
    for line in text.splitlines():
        listed = set(re.findall(rf"(?:`|\b)({names})(?:`|\b)(?=\s*(?:[,|/)]|\band\b|\bor\b|`))", line))
        if len(listed) >= 2 and "kind" in line.lower() and listed != set(KINDS):
            problems.append(f"{where}: lists kinds {sorted(listed)}, not {sorted(KINDS)}: {line.strip()[:120]}")
        for word in re.findall(r"\b(two|three|four|five|six)\s+(?:task\s+)?kinds\b", line, flags=re.I):
            if NUMBER_WORDS[word.lower()] != len(KINDS):
                problems.append(f"{where}: says '{word} kinds', there are {len(KINDS)}: {line.strip()[:120]}")
    return problems


def test_every_list_of_task_kinds_names_them_all():
    problems = [p for doc in DOCS for p in kind_problems(doc.read_text(encoding="utf-8"), doc.name)]
    problems += kind_problems(main.build_parser().format_help(), "main.py --help")
    problems += kind_problems((ROOT / "main.py").read_text(), "main.py")
    assert not problems, "\n".join(problems)


def test_the_cpu_kinds_the_docs_name_are_the_known_ones():
    """A CPU is named by one of run_info.CPU_KINDS (the machine table in docs/README.md describes each); a CPU
    model string quoted from a run's record (Intel(R) Xeon(R) ...) is left as recorded."""
    found = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for match in re.finditer(r"\b(Xeon|EPYC)(-[A-Za-z0-9]+)?\b(?!\(R\))", line):
                if match.group(0) not in CPU_KINDS:
                    found.append(f"{doc.name}:{number}: {match.group(0)!r} in {line.strip()[:100]}")
    assert not found, "CPU names not among run_info.CPU_KINDS:\n" + "\n".join(found[:40])
    table = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    for name, description in CPU_KINDS.items():
        assert f"| {name} | {description}" in table, f"docs/README.md's machine table lacks {name}: {description}"


@pytest.mark.parametrize("name", sorted(CPU_KINDS))
def test_each_cpu_kind_is_detected(name, tmp_path):
    """run_info.cpu_kind reads the CPU's vendor and flags (/proc/cpuinfo) into one of the kinds."""
    from run_info import CPU_FLAGS, cpu_kind

    vendor, flags = CPU_FLAGS[name]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"vendor_id\t: {vendor}\nflags\t\t: fpu sse avx2 {' '.join(flags)}\n")
    assert cpu_kind(str(cpuinfo)) == name
