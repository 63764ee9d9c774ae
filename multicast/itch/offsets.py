"""Where each field of each ITCH 5.0 message type lies, from the schema, as constants compiled code reads:
`offsets.A.shares` is 20 (from the type byte), `offsets.R.round_lot_size` 21, `offsets.A.length` 36. One
module per type (numba freezes a module's integer attributes as constants), header fields included."""

import sys
import types

from xdpfeed.multicast.itch.schema import HEADER, MESSAGES


def _type_module(t: str) -> types.ModuleType:
    name, total, fields = MESSAGES[t]
    mod = types.ModuleType(f"{__name__}.{t}", f"ITCH 5.0 '{t}' {name}: field offsets from the type byte.")
    for f in HEADER + fields:
        setattr(mod, f.name, f.offset)
    mod.length = total
    return mod


for _t in MESSAGES:
    setattr(sys.modules[__name__], _t, _type_module(_t))
