"""Procedural training images: stop signs and look-alike confusers over real or drawn backgrounds."""
