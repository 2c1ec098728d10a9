"""Image prune plan: unused and old go; in use, kept, or recent stay."""

from __future__ import annotations

from docker_world import POLICY

from ds01.docker.prune import Image, plan, prune

DAY = 86400
NOW = 1_800_000_000.0
UNUSED = POLICY.docker.image_prune.unused_for  # 30d in the repository policy
KEEP = POLICY.docker.image_prune.keep_label


def img(id, age_days, tags=(), labels=None, tagged_days=None):
    return Image(
        id,
        list(tags),
        NOW - age_days * DAY,
        None if tagged_days is None else NOW - tagged_days * DAY,
        labels or {},
    )


def test_plan():
    images = [
        img("sha256:old", 40, ["team/app:1"], {"ds01.user": "123456@example.lan"}),
        img("sha256:dangling", 31),
        img("sha256:used", 400, ["base:1"]),
        img("sha256:kept", 400, ["base:2"], {KEEP: "true"}),
        img("sha256:recent", 29, ["new:1"]),
        img("sha256:retagged", 100, ["re:1"], tagged_days=2),
    ]
    removals = plan(images, {"sha256:used"}, POLICY, NOW)
    assert [r.image.id for r in removals] == ["sha256:old", "sha256:dangling"]
    assert removals[0].refs == ["team/app:1"] and removals[1].refs == ["sha256:dangling"]
    assert "123456@example.lan" in removals[0].reason and "40 days" in removals[0].reason
    assert UNUSED == 30 * DAY


def test_keep_label_counts_on_an_admins_image_only():
    """A user's build from a kept base inherits the keep label (and a Dockerfile
    may LABEL anything): the service's ownership labels say whose it is."""
    user = {"ds01.user": "123456@example.lan", "ds01.role": "student"}
    images = [
        img("sha256:base", 400, ["lab/pytorch:2"], {KEEP: "true", "ds01.role": "admin"}),
        img("sha256:pulled", 400, ["debian:12"], {KEEP: "true"}),  # pulled: no ownership labels
        img("sha256:users", 90, ["me/app:1"], {KEEP: "true", **user}),
    ]
    assert [r.image.id for r in plan(images, set(), POLICY, NOW)] == ["sha256:users"]


def test_keep_label_must_be_true():
    assert plan([img("a", 90, ["x:1"], {KEEP: "false"})], set(), POLICY, NOW)


class FakeApi:
    def __init__(self):
        self.removed = []

    def images(self, all=False):
        return [
            {"Id": "sha256:a", "RepoTags": ["a:1", "a:2"], "Created": NOW - 90 * DAY},
            {"Id": "sha256:b", "RepoTags": ["<none>:<none>"], "Created": NOW - 90 * DAY},
            {"Id": "sha256:c", "RepoTags": ["c:1"], "Created": NOW - 90 * DAY},
        ]

    def inspect_image(self, id):
        return {"Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"}, "Config": {"Labels": None}}

    def containers(self, all=True):
        return [{"ImageID": "sha256:c"}]

    def remove_image(self, ref, force, noprune):
        assert force is False
        if ref == "a:2":
            raise RuntimeError("conflict: image is being used by a new container")
        self.removed.append(ref)


def test_prune_removes_each_tag_and_reports_refusals():
    api = FakeApi()
    removals, errors = prune(api, POLICY, NOW)
    assert api.removed == ["a:1", "sha256:b"]
    assert errors == ["a:2: conflict: image is being used by a new container"]
    assert len(removals) == 2
    dry = FakeApi()
    prune(dry, POLICY, NOW, dry_run=True)
    assert dry.removed == []
