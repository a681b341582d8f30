"""The composition root: the command line and the wiring of which surfaces run in which process. It imports
core, bots and widget; none of them imports it."""
