"""A launch end to end: the command line, the Ray side of a sweep, the phases and the step every
experiment ends in."""
