"""edge/replay"""
