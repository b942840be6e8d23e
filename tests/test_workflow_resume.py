"""`--resume_from_checkpoint latest|true|auto`: handed to `Trainer.train(resume_from_checkpoint=True)`, which picks the
newest checkpoint itself; checked against the highest step among the checkpoint folders (independent of
transformers' helper), with the errors when there is nothing to resume from."""

from types import SimpleNamespace

import pytest
import torch
from transformers import Trainer, TrainingArguments

from trainers.workflow import resolve_resume_checkpoint


def _args(value, output_dir):
    return SimpleNamespace(resume_from_checkpoint=value, output_dir=str(output_dir))


@pytest.mark.parametrize("value", ["latest", "true", "auto", "LATEST"])
def test_latest_is_trainers_own_lookup_of_the_newest_checkpoint(value, tmp_path, monkeypatch):
    for step in (2, 10, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-12.tmp").mkdir()  # an unfinished atomic save is not a checkpoint
    newest = max(int(p.name.split("-")[1]) for p in tmp_path.iterdir() if p.name.split("-")[1].isdigit())
    assert resolve_resume_checkpoint(_args(value, tmp_path)) is True
    trainer = Trainer(model=torch.nn.Linear(2, 2), args=TrainingArguments(str(tmp_path), report_to="none",
                                                                            use_cpu=True))
    seen = []

    def stop(path, model=None):
        seen.append(path)
        raise RuntimeError("stop")

    monkeypatch.setattr(trainer, "_load_from_checkpoint", stop)
    with pytest.raises(RuntimeError, match="stop"):
        trainer.train(resume_from_checkpoint=True)
    assert seen == [str(tmp_path / f"checkpoint-{newest}")]


def test_nothing_to_resume_from_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint latest: no checkpoint in .*no such folder"):
        resolve_resume_checkpoint(_args("latest", tmp_path / "missing"))
    (tmp_path / "empty" / "logs").mkdir(parents=True)  # a folder, but no checkpoint-* in it
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint true: .*empty has no checkpoint-\* folder"):
        resolve_resume_checkpoint(_args("true", tmp_path / "empty"))
    (tmp_path / "empty" / "checkpoint-3").mkdir()
    assert resolve_resume_checkpoint(_args("auto", tmp_path / "empty")) is True


def test_paths_and_off_values(tmp_path):
    assert resolve_resume_checkpoint(_args(str(tmp_path), tmp_path)) == str(tmp_path)
    for off in (None, "", "false", "None"):
        assert resolve_resume_checkpoint(_args(off, tmp_path)) is None
    with pytest.raises(ValueError, match="is not a checkpoint folder"):
        resolve_resume_checkpoint(_args(str(tmp_path / "nope"), tmp_path))
