"""The sans-I/O core: frames, codecs, the reliable stream and the session state machine.

Nothing here imports asyncio or touches a socket; time is always passed in.
"""
