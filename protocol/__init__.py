"""Pure data of the Handle system: identifiers, values and records, codes and errors, JSON.

Nothing in this package performs I/O, and it imports neither ``registry`` nor ``resolver``:
the registry (source of truth) and the resolver (serving path) both build on it.

- ``codes``, ``errors``: Handle response codes (an ``IntEnum``) and the one exception tree.
- ``identifiers``: a handle parsed and normalised once, at the edge, into an immutable value.
- ``records``, ``valuedata``: handle values and records, and the typed data formats
  (HS_ADMIN, HS_SITE, HS_VLIST, ...).
- ``jsonfmt``: handle.net's JSON form of values and records; ``basic_auth``: Basic credentials.
- ``wire/``: the Handle binary protocol (RFC 3652).
"""
