"""Quota figures from the policy, and parsing what repquota/quota print."""

import pytest

from ds01.storage import quota

REPQUOTA = """User,BlockStatus,FileStatus,BlockUsed,BlockSoftLimit,BlockHardLimit,BlockGrace,FileUsed,FileSoftLimit,FileHardLimit,FileGrace
root,ok,ok,44,0,0,,6,0,0,
lt.student,soft,ok,65536,0,65536,,12,0,0,
#1234,ok,ok,8,0,0,,2,0,0,
"""

QUOTA = """Disk quotas for user lt.student (uid 1001):
     Filesystem  blocks   quota   limit   grace   files   quota   limit   grace
      /srv/ds01   65536*      0   65536       0      12       0       0       0
"""


def test_limit_per_role(policy):
    assert quota.limit_kib(policy, "student") == 200 * 1024 * 1024
    assert quota.limit_kib(policy, "admin") == 0  # no figure: no limit


def test_parse_repquota_csv():
    got = quota.parse_repquota_csv(REPQUOTA)
    assert got["lt.student"].hard_kib == 65536 and got["lt.student"].used_kib == 65536
    assert got["1234"].files == 2


def test_parse_repquota_rejects_other_formats():
    with pytest.raises(ValueError):
        quota.parse_repquota_csv("*** Report for user quotas on device /dev/vdb\n")


def test_parse_quota_output_of_the_filesystem():
    got = quota.parse_quota_output(QUOTA, "/srv/ds01", "lt.student")
    assert (got.used_kib, got.hard_kib, got.files) == (65536, 65536, 12)
    assert quota.parse_quota_output(QUOTA, "/other", "lt.student") is None


def test_setquota_args():
    assert quota.setquota_args("/srv/ds01", "123456@example.lan", 1024) == [
        "setquota",
        "-u",
        "123456@example.lan",
        "0",
        "1024",
        "0",
        "0",
        "/srv/ds01",
    ]
