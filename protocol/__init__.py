"""Pure data of the Handle system: identifiers, values, records, codes and encodings.

Nothing in this package performs I/O; it is shared by the registry (source of truth)
and the resolver (serving path), and later by the binary wire codec.
"""
