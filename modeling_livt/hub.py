"""Hub access for pushes: fail before any work when the Hub cannot be reached, upload a finished folder.

A push is checked before the expensive part (training, a checkpoint conversion): `check_hub_offline` refuses
`HF_HUB_OFFLINE=1` at once, and `create_hub_repo` creates (or finds) the repository, which also proves that the Hub
answers and that the token may write there. `upload_model_folder` uploads the result at the end.
"""

from __future__ import annotations

import os

from huggingface_hub import HfApi
from huggingface_hub import constants as hub_constants


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
