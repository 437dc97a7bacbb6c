"""Running the chosen system like production: real monitoring (monitor.py) and the alert drill that
fires and resolves every alert of the bundle with induced faults (drill.py)."""
