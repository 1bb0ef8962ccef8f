"""Recorded drives: the recorder that writes them, the reader, expected outputs per model and
runtime, and the replay that checks a model against them (also as a pytest plugin).
"""
