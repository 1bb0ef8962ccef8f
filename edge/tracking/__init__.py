"""edge/tracking"""
