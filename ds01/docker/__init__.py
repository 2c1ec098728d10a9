"""The docker access layer: every user's Docker API goes through one service.

- ``policy``: the one pure function that decides each request (allow, rewrite, deny),
  one rule family per route (``routes``), over the vocabulary in ``model``;
  ``create``: the create checks (named, over one ``CreateSpec``), ``mounts``, ``images``
- ``http``, ``request``: strict HTTP framing and the canonical request the rules read;
  ``daemon``: the real socket as a small client (lookups, events)
- ``service``: the access service on a unix socket (SO_PEERCRED -> user -> role),
  forwarding what is allowed to the real socket, streaming and hijack included
- ``gpu``: glue to the GPU allocator (assign on create, allocate on start,
  release on stop via the event stream, forget on remove)
- ``prune``: image hygiene; ``cli``: the user commands
"""
