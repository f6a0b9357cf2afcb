"""streamsim: the runtime the components share (:mod:`streamsim.runtime`), the event
sources (:mod:`streamsim.sources`) and the application on top (:mod:`streamsim.app`).

Empty on purpose: Spark executors and Beam workers import only the subpackages they need."""
