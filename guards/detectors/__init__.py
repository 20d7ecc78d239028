"""Built-in detectors: pure functions from text to findings, fast enough for every request."""
