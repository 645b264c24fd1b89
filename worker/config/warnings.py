"""Settings that work but weaken the worker's security: each is one warning in the start-up log.

Not refusals: a Kubernetes secret volume mounts its files 0644 by default (readable by every user of
the container, which runs one process as one user), and a test cluster may have certificates without
the broker's address in them. The operator still hears about each one, once, at start.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

from worker.config.certificate_dates import certificate_validity
from worker.config.choices import SecurityProtocol
from worker.config.secrets import SECRET_FILE_VARIABLES, SECRETS_DIR_VARIABLE

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from worker.config.settings import Settings

__all__ = ["SettingWarning", "startup_warnings"]

SettingWarning = tuple[str, str]  # (the setting, what weakens)


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False  # an unreadable file is refused by the settings themselves


def _secret_files(env: Mapping[str, str]) -> list[tuple[str, Path]]:
    """Return (setting, path) for each secret file the settings read from ``env``."""
    files = [(variable, Path(env[variable])) for variable in SECRET_FILE_VARIABLES if env.get(variable)]
    directory = env.get(SECRETS_DIR_VARIABLE)
    if directory:
        for variable in SECRET_FILE_VARIABLES.values():
            for name in (variable.lower(), variable):
                path = Path(directory) / name
                if path.is_file():
                    files.append((f"{SECRETS_DIR_VARIABLE} ({name})", path))
                    break
    return files


_HOSTNAME_UNCHECKED = (
    "false: the brokers' certificates are not matched to their addresses, so any holder of a "
    "certificate from the CA can pose as a broker"
)


def startup_warnings(settings: Settings, env: Mapping[str, str], now: datetime) -> list[SettingWarning]:
    """Return every setting in ``settings`` (read from ``env``) that weakens security or will fail, with why.

    ``now`` dates the client certificate (the wall clock is right here: no decision depends on it).
    """
    warnings: list[SettingWarning] = []
    tls = settings.kafka_security_protocol in {SecurityProtocol.SSL, SecurityProtocol.SASL_SSL}
    if tls and not settings.kafka_ssl_check_hostname:
        warnings.append(("CLAIMS_KAFKA_SSL_CHECK_HOSTNAME", _HOSTNAME_UNCHECKED))
    for setting, path in _secret_files(env):
        if _readable_by_others(path):
            mode = stat.S_IMODE(path.stat().st_mode)
            why = f"{path} is readable by other users (mode {mode:04o}); 0400 or 0440 keeps it to the worker"
            warnings.append((setting, why))
    certfile = settings.kafka_ssl_certfile
    validity = certificate_validity(certfile) if tls and certfile else None
    if validity is not None and not validity.not_before <= now <= validity.not_after:
        why = (
            f"{certfile} is valid from {validity.not_before:%Y-%m-%d %H:%M} to "
            f"{validity.not_after:%Y-%m-%d %H:%M} UTC, not now: a broker that checks it refuses the login"
        )
        warnings.append(("CLAIMS_KAFKA_SSL_CERTFILE", why))
    return warnings
