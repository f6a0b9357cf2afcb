"""Where events come from: replayable files in the publisher formats, and a seeded
synthetic clickstream. Imports only :mod:`schemas`."""
