"""The recommendation HTTP API (aiohttp) and its Cython scoring kernel."""
