"""ACER (Wang et al. 2016): its math (:mod:`.math`), replay memory (:mod:`.replay`), worker
agent (:mod:`.agent`) and registry record (:mod:`.algorithm`)."""
