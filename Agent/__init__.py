"""The algorithms and what runs them.

Layers, each importing only those below it: :mod:`Agent.interface` and
:mod:`Agent.shared_math` (what algorithms and the runtime agree on); the algorithms
(:mod:`Agent.acer`, :mod:`Agent.a3c`) and their :mod:`Agent.registry`; the runtime
(:mod:`Agent.runtime`); the backends (:mod:`Agent.backends`); and :mod:`Agent.training`, which
puts a run together. ``tests/test_import_cycles.py`` keeps it so.
"""
