"""The serving path: configuration, processes, front-ends, the resolution engine, metrics.

``resolver`` imports ``registry`` and ``protocol``. Process concerns sit at its top (``cli``,
``config``, ``server``, ``workers``, ``listeners``, ``logs``, ``metrics``); ``engine`` decides
how a handle is answered, over ``cache/`` (the tiers) and ``delegation/`` (other servers).
The front-ends, ``http/``, ``handle/`` and ``snms/``, move bytes between sockets and codecs and
call the engine and the registration service only. ``commands/`` holds the operator commands,
apart from the request path.
"""
