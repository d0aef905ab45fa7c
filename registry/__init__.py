"""The source of truth: stores, identities and secrets, permissions, registration rules.

``registry`` imports ``protocol`` and never ``resolver``. The rooms:

- ``store`` (the ``Store`` interface every backend implements), ``service`` (the
  ``RegistrationService`` every front-end writes through), ``batch``, ``writes`` and
  ``changeset`` (how a write is planned, checked and committed), ``authority`` (the Handle
  permission model), ``templates``, ``bootstrap`` (the node's own prefix at first start),
  ``datadir`` (the data directory and its private files);
- ``identity/``: who is asking (authentication, secrets, challenge answers, limits, tokens);
- ``sqlite/``, ``postgres/``: one folder per store backend, each only running SQL;
- ``bulk/``: import and export items.
"""
