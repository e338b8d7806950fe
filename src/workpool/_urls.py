"""`mask_url`: a URL as it may be logged or printed, its password masked.

Its own module so that the channels (`workpool.redis`) and `open_channel`, which
imports them lazily, both use it without an import cycle.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote

__all__ = ["mask_url"]

_MASK: Final = "***"
_SECRET_PARAMS: Final = frozenset({"password"})


def mask_url(url: str) -> str:
    """*url* with its password replaced by ``***`` (user info and ``?password=``).

    A user info without ``:`` is masked whole: Redis URLs often carry a bare password
    there. Safe on malformed URLs: it never raises.
    """
    if not isinstance(url, str):
        return repr(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    head, qsep, query = rest.partition("?")
    at = head.rfind("@")
    if at >= 0:
        userinfo = head[:at]
        user, colon, _ = userinfo.partition(":")
        head = (f"{user}:{_MASK}" if colon else _MASK) + head[at:]
    if qsep:
        parts = []
        for part in query.split("&"):
            key, eq, _value = part.partition("=")
            parts.append(f"{key}={_MASK}" if eq and unquote(key) in _SECRET_PARAMS else part)
        query = "&".join(parts)
    return f"{scheme}{sep}{head}{qsep}{query}"
