"""The catalogue of applications, as the log says it is (no state of its own)."""
