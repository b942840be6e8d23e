"""scripts/demo.py on a tiny budget (one epoch a run): every step is a script run as its own process, and the table
is read back from each run's eval_results.json."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import demo  # noqa: E402

# method -> (budget flags, {table row: the run's folder}, the scripts it runs)
DEMOS = {
    "livt": (["--mgp_epochs", "1", "--finetune_epochs", "1"],
             {"LiVT MGP + BAL-BCE": "livt_bal_bce", "LiVT MGP + BCE": "livt_bce"},
             ["run_mgp.py", "run_finetune.py"]),
    "deit_lt": (["--teacher_epochs", "1", "--student_epochs", "1"],
                {"ResNet-32 teacher (SAM, Bal-CE)": "deit_lt_teacher", "DeiT-LT student": "deit_lt_student"},
                ["run_teacher.py", "run_deit_lt.py"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(DEMOS))
def test_demo_runs_the_scripts_and_tables_their_test_results(tmp_path, method, capfd, monkeypatch):
    budget, rows, scripts = DEMOS[method]
    out = tmp_path / "demo"
    for name, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(name, value)
    demo.main(["--method", method, "--output_dir", str(out), *budget])  # each script runs in a child process
    stdout = capfd.readouterr().out
    # each step's command line is printed before it runs, for the reader to copy
    commands = [line for line in stdout.splitlines() if line.startswith("$ python ")]
    assert [next(s for s in scripts if s in line) for line in commands] == [scripts[0]] + [scripts[-1]] * (
        len(commands) - 1)
    assert all("--output_dir" in line and "--seed 0" in line for line in commands)

    summary = json.loads((out / f"results_{method}.json").read_text())
    assert list(summary) == list(rows)
    for name, folder in rows.items():
        saved = json.loads((out / folder / "eval_results.json").read_text())
        assert summary[name] == {k: v for k, v in saved.items() if not isinstance(v, list)}, name
        assert (out / folder / "model.safetensors").is_file() and (out / folder / "README.md").is_file()
    table = (out / f"results_{method}.md").read_text()
    assert all(f"| {name} |" in table for name in rows) and table in stdout
