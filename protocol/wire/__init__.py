"""The Handle binary protocol (RFC 3652), pure: bytes in, messages out, and back.

- ``base``: the envelope, header and primitives, and the one bounded reader of untrusted bytes.
- ``bodies``: each operation's request and response body; ``message``: a whole message.
- ``udp``: splitting into datagrams and reassembling them; ``stream``: TCP framing.
- ``auth``, ``session``, ``sign``, ``keys``: challenges and answers, sessions, signed answers,
  and handle.net's key encodings.
"""
