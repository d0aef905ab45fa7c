"""The embedded SQLite store: it only runs SQL.

``store`` (the ``Store`` over SQLite), ``writer`` (the connection, the one writer thread and its
group commits), ``schema`` (tables and migrations), ``backup`` (online copy of the store).
"""
