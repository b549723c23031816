"""Hypothesis runs derandomized by default: every run draws the same examples, so CI cannot fail by
chance and a failure reproduces anywhere. ``HYPOTHESIS_PROFILE=random`` draws fresh examples each run
(a wider local search; ``tools/fuzz.py`` searches deeper still)."""
import os

from hypothesis import settings

settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("random", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
