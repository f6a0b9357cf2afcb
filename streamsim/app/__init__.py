"""The application: the ``streamsim`` command, ``inspect``, ``demo``, the local stack and
``evaluate``. It may import every layer below it; nothing below imports it."""
