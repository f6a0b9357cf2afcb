"""``streamsim demo --ab``: two arms served side by side, and the events that followed their answers.

The demo holds back the tail of the stream (what the shoppers did next). With ``--ab`` the server
runs two arms, ``control`` (the default knobs) and ``popular-blend`` (a 0.3 popularity blend), half
of the users each by their id's hash. Before the tail is replayed, each user with events in it asks
for ``user`` recommendations once, and every tail event on an item that user's answer showed carries
that answer's attribution token. So the attributed rates of ``streamsim report`` measure, per arm,
how often an answer showed what its user went on to browse, basket and buy: held-out truth, not a
simulated click model. The stream counts each tagged event once; the demo checks the total.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from schemas import EventError, parse_event
from schemas.tuned import QueryKnobs, TunedConfig

#: The arms, by file name (the arm's name), and their serving knobs.
ARMS = {"control": QueryKnobs(), "popular-blend": QueryKnobs(popularity_blend=0.3)}
#: Users of the tail asked for recommendations (one request each).
USERS = 500
#: Items per answer.
N = 10


def serve_flags(workdir: Path) -> list[str]:
    """Write the arms' configurations; the ``streamsim serve`` flags that serve them 50/50."""
    workdir.mkdir(parents=True, exist_ok=True)
    flags = []
    for name, knobs in ARMS.items():
        path = workdir / f"{name}.json"
        path.write_text(TunedConfig("cosine", {}, knobs, {"written_by": "streamsim demo --ab"}).to_json())
        flags += ["--config", str(path)]
    return [*flags, "--split", "50"]


def tag_tail(tail: list[bytes], get: Callable[[str], dict]) -> tuple[list[bytes], int]:
    """The tail with the attribution token of the answer that showed each event's item to its
    user (the first USERS users of the tail ask once each); how many events were tagged."""
    events = {}
    for k, message in enumerate(tail):
        try:
            events[k] = parse_event(message)
        except EventError:
            continue  # broken on purpose: it goes to the dead letters as it is
    users = list(dict.fromkeys(event.user for event in events.values()))[:USERS]
    shown: dict[tuple[str, str], str] = {}
    for user in users:
        answer = get(f"/recommendations?user={quote(user, safe='')}&n={N}")
        for entry in answer.get("items", []):
            shown[user, entry["item"]] = answer["attribution"]
    tagged, out = 0, []
    seen_ids = set()
    for k, message in enumerate(tail):
        event = events.get(k)
        token = None if event is None else shown.get((event.user, event.item))
        if token is None:
            out.append(message)
            continue
        record = json.loads(message)
        record["attribution"] = token
        out.append(json.dumps(record).encode("utf-8"))
        if event.event_id not in seen_ids:  # a repeated id is one event to the stream
            seen_ids.add(event.event_id)
            tagged += 1
    return out, tagged
