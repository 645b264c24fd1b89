"""Secrets the settings may read from files: ``CLAIMS_<NAME>_FILE`` variables and a secrets directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from worker.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SECRETS_DIR_VARIABLE", "SECRET_FILE_VARIABLES", "read_secret_files", "read_secrets_dir"]

# Secrets that may also come from a file (a mounted Kubernetes secret): CLAIMS_<NAME>_FILE=/path.
SECRET_FILE_VARIABLES: dict[str, str] = {
    "CLAIMS_KAFKA_PASSWORD_FILE": "CLAIMS_KAFKA_PASSWORD",
    "CLAIMS_KAFKA_SSL_KEY_PASSWORD_FILE": "CLAIMS_KAFKA_SSL_KEY_PASSWORD",
    "CLAIMS_SCHEMA_REGISTRY_PASSWORD_FILE": "CLAIMS_SCHEMA_REGISTRY_PASSWORD",
    "CLAIMS_MEMBER_PSEUDONYM_SECRET_FILE": "CLAIMS_MEMBER_PSEUDONYM_SECRET",
}
# A folder of secret files named after the variables (pydantic-settings' secrets directory).
SECRETS_DIR_VARIABLE = "CLAIMS_SECRETS_DIR"
_MAX_SECRET_FILE_BYTES = 64 * 1024


def _read_secret(path: Path, label: str) -> str:
    """Return one secret file's text, one trailing newline dropped; errors name ``label``, never content."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"bad settings: {label}: cannot read {path} ({type(exc).__name__})") from None
    if len(raw) > _MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"bad settings: {label}: {path} is larger than a secret can be")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"bad settings: {label}: {path} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


def read_secret_files(env: Mapping[str, str]) -> dict[str, str]:
    """Return ``CLAIMS_<NAME>`` values read from the files named by ``CLAIMS_<NAME>_FILE`` in ``env``.

    One trailing newline is dropped (``echo`` and Kubernetes secrets add one). Raises ``ConfigError``
    naming the variable (never the content) when a file cannot be read or both forms are set.
    """
    values: dict[str, str] = {}
    for file_variable, variable in SECRET_FILE_VARIABLES.items():
        path = env.get(file_variable)
        if not path:
            continue
        if env.get(variable):
            raise ConfigError(f"bad settings: set {variable} or {file_variable}, not both")
        values[variable] = _read_secret(Path(path), file_variable)
    return values


def read_secrets_dir(directory: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Return secrets from files named after their variables (``claims_kafka_password`` or upper case).

    This is a mounted Kubernetes secret; a value set in the environment (or by a ``_FILE``) wins.
    """
    values: dict[str, str] = {}
    for variable in SECRET_FILE_VARIABLES.values():
        if env.get(variable):
            continue
        for name in (variable.lower(), variable):
            path = directory / name
            if path.is_file():
                values[variable] = _read_secret(path, f"{SECRETS_DIR_VARIABLE} ({name})")
                break
    return values
