"""Every ```python block of README.md, docs/*.md and bench/recipes/README.md runs exactly as shown: each in a fresh
namespace, in a temporary working directory, offline (conftest.py sets HF_HUB_OFFLINE and blocks the network).
```bash blocks are not run.

A block that contains a line `# doc-test: skip (reason)` is skipped with that reason, after its import lines are run
(a renamed module fails there too); it is meant only for snippets that genuinely need the Hub, a GPU or a file we do
not have."""

import re
import textwrap
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "recipes" / "README.md"]
# a fence at the start of a line, or indented inside a list item: ```python ... ``` (the language tag exactly "python")
PYTHON_BLOCK = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
                          re.DOTALL | re.MULTILINE)
SKIP_LINE = re.compile(r"^[ \t]*# doc-test: skip \((?P<reason>[^)]+)\)[ \t]*$", re.MULTILINE)


def python_blocks(path: Path) -> list[tuple[int, int, str]]:
    """(block index, first code line, code) of each ```python block of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [
        (index, text.count("\n", 0, match.start("code")) + 1, textwrap.dedent(match.group("code")))
        for index, match in enumerate(PYTHON_BLOCK.finditer(text))
    ]


BLOCKS = [
    pytest.param(path, index, line, code, id=f"{path.relative_to(ROOT).as_posix()}-block{index}")
    for path in DOC_FILES
    for index, line, code in python_blocks(path)
]


def test_docs_have_python_blocks():
    assert (ROOT / "docs").is_dir()
    assert BLOCKS, "no ```python block found in README.md or docs/*.md"
    assert any(param.values[0].name == "README.md" for param in BLOCKS), "README.md shows no Python"


def test_block_parser_finds_fences_and_skip_lines(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```python\nx = 1\n```\n```bash\nmake demo\n```\n```python\n# doc-test: skip (needs a GPU)\ny = 2\n```\n"
        "- a list item:\n\n  ```python\n  import os\n  if os:\n      z = 3\n  ```\n",
        encoding="utf-8",
    )
    blocks = python_blocks(page)
    assert [(index, line) for index, line, _ in blocks] == [(0, 3), (1, 9), (2, 15)]
    assert blocks[2][2] == "import os\nif os:\n    z = 3\n"  # an indented block, dedented
    assert blocks[0][2] == "x = 1\n"
    assert SKIP_LINE.search(blocks[0][2]) is None
    assert SKIP_LINE.search(blocks[1][2]).group("reason") == "needs a GPU"


def run_block(label: str, index: int, line: int, code: str) -> None:
    """Execute one block in a fresh namespace; a failure names the file and the block and shows the traceback, whose
    line numbers are the Markdown file's."""
    compiled = compile("\n" * (line - 1) + code, f"{label}[block {index}]", "exec")
    try:
        exec(compiled, {"__name__": "__main__"})  # noqa: S102 - the documentation's own snippets
    except Exception:  # noqa: BLE001 - report every failure with its file and block
        pytest.fail(f"{label}, python block {index} (line {line}) failed:\n{traceback.format_exc()}", pytrace=False)


def test_a_failing_block_names_its_file_and_block():
    with pytest.raises(pytest.fail.Exception, match=r"page\.md, python block 2 \(line 7\) failed") as failure:
        run_block("page.md", 2, 7, "x = 1\nraise ValueError('broken snippet')\n")
    assert "broken snippet" in str(failure.value) and 'page.md[block 2]", line 8' in str(failure.value)


@pytest.mark.parametrize(("path", "index", "line", "code"), BLOCKS)
def test_python_block_runs(path, index, line, code, tmp_path, monkeypatch):
    label = path.relative_to(ROOT).as_posix()
    skip = SKIP_LINE.search(code)
    if skip:
        imports = "".join(c if c.startswith(("import ", "from ")) else "\n" for c in code.splitlines(keepends=True))
        run_block(label, index, line, imports)
        pytest.skip(f"{label}, python block {index} (line {line}): {skip.group('reason')}")
    monkeypatch.chdir(tmp_path)
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    # tempfile.mkdtemp() in a snippet lands under tmp_path, and so does evaluate's metric cache
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    evaluate_config = pytest.importorskip("evaluate.config")
    monkeypatch.setattr(evaluate_config, "HF_METRICS_CACHE", tmp_path / "hf_metrics")
    run_block(label, index, line, code)
