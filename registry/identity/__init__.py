"""Who is asking: identities and their secrets, answers to challenges, failure limits, tokens.

- ``auth``: ``Identity``, ``Authenticator`` (Basic and secret-key checks, with the failure brake).
- ``secrets``: how secrets are kept at rest; ``answers``: Handle protocol challenge answers.
- ``ratelimit``: failed-authentication limits; ``tokens``: SNMS bearer tokens.
- ``caller``: ``Caller``, the identity a request runs as, handed to the registration service.
"""
