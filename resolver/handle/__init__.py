"""The Handle protocol front-end (RFC 3652) on TCP and UDP.

``transport`` (the listeners: datagrams and streams to messages), ``frontend`` (resolution and
the answers' encodings), ``admin`` (authentication, challenges and sessions), ``ops`` (the
administrative operations), ``shared`` (state shared by them), ``server_key`` (the key this
node signs answers with).
"""
