"""The recommendation HTTP API (aiohttp) and its Cython scoring kernel.

- :mod:`serving.app`: ``create_app(config)``, routes, the error middleware.
- :mod:`serving.server`: the runner under the app (JSON answers to what aiohttp refuses) and ``run``.
- :mod:`serving.recommender`: history -> recommendations (exclusions, popular fill, explain).
- :mod:`serving.scoring`: the public face of the kernel ``_scoring.pyx``.
- :mod:`serving.store`: the serving reads, over the runtime's asyncio Bigtable gateway, with deadlines.
- :mod:`serving.generation`: the generation pointer, polled.
- :mod:`serving.neighbours`: the per-generation vocabulary and the LRU of similarity rows.
- :mod:`serving.params`, :mod:`serving.config`, :mod:`serving.metrics`, :mod:`serving.openapi`.

Run it with ``streamsim serve`` or ``python -m serving``.
"""
