"""pulistats: farm history queries (history.py), pygal charts (charts.py), static reports
(report.py) and the in-browser viewer (viewer.py)."""
