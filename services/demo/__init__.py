"""`wake demo`: a sample repository and a walk of its commits through Wake."""
