"""The source of truth: stores, identities and secrets, permissions, registration rules, the data directory."""
