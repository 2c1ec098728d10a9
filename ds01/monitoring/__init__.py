"""Monitoring: the DS01 exporter (``collectors``, ``exporter``) and what the
deploy renders from the policy's ``monitoring`` section (``render``: the
Prometheus, Alertmanager and alert rule files)."""
