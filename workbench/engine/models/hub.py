"""Hugging Face hub ids: what looks like one, and its local folder (from the cache,
downloaded only when allowed). Knows nothing of loading or memory."""

from __future__ import annotations

import re
from pathlib import Path

from workbench.engine.errors import ModelNotFoundError

# owner/name as the hub allows them: letters, digits, '_', '-', '.'; no '..' or '--',
# neither part starting or ending with '.' or '-' (so no id can climb out of a folder).
_PART = r"[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?"
HUB_ID = re.compile(rf"^(?!.*(?:\.\.|--)){_PART}/{_PART}$")
_PATTERNS = ["*.json", "*.safetensors", "*.py", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja"]


def hub_folder(repo: str, allow_download: bool) -> Path:
    """The snapshot folder of `repo`; ModelNotFoundError when it is not cached and
    downloads are off, or the download fails."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, allow_patterns=_PATTERNS, local_files_only=True))
    except LocalEntryNotFoundError:
        if not allow_download:
            raise ModelNotFoundError(
                f"hub model {repo!r} is not in the local Hugging Face cache and downloads are "
                "off (set WORKBENCH_ALLOW_DOWNLOAD=1 to fetch it when online)",
                model_id=repo,
            ) from None
    try:
        return Path(snapshot_download(repo, allow_patterns=_PATTERNS))
    except Exception as exc:
        raise ModelNotFoundError(f"could not download hub model {repo!r}: {exc}", model_id=repo) from exc
