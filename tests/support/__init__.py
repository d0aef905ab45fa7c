"""Process fixtures and clients for the tests: nodes, Redis, PostgreSQL, Handle peers."""
