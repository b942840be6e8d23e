"""Hub access for pushes: fail before any work when the Hub cannot be reached, upload a finished model or dataset
folder.

A push is checked before the expensive part (training, a checkpoint conversion): `check_hub_offline` refuses
`HF_HUB_OFFLINE=1` at once, and `create_hub_repo` creates (or finds) the repository, which also proves that the Hub
answers and that the token may write there. `upload_model_folder` uploads the result at the end.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub import constants as hub_constants

from ..data.long_tail import CLASS_COUNTS_FILE
from ..data.prepare import DATA_DIR


class HubUnavailableError(RuntimeError):
    """A push to the Hub was requested, but the Hub cannot be reached (offline mode, no network, refused token)."""


def hub_offline() -> bool:
    """Whether huggingface_hub is in offline mode (`HF_HUB_OFFLINE=1` or `TRANSFORMERS_OFFLINE=1` at import)."""
    return bool(hub_constants.HF_HUB_OFFLINE or hub_constants.is_offline_mode())


def _upload_later_hint(repo_id: str | None, local_folder: str | os.PathLike | None, repo_type: str = "model") -> str:
    folder = os.fspath(local_folder) if local_folder else "<output_dir>"
    return f"`hf upload {repo_id or '<repo_id>'} {folder}{'' if repo_type == 'model' else f' --repo-type {repo_type}'}`"


def check_hub_offline(
    flag: str, repo_id: str | None, local_folder: str | os.PathLike | None, without: str, repo_type: str = "model"
) -> None:
    """Raise `HubUnavailableError` when the Hub is in offline mode.

    `flag` names the option that asked for the Hub (`--push_to_hub`), `without` what to do instead (e.g. "Train
    without --push_to_hub"); the message also says how to upload `local_folder` later (to a `repo_type` repository).
    """
    if hub_offline():
        raise HubUnavailableError(
            f"{flag} needs the Hugging Face Hub, but HF_HUB_OFFLINE=1 is set (this machine is offline). {without} "
            f"and upload the output folder later with {_upload_later_hint(repo_id, local_folder, repo_type)}, or "
            "unset HF_HUB_OFFLINE on a connected machine."
        )


def create_hub_repo(
    repo_id: str,
    local_folder: str | os.PathLike | None = None,
    private: bool | None = None,
    token: str | None = None,
    flag: str = "--push_to_hub",
    without: str = "Run without --push_to_hub",
) -> str:
    """Create the model repository `repo_id` on the Hub (an existing one is kept) and return its id.

    Called before the work whose result is pushed, so that an offline machine, a network failure or a token that may
    not write fails first, with `HubUnavailableError` naming the cause and the way to upload `local_folder` later.
    """
    if not repo_id or repo_id.count("/") > 1:
        raise ValueError(f"{flag} needs a repository id such as 'username/model-name' (got {repo_id!r}).")
    check_hub_offline(flag, repo_id, local_folder, without)
    try:
        url = HfApi(token=token).create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    # Any failure here means the push cannot happen: OfflineModeIsEnabled, HfHubHTTPError (401/403), and the HTTP
    # client's own connection errors, whose classes depend on the huggingface_hub release (httpx, httpx2).
    except Exception as error:
        raise HubUnavailableError(
            f"{flag}: could not create or reach the Hub repository {repo_id!r} at {hub_constants.ENDPOINT} "
            f"({type(error).__name__}: {error}). Check the network and the token (`hf auth login`, or "
            f"--hub_token); or {without[0].lower() + without[1:]} and upload the folder later with "
            f"{_upload_later_hint(repo_id, local_folder)}."
        ) from error
    return url.repo_id


def upload_model_folder(
    folder: str | os.PathLike, repo_id: str, token: str | None = None, commit_message: str = "Upload model"
) -> str:
    """Upload every file of `folder` to the model repository `repo_id`; returns the commit URL."""
    info = HfApi(token=token).upload_folder(
        repo_id=repo_id, folder_path=os.fspath(folder), repo_type="model", commit_message=commit_message
    )
    return info.commit_url


__all__ = ["HubUnavailableError", "check_hub_offline", "create_hub_repo", "hub_offline", "upload_model_folder"]


def check_dataset_push(hub_dataset_id: str | None) -> None:
    """Fail before any work when ``--push_to_hub`` cannot succeed: offline mode, no repo id, or no token."""
    check_hub_offline("--push_to_hub", hub_dataset_id, None, "Prepare without --push_to_hub", repo_type="dataset")
    if not hub_dataset_id:
        raise ValueError("--push_to_hub needs --hub_dataset_id (e.g. your-name/imagenet-lt)")
    if get_token() is None:
        raise RuntimeError("--push_to_hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")


def push_dataset_folder(output_dir: str | os.PathLike, hub_dataset_id: str, private: bool = False) -> str:
    """Upload a prepared folder (its data shards, card and class counts only) as a dataset repository; returns its URL.

    The repository is created if needed; `HfApi.upload_folder` sends the shards through the Hub's large-file storage
    in one commit.
    """
    api = HfApi()
    url = api.create_repo(hub_dataset_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=hub_dataset_id,
        folder_path=str(output_dir),
        repo_type="dataset",
        allow_patterns=[f"{DATA_DIR}/*.parquet", "README.md", CLASS_COUNTS_FILE],
        commit_message=f"Upload {Path(output_dir).name} (scripts/prepare_dataset.py)",
    )
    return str(url)
