"""Sans-I/O codecs for the wire protocols metergw speaks.

Nothing in this package opens a socket, reads a clock or sleeps: bytes and
values go in, typed values come out. The gateway and the simulator both build
on it, from opposite ends of the wire.
"""
