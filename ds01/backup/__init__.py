"""Backups with restic: what the policy's ``backup`` section asks for, built
into restic command lines (``restic.py``), the scheduled runs with their lock,
status file and restore drill (``run.py``), and restores, the admin's and a
user's own through a narrow root helper (``restore.py``).
"""
