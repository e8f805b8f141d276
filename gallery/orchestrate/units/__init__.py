"""A build as independent units of work, one module per kind of unit.

A unit is a pure function of (model, settings, unit): a *filter unit*
(:mod:`.filters`) renders one span of a layer's filters in one variant; a *photo unit*
(:mod:`.photos`) analyses one batch of photos. Its output is the cache entries it names
up front, each at a slot of a named type. Each kind owns its entries, its cost and
stages, how it runs on a worker and how its settled entries are absorbed into the build's
state; :mod:`.common` holds what they share (the job, the task, and settling a unit with
the cache). Spans and batches are cut from the settings alone, never from the executor
or the number of workers, so every executor renders the same batches and publishes the
same bytes.
"""

from .common import MAIN, Entry, Job, Result, Task, Unit, lookup, store
from .filters import FilterUnit, filter_key, filter_units
from .photos import PHOTO_BATCH, PhotoUnit, photo_units

__all__ = ["MAIN", "PHOTO_BATCH", "Entry", "FilterUnit", "Job", "PhotoUnit", "Result", "Task", "Unit",
           "filter_key", "filter_units", "lookup", "photo_units", "store"]
