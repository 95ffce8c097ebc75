"""Reference models: slow, obviously correct, full scans, no caches. They are the specification."""
