"""Doubles the demo and the tests share (the pretend trust). Never used by the running hub."""
