"""The streaming fold: Pub/Sub events -> Beam -> Bigtable user scores and item norms.

- :mod:`streaming.publish`: the publisher client and file replay (``streamsim publish``);
  the file formats themselves are event sources (:mod:`streamsim.sources.formats`).
- :mod:`streaming.fold`: the pure fold (exactly-once by absolute values).
- :mod:`streaming.store`: the fold's batched Bigtable I/O, through the runtime's gateway.
- :mod:`streaming.pipeline`: the Beam transforms; :mod:`streaming.runner`:
  running and supervising them (``streamsim stream``, ``python -m streaming``).
- :mod:`streaming.direct_pubsub`: the one patch of Beam's local runner.
- :mod:`streaming.state`: reading the folded state (``streamsim inspect``).
"""
