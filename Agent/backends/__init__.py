"""Where a run's workers execute: ``local`` (:mod:`Agent.backends.local`, processes on this
machine), Ray's parameter server (:mod:`Agent.backends.ray_hogwild`) and Ray's actor-learner
mode (:mod:`Agent.backends.actor_learner`), with what the Ray ones share in
:mod:`Agent.backends.transport`. Each is an :class:`Agent.runtime.trainer.Backend`, built as
``Backend(run_state, run_dir, checkpointer)``.

This file imports nothing: a spawned local worker imports :mod:`Agent.backends.local`, and
should not import Ray's modules on the way.
"""
