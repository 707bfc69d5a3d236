"""What a child process started by BLO Bus inherits from the environment: only what it needs.

A node may hold secrets in its environment (``BLO_PASSPHRASE`` unlocks its key file,
``BLO_TOKEN`` is an API token), and a child's initial environment stays readable for
its whole life in ``/proc/<pid>/environ``, by its user and by root. So a child never
gets the parent's environment as it is: it gets the variables named here, which is
what a program needs to find its tools, its locale and its temporary folder, and a Go
program (nats-server) its runtime settings and TLS roots. Everything else, secrets
included, stays behind. Pure: the caller passes the environment to filter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Passed on when set: the search path, who and where the user is, the locale, the time zone,
#: the temporary folder, a Go runtime's tuning, and where TLS root certificates are.
KEPT = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
        "GOMAXPROCS", "GOMEMLIMIT", "GOGC", "GODEBUG", "SSL_CERT_FILE", "SSL_CERT_DIR",
    }
)  # fmt: skip
#: Passed on too: every ``LC_*`` locale category.
KEPT_PREFIXES = ("LC_",)


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: ``environ`` (default: this process's) minus
    every variable not in ``KEPT`` or starting with one of ``KEPT_PREFIXES``."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k in KEPT or k.startswith(KEPT_PREFIXES)}
