"""Attribution tokens: which answer showed an item, carried back on the events that follow.

Every answer of a recommendation route carries ``attribution``: an opaque token naming the
route, the generation, the configuration and arm, a request id and the time. A shop sends
it back as the optional ``attribution`` field of the browse, basket or purchase events that
follow (``schemas.events``), and the stream counts attributed events per arm, route and
event type (``streaming.fold``), exactly once like everything it folds.

Wire form: base64url (no padding) of ``JSON [version, route, generation, config, arm,
request id, time ms]`` followed by an 8-byte keyed BLAKE2b tag. Bounded (ids are at most
:data:`MAX_LABEL_CHARS`, the token at most :data:`MAX_TOKEN_CHARS`) and verifiable: a
token that was altered, truncated or made up fails :func:`decode` (the key is
``STREAMSIM_ATTRIBUTION_KEY``, the same for serving and the stream; set a secret one to make
tokens unforgeable by clients, see docs/serving.md).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping

VERSION = 1
#: Routes a token can name: ``GET /recommendations?user=`` (user), a session query
#: (``GET``/``POST /recommendations``), ``GET /items/{item}/similar``, bought together
#: (``GET /items/{item}/bought-together``, ``POST /bought-together``), ``GET /users/{user}/buy-again``.
ROUTES = ("user", "session", "similar", "bought_together", "buy_again")
#: Configuration and arm names (short: they label counters).
MAX_LABEL_CHARS = 32
MAX_TOKEN_CHARS = 256
_TAG_BYTES = 8
_LABEL = re.compile(rf"^[A-Za-z0-9_.-]{{1,{MAX_LABEL_CHARS}}}$")
_REQUEST_ID = re.compile(r"^[0-9a-f]{16}$")
DEFAULT_KEY = b"streamsim-attribution"


class AttributionError(ValueError):
    """A token that is not one this deployment issued."""


@dataclasses.dataclass(frozen=True)
class Attribution:
    route: str
    #: The generation the answer came from (epoch ms; 0 if none was served).
    generation: int
    #: The serving configuration's id (e.g. the tuned config's name) and the arm it belongs to.
    config: str
    arm: str
    request_id: str
    ts_ms: int

    def __post_init__(self):
        if not isinstance(self.route, str) or self.route not in ROUTES:
            raise AttributionError(f"route {self.route!r} is not one of {', '.join(ROUTES)}")
        for name in ("config", "arm"):
            if not is_label(getattr(self, name)):
                raise AttributionError(f"{name} must be 1-{MAX_LABEL_CHARS} of A-Z a-z 0-9 _ . -")
        if not isinstance(self.request_id, str) or not _REQUEST_ID.match(self.request_id):
            raise AttributionError("request id must be 16 hex digits")
        for name in ("generation", "ts_ms"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value < 2**63:
                raise AttributionError(f"{name} must be a non-negative int64")


def is_label(text) -> bool:
    """True for a configuration or arm name a token can carry."""
    return isinstance(text, str) and _LABEL.match(text) is not None


def label_of(text: str) -> str:
    """``text`` made a label: other characters become ``_``, cut to MAX_LABEL_CHARS."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:MAX_LABEL_CHARS] or "default"


def _key(environ: Mapping[str, str] = os.environ) -> bytes:
    return environ.get("STREAMSIM_ATTRIBUTION_KEY", "").encode("utf-8") or DEFAULT_KEY


def _tag(payload: bytes, key: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_TAG_BYTES, key=key[:64]).digest()


def encode(attribution: Attribution, key: bytes | None = None) -> str:
    a = attribution
    payload = json.dumps(
        [VERSION, a.route, a.generation, a.config, a.arm, a.request_id, a.ts_ms], separators=(",", ":")
    ).encode("ascii")
    return base64.urlsafe_b64encode(payload + _tag(payload, key or _key())).rstrip(b"=").decode("ascii")


def decode(token, key: bytes | None = None) -> Attribution:
    """The :class:`Attribution` of a token, or :class:`AttributionError` (any input)."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS or not token.isascii():
        raise AttributionError(f"an attribution token is a string of 1-{MAX_TOKEN_CHARS} ASCII characters")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise AttributionError("not base64url") from None
    payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if len(raw) <= _TAG_BYTES or not hmac.compare_digest(tag, _tag(payload, key or _key())):
        raise AttributionError("not a token this deployment issued (bad tag)")
    try:
        version, *fields = json.loads(payload)
    except (ValueError, TypeError):
        raise AttributionError("unreadable payload") from None
    if version != VERSION or len(fields) != 6:
        raise AttributionError(f"token version {version!r} is not supported")
    return Attribution(*fields)


def counter_key(arm: str, route: str, event_type: str) -> bytes:
    """The ``users a:`` qualifier counting one (arm, route, event type)."""
    return f"{arm}|{route}|{event_type}".encode("ascii")


def parse_counter_key(qualifier: bytes) -> tuple[str, str, str]:
    arm, route, event_type = qualifier.decode("ascii").split("|")
    return arm, route, event_type
