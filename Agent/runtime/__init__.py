"""What runs any algorithm: the worker loop (:mod:`.worker`), the shared-memory parameter store
(:mod:`.parameters`), the run's shared state (:mod:`.state`), its checkpoints
(:mod:`.checkpointer`) and the supervision loop (:mod:`.trainer`)."""
