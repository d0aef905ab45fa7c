"""The REST front-end (handle.net's v9 API) and the web console.

``frontend`` (resolution routes and the hot path), ``registry_routes`` (templates, batches, audit,
statistics), ``console_routes`` and ``console/`` (the web console's files), ``common`` (the one
error edge, parameters, bodies), ``render`` (records to handle.net JSON), ``connections``
(per-connection limits and deadlines), ``forwarded`` (the client address behind a trusted proxy).
"""
