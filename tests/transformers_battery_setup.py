"""Fetch transformers' own model test battery (`tests/test_modeling_common.py` and what it imports) for the installed
transformers version, for `tests/test_transformers_battery.py`.

Nothing of transformers' tests is kept in this repository. On first use the source distribution of the installed
version is downloaded from the package registry with pip (`pip download --no-deps --no-binary :all:
transformers==<version>`), its `tests/` folder is extracted to `~/.cache/modeling_livt/transformers-tests-<version>/`
(`$MODELING_LIVT_TRANSFORMERS_TESTS_CACHE` overrides the folder), and the battery's one test-only dependency that our
`[dev]` extra lacks, `parameterized` (transformers' `testing` extra), is installed next to it with `pip install
--target`. Later runs on the machine reuse the folder; concurrent pytest-xdist workers serialise on a file lock.

The folder is imported as the package `transformers_tests` (not `tests`: that name is ours), so its relative imports
(`from .test_configuration_common import ...`) resolve inside it. The sdist ships only the top-level `tests/*.py`,
without the repository's empty `tests/__init__.py` (written here: `test_configuration_common` reads it); three modules
those files import are not in it either and get small stand-ins here (see `_register_stand_ins`):

- `.generation.test_utils.GenerationTesterMixin`: only used in `issubclass` checks of `test_modeling_common`
  (none of our models generates), so an empty class is exact.
- `.utils.test_configuration_utils.config_common_kwargs`: the non-default values of `PreTrainedConfig`'s common
  fields that `ConfigTester.check_config_arguments_init` sets and reads back; rebuilt here from the installed
  `PreTrainedConfig`'s fields.
- `.exporters.test_export.ExportTesterMixin`, `ModelTesterMixin`'s base: replaced by `ExportTesterMixin` below, a
  `torch.export` round trip (static and dynamic batch) that compares the exported program's outputs with eager ones.

`BatteryUnavailable` is raised, with the reason, when the download or the import fails (offline, no such version on
the registry, a battery that needs something missing); the test module turns it into a module-level skip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
import warnings
from pathlib import Path

PACKAGE = "transformers_tests"
TRANSFORMERS_VERSION = importlib.metadata.version("transformers")
# the battery's test-only requirements beyond our [dev] extra (transformers' `testing` extra pins parameterized>=0.9)
EXTRA_REQUIREMENTS = ("parameterized>=0.9",)
PIP_TIMEOUT_S = 300


class BatteryUnavailable(RuntimeError):
    """transformers' test battery could not be fetched or imported; the message says why."""


def cache_dir(version: str = TRANSFORMERS_VERSION) -> Path:
    default = Path.home() / ".cache" / "modeling_livt" / f"transformers-tests-{version}"
    return Path(os.environ.get("MODELING_LIVT_TRANSFORMERS_TESTS_CACHE", default))


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--timeout", "20", "--retries", "1"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BatteryUnavailable(f"`pip {' '.join(args[:2])}` did not finish: {error}") from error
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BatteryUnavailable(f"`{' '.join(command[2:6])} ...` failed (offline?): {' / '.join(tail)}")


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` (pytest-xdist workers import the test module at the same time)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _extract_tests(sdist: Path, dest: Path) -> None:
    """Extract `<name>-<version>/tests/**` of the sdist into `dest/` (plain files only, no links, no `..`)."""
    with tarfile.open(sdist, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if len(parts) < 3 or parts[1] != "tests" or ".." in parts or not (member.isfile() or member.isdir()):
                continue
            member.name = str(Path(*parts[2:]))
            members.append(member)
        if not any(m.name == "test_modeling_common.py" for m in members):
            raise BatteryUnavailable(f"{sdist.name} has no tests/test_modeling_common.py")
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(dest, members=members, **kwargs)
    # the repository's tests/ is a package with an empty __init__.py, which the sdist leaves out;
    # test_configuration_common.py reads it (`direct_transformers_import(Path(__file__).parent)`)
    (dest / "__init__.py").touch()


def ensure_downloaded(version: str = TRANSFORMERS_VERSION) -> Path:
    """The cache folder with `tests/` (the sdist's) and `site-packages/` (the extra requirements), fetched once."""
    root = cache_dir(version)
    marker = root / "complete"
    if marker.is_file():
        return root
    with _locked(root.parent / f".{root.name}.lock"):
        if marker.is_file():  # another worker fetched it while we waited
            return root
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            tmp = Path(tmp)
            _pip("download", "--no-deps", "--no-binary", ":all:", f"transformers=={version}", "-d", str(tmp), "-q")
            sdists = sorted(tmp.glob("transformers-*.tar.gz"))
            if not sdists:
                raise BatteryUnavailable(f"pip downloaded no transformers sdist for {version}")
            _extract_tests(sdists[0], tmp / "tests")
            _pip("install", "--no-deps", "--target", str(tmp / "site-packages"), "-q", *EXTRA_REQUIREMENTS)
            for name in ("tests", "site-packages"):
                shutil.rmtree(root / name, ignore_errors=True)
                (tmp / name).rename(root / name)
        marker.write_text(f"transformers {version} sdist tests; {' '.join(EXTRA_REQUIREMENTS)}\n")
    return root


# ---------------------------------------------------------------------------------------------------------------------
# Stand-ins for the modules the sdist's tests import but the sdist lacks
# ---------------------------------------------------------------------------------------------------------------------
def config_common_kwargs() -> dict:
    """A non-default value for each common `PreTrainedConfig` field (`ConfigTester.check_config_arguments_init`
    passes them to the config class and checks each is read back; `dtype` is compared with `torch.float16`)."""
    from transformers import PreTrainedConfig

    values = {
        "architectures": ["BertModel"],
        "output_hidden_states": True,
        "return_dict": False,
        "dtype": "float16",
        "chunk_size_feed_forward": 5,
        "is_encoder_decoder": True,
        "id2label": {0: "label"},
        "label2id": {"label": "0"},
        "problem_type": "multi_label_classification",
    }
    fields = {field.name for field in dataclasses.fields(PreTrainedConfig)}
    return {key: value for key, value in values.items() if key in fields}


class ExportTesterMixin:
    """Stand-in for transformers' `tests/exporters/test_export.py` (not in the sdist): each model class is exported
    with `torch.export.export` (strict=False, as transformers' Dynamo exporter), once with static shapes and once with
    a dynamic batch dimension, and the program's outputs must match eager ones. Honours `test_torch_exportable`."""

    def _export_inputs(self, model_class):
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        inputs = self._prepare_for_class(inputs_dict, model_class)
        for key in ("labels", "return_loss"):
            inputs.pop(key, None)
        return config, inputs

    def _check_export(self, dynamic: bool):
        import torch
        from transformers.testing_utils import torch_device

        if not self.test_torch_exportable:
            self.skipTest(reason="Model architecture is not Dynamo exportable/traceable")
        for model_class in self.all_model_classes:
            with self.subTest(model_class.__name__):
                config, inputs = self._export_inputs(model_class)
                model = model_class(config).to(torch_device).eval()
                dynamic_shapes = None
                if dynamic:
                    batch = torch.export.Dim("batch", min=1, max=1024)
                    dynamic_shapes = {
                        key: ({0: batch} if isinstance(value, torch.Tensor) and value.dim() > 0 else None)
                        for key, value in inputs.items()
                    }
                with torch.no_grad():
                    eager = model(**inputs)
                    program = torch.export.export(model, args=(), kwargs=inputs, dynamic_shapes=dynamic_shapes,
                                                  strict=False)
                    exported = program.module()(**inputs)
                eager_tensors = [t for t in eager.to_tuple() if isinstance(t, torch.Tensor)]
                exported_tensors = [t for t in exported.to_tuple() if isinstance(t, torch.Tensor)]
                self.assertEqual(len(eager_tensors), len(exported_tensors))
                for got, expected in zip(exported_tensors, eager_tensors):
                    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    def test_torch_export_static(self):
        self._check_export(dynamic=False)

    def test_torch_export_dynamic_batch(self):
        self._check_export(dynamic=True)


class GenerationTesterMixin:
    """Stand-in for transformers' `tests/generation/test_utils.py` (not in the sdist): `test_modeling_common` only
    checks `issubclass(..., GenerationTesterMixin)`, and none of our models generates."""


def _module(name: str, package: bool = False, path: list[str] | None = None, **attributes) -> types.ModuleType:
    spec = importlib.machinery.ModuleSpec(name, None, is_package=package)
    if path is not None:
        spec.submodule_search_locations = path
    module = importlib.util.module_from_spec(spec)
    if path is not None:
        module.__path__ = path
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def _register_stand_ins() -> None:
    _module(f"{PACKAGE}.exporters", package=True, path=[])
    _module(f"{PACKAGE}.exporters.test_export", ExportTesterMixin=ExportTesterMixin)
    _module(f"{PACKAGE}.generation", package=True, path=[])
    _module(f"{PACKAGE}.generation.test_utils", GenerationTesterMixin=GenerationTesterMixin)
    _module(f"{PACKAGE}.utils", package=True, path=[])
    _module(f"{PACKAGE}.utils.test_configuration_utils", config_common_kwargs=config_common_kwargs())


def load_battery():
    """`(test_modeling_common, test_configuration_common)` of the installed transformers version, as modules of the
    package `transformers_tests`. Raises `BatteryUnavailable` when they cannot be fetched or imported."""
    if f"{PACKAGE}.test_modeling_common" in sys.modules:
        return sys.modules[f"{PACKAGE}.test_modeling_common"], sys.modules[f"{PACKAGE}.test_configuration_common"]
    root = ensure_downloaded()
    site = str(root / "site-packages")
    if site not in sys.path:
        sys.path.append(site)  # after the venv's own packages: only fills what is missing
    tests = root / "tests"
    (tests / "__init__.py").touch()
    _module(PACKAGE, package=True, path=[str(tests)])
    _register_stand_ins()
    try:
        with warnings.catch_warnings():  # transformers' own conftest registers its marks (torch_compile_test, ...)
            warnings.filterwarnings("ignore", message=r"Unknown pytest\.mark\.")
            modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
            configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    except Exception as error:  # an import the sdist's tests need and this machine lacks
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        raise BatteryUnavailable(
            f"transformers {TRANSFORMERS_VERSION}'s tests/test_modeling_common.py does not import: {error!r}"
        ) from error
    return modeling, configuration


__all__ = [
    "BatteryUnavailable",
    "ExportTesterMixin",
    "GenerationTesterMixin",
    "TRANSFORMERS_VERSION",
    "cache_dir",
    "ensure_downloaded",
    "load_battery",
]
