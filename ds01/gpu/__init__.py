"""GPUs and MIG instances: what the server has (layout, backends), who may use
which unit (allocator, queue) and keeping that true (reconciler, idle reaper).

Nothing here imports pyinfra; the controller reads the layout through
``facts/gpu.py``, which runs ``ds01 gpu probe --json`` on the host.
"""
