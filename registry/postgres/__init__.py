"""The PostgreSQL store (asyncpg): it only runs SQL.

``store`` (the ``Store`` over a pool), ``schema`` (partitioned tables, migrations), ``writes``
(one transaction of changes), ``replicas`` (which reads may go to a read replica).
"""
