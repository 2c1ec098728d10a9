"""GPU operations: the MIG layout plan, reported on every converge."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import QuoteString, StringCommand, operation

from facts.gpu import GpuLayoutPlan


@operation()
def layout_planned(ds01: str = "/usr/local/bin/ds01"):
    """
    Run ``ds01 gpu layout plan`` and say whether the GPUs differ from the
    policy's ``gpu.layout``; never apply it (re-partitioning a running server
    is an admin's explicit ``sudo ds01 gpu layout apply``). A no-op whenever
    ds01 is installed: the plan is read as a fact and logged.

    + ds01: path of the ds01 command on the server

    **Example:**

    .. code:: python

        gpu.layout_planned(name="MIG layout planned against gpu.layout (not applied)")
    """
    plan = host.get_fact(GpuLayoutPlan, ds01=ds01)
    if plan is None:  # a fresh server: ds01 is installed earlier in this converge
        yield StringCommand(QuoteString(ds01), "gpu layout plan")
        return
    differ = [g for g in plan["gpus"] if g["changes"] or g["problem"]]
    for g in differ:
        what = g["problem"] or (
            f"{g['current'] or 'whole GPU'} -> {g['desired'] or 'whole GPU'}, "
            f"{len(g['vanishing'])} unit(s) would vanish"
        )
        logger.warning(f"GPU {g['gpu']} differs from gpu.layout: {what}")
    if differ:
        host.noop(
            f"GPU layout: {len(differ)} GPU(s) differ from gpu.layout; see `ds01 gpu layout "
            "plan`, apply with `sudo ds01 gpu layout apply`"
        )
    else:
        host.noop(f"GPU layout: the {len(plan['gpus'])} GPU(s) of gpu.layout are as it asks")
