"""Operator commands, apart from the serving path: ``idnode prefix|identity|handle|stats|audit``
(``admin``, over ``admin_client``), ``check``, ``backup``/``restore``, ``import``/``export`` (``bulk``).
"""
