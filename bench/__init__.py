"""The benches: each prints its figures and times the real training code (see docs/speed.md)."""
