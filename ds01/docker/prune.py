"""Image hygiene: remove images nobody uses, on a schedule.

An image is removed when all of these hold:
- no container (running or stopped) uses it;
- it does not carry the keep label (``docker.image_prune.keep_label``) as an
  admin's image: a user's build inherits its base's labels and may write any
  LABEL in its Dockerfile, so on a user's image the keep label counts for nothing;
- it was created, or last tagged, more than ``docker.image_prune.unused_for`` ago.

Dockerfiles are the source of truth: an image is a cache of a build. The daemon
itself refuses to remove an image a container uses, so a container created
between the plan and the removal keeps its image.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ds01 import events
from ds01.config import Policy
from ds01.docker.model import admins_image
from ds01.docker.policy import OWNER


@dataclass(frozen=True)
class Image:
    id: str
    tags: list[str]
    created: float  # seconds since the epoch
    last_tagged: float | None
    labels: dict[str, str]


@dataclass(frozen=True)
class Removal:
    image: Image
    reason: str

    @property
    def refs(self) -> list[str]:
        """What to delete: each tag (an image with several tags), or the id."""
        return list(self.image.tags) or [self.image.id]


def plan(images: list[Image], in_use: set[str], policy: Policy, now: float) -> list[Removal]:
    rule = policy.docker.image_prune
    out = []
    for img in images:
        kept = img.labels.get(rule.keep_label, "").lower() in ("1", "true", "yes")
        if img.id in in_use or kept and admins_image(img.labels):
            continue
        last = max(img.created, img.last_tagged or 0)
        age_days = (now - last) / 86400
        if now - last <= rule.unused_for:
            continue
        what = "dangling" if not img.tags else ", ".join(img.tags)
        owner = img.labels.get(OWNER, "shared")
        out.append(Removal(img, f"{what} ({owner}): unused, {age_days:.0f} days old"))
    return out


def parse_docker_time(value: str | None) -> float | None:
    if not value or value.startswith("0001-"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}+00:00").timestamp()


def read_images(api) -> tuple[list[Image], set[str]]:
    """Images and the ids in use, from a docker APIClient on the real socket."""
    images = []
    for row in api.images(all=False):
        meta = api.inspect_image(row["Id"])
        tags = [t for t in (row.get("RepoTags") or []) if t != "<none>:<none>"]
        images.append(
            Image(
                row["Id"],
                tags,
                float(row["Created"]),
                parse_docker_time((meta.get("Metadata") or {}).get("LastTagTime")),
                (meta.get("Config") or {}).get("Labels") or {},
            )
        )
    in_use = {c["ImageID"] for c in api.containers(all=True)}
    return images, in_use


def prune(
    api, policy: Policy, now: float, dry_run: bool = False
) -> tuple[list[Removal], list[str]]:
    """Apply the plan; returns (what was (or would be) removed, errors)."""
    images, in_use = read_images(api)
    removals = plan(images, in_use, policy, now)
    errors = []
    if not dry_run:
        for r in removals:
            for ref in r.refs:
                try:
                    api.remove_image(ref, force=False, noprune=False)
                except Exception as e:  # in use since the plan, or already gone: keep going
                    errors.append(f"{ref}: {getattr(e, 'explanation', None) or e}")
                else:
                    events.emit("image_prune", image=ref, owner=r.image.labels.get(OWNER),
                                reason=r.reason)  # fmt: skip
    return removals, errors
