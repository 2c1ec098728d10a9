"""Operations of the running server: the schedule (``schedule.py``), its
self-check (``doctor.py``) and maintenance."""
