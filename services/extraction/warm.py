"""Imported by the extraction service's worker-process server (multiprocessing ``forkserver`` preload): loads the
word lists, suffix list, language model and place names once, so every recycled worker forked from it starts warm
(copy-on-write pages shared with the fork server) instead of paying :func:`core.warm_up` (~1.4 s) per child."""

from services.extraction import core

core.warm_up()
