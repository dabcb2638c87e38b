"""A3C (Mnih et al. 2016), recurrent and feed-forward: its math (:mod:`.math`), worker agent
(:mod:`.agent`) and registry record (:mod:`.algorithm`)."""
