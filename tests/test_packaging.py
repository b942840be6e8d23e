"""The package as `pip install .` gives it: build the wheel, install it into a fresh folder, and train and write a model
card from there with the repository out of reach (the templates must come from the wheel, not from model_cards/)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("setuptools")

ROOT = Path(__file__).resolve().parents[1]
# what the build reads (setup.py maps model_cards/ and scripts/ into the wheel)
SOURCES = ("setup.py", "pyproject.toml", "README.md", "modeling_livt", "trainers", "scripts", "model_cards")

# In a fresh interpreter whose only path to our code is the installed folder: check where everything comes from, then
# run the installed `livt-finetune` console script exactly as the shell would.
CHECK_AND_RUN = """
import runpy, sys
from pathlib import Path

site, repo = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
import modeling_livt, modeling_livt.models.modeling_deit_lt, modeling_livt.models.resnet_cifar
# the models (and the package's public names) need neither datasets nor the training-side libraries
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("datasets", "timm", "evaluate"))
assert not heavy, heavy
import trainers
import modeling_livt_scripts._console as console
from modeling_livt.hub import model_card

for module in (modeling_livt, trainers, console, model_card):
    assert Path(module.__file__).resolve().is_relative_to(site), f"{module.__name__} from {module.__file__}"
assert not any(Path(p or ".").resolve() == repo for p in sys.path), sys.path
assert not model_card.TEMPLATE_DIR.is_dir(), "the repository layout must not be reachable from the installed package"
print("ORIGIN OK", flush=True)
sys.argv = ["livt-finetune", *sys.argv[3:]]
runpy.run_path(str(site / "bin" / "livt-finetune"), run_name="__main__")
"""

FINETUNE = [
    "--dataset_name", "digits", "--imbalance_factor", "10", "--normalization", "digits",
    "--config_name", "tiny", "--image_size", "32", "--patch_size", "4",
    "--config_overrides", "hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64",
    "--output_dir", "out", "--max_steps", "2", "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "128", "--eval_strategy", "no", "--save_strategy", "no",
    "--load_best_model_at_end", "false", "--report_to", "none", "--disable_tqdm", "true",
]


def run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{command[:4]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


@pytest.mark.slow
def test_installed_wheel_trains_and_writes_a_model_card(tmp_path):
    source = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info next to setup.py
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(tmp_path / "dist")])
    (wheel,) = (tmp_path / "dist").glob("modeling_livt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"modeling_livt/model_cards/{p.name}" for p in (ROOT / "model_cards").glob("*.md.j2")}
    assert templates and templates <= names and "modeling_livt/model_cards/papers.json" in names
    # the evaluate module, loaded from its folder
    assert "modeling_livt/evaluation/long_tail_metric/long_tail_metric.py" in names
    assert "modeling_livt_scripts/run_finetune.py" in names and "modeling_livt_scripts/_console.py" in names
    assert "trainers/cli.py" in names and "trainers/script_builder.py" in names

    site = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), str(wheel)])
    commands = {p.name for p in (site / "bin").iterdir()}
    assert {"livt-mgp", "livt-finetune", "livt-teacher", "livt-deit-lt", "livt-eval", "livt-convert",
            "livt-demo", "livt-prepare-dataset"} <= commands

    workdir = tmp_path / "run"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    result = run([sys.executable, "-c", CHECK_AND_RUN, str(site), str(ROOT), *FINETUNE], cwd=workdir, env=env)
    assert "ORIGIN OK" in result.stdout

    out = workdir / "out"
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "model-index:" in card and "{{" not in card and "{%" not in card
    assert "A **LiVT** vision transformer" in card  # the template's own text, rendered
    assert "| Accuracy |" in card and "made long-tailed with imbalance factor 10.0" in card


def test_templates_come_from_the_checkout_when_not_installed(tmp_path):
    from modeling_livt.hub.model_card import template_text, write_model_card

    for path in (ROOT / "model_cards").glob("*.md.j2"):
        assert template_text(path.name.removesuffix(".md.j2")) == path.read_text(encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"model card file nope\.md\.j2 is missing: looked in the installed "
                       r"package .* and in the repository's model_cards/ folder"):
        template_text("nope")
    for method in ("livt", "deit_lt", "teacher"):
        card = write_model_card(tmp_path / method, method, "m", {"accuracy": 0.5}, [30, 10, 3], "digits").read_text()
        assert "Accuracy" in card and "| 50.00 % |" in card and "{{" not in card, method
        # no recipe given: the card names no loss rather than a default one
        assert "a loss not recorded in this card" in card and "Not recorded:" in card, method
    named = {"livt": ("loss_type", "bal_bce"), "deit_lt": ("CLS loss", "bal_ce"), "teacher": ("loss_type", "ldam_drw")}
    for method, (key, loss) in named.items():
        card = write_model_card(tmp_path / method, method, "m", {"accuracy": 0.5}, [30, 10, 3], "digits",
                                recipe={key: loss}).read_text()
        assert f"the **{loss}**" in card and f"- **{key}**: {loss}" in card and "not recorded" not in card, method
    assert "The ldam_drw loss uses the training class counts only while training" in card


def test_build_metadata_has_one_version_and_one_timm():
    """pyproject.toml names its build backend; the version lives only in modeling_livt/__init__.py (setup.py reads
    it); each requirement is listed once across install_requires and the extras."""
    import ast
    import re

    import modeling_livt

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")

    build = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]
    assert build["build-backend"] == "setuptools.build_meta"
    requires = [r.replace(" ", "") for r in build["requires"]]
    assert "setuptools>=61" in requires and "wheel" in requires

    setup_py = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert modeling_livt.__version__ not in setup_py  # not a second copy of the version
    result = run([sys.executable, "setup.py", "--version"], cwd=ROOT)
    assert result.stdout.strip().splitlines()[-1] == modeling_livt.__version__

    nodes = ast.walk(ast.parse(setup_py))
    (call,) = [n for n in nodes if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"]
    kwargs = {k.arg: k.value for k in call.keywords}
    requirements = ast.literal_eval(kwargs["install_requires"])
    requirements += [r for extra in ast.literal_eval(kwargs["extras_require"]).values() for r in extra]
    names = [re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements]
    assert names.count("timm") == 1 and len(names) == len(set(names)), names
