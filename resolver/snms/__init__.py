"""SNMS's management API (Teleinfo's secondary-node API): token login, identifiers, templates.

``routes`` (the HTTP routes), ``format`` (SNMS's request and answer shapes), ``logins`` (token login).
"""
