"""Asking other servers: who holds a handle, which server to ask, and asking it.

``routing`` (the decision, a state machine without I/O), ``sites`` (HS_SITE: servers, order,
targets), ``hop`` (the one rule for accepting another server's answer), ``delegator`` (drives
routing and the clients), ``http_client`` and ``handle_client`` (the two transports),
``target_policy`` (where a server named by a record may be), ``publisher`` (publishing this
node's prefixes to the top-level node).
"""
