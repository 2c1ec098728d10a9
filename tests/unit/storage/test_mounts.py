from pathlib import Path

from ds01.config import load_policy
from ds01.storage.mounts import nosuid_paths

REPO = Path(__file__).resolve().parents[3]


def test_the_fewest_paths_cover_homes_and_every_area():
    policy = load_policy(REPO / "config/resource-allocation.yaml")
    paths = nosuid_paths(policy)
    assert paths == ["/home", "/srv/ds01"]
    for area in policy.storage.areas.values():
        assert any(area.path == p or area.path.startswith(p + "/") for p in paths), area.path


def test_an_area_outside_the_quota_filesystem_is_its_own_mount():
    policy = load_policy(REPO / "config/resource-allocation.yaml")
    data = policy.storage.areas["data"].model_copy(update={"path": "/mnt/datasets"})
    areas = {**policy.storage.areas, "data": data}
    policy = policy.model_copy(
        update={"storage": policy.storage.model_copy(update={"areas": areas})}
    )
    assert nosuid_paths(policy) == ["/home", "/mnt/datasets", "/srv/ds01"]
