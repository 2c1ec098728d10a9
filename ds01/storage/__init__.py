"""Shared storage areas: their ACL plan, scratch purge, quotas and usage."""
