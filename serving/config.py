"""Serving configuration: one frozen dataclass, built from flags or ``STREAMSIM_SERVE_*``.

Tests build :class:`ServingConfig` directly; ``python -m serving`` and
``streamsim serve`` build it from the environment and their flags.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from schemas import attribution
from schemas.events import Weights
from schemas.tuned import QueryKnobs, read_tuned
from serving.arms import Arm
from serving.arms import from_configs as arms_from_configs
from serving.rules import NO_RULES, Rules, read_rules
from serving.session_knn import PRESETS, SessionKnn
from serving.session_neighbours import servable
from streamsim.runtime.settings import Settings


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    settings: Settings
    host: str = "127.0.0.1"
    port: int = 8080
    weights: Weights = dataclasses.field(default_factory=Weights)
    default_n: int = 10
    #: How often the generation pointer is read.
    poll_seconds: float = 2.0
    #: One Bigtable RPC. A request's reads share a budget of
    #: request_timeout_seconds (each RPC gets what is left), so a dead
    #: backend is a 503 within a second.
    rpc_deadline_seconds: float = 0.4
    request_timeout_seconds: float = 0.9
    #: Similarity rows kept (about 1 KB each for top-50 lists).
    cache_rows: int = 200_000
    #: Ids without a similarity row remembered, apart from the rows: a flood
    #: of random ids evicts only these, never a row that exists.
    absent_cache_rows: int = 20_000
    #: The catalogue is read whole this often (and its change log every poll).
    catalog_reload_seconds: float = 600.0
    #: User history reads arriving within this window share one ReadRows call...
    history_window_ms: float = 1.0
    #: ...of at most this many users.
    history_batch_reads: int = 64
    #: Item ids one generation's vocabulary may hold before it is renewed.
    vocabulary_limit: int = 2_000_000
    #: A user's strongest items that are scored (all of them are excluded).
    max_history: int = 200
    #: Larger request bodies get 413; a 100-item session is about 5 KB.
    max_body_bytes: int = 64 * 1024
    #: Seconds in-flight requests get to finish after SIGTERM.
    shutdown_timeout_seconds: float = 10.0
    #: Serving processes on the port (``streamsim serve``); 0: one per CPU available.
    workers: int = 0
    #: A ``streamsim tune`` configuration whose query knobs apply ("": none).
    tuned_config: str = ""
    #: Popularity blend, recency decay over a session, repeats: from ``tuned_config`` if set.
    knobs: QueryKnobs = QueryKnobs()
    #: Session queries scored by session-kNN over the stream's session index: a preset of
    #: ``serving.session_knn.PRESETS`` that the server can run ("": item-item only).
    session_method: str = ""
    #: How long a worker keeps an item's session list or a session's items (freshness vs reads).
    session_cache_seconds: float = 2.0
    #: The session-kNN settings (from ``session_method``, or given directly by tests).
    session_knn: SessionKnn | None = None
    #: The arm this server's answers belong to, named in their attribution tokens.
    arm: str = "default"
    #: A/B arms (``serving.arms``): two or more tuned configurations, in place of ``tuned_config``...
    arm_configs: tuple = ()
    #: ...and the first arm's share in percent (None: equal shares).
    split: float | None = None
    #: The arms served: from ``arm_configs``, else one named ``arm`` with ``knobs``.
    arms: tuple = dataclasses.field(default=(), init=False)
    #: A merchandising rules file (``serving.rules``; "": none), re-read when it changes.
    rules: str = ""
    #: The rules as read at start (a bad file refuses the configuration).
    start_rules: Rules = dataclasses.field(default=NO_RULES, init=False)

    def __post_init__(self):
        positive = (
            "poll_seconds",
            "rpc_deadline_seconds",
            "request_timeout_seconds",
            "cache_rows",
            "absent_cache_rows",
            "catalog_reload_seconds",
            "history_batch_reads",
            "vocabulary_limit",
            "max_history",
            "max_body_bytes",
            "default_n",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.workers >= 0:
            raise ValueError(f"workers must be 0 (one per CPU) or more, got {self.workers!r}")
        if not self.history_window_ms >= 0:
            raise ValueError(f"history_window_ms must be 0 or more, got {self.history_window_ms!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not a TCP port")
        if self.split is not None and not self.arm_configs:
            raise ValueError("--split needs two --config files (the arms)")
        if self.tuned_config:
            object.__setattr__(self, "knobs", read_tuned(self.tuned_config).serving)
        if not self.session_cache_seconds >= 0:
            raise ValueError(f"session_cache_seconds must be 0 or more, got {self.session_cache_seconds!r}")
        if self.session_method:
            if self.session_method not in PRESETS:
                raise ValueError(f"session method {self.session_method!r} is not one of {', '.join(PRESETS)}")
            object.__setattr__(self, "session_knn", PRESETS[self.session_method])
        if self.session_knn is not None:
            servable(self.session_knn)
        if not attribution.is_label(self.arm):
            raise ValueError(f"arm {self.arm!r} must be 1-{attribution.MAX_LABEL_CHARS} of A-Z a-z 0-9 _ . -")
        if self.arm_configs and self.tuned_config:
            raise ValueError("give one tuned configuration, or two or more arms, not both")
        arms = arms_from_configs(tuple(self.arm_configs), self.split) if self.arm_configs else ()
        object.__setattr__(self, "arms", arms or (Arm(self.arm, self.knobs, 1.0),))
        if self.rules:
            object.__setattr__(self, "start_rules", read_rules(self.rules))

    @property
    def config_id(self) -> str:
        """The configuration named in attribution tokens: the tuned file's name, or ``default``."""
        return attribution.label_of(Path(self.tuned_config).stem) if self.tuned_config else "default"

    @classmethod
    def from_env(cls, settings: Settings, environ: Mapping[str, str] = os.environ, **overrides) -> ServingConfig:
        """Values from ``overrides`` (flags; None = unset), then ``STREAMSIM_SERVE_<NAME>``, then defaults."""
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in ("settings", "weights", "knobs", "session_knn", "arms", "start_rules"):
                continue
            explicit = overrides.get(field.name)
            if field.name in ("arm_configs", "split"):  # flags only
                if explicit is not None:
                    values[field.name] = explicit
                continue
            text = environ.get(f"STREAMSIM_SERVE_{field.name.upper()}")
            if explicit is not None:
                values[field.name] = explicit
            elif text:
                kind = {"int": int, "float": float}.get(str(field.type), str)
                try:
                    values[field.name] = kind(text)
                except ValueError:
                    raise ValueError(
                        f"STREAMSIM_SERVE_{field.name.upper()}={text!r} is not a {kind.__name__}"
                    ) from None
        return cls(settings=settings, weights=Weights.from_env(environ), **values)
