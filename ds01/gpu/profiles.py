"""The MIG profiles of the GPU models DS01 knows, and where each may be placed.

A GPU instance occupies a run of the GPU's 8 memory slices starting at one of
its profile's valid *starts* (NVIDIA's MIG user guide, "Supported MIG
profiles"; NVML's ``nvmlDeviceGetGpuInstancePossiblePlacements`` returns the
same). The starts are not simply every multiple of the size: ``4g`` fits only
at 0, a ``1g`` never at 7 (the seventh compute slice is the last), and a
``+me`` profile (the one media extension) at most once. :func:`place` finds a
placement for a whole list of profiles, or says why none exists; it is what
checks ``gpu.layout`` in the policy and what ``ds01 gpu layout apply`` creates.

Profile ids are NVML's ``NVML_GPU_INSTANCE_PROFILE_*`` values, memory in MiB
as NVML lists it.
"""

from __future__ import annotations

from dataclasses import dataclass

MEMORY_SLICES = 8
COMPUTE_SLICES = 7

# NVML_GPU_INSTANCE_PROFILE_* (pynvml's names; copied so that the policy can be
# checked where nvidia-ml-py is not installed)
_1, _2, _3, _4, _7 = 0x0, 0x1, 0x2, 0x3, 0x4
_1_ME, _1_MEM2 = 0x7, 0x9  # 1_SLICE_REV1 (+me), 1_SLICE_REV2 (double memory)


@dataclass(frozen=True)
class Profile:
    id: int  # NVML_GPU_INSTANCE_PROFILE_*
    name: str  # "3g.20gb"
    slices: int  # compute slices
    memory_mb: int
    size: int  # memory slices it occupies
    starts: tuple[int, ...] = ()  # valid first memory slices
    max_count: int = 7  # how many a GPU can have at once


def _model(*rows: tuple[int, str, int, int]) -> dict[str, Profile]:
    starts = {1: tuple(range(7)), 2: (0, 2, 4, 6), 4: (0, 4), 8: (0,)}
    out = {}
    for pid, name, slices, mb in rows:
        size = {_1: 1, _1_ME: 1, _1_MEM2: 2, _2: 2, _3: 4, _4: 4, _7: 8}[pid]
        where = starts[size]
        if pid == _2:
            where = (0, 2, 4)  # a 2g at 6 would need compute slices 6 and 7
        elif pid == _4:
            where = (0,)
        out[name] = Profile(pid, name, slices, mb, size, where, 1 if pid == _1_ME else 7)
    return out


# name as NVML gives it -> profile name -> profile
MODELS: dict[str, dict[str, Profile]] = {
    "NVIDIA A100-SXM4-40GB": _model(
        (_1, "1g.5gb", 1, 4864), (_1_ME, "1g.5gb+me", 1, 4864), (_1_MEM2, "1g.10gb", 1, 9856),
        (_2, "2g.10gb", 2, 9856), (_3, "3g.20gb", 3, 19968), (_4, "4g.20gb", 4, 19968),
        (_7, "7g.40gb", 7, 40192),
    ),
    "NVIDIA A100-SXM4-80GB": _model(
        (_1, "1g.10gb", 1, 9728), (_1_ME, "1g.10gb+me", 1, 9728), (_1_MEM2, "1g.20gb", 1, 19968),
        (_2, "2g.20gb", 2, 19968), (_3, "3g.40gb", 3, 40192), (_4, "4g.40gb", 4, 40192),
        (_7, "7g.80gb", 7, 80896),
    ),
    "NVIDIA H100 80GB HBM3": _model(
        (_1, "1g.10gb", 1, 9984), (_1_ME, "1g.10gb+me", 1, 9984), (_1_MEM2, "1g.20gb", 1, 20096),
        (_2, "2g.20gb", 2, 20096), (_3, "3g.40gb", 3, 40320), (_4, "4g.40gb", 4, 40320),
        (_7, "7g.80gb", 7, 80768),
    ),
    "NVIDIA H200": _model(
        (_1, "1g.18gb", 1, 16384), (_1_ME, "1g.18gb+me", 1, 16384), (_1_MEM2, "1g.35gb", 1, 32512),
        (_2, "2g.35gb", 2, 32512), (_3, "3g.71gb", 3, 66048), (_4, "4g.71gb", 4, 66048),
        (_7, "7g.141gb", 7, 131584),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Placed:
    """One GPU instance to create: its profile at memory slice ``start``."""

    profile: Profile
    start: int


class LayoutInvalid(ValueError):
    """No placement exists; the message says which profile does not fit."""


def place(model: str, profiles: list[str]) -> list[Placed]:
    """Placements for ``profiles`` on a GPU of ``model``, in placement order.

    Larger instances are placed first (they have the fewest starts), each at
    its lowest free valid start, backtracking when a later one cannot fit.
    Raises :class:`LayoutInvalid` naming the model's profiles, or the
    slices the list needs, when there is none."""
    known = MODELS.get(model)
    if known is None:
        raise LayoutInvalid(f"unknown GPU model {model!r}; known: {', '.join(sorted(MODELS))}")
    wanted = []
    for name in profiles:
        if name not in known:
            raise LayoutInvalid(
                f"{name!r} is not a MIG profile of the {model}; its profiles: " + ", ".join(known)
            )
        wanted.append(known[name])
    for p in {p.name: p for p in wanted}.values():
        if sum(q.name == p.name for q in wanted) > p.max_count:
            raise LayoutInvalid(f"the {model} has at most {p.max_count} {p.name}")
    compute = sum(p.slices for p in wanted)
    memory = sum(p.size for p in wanted)
    if compute > COMPUTE_SLICES or memory > MEMORY_SLICES:
        raise LayoutInvalid(
            f"{' + '.join(profiles)} needs {compute} compute and {memory} memory slices; the "
            f"{model} has {COMPUTE_SLICES} and {MEMORY_SLICES}"
        )
    order = sorted(wanted, key=lambda p: (-p.size, len(p.starts), p.name))
    found = _fit(order, frozenset())
    if found is None:
        raise LayoutInvalid(
            f"{' + '.join(profiles)} cannot be placed on the {model}: the instances overlap at "
            "every valid start (e.g. a 4g only fits at the start, a 1g never in the last "
            "memory slice); see `ds01 gpu layout plan` for what fits"
        )
    return sorted(found, key=lambda x: x.start)


def _fit(todo: list[Profile], used: frozenset[int]) -> list[Placed] | None:
    if not todo:
        return []
    p, rest = todo[0], todo[1:]
    for start in p.starts:
        span = frozenset(range(start, start + p.size))
        if span & used:
            continue
        tail = _fit(rest, used | span)
        if tail is not None:
            return [Placed(p, start), *tail]
    return None
