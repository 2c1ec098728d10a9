"""Slurm on the GPU nodes, generated from the DS01 policy (issue 14).

Pure functions (all but ``queue``, below): ``nodes`` turns a node's facts
(CPUs, memory, the GPU/MIG layout of ``ds01.gpu.layout``) into Slurm's view of it, ``render`` writes
slurm.conf, gres.conf, cgroup.conf and slurmdbd.conf, ``accounts`` plans the
accounts, QOS and user associations that ``sacctmgr`` holds. The deploy
(deploys/slurm.py) only gathers the facts and installs what these return.
The one reader of the running cluster is ``queue`` (``squeue``/``sinfo`` for
``ds01 status`` and the exporter).
"""
