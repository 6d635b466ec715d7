"""One config file per experiment; shared builder in ``common.py``."""
