"""Accelerator ids given on the command line (``--devices 0,1,2,3``): parsed and checked once,
for ``ash-worker``, ``ash tune`` and ``ash.tune(devices=...)``.

An id is what the worker's own environment calls the device: a CUDA or HIP ordinal (``0``), or
a GPU or MIG UUID (``GPU-8f3c...``, ``MIG-...``). Each becomes one slot (ash.worker.slots sets
the slot's environment); repeating an id gives that device two slots.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ash.errors import UserError

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._/-]{0,127}")
MAX_DEVICES = 1024


def parse_devices(text: str | Iterable[str | int], flag: str = "--devices") -> list[str]:
    """The ids of a comma list (or of a list, from Python); UserError naming ``flag`` and the
    bad id."""
    items = text.split(",") if isinstance(text, str) else [str(x) for x in text]
    ids = [x.strip() for x in items]
    if not ids or ids == [""]:
        raise UserError(f"{flag}: give at least one device id (e.g. 0,1)")
    if len(ids) > MAX_DEVICES:
        raise UserError(f"{flag}: {len(ids)} device ids (at most {MAX_DEVICES})")
    for d in ids:
        if not _ID.fullmatch(d):
            raise UserError(
                f"{flag}: device id {d!r} is not an ordinal or a UUID (letters, digits, "
                "':._/-'; no spaces or empty entries)"
            )
    return ids
