"""The streaming fold: Pub/Sub events -> Beam -> Bigtable pair scores and item norms.

- :mod:`streaming.publish`: the publisher client and file replay (``streamsim publish``);
  the file formats themselves are event sources (:mod:`streamsim.sources.formats`).
- :mod:`streaming.fold`: the pure fold of a (user, item) pair and of an item.
- :mod:`streaming.store`: the fold's Bigtable I/O with conditional writes, and why it is
  exactly-once with any number of writers.
- :mod:`streaming.fold_stages`: the two keyed Beam stages (pairs by user, then items by item).
- :mod:`streaming.pipeline`: the graph; :mod:`streaming.dead_letters`: dead letters within
  Pub/Sub's limits; :mod:`streaming.runner`: running and supervising it (``streamsim stream``,
  ``python -m streaming``).
- :mod:`streaming.direct_pubsub`: the local runner's Pub/Sub read, and its acknowledgement step.
- :mod:`streaming.state`: reading the folded state (``streamsim inspect``).
"""
