"""Images have owners. Whatever a user builds, imports or commits is
labelled as theirs; a build's intermediate images carry no label and are
hidden. Shared base images are those named in ``docker.shared_images`` or
built by an admin with ``ds01.shared=true``; only admins may change what a
shared name points at. Every other image without an owner (pulled or loaded
by an admin) is the admins' until they share it: pull and load are admins'
operations, since the daemon cannot label what they bring in."""

from __future__ import annotations

import fnmatch
import re

from ds01.config import Policy
from ds01.docker.model import (
    ADMIN_ROLE,
    LABEL_PREFIX,
    MANAGED,
    OWNER,
    ROLE,
    SHARED,
    USER_NETWORK_MODES,
    Allow,
    Caller,
    Decision,
    Facts,
    Refused,
    Request,
    Target,
    admins_image,
    need,
    relabel,
)
from ds01.names import user_slice


def shared_image(t: Target, policy: Policy, ref: str = "") -> bool:
    """A shared base image: one an admin built (or pulled) labelled
    ``ds01.shared=true``, or one whose name is in ``docker.shared_images``.
    (A user's build inherits its base's labels, so the role label must be
    an admin's or absent.)"""
    if t.labels.get(SHARED) == "true" and admins_image(t.labels):
        return True
    names = set(t.tags) | ({tagged(ref)} if ref and not _is_id(ref) else set())
    return any(shared_name(n, policy) for n in names)


def shared_name(name: str, policy: Policy) -> bool:
    return any(fnmatch.fnmatchcase(tagged(name), p) for p in policy.docker.shared_images)


def tagged(name: str) -> str:
    """A reference in the familiar form the policy names images in: Docker
    Hub's host and ``library/`` dropped (``docker.io/library/debian`` is
    ``debian``), the tag ``latest`` when none is given."""
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            if name.startswith("library/") and name.count("/") == 1:
                name = name[len("library/") :]
            break
    return name if "@" in name or ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _is_id(ref: str) -> bool:
    return bool(re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", ref))


def readable_image(caller: Caller, policy: Policy, facts: Facts, ref: str) -> Target | None:
    """The image, which the caller may use: theirs or a shared base image.
    Images without an owner (pulled or loaded by an admin, a build's
    intermediate layers) are the admins' until an admin shares them."""
    t = need(facts, "image", ref)
    if t is None or caller.is_admin or t.owner == caller.name or shared_image(t, policy, ref):
        return t
    if t.owner:
        raise Refused(
            f"image {ref} was built by {t.owner}; you may only use your own images "
            "and the shared base images"
        )
    raise Refused(
        f"image {ref} has no owner on DS01 (pulled or loaded by an admin, or an "
        "intermediate layer of a build); you may use your own images and the shared base "
        "images (docker.shared_images); build FROM one of those, or ask the admins to share it"
    )


def free_image_name(caller: Caller, policy: Policy, facts: Facts, ref: str) -> None:
    """A name the request (re)points must be free or name the caller's own
    image; shared base names are the admins' alone."""
    if caller.is_admin:
        return
    if shared_name(ref, policy):
        raise Refused(f"{ref} is a shared base image name; only admins may change what it names")
    t = need(facts, "image", ref)
    if t is None or t.owner == caller.name:
        return
    if t.owner:
        raise Refused(f"the name {ref} is taken by {t.owner}'s image; choose another name")
    raise Refused(f"the name {ref} names an image of the admins; choose another name")


def image_ref(repo: str, tag: str) -> str:
    if not repo:
        return ""
    return f"{repo}:{tag}" if tag and "@" not in repo else repo


def decide_images_create(req: Request, caller: Caller, policy: Policy, facts: Facts) -> Decision:
    if req.q("fromImage"):
        # A pulled image carries no owner label (the daemon cannot add one), so
        # it would belong to nobody: pulls are the admins', who share base images.
        if not caller.is_admin:
            raise Refused(
                "docker pull is for admins on DS01: build FROM a shared base image "
                "(docker images lists those you can use), or ask the admins to pull and "
                "share the image you need"
            )
        return Allow(endpoint="images.create")
    # docker import: the new image is the caller's
    if req.q("fromSrc") not in ("-",) and not caller.is_admin:
        raise Refused(
            "docker import from a URL is not available on DS01; download the file and "
            "import it from standard input (docker import FILE)"
        )
    if req.q("repo"):
        free_image_name(caller, policy, facts, image_ref(req.q("repo"), req.q("tag") or "latest"))
    query = dict(req.query)
    query["changes"] = [c for c in req.many("changes") if LABEL_PREFIX not in c]
    query["changes"].append(
        f'LABEL {OWNER}="{caller.name}" {MANAGED}="true" {ROLE}="{caller.role or ADMIN_ROLE}"'
    )
    return Allow(endpoint="images.create", query=query)


# Build parameters that change what the build's containers may do, or that
# only BuildKit (admins only: /grpc, /session) reads.
_BUILD_ADMIN_ONLY = {
    "securityopt": "--security-opt (build entitlements)",
    "ulimits": "--ulimit",
    "outputs": "--output",
    "session": "with a BuildKit session",
    "isolation": "--isolation",
}


def decide_build(req: Request, caller: Caller, policy: Policy, facts: Facts) -> Decision:
    admin = caller.is_admin
    if req.q("remote") and not admin:
        raise Refused(
            "building from a remote URL is not available on DS01 (the daemon would "
            "fetch it from the server); clone or download it and build the folder"
        )
    mode = req.q("networkmode")
    if mode not in USER_NETWORK_MODES and not admin:
        raise Refused(f"build network mode {mode!r} is not allowed; use the default network")
    if not admin:
        for key, why in _BUILD_ADMIN_ONLY.items():
            if req.query.get(key) not in (None, "", [], {}):
                raise Refused(f"docker build {why} is not available on DS01")
    for t in req.many("t"):
        if t:
            free_image_name(
                caller, policy, facts, t if ":" in t.rsplit("/", 1)[-1] else f"{t}:latest"
            )
    query = dict(req.query)
    query["labels"] = relabel(req.query.get("labels"), caller, "labels")
    if caller.role:
        query["cgroupparent"] = user_slice(caller.role, caller.name)
    return Allow(endpoint="build", query=query)
