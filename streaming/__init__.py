"""The streaming fold: Pub/Sub events -> Beam -> Bigtable user scores and item norms.

- :mod:`streaming.formats`, :mod:`streaming.publish`: replayable source files,
  deterministic event ids, the publisher client (``streamsim publish``).
- :mod:`streaming.fold`: the pure fold (exactly-once by absolute values).
- :mod:`streaming.store`, :mod:`streaming.bigtable_raw`: batched Bigtable I/O.
- :mod:`streaming.pipeline`: the Beam transforms; :mod:`streaming.runner`:
  running and supervising them (``streamsim stream``, ``python -m streaming``).
- :mod:`streaming.direct_pubsub`: the one patch of Beam's local runner.
- :mod:`streaming.state`: reading the folded state (``streamsim inspect``).
"""
